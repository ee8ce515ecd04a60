//! [`SchedulerClient`]: how a compute node (a tenant) and an operator talk to
//! the compaction scheduler.
//!
//! A tenant registers once ([`SchedulerClient::register_tenant`]) and gets a
//! [`TenantSession`]; it submits claimed compaction jobs
//! ([`SchedulerClient::submit`]) and collects each outcome with a long-poll
//! ([`SchedulerClient::await_job`]). When the scheduler restarts, every call
//! of the old session fails with [`CsaError::SessionLost`] and the tenant
//! registers again (its unfinished tickets are gone: it runs or resubmits
//! those jobs). Every call carries the cluster token; every call is bounded
//! by the connect timeout (an await by its wait plus that timeout), so a
//! dead scheduler is [`CsaError::Unavailable`], never a hang.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use o3_storage::job::{CompactionJob, FlushJob, JobResult};
use o3_transport::control::proto::csa::v1 as pb;
use o3_transport::control::{
    AuthenticatedChannel, ClusterToken, ConnectOptions, ControlError, authenticated, connect,
    describe_error,
};
use pb::scheduler_client::SchedulerClient as Grpc;

use crate::error::CsaError;
pub use crate::failure::FailureKind;

/// Longest wait the scheduler holds an `Await` open for.
pub const MAX_AWAIT: Duration = Duration::from_secs(30);

/// The longest deadline the channel itself imposes; each call sets its own
/// shorter one (the channel takes the smaller of the two).
const CHANNEL_DEADLINE: Duration = Duration::from_secs(600);

/// A connection to one scheduler. Clones share the connection; the channel
/// reconnects by itself after the scheduler comes back at the same address.
#[derive(Clone, Debug)]
pub struct SchedulerClient {
    endpoint: String,
    timeout: Duration,
    grpc: Grpc<AuthenticatedChannel>,
}

/// A tenant's registration: the id and the secret session every call of
/// the tenant carries. `Debug` does not print the session.
#[derive(Clone)]
pub struct TenantSession {
    pub tenant_id: u64,
    /// The scheduler instance that issued the session.
    pub instance: u64,
    session: Vec<u8>,
}

impl fmt::Debug for TenantSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantSession")
            .field("tenant_id", &self.tenant_id)
            .field("instance", &format_args!("{:016x}", self.instance))
            .field("session", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
impl TenantSession {
    fn from_parts(tenant_id: u64, instance: u64, session: Vec<u8>) -> TenantSession {
        TenantSession {
            tenant_id,
            instance,
            session,
        }
    }
}

/// Where a cancelled ticket was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelledFrom {
    Queued,
    Running,
    /// Done or failed already: nothing changed.
    Finished,
}

/// A job accepted into the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Submitted {
    pub ticket: u64,
    /// Jobs ahead of it when it was queued.
    pub queue_position: u32,
}

/// Where a ticket stands.
#[derive(Clone, Debug)]
pub enum JobStatus {
    Queued,
    Running {
        agent: String,
        epoch: u32,
    },
    Done(RemoteRun),
    /// Every try failed (or its agents died): the tenant runs the job
    /// itself. `error` and `kind` are the last try's.
    Failed {
        error: String,
        kind: FailureKind,
        tries: u32,
    },
}

/// A job an agent ran to completion.
#[derive(Clone, Debug)]
pub struct RemoteRun {
    /// Outputs carry file numbers from the slice of `epoch`.
    pub result: JobResult,
    pub agent: String,
    pub epoch: u32,
    pub tries: u32,
    pub queue_wait: Duration,
    pub exec: Duration,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// It ran on a memory node's flush executor.
    pub on_memnode: bool,
}

/// The agents' load and the queue, for placement decisions.
#[derive(Clone, Debug, PartialEq)]
pub struct Load {
    pub instance: u64,
    pub agents: Vec<AgentLoad>,
    pub queued: u32,
    pub slots_total: u32,
    pub slots_free: u32,
    /// Moving average of recent jobs' queue wait.
    pub queue_wait: Duration,
    /// Memory nodes executing flushes (not counted in the slots above).
    pub memnodes: Vec<AgentLoad>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AgentLoad {
    pub agent_id: u64,
    pub name: String,
    pub slots: u32,
    pub running: u32,
    /// Fraction of one core over the last heartbeat interval.
    pub cpu: f32,
    pub rss_bytes: u64,
    /// Moving average of input bytes compacted per second; 0 before the
    /// agent's first job.
    pub bytes_per_sec: f64,
    pub healthy: bool,
    pub jobs_done: u64,
    pub jobs_failed: u64,
    /// A memory node's data-plane node id; `None` for a plain agent.
    pub memnode: Option<String>,
    pub flushes_done: u64,
    /// Moving average of image bytes flushed per second; 0 before the
    /// first flush.
    pub flush_bytes_per_sec: f64,
}

impl AgentLoad {
    pub(crate) fn from_proto(a: &pb::AgentLoad) -> AgentLoad {
        AgentLoad {
            agent_id: a.agent_id,
            name: a.name.clone(),
            slots: a.slots,
            running: a.running,
            cpu: a.cpu,
            rss_bytes: a.rss_bytes,
            bytes_per_sec: a.bytes_per_sec,
            healthy: a.healthy,
            jobs_done: a.jobs_done,
            jobs_failed: a.jobs_failed,
            memnode: (!a.memnode.is_empty()).then(|| a.memnode.clone()),
            flushes_done: a.flushes_done,
            flush_bytes_per_sec: a.flush_bytes_per_sec,
        }
    }
}

/// `host:port` becomes `http://host:port`; a URI is kept.
pub(crate) fn endpoint_uri(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    }
}

/// Opens a channel to `endpoint` (one attempt bounded by `timeout`).
pub(crate) async fn open_channel(
    endpoint: &str,
    token: ClusterToken,
    timeout: Duration,
) -> Result<AuthenticatedChannel, CsaError> {
    let options = ConnectOptions {
        connect_timeout: timeout,
        request_timeout: CHANNEL_DEADLINE,
        max_attempts: 1,
        ..ConnectOptions::default()
    };
    let channel = connect(endpoint, &options).await.map_err(|e| match e {
        ControlError::Unreachable { .. } => CsaError::Unavailable {
            endpoint: endpoint.to_owned(),
            reason: describe_error(&e),
        },
        other => CsaError::InvalidArgument(describe_error(&other)),
    })?;
    Ok(authenticated(channel, token))
}

impl SchedulerClient {
    /// Connects to the scheduler at `endpoint` (`host:port` or
    /// `http://host:port`). `timeout` bounds the connection attempt and
    /// every later call (an await: its wait plus `timeout`).
    pub async fn connect(
        endpoint: &str,
        token: ClusterToken,
        timeout: Duration,
    ) -> Result<SchedulerClient, CsaError> {
        let endpoint = endpoint_uri(endpoint);
        let channel = open_channel(&endpoint, token, timeout).await?;
        Ok(SchedulerClient {
            endpoint,
            timeout,
            grpc: Grpc::new(channel),
        })
    }

    /// The scheduler's URI (`http://host:port`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn request<T>(&self, message: T, deadline: Duration) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(deadline);
        request
    }

    fn error(&self, status: &tonic::Status, ticket: Option<u64>) -> CsaError {
        CsaError::from_status(&self.endpoint, status, ticket)
    }

    /// Registers the tenant `name` whose database lives under `root` (an
    /// absolute path). Registering again under the same name returns the
    /// same tenant id and a new session; the old one stops working.
    pub async fn register_tenant(
        &self,
        name: &str,
        root: &Path,
        priority: u32,
    ) -> Result<TenantSession, CsaError> {
        let root = root.to_str().ok_or_else(|| {
            CsaError::InvalidArgument(format!("root {} is not UTF-8", root.display()))
        })?;
        let request = self.request(
            pb::RegisterTenantRequest {
                name: name.to_owned(),
                root: root.to_owned(),
                priority,
            },
            self.timeout,
        );
        let reply = self
            .grpc
            .clone()
            .register_tenant(request)
            .await
            .map_err(|s| self.error(&s, None))?
            .into_inner();
        Ok(TenantSession {
            tenant_id: reply.tenant_id,
            instance: reply.instance,
            session: reply.session,
        })
    }

    /// Queues `job` (claimed from the tenant's database, its file numbers
    /// reserved for `epochs` equal slices) with the picker's `score`.
    pub async fn submit(
        &self,
        tenant: &TenantSession,
        job: &CompactionJob,
        score: f64,
        epochs: u32,
    ) -> Result<Submitted, CsaError> {
        let bytes = job.to_bytes().map_err(|e| {
            CsaError::InvalidArgument(format!("cannot encode job {}: {e}", job.token))
        })?;
        self.send_submit(pb::SubmitRequest {
            tenant_id: tenant.tenant_id,
            session: tenant.session.clone(),
            job: bytes,
            score,
            epochs,
            ..pb::SubmitRequest::default()
        })
        .await
    }

    /// Queue a flush of images held by a memory node (`images` says where,
    /// in the job's order), to run where `target` allows; its file numbers
    /// are cut into `epochs` slices as a compaction's.
    pub async fn submit_flush(
        &self,
        tenant: &TenantSession,
        job: &FlushJob,
        images: pb::FlushImages,
        target: pb::FlushTarget,
        epochs: u32,
    ) -> Result<Submitted, CsaError> {
        let bytes = job.to_bytes().map_err(|e| {
            CsaError::InvalidArgument(format!("cannot encode flush job {}: {e}", job.token))
        })?;
        self.send_submit(pb::SubmitRequest {
            tenant_id: tenant.tenant_id,
            session: tenant.session.clone(),
            job: bytes,
            // Flushes order before every compaction whatever the score.
            score: 0.0,
            epochs,
            kind: pb::JobKind::Flush as i32,
            images: Some(images),
            target: target as i32,
        })
        .await
    }

    /// One `Submit` call.
    async fn send_submit(&self, submit: pb::SubmitRequest) -> Result<Submitted, CsaError> {
        let request = self.request(submit, self.timeout);
        let reply = self
            .grpc
            .clone()
            .submit(request)
            .await
            .map_err(|s| self.error(&s, None))?
            .into_inner();
        Ok(Submitted {
            ticket: reply.ticket,
            queue_position: reply.queue_position,
        })
    }

    /// The ticket's state, waiting up to `wait` (at most 30 s) for it to
    /// finish.
    pub async fn await_job(
        &self,
        tenant: &TenantSession,
        ticket: u64,
        wait: Duration,
    ) -> Result<JobStatus, CsaError> {
        let wait = wait.min(MAX_AWAIT);
        let request = self.request(
            pb::AwaitRequest {
                tenant_id: tenant.tenant_id,
                session: tenant.session.clone(),
                ticket,
                wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
            },
            wait + self.timeout,
        );
        let reply = self
            .grpc
            .clone()
            .r#await(request)
            .await
            .map_err(|s| self.error(&s, Some(ticket)))?
            .into_inner();
        job_status(reply)
    }

    /// Withdraw `ticket` (the tenant runs the job itself): it leaves the
    /// queue, or its running try is fenced and the agent deletes what it
    /// wrote. Returns the state it was in; a finished ticket is unchanged.
    pub async fn cancel(
        &self,
        tenant: &TenantSession,
        ticket: u64,
        reason: &str,
    ) -> Result<CancelledFrom, CsaError> {
        let request = self.request(
            pb::CancelRequest {
                tenant_id: tenant.tenant_id,
                session: tenant.session.clone(),
                ticket,
                reason: reason.to_owned(),
            },
            self.timeout,
        );
        let reply = self
            .grpc
            .clone()
            .cancel(request)
            .await
            .map_err(|s| self.error(&s, Some(ticket)))?
            .into_inner();
        Ok(match pb::JobState::try_from(reply.state) {
            Ok(pb::JobState::Queued) => CancelledFrom::Queued,
            Ok(pb::JobState::Running) => CancelledFrom::Running,
            _ => CancelledFrom::Finished,
        })
    }

    /// The agents' load and the queue.
    pub async fn load(&self) -> Result<Load, CsaError> {
        let request = self.request(pb::LoadRequest {}, self.timeout);
        let reply = self
            .grpc
            .clone()
            .load(request)
            .await
            .map_err(|s| self.error(&s, None))?
            .into_inner();
        Ok(Load {
            instance: reply.instance,
            agents: reply.agents.iter().map(AgentLoad::from_proto).collect(),
            queued: reply.queued,
            slots_total: reply.slots_total,
            slots_free: reply.slots_free,
            queue_wait: Duration::from_micros(reply.queue_wait_us),
            memnodes: reply.memnodes.iter().map(AgentLoad::from_proto).collect(),
        })
    }

    /// Everything the scheduler counts (operators).
    pub async fn stats(&self) -> Result<pb::StatsResponse, CsaError> {
        let request = self.request(pb::StatsRequest {}, self.timeout);
        Ok(self
            .grpc
            .clone()
            .stats(request)
            .await
            .map_err(|s| self.error(&s, None))?
            .into_inner())
    }
}

/// The status an `Await` reply describes.
fn job_status(reply: pb::AwaitResponse) -> Result<JobStatus, CsaError> {
    Ok(match pb::JobState::try_from(reply.state) {
        Ok(pb::JobState::Queued) => JobStatus::Queued,
        Ok(pb::JobState::Running) => JobStatus::Running {
            agent: reply.agent,
            epoch: reply.epoch,
        },
        Ok(pb::JobState::Done) => {
            let result = JobResult::from_bytes(&reply.result).map_err(|e| {
                CsaError::Internal(format!("the scheduler returned an undecodable result: {e}"))
            })?;
            JobStatus::Done(RemoteRun {
                result,
                agent: reply.agent,
                epoch: reply.epoch,
                tries: reply.tries,
                queue_wait: Duration::from_micros(reply.queue_wait_us),
                exec: Duration::from_micros(reply.exec_us),
                bytes_read: reply.bytes_read,
                bytes_written: reply.bytes_written,
                on_memnode: reply.on_memnode,
            })
        }
        Ok(pb::JobState::Failed) => JobStatus::Failed {
            error: reply.error,
            kind: FailureKind::from_proto(reply.failure),
            tries: reply.tries,
        },
        Ok(pb::JobState::Unspecified) | Err(_) => {
            return Err(CsaError::Internal(format!(
                "the scheduler answered an await with state {}",
                reply.state
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_does_not_print_the_session() {
        let session = TenantSession::from_parts(7, 9, b"top-secret-bytes".to_vec());
        let text = format!("{session:?}");
        assert!(text.contains("tenant_id: 7"), "{text}");
        assert!(
            !text.contains("116") && !text.contains("top-secret"),
            "{text}"
        );
    }

    #[test]
    fn endpoints_get_a_scheme() {
        assert_eq!(endpoint_uri("127.0.0.1:7390"), "http://127.0.0.1:7390");
        assert_eq!(endpoint_uri("http://h:1"), "http://h:1");
    }
}
