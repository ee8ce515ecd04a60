//! The `rdma` backend: the verbs model on real verbs (`rdma-sys`), for
//! RDMA NICs and soft-RoCE (`rxe`).
//!
//! - Discovery ([`device_names`], [`RdmaOptions::device`]): no device is
//!   [`Error::NoDevice`] with the reason, never a panic.
//! - Registration: each region is heap memory registered in the node's
//!   protection domain with the verbs access flags of its
//!   [`RegionAccess`] (remote read → `IBV_ACCESS_REMOTE_READ`, remote write
//!   → `IBV_ACCESS_REMOTE_WRITE`, both → also `IBV_ACCESS_REMOTE_ATOMIC`),
//!   so the NIC itself refuses what the flags forbid; its descriptor carries
//!   the NIC's `rkey` and the memory's address as `base`.
//! - Identity: the side channel runs the handshake of
//!   [`crate::handshake`] before any queue pair of the owner is connected;
//!   requests reach the handler with the requester's proven identity.
//! - Connections: per peer, two reliable-connected queue pairs (one-sided
//!   operations; two-sided messages) set up over a TCP side channel that
//!   exchanges queue-pair number, packet sequence number, LID and GID
//!   (the private `side_channel` module documents it). A node's [`NodeId`] is the `host:port`
//!   of its side-channel listener.
//! - One-sided batches are linked work requests with one signaled
//!   completion (`one_sided`); two-sided messages use SEND/RECV into
//!   pre-posted receive buffers (`messages`).
//! - Completions are polled with the connection's operation timeout; a dead
//!   peer surfaces as a retry-exceeded completion or a timeout, never a hang.
//!
//! All unsafe FFI of the crate's RDMA support lives in this module.

mod connection;
mod device;
mod memory;
mod messages;
mod one_sided;
mod queue_pair;
mod side_channel;

pub use connection::{RdmaConnection, RdmaInbound};
pub use device::{DeviceChoice, device_names};

use std::collections::HashMap;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::accept::AcceptQueue;
use crate::access::{RegionAccess, RemoteOp};
use crate::dispatch::Dispatcher;
use crate::error::{Error, Result};
use crate::identity::Credentials;
use crate::poll::PollMode;
use crate::region::{LocalRegion, RegionMemory};
use crate::verbs::{
    ConnectOptions, Connection, Fabric, FabricOptions, InboundConnection, NodeId, RegionDesc,
    SharedHandler,
};
use device::Device;
use memory::{MemoryRegion, region_access};
use messages::{MessageBuffers, MessageChannel};
use side_channel::Verdict;

/// How an RDMA node uses its device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RdmaOptions {
    pub device: DeviceChoice,
    /// Registered staging memory per connection for small one-sided
    /// transfers and atomic results.
    pub staging_bytes: usize,
    /// Transfers larger than this register the caller's buffer instead of
    /// copying through staging (capped at `staging_bytes`).
    pub direct_threshold: usize,
    /// Size of each pre-posted receive buffer (the largest message chunk).
    pub message_chunk: usize,
    /// Receive buffers kept posted per connection.
    pub message_slots: usize,
    /// Limit on the side-channel handshake of an incoming connection.
    pub handshake_timeout: Duration,
}

impl Default for RdmaOptions {
    fn default() -> Self {
        RdmaOptions {
            device: DeviceChoice::default(),
            staging_bytes: 4 << 20,
            direct_threshold: 256 << 10,
            message_chunk: 64 << 10,
            message_slots: 32,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl RdmaOptions {
    fn message_buffers(&self) -> MessageBuffers {
        MessageBuffers {
            chunk: self.message_chunk,
            slots: self.message_slots,
        }
    }
}

/// A region registered with the NIC. Field order: the registration is
/// dropped before the memory.
#[derive(Debug)]
struct OwnedRegion {
    mr: MemoryRegion,
    memory: Arc<RegionMemory>,
    desc: RegionDesc,
}

/// State shared by the fabric, its listener and its sessions.
#[derive(Debug)]
struct FabricCore {
    node: NodeId,
    device: Arc<Device>,
    options: RdmaOptions,
    credentials: Credentials,
    dispatcher: Arc<Dispatcher>,
    /// How the receiver threads of the node's sessions wait.
    poll: PollMode,
    regions: RwLock<HashMap<u64, OwnedRegion>>,
    next_region: AtomicU64,
    accept: Arc<AcceptQueue>,
    /// Open sessions, so that shutting down can close them.
    sessions: Mutex<Vec<(TcpStream, Arc<MessageChannel>)>>,
    down: AtomicBool,
}

impl FabricCore {
    fn track_session(&self, side: &TcpStream, channel: &Arc<MessageChannel>) -> Result<()> {
        let side = side
            .try_clone()
            .map_err(|e| Error::io("clone rdma side channel", e))?;
        let mut sessions = self.sessions.lock();
        sessions.retain(|(s, _)| s.peer_addr().is_ok());
        sessions.push((side, Arc::clone(channel)));
        Ok(())
    }

    /// Why an access to `region` would be refused.
    fn verdict(
        &self,
        region: u64,
        base: u64,
        rkey: u64,
        offset: u64,
        len: u64,
        op: RemoteOp,
    ) -> Verdict {
        let regions = self.regions.read();
        let Some(owned) = regions.get(&region) else {
            return Verdict::Gone;
        };
        if owned.desc.rkey != rkey || owned.desc.base != base {
            return Verdict::BadKey;
        }
        if !owned.desc.access.permits(op) {
            return Verdict::AccessDenied {
                access: owned.desc.access,
            };
        }
        match offset.checked_add(len) {
            Some(end) if end <= owned.desc.len => Verdict::Valid,
            _ => Verdict::OutOfBounds {
                region_len: owned.desc.len,
            },
        }
    }
}

/// A node's RDMA endpoint.
#[derive(Debug)]
pub struct RdmaFabric {
    core: Arc<FabricCore>,
}

impl RdmaFabric {
    /// Open the RDMA device (first, so that a host without one fails with
    /// [`Error::NoDevice`] before anything else), then listen for side
    /// channels on `listen`; peers reach this node at `advertise`, or at the
    /// bound address when none is given.
    pub fn bind(
        listen: &str,
        advertise: Option<&str>,
        handler: SharedHandler,
        fabric: FabricOptions,
        options: RdmaOptions,
    ) -> Result<Self> {
        let device = Arc::new(Device::open(&options.device)?);
        let listener =
            TcpListener::bind(listen).map_err(|e| Error::io(format!("bind {listen}"), e))?;
        let bound = listener
            .local_addr()
            .map_err(|e| Error::io(format!("address of {listen}"), e))?;
        let node = match advertise {
            Some(a) => NodeId(a.to_string()),
            None if bound.ip().is_unspecified() => {
                return Err(Error::InvalidArgument(format!(
                    "listening on wildcard {bound} needs an advertised address"
                )));
            }
            None => NodeId(bound.to_string()),
        };
        let core = Arc::new(FabricCore {
            dispatcher: Dispatcher::new(node.0.clone(), handler, fabric.request_workers),
            node,
            device,
            options,
            credentials: fabric.credentials,
            poll: fabric.poll,
            regions: RwLock::new(HashMap::new()),
            next_region: AtomicU64::new(1),
            accept: Arc::new(AcceptQueue::default()),
            sessions: Mutex::new(Vec::new()),
            down: AtomicBool::new(false),
        });
        let listening = Arc::clone(&core);
        std::thread::Builder::new()
            .name(format!("o3-rdma-listen {bound}"))
            .spawn(move || accept_loop(&listener, &listening))
            .map_err(|e| Error::io("spawn rdma listener thread", e))?;
        Ok(RdmaFabric { core })
    }

    /// The RDMA device this node uses.
    pub fn device_name(&self) -> &str {
        self.core.device.name()
    }

    /// Take the node down abruptly: refuse new connections, close every
    /// session, and revoke all regions (peers see errors, as if the
    /// process had died).
    pub fn shut_down(&self) {
        self.core.down.store(true, Ordering::Release);
        for (side, channel) in self.core.sessions.lock().drain(..) {
            channel.close("node shut down");
            let _ = side.shutdown(Shutdown::Both);
        }
        self.core.regions.write().clear();
    }
}

fn accept_loop(listener: &TcpListener, core: &Arc<FabricCore>) {
    for stream in listener.incoming() {
        if core.down.load(Ordering::Acquire) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let session = Arc::clone(core);
        let spawned = std::thread::Builder::new()
            .name("o3-rdma-session".into())
            .spawn(move || {
                if let Err(e) = connection::serve_session(&session, stream) {
                    tracing::warn!(node = %session.node, error = %e, "rdma session ended with an error");
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot spawn an rdma session thread");
        }
    }
}

impl Fabric for RdmaFabric {
    fn node(&self) -> &NodeId {
        &self.core.node
    }

    fn register(&self, len: u64, access: RegionAccess) -> Result<LocalRegion> {
        // Providers refuse empty registrations: back an empty region with a
        // word of memory that no valid access can reach.
        let memory = Arc::new(RegionMemory::heap(len.max(8))?);
        // SAFETY: `memory` is kept in the region table next to the
        // registration, which is dropped first (field order of OwnedRegion).
        let mr = unsafe {
            MemoryRegion::register(
                &self.core.device,
                memory.as_ptr(),
                memory.len(),
                region_access(access),
            )?
        };
        let desc = RegionDesc {
            node: self.core.node.clone(),
            region: self.core.next_region.fetch_add(1, Ordering::Relaxed),
            base: memory.as_ptr() as u64,
            len,
            rkey: u64::from(mr.rkey()),
            access,
        };
        self.core.regions.write().insert(
            desc.region,
            OwnedRegion {
                mr,
                memory: Arc::clone(&memory),
                desc: desc.clone(),
            },
        );
        Ok(LocalRegion::new(desc, memory))
    }

    fn deregister(&self, region: &RegionDesc) -> Result<()> {
        let mut regions = self.core.regions.write();
        match regions.get(&region.region) {
            None => Err(Error::RegionGone {
                region: region.region,
            }),
            Some(owned) if owned.desc != *region => Err(Error::BadKey {
                region: region.region,
            }),
            Some(_) => {
                // Dropping the entry deregisters the memory from the NIC.
                let removed = regions.remove(&region.region);
                drop(removed.map(|owned| (owned.mr, owned.memory)));
                Ok(())
            }
        }
    }

    fn connect(&self, peer: &NodeId, options: &ConnectOptions) -> Result<Arc<dyn Connection>> {
        Ok(Arc::new(RdmaConnection::open(&self.core, peer, options)?))
    }

    fn accept(&self, timeout: Duration) -> Result<Box<dyn InboundConnection>> {
        self.core.accept.pop(timeout)
    }
}
