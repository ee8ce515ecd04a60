//! Authentication and isolation: the cluster token guards every call, a
//! session belongs to one tenant, a tenant sees only its tickets and may
//! only name files under its root.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{TestDb, token};
use o3_csa::scheduler::SchedulerConfig;
use o3_csa::{CsaError, LocalService, LocalServiceOptions, SchedulerClient};
use o3_storage::env::LocalFs;
use o3_transport::control::proto::csa::v1 as pb;
use o3_transport::control::{ClusterToken, ConnectOptions, authenticated, connect};
use pb::scheduler_client::SchedulerClient as Grpc;
use tonic::Code;

fn service() -> LocalService {
    LocalService::start(LocalServiceOptions {
        agents: 0,
        slots_per_agent: 1,
        token: token(),
        storage: Arc::new(LocalFs::new()),
        scheduler: SchedulerConfig::default(),
    })
    .unwrap()
}

async fn client(service: &LocalService) -> SchedulerClient {
    SchedulerClient::connect(service.endpoint(), token(), Duration::from_secs(5))
        .await
        .unwrap()
}

/// The parts of `Stats` a call could change.
fn effect(stats: &pb::StatsResponse) -> String {
    format!(
        "{:?} {:?} {} {} {} {} {} {}",
        stats.tenants,
        stats
            .agents
            .iter()
            .map(|a| (a.agent_id, a.running))
            .collect::<Vec<_>>(),
        stats.queued,
        stats.running,
        stats.retried,
        stats.fenced_reports,
        stats.gave_up,
        stats.cancelled
    )
}

#[tokio::test]
async fn every_call_without_the_right_token_is_unauthenticated_and_changes_nothing() {
    let service = service();
    let good = client(&service).await;
    let db = TestDb::new(2, 50, 16);
    let tenant = good.register_tenant("a", &db.root(), 0).await.unwrap();
    let job = db.claim().to_bytes().unwrap();
    let before = effect(&good.stats().await.unwrap());

    let channel = connect(service.endpoint(), &ConnectOptions::default())
        .await
        .unwrap();
    let wrong = ClusterToken::new("not-the-token").unwrap();
    let mut bare = Grpc::new(channel.clone());
    let mut forged = Grpc::new(authenticated(channel, wrong.clone()));
    macro_rules! refused {
        ($call:ident, $request:expr) => {
            let status = bare.$call($request).await.unwrap_err();
            assert_eq!(
                status.code(),
                Code::Unauthenticated,
                "{} without a token",
                stringify!($call)
            );
            let status = forged.$call($request).await.unwrap_err();
            assert_eq!(
                status.code(),
                Code::Unauthenticated,
                "{} with a wrong token",
                stringify!($call)
            );
        };
    }
    let register = pb::RegisterTenantRequest {
        name: "intruder".into(),
        root: "/intruder".into(),
        priority: 0,
    };
    refused!(register_tenant, register.clone());
    refused!(
        submit,
        pb::SubmitRequest {
            tenant_id: tenant.tenant_id,
            job: job.clone(),
            score: 1.0,
            epochs: 1,
            ..Default::default()
        }
    );
    refused!(
        r#await,
        pb::AwaitRequest {
            tenant_id: tenant.tenant_id,
            ticket: 1,
            ..Default::default()
        }
    );
    refused!(
        cancel,
        pb::CancelRequest {
            tenant_id: tenant.tenant_id,
            ticket: 1,
            ..Default::default()
        }
    );
    refused!(load, pb::LoadRequest {});
    refused!(
        register_agent,
        pb::RegisterAgentRequest {
            name: "evil".into(),
            slots: 4,
            ..Default::default()
        }
    );
    refused!(
        heartbeat,
        pb::HeartbeatRequest {
            agent_id: 1,
            ..Default::default()
        }
    );
    refused!(
        fetch,
        pb::FetchRequest {
            agent_id: 1,
            wait_ms: 0
        }
    );
    refused!(
        report,
        pb::ReportRequest {
            agent_id: 1,
            ticket: 1,
            ..Default::default()
        }
    );
    refused!(stats, pb::StatsRequest {});

    let forged_client = SchedulerClient::connect(service.endpoint(), wrong, Duration::from_secs(5))
        .await
        .unwrap();
    let error = forged_client
        .register_tenant("intruder", &PathBuf::from("/intruder"), 0)
        .await
        .unwrap_err();
    assert!(matches!(error, CsaError::Unauthenticated(_)), "{error}");
    assert_eq!(effect(&good.stats().await.unwrap()), before);
}

#[tokio::test]
async fn sessions_tickets_and_roots_belong_to_one_tenant() {
    let service = service();
    let client = client(&service).await;
    let db_a = TestDb::new(2, 50, 16);
    let db_b = TestDb::new(2, 50, 16);
    let a = client.register_tenant("a", &db_a.root(), 0).await.unwrap();
    let b = client.register_tenant("b", &db_b.root(), 0).await.unwrap();
    let job_a = db_a.claim();
    let ticket = client.submit(&a, &job_a, 1.0, 1).await.unwrap().ticket;

    // Another tenant's ticket looks exactly like an unknown one.
    let error = client
        .await_job(&b, ticket, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(
        matches!(error, CsaError::UnknownTicket(t) if t == ticket),
        "{error}"
    );
    let error = client
        .await_job(&b, ticket + 100, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(error, CsaError::UnknownTicket(_)), "{error}");

    // a's session presented with b's id is refused.
    let channel = connect(service.endpoint(), &ConnectOptions::default())
        .await
        .unwrap();
    let mut raw = Grpc::new(authenticated(channel, token()));
    let raw_a = raw
        .register_tenant(pb::RegisterTenantRequest {
            name: "a".into(),
            root: db_a.root().display().to_string(),
            priority: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let status = raw
        .submit(pb::SubmitRequest {
            tenant_id: b.tenant_id,
            session: raw_a.session.clone(),
            job: job_a.to_bytes().unwrap(),
            score: 1.0,
            epochs: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // Registering "a" again replaced the session `a` held.
    let error = client.submit(&a, &job_a, 1.0, 1).await.unwrap_err();
    assert!(matches!(error, CsaError::PermissionDenied(_)), "{error}");

    // b may not compact a's files, nor escape its root with `..`.
    let mut outside = job_a.clone();
    let error = client.submit(&b, &outside, 1.0, 1).await.unwrap_err();
    assert!(matches!(error, CsaError::PermissionDenied(_)), "{error}");
    outside.dir = db_b
        .root()
        .join("..")
        .join(db_a.dir.path().file_name().unwrap());
    let error = client.submit(&b, &outside, 1.0, 1).await.unwrap_err();
    assert!(matches!(error, CsaError::PermissionDenied(_)), "{error}");
    let stats = client.stats().await.unwrap();
    let b_stats = stats.tenants.iter().find(|t| t.name == "b").unwrap();
    assert_eq!((b_stats.refused, b_stats.submitted), (2, 0));

    // Overlapping roots and malformed requests.
    let error = client
        .register_tenant("c", &db_a.root().join("x"), 0)
        .await
        .unwrap_err();
    assert!(matches!(error, CsaError::AlreadyExists(_)), "{error}");
    let error = client
        .register_tenant("c", &PathBuf::from("relative"), 0)
        .await
        .unwrap_err();
    assert!(matches!(error, CsaError::InvalidArgument(_)), "{error}");
    let b2 = client.register_tenant("b", &db_b.root(), 0).await.unwrap();
    let mut own = job_a.clone();
    own.dir = db_b.root();
    let error = client.submit(&b2, &own, 1.0, 0).await.unwrap_err();
    assert!(matches!(error, CsaError::InvalidArgument(_)), "{error}");
    own.file_numbers = 10..12;
    let error = client.submit(&b2, &own, 1.0, 3).await.unwrap_err();
    assert!(matches!(error, CsaError::InvalidArgument(_)), "{error}");
}

/// An assignment whose `Fetch` answer never reached its agent (the agent
/// heartbeats without it) is requeued with the next epoch after the
/// heartbeat timeout, instead of counting as running for ever.
#[tokio::test]
async fn an_assignment_the_agent_does_not_run_is_requeued() {
    let service = LocalService::start(LocalServiceOptions {
        agents: 0,
        slots_per_agent: 1,
        token: token(),
        storage: Arc::new(LocalFs::new()),
        scheduler: SchedulerConfig {
            heartbeat: Duration::from_millis(50),
            heartbeat_timeout: Duration::from_millis(300),
            ..SchedulerConfig::default()
        },
    })
    .unwrap();
    let client = client(&service).await;
    let db = TestDb::new(2, 50, 16);
    let tenant = client.register_tenant("t", &db.root(), 0).await.unwrap();
    let job = db.claim();
    let ticket = client.submit(&tenant, &job, 1.0, 3).await.unwrap().ticket;

    let channel = connect(service.endpoint(), &ConnectOptions::default())
        .await
        .unwrap();
    let mut agent = Grpc::new(authenticated(channel, token()));
    let agent_id = agent
        .register_agent(pb::RegisterAgentRequest {
            name: "forgetful".into(),
            slots: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .agent_id;
    let fetched = agent
        .fetch(pb::FetchRequest {
            agent_id,
            wait_ms: 2_000,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.jobs.len(), 1, "{fetched:?}");
    assert_eq!((fetched.jobs[0].ticket, fetched.jobs[0].epoch), (ticket, 0));

    // The agent lost the answer: it heartbeats with nothing running.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let requeued = loop {
        agent
            .heartbeat(pb::HeartbeatRequest {
                agent_id,
                slots: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        let again = agent
            .fetch(pb::FetchRequest {
                agent_id,
                wait_ms: 100,
            })
            .await
            .unwrap()
            .into_inner();
        if let Some(a) = again.jobs.first() {
            break a.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lost assignment was never requeued"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((requeued.ticket, requeued.epoch), (ticket, 1));
    let stats = client.stats().await.unwrap();
    assert_eq!(stats.requeued_lost_agent, 1, "{stats:?}");
}
