//! The control plane's cluster-token check, end to end over TCP and HTTP/2:
//! calls without the right token are refused with `Unauthenticated` before
//! the handler runs; calls with it reach the handler.

use std::net::SocketAddr;
use std::time::Duration;

use o3_transport::control::proto::health::v1::CheckRequest;
use o3_transport::control::proto::health::v1::check_response::ServingStatus;
use o3_transport::control::proto::health::v1::health_client::HealthClient;
use o3_transport::control::{
    Backoff, ClusterToken, ConnectOptions, ControlError, HealthService, RequireClusterToken,
    authenticated, connect,
};
use tonic::Code;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};

const TOKEN: &str = "o3-test-cluster-7f3a";

/// Starts a server guarded by `TOKEN` on an ephemeral port; the returned
/// service handle shares the handler's call counter.
async fn start_server() -> (SocketAddr, HealthService) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let health = HealthService::new("node-under-test");
    let guard = RequireClusterToken::new(ClusterToken::new(TOKEN).unwrap());
    let router = Server::builder()
        .layer(guard.layer())
        .add_service(health.clone().into_server());
    tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener)));
    (addr, health)
}

async fn channel_to(addr: SocketAddr) -> Channel {
    connect(&format!("http://{addr}"), &ConnectOptions::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn missing_token_is_unauthenticated_and_never_reaches_the_handler() {
    let (addr, health) = start_server().await;
    let mut client = HealthClient::new(channel_to(addr).await);
    for _ in 0..3 {
        let status = client.check(CheckRequest {}).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    assert_eq!(health.checks_answered(), 0);
}

#[tokio::test]
async fn wrong_token_is_unauthenticated_and_never_reaches_the_handler() {
    let (addr, health) = start_server().await;
    let channel = channel_to(addr).await;
    let near_misses = [
        "o3-test-cluster-7f3b".to_owned(),
        "o3-test-cluster-7f3".to_owned(),
        format!("{TOKEN}0"),
        "x".to_owned(),
    ];
    for wrong in near_misses {
        let token = ClusterToken::new(&wrong).unwrap();
        let mut client = HealthClient::new(authenticated(channel.clone(), token));
        let status = client.check(CheckRequest {}).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{wrong}: {status:?}");
    }
    assert_eq!(health.checks_answered(), 0);
}

#[tokio::test]
async fn right_token_reaches_the_handler_once_per_call() {
    let (addr, health) = start_server().await;
    let token = ClusterToken::new(TOKEN).unwrap();
    let mut client = HealthClient::new(authenticated(channel_to(addr).await, token));

    let reply = client.check(CheckRequest {}).await.unwrap().into_inner();
    assert_eq!(reply.status(), ServingStatus::Serving);
    assert_eq!(reply.node_id, "node-under-test");
    assert_eq!(reply.server_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(health.checks_answered(), 1);

    health.set_serving(false);
    let reply = client.check(CheckRequest {}).await.unwrap().into_inner();
    assert_eq!(reply.status(), ServingStatus::NotServing);
    assert_eq!(health.checks_answered(), 2);
}

#[tokio::test]
async fn refused_calls_between_accepted_ones_do_not_count() {
    let (addr, health) = start_server().await;
    let channel = channel_to(addr).await;
    let token = ClusterToken::new(TOKEN).unwrap();
    let mut good = HealthClient::new(authenticated(channel.clone(), token));
    let mut anonymous = HealthClient::new(channel);
    for round in 1..=3 {
        good.check(CheckRequest {}).await.unwrap();
        assert!(anonymous.check(CheckRequest {}).await.is_err());
        assert_eq!(health.checks_answered(), round);
    }
}

#[tokio::test]
async fn connecting_to_a_closed_port_fails_after_the_bounded_attempts() {
    // Bind then drop: the port is known to be free and nothing listens on it.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let options = ConnectOptions {
        connect_timeout: Duration::from_millis(500),
        max_attempts: 3,
        backoff: Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(40),
            ..Backoff::default()
        },
        ..ConnectOptions::default()
    };
    let endpoint = format!("http://{closed}");
    match connect(&endpoint, &options).await {
        Err(ControlError::Unreachable {
            endpoint: reported,
            attempts,
            last_error,
            ..
        }) => {
            assert_eq!(reported, endpoint);
            assert_eq!(attempts, 3);
            assert!(!last_error.is_empty());
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}
