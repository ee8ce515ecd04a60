//! The gRPC service `o3.csa.v1.Scheduler` over a shared [`Scheduler`]. Each
//! handler unpacks the request and calls the scheduler; the cluster token
//! is checked before any handler runs (`RequireClusterToken` over the whole
//! server, see [`super::serve`]).

use std::sync::Arc;
use std::time::Duration;

use o3_transport::control::proto::csa::v1 as pb;
use pb::scheduler_server::{Scheduler as SchedulerRpc, SchedulerServer};
use tonic::{Request, Response, Status};

use super::Scheduler;

#[derive(Clone, Debug)]
pub(super) struct SchedulerService {
    scheduler: Arc<Scheduler>,
}

impl SchedulerService {
    pub fn new(scheduler: Arc<Scheduler>) -> SchedulerService {
        SchedulerService { scheduler }
    }

    pub fn into_server(self) -> SchedulerServer<Self> {
        SchedulerServer::new(self)
    }
}

#[tonic::async_trait]
impl SchedulerRpc for SchedulerService {
    async fn register_tenant(
        &self,
        request: Request<pb::RegisterTenantRequest>,
    ) -> Result<Response<pb::RegisterTenantResponse>, Status> {
        let r = request.into_inner();
        let (tenant_id, session) = self
            .scheduler
            .register_tenant(&r.name, &r.root, r.priority)?;
        Ok(Response::new(pb::RegisterTenantResponse {
            tenant_id,
            session: session.to_vec(),
            instance: self.scheduler.instance,
        }))
    }

    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let r = request.into_inner();
        let submission = super::Submission {
            job: &r.job,
            kind: pb::JobKind::try_from(r.kind)
                .map_err(|_| Status::invalid_argument(format!("unknown job kind {}", r.kind)))?,
            images: r.images.clone(),
            target: pb::FlushTarget::try_from(r.target).map_err(|_| {
                Status::invalid_argument(format!("unknown flush target {}", r.target))
            })?,
        };
        let (ticket, queue_position) =
            self.scheduler
                .submit(r.tenant_id, &r.session, submission, r.score, r.epochs)?;
        Ok(Response::new(pb::SubmitResponse {
            ticket,
            queue_position,
        }))
    }

    async fn r#await(
        &self,
        request: Request<pb::AwaitRequest>,
    ) -> Result<Response<pb::AwaitResponse>, Status> {
        let r = request.into_inner();
        let wait = Duration::from_millis(u64::from(r.wait_ms));
        let reply = self
            .scheduler
            .await_ticket(r.tenant_id, &r.session, r.ticket, wait)
            .await?;
        Ok(Response::new(reply))
    }

    async fn cancel(
        &self,
        request: Request<pb::CancelRequest>,
    ) -> Result<Response<pb::CancelResponse>, Status> {
        let r = request.into_inner();
        let state = self
            .scheduler
            .cancel(r.tenant_id, &r.session, r.ticket, &r.reason)?;
        Ok(Response::new(pb::CancelResponse {
            state: state as i32,
        }))
    }

    async fn load(
        &self,
        _request: Request<pb::LoadRequest>,
    ) -> Result<Response<pb::LoadResponse>, Status> {
        Ok(Response::new(self.scheduler.load()))
    }

    async fn register_agent(
        &self,
        request: Request<pb::RegisterAgentRequest>,
    ) -> Result<Response<pb::RegisterAgentResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(
            self.scheduler
                .register_agent(&r.name, r.slots, &r.memnode)?,
        ))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        Ok(Response::new(
            self.scheduler.heartbeat(&request.into_inner())?,
        ))
    }

    async fn fetch(
        &self,
        request: Request<pb::FetchRequest>,
    ) -> Result<Response<pb::FetchResponse>, Status> {
        let r = request.into_inner();
        let wait = Duration::from_millis(u64::from(r.wait_ms));
        Ok(Response::new(self.scheduler.fetch(r.agent_id, wait).await?))
    }

    async fn report(
        &self,
        request: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        Ok(Response::new(self.scheduler.report(request.into_inner())))
    }

    async fn stats(
        &self,
        _request: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        Ok(Response::new(self.scheduler.stats()))
    }
}
