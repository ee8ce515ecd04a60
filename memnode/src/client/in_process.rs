//! The embedded memory node: a [`MemoryNode`] in this process whose regions
//! are registered with a `local` fabric on a private
//! [`LocalNetwork`](o3_transport::local::LocalNetwork), reached by the
//! compute side's own `local` fabric. Image bytes and delegated reads go
//! through that transport connection (the same path, and the same link
//! model, as with a remote node); control calls go straight to the
//! [`ControlService`]'s logic, leases included, without gRPC.

use std::sync::Arc;
use std::time::Duration;

use o3_transport::control::ClusterToken;
use o3_transport::control::proto::memnode::v1 as pb;
use o3_transport::link::LinkModel;
use o3_transport::local::LocalNetwork;
use o3_transport::verbs::no_requests;
use o3_transport::{ConnectOptions, Fabric, FabricOptions};
use tonic::Status;

use super::session::{ControlPlane, SessionStore, StoreParts};
use super::{ClientError, ClientErrorKind, ClientResult};
use crate::control::ControlService;
use crate::data_plane::{DataPlane, TransportKind};
use crate::node::MemoryNode;

/// The store's name in errors and stats.
pub const IN_PROCESS: &str = "in-process";

/// The embedded node's lease: renewed every third of it by the client's
/// heartbeat thread; long, because losing it here only means that the
/// process stalled, and the images are then rebuilt for nothing.
pub const IN_PROCESS_LEASE_TTL: Duration = Duration::from_secs(60);

/// Control calls made directly on the service.
#[derive(Debug)]
struct DirectControl(ControlService);

impl ControlPlane for DirectControl {
    fn register(&self, request: pb::RegisterRequest) -> Result<pb::RegisterResponse, Status> {
        self.0.handle_register(request)
    }
    fn heartbeat(&self, request: pb::HeartbeatRequest) -> Result<pb::HeartbeatResponse, Status> {
        self.0.handle_heartbeat(request)
    }
    fn allocate(&self, request: pb::AllocateRequest) -> Result<pb::AllocateResponse, Status> {
        self.0.handle_allocate(request)
    }
    fn publish(&self, request: pb::PublishRequest) -> Result<pb::PublishResponse, Status> {
        self.0.handle_publish(request)
    }
    fn release(&self, request: pb::ReleaseRequest) -> Result<pb::ReleaseResponse, Status> {
        self.0.handle_release(request)
    }
    fn stats(&self, request: pb::StatsRequest) -> Result<pb::StatsResponse, Status> {
        self.0.handle_stats(request)
    }
}

/// Start an embedded memory node of `pool_size` bytes and connect to it.
pub fn open(pool_size: u64, link: Option<LinkModel>) -> ClientResult<SessionStore> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        ClientError::new(ClientErrorKind::Refused, IN_PROCESS, format!("{what}: {e}"))
    };
    // Both ends of this private network are ours; the token only has to
    // satisfy the handshake.
    let token = ClusterToken::new(&format!("in-process-{:016x}", rand::random::<u64>()))
        .map_err(|e| fail("cluster token", &e))?;
    let network = LocalNetwork::new();
    let plane = DataPlane::new();
    let memnode = network
        .node("memnode", plane.clone(), {
            let mut options = FabricOptions::new(token.clone());
            options.poll = LOOKUP_POLL;
            options
        })
        .map_err(|e| fail("memory node endpoint", &e))?;
    let plane_node = memnode.node().clone();
    let node = Arc::new(MemoryNode::with_fabric(pool_size, Arc::new(memnode)));
    let service = ControlService::new(node, IN_PROCESS_LEASE_TTL)
        .with_data_plane(TransportKind::Local, &plane_node);
    plane.attach(&service);
    let compute: Arc<dyn Fabric> = Arc::new(
        network
            .node("compute", no_requests(), FabricOptions::new(token))
            .map_err(|e| fail("compute endpoint", &e))?,
    );
    SessionStore::open(StoreParts {
        name: IN_PROCESS.to_owned(),
        compute_node: IN_PROCESS.to_owned(),
        control: Box::new(DirectControl(service)),
        fabrics: Box::new(move |kind, _| match kind {
            TransportKind::Local => Ok(Arc::clone(&compute)),
            other => Err(format!(
                "the embedded memory node has no {other} data plane"
            )),
        }),
        link,
        connect: ConnectOptions {
            poll: LOOKUP_POLL,
            ..ConnectOptions::default()
        },
    })
}

/// How both ends wait for a delegated lookup's next message: spinning
/// briefly before parking. A lookup answers in microseconds, while waking a
/// parked thread costs tens of them on a busy host; the spin is bounded, so
/// an idle node parks again at once.
pub const LOOKUP_POLL: o3_transport::PollMode = o3_transport::PollMode::BusyPoll {
    spin: std::time::Duration::from_micros(50),
};
