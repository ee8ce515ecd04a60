//! Serving the control plane: the [`ControlService`] behind the cluster-token
//! check on a listener, with the lease reaper beside it, until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use o3_transport::control::{ClusterToken, RequireClusterToken};
use tokio::net::TcpListener;
use tokio::sync::Notify;
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
    let stopping = Arc::new(Notify::new());
    let stopped = Arc::clone(&stopping);
    let server = Server::builder()
        .layer(RequireClusterToken::new(token).layer())
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), async move {
            stopped.notified().await;
        });
    tokio::pin!(server);
    tokio::pin!(shutdown);
    let served = tokio::select! {
        served = &mut server => served,
        () = &mut shutdown => {
            // `notify_one` keeps a permit if the server is not waiting yet.
            stopping.notify_one();
            match tokio::time::timeout(grace, &mut server).await {
                Ok(served) => served,
                Err(_) => {
                    tracing::warn!(?grace, "calls still open after the shutdown grace; stopping anyway");
                    Ok(())
                }
            }
        }
    };
    reaper.abort();
    served
}
