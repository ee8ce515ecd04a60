//! An `o3-memnode` process: the control plane over gRPC (a blocking facade
//! over a private tokio runtime, every call bounded by the operation
//! timeout), the data plane over the transport the node announces when
//! registering — an [`ShmFabric`] created beside the node's directory, or
//! a [`TcpFabric`] on an ephemeral loopback port.
//!
//! Control calls run on the private runtime and are waited for on a plain
//! channel, so the store may be called from any thread, an async one
//! included. A call that fails for want of a connection drops the gRPC
//! channel, and the next call connects afresh: a node restarted at the same
//! address is found again.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use o3_transport::control::proto::memnode::v1 as pb;
use o3_transport::control::{
    AuthenticatedChannel, ClusterToken, ControlError, authenticated, connect, describe_error,
};
use o3_transport::shm::ShmFabric;
use o3_transport::tcp::TcpFabric;
use o3_transport::verbs::no_requests;
use o3_transport::{ConnectOptions, Fabric, FabricOptions};
use parking_lot::Mutex;
use pb::memory_node_client::MemoryNodeClient;
use tonic::Status;

use super::session::{ControlPlane, FabricMaker, SessionStore, StoreParts, kind_of_status};
use super::{ClientError, ClientErrorKind, ClientResult, RemoteConfig};
use crate::data_plane::TransportKind;

type Client = MemoryNodeClient<AuthenticatedChannel>;

/// The gRPC control plane of one `o3-memnode`.
#[derive(Debug)]
struct GrpcControl {
    endpoint: String,
    token: ClusterToken,
    op_timeout: Duration,
    /// `None` only while dropping (see `Drop`).
    runtime: Option<tokio::runtime::Runtime>,
    client: Mutex<Option<Client>>,
}

impl Drop for GrpcControl {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside an async context.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl GrpcControl {
    /// Run `call` on the runtime, bounded by the operation timeout.
    fn run<T: Send + 'static>(
        &self,
        call: impl Future<Output = Result<T, Status>> + Send + 'static,
    ) -> Result<T, Status> {
        let Some(runtime) = &self.runtime else {
            return Err(Status::unavailable("the client is closing"));
        };
        let timeout = self.op_timeout;
        let (done, outcome) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let result = match tokio::time::timeout(timeout, call).await {
                Ok(result) => result,
                Err(_) => Err(Status::deadline_exceeded(format!(
                    "no answer within {timeout:?}"
                ))),
            };
            let _ = done.send(result);
        });
        outcome
            .recv()
            .unwrap_or_else(|_| Err(Status::unavailable("the client's runtime stopped")))
    }

    fn client(&self) -> Result<Client, Status> {
        if let Some(client) = self.client.lock().as_ref() {
            return Ok(client.clone());
        }
        let endpoint = self.endpoint.clone();
        let options = o3_transport::control::ConnectOptions {
            connect_timeout: self.op_timeout,
            request_timeout: self.op_timeout,
            max_attempts: 1,
            ..Default::default()
        };
        let channel = self.run(async move {
            connect(&endpoint, &options).await.map_err(|e| match e {
                ControlError::Unreachable { .. } => Status::unavailable(describe_error(&e)),
                other => Status::invalid_argument(describe_error(&other)),
            })
        })?;
        let client = MemoryNodeClient::new(authenticated(channel, self.token.clone()));
        *self.client.lock() = Some(client.clone());
        Ok(client)
    }

    fn call<T, Fut>(&self, call: impl FnOnce(Client) -> Fut) -> Result<T, Status>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<tonic::Response<T>, Status>> + Send + 'static,
    {
        let client = self.client()?;
        let fut = call(client);
        let result = self.run(async move { fut.await.map(tonic::Response::into_inner) });
        if let Err(status) = &result
            && kind_of_status(status) == ClientErrorKind::Unavailable
        {
            self.client.lock().take();
        }
        result
    }
}

impl ControlPlane for GrpcControl {
    fn register(&self, request: pb::RegisterRequest) -> Result<pb::RegisterResponse, Status> {
        self.call(|mut c| async move { c.register(request).await })
    }
    fn heartbeat(&self, request: pb::HeartbeatRequest) -> Result<pb::HeartbeatResponse, Status> {
        self.call(|mut c| async move { c.heartbeat(request).await })
    }
    fn allocate(&self, request: pb::AllocateRequest) -> Result<pb::AllocateResponse, Status> {
        self.call(|mut c| async move { c.allocate(request).await })
    }
    fn publish(&self, request: pb::PublishRequest) -> Result<pb::PublishResponse, Status> {
        self.call(|mut c| async move { c.publish(request).await })
    }
    fn release(&self, request: pb::ReleaseRequest) -> Result<pb::ReleaseResponse, Status> {
        self.call(|mut c| async move { c.release(request).await })
    }
    fn stats(&self, request: pb::StatsRequest) -> Result<pb::StatsResponse, Status> {
        self.call(|mut c| async move { c.stats(request).await })
    }
}

/// The fabric this side connects to an announced data plane with.
fn fabrics(token: ClusterToken) -> FabricMaker {
    Box::new(move |kind, node| {
        let options = FabricOptions::new(token.clone());
        let fabric: Arc<dyn Fabric> = match kind {
            TransportKind::Shm => {
                let root = Path::new(&node.0)
                    .parent()
                    .ok_or_else(|| format!("shm node {node} is not inside a directory"))?;
                Arc::new(
                    ShmFabric::create_in(root, no_requests(), options)
                        .map_err(|e| e.to_string())?,
                )
            }
            TransportKind::Tcp => Arc::new(
                TcpFabric::bind("127.0.0.1:0", None, no_requests(), options)
                    .map_err(|e| e.to_string())?,
            ),
            TransportKind::Local => {
                return Err("a local data plane is only reachable inside its process".into());
            }
        };
        Ok(fabric)
    })
}

/// Connect to the `o3-memnode` `config` names and register.
pub fn open(config: &RemoteConfig) -> ClientResult<SessionStore> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("o3-memnode-client")
        .enable_all()
        .build()
        .map_err(|e| {
            ClientError::new(
                ClientErrorKind::Refused,
                &config.control,
                format!("cannot start the client runtime: {e}"),
            )
        })?;
    let control = GrpcControl {
        endpoint: format!("http://{}", config.control),
        token: config.token.clone(),
        op_timeout: config.op_timeout,
        runtime: Some(runtime),
        client: Mutex::new(None),
    };
    SessionStore::open(StoreParts {
        name: config.control.clone(),
        compute_node: config.compute_node.clone(),
        control: Box::new(control),
        fabrics: fabrics(config.token.clone()),
        link: config.link,
        connect: ConnectOptions {
            op_timeout: config.op_timeout,
            poll: super::in_process::LOOKUP_POLL,
            ..ConnectOptions::default()
        },
    })
}
