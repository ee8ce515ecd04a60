//! Serving the control plane: the [`ControlService`] behind the cluster-token
//! check on a listener, with the lease reaper beside it, until shutdown.

use std::future::Future;
use std::time::Duration;

use o3_transport::control::{ClusterToken, RequireClusterToken, serve_until};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::control::ControlService;

/// Serves `service` on `listener`, every call checked against `token`, and
/// reclaims expired leases in the background, until `shutdown` completes;
/// then stops accepting calls and gives the calls in flight up to `grace`
/// to finish. The grace is bounded because graceful HTTP/2 shutdown also
/// waits for idle clients to hang up, which a stuck client never does.
pub async fn serve(
    listener: TcpListener,
    service: ControlService,
    token: ClusterToken,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> Result<(), tonic::transport::Error> {
    let reaper = tokio::spawn(service.clone().reclaim_expired_periodically());
    let served = serve_until(
        |stop| {
            Server::builder()
                .layer(RequireClusterToken::new(token).layer())
                .add_service(service.into_server())
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), stop)
        },
        shutdown,
        || {},
        grace,
    )
    .await;
    reaper.abort();
    served
}
