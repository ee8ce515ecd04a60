//! What a compute node needs from one memory node, as one trait
//! ([`ImageStore`]), and the ways to get one ([`open`]): [`Direct`] (calls
//! on a [`MemoryNode`] of this process, no transport: for tests of the
//! compute side), an in-process memory node reached over the `local`
//! transport (the embedded default, `in_process.rs`) and a separate
//! `o3-memnode` process reached over gRPC (control) and `shm`/`tcp` (data,
//! `remote.rs`). The last two are one [`SessionStore`] (`session.rs`: leases,
//! sessions, error classification) over two control planes.
//!
//! The compute node offloads through it: allocate a region, write the
//! image with one-sided writes, publish; read through delegated `get` and
//! `scan`; read the bytes back with one-sided reads for a flush; release.
//!
//! Failures are classified by what the compute node must do about them
//! ([`ClientErrorKind`]): an unavailable node or a lost lease means the
//! images there are gone (rebuild them from the WAL); an exhausted pool
//! means keep the memtable local; anything else is a refusal with a reason.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::data_plane::TransportKind;
use crate::error::Error;
use crate::images::ImageMeta;
use crate::lookup::{GetRequest, GetResponse, ScanRequest, ScanResponse};
use crate::node::{MemoryNode, NodeStats};
use crate::pool::{OwnerId, RegionDesc};

mod in_process;
mod remote;
mod session;

pub use in_process::{IN_PROCESS, IN_PROCESS_LEASE_TTL, LOOKUP_POLL};
pub use session::{SessionStore, TRANSFER_CHUNK, read_chunked, write_chunked};

/// What went wrong, by what the caller must do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientErrorKind {
    /// The memory node did not answer (dead, unreachable, timed out):
    /// treat every image on it as lost.
    Unavailable,
    /// The lease expired or the node restarted: the regions of the old
    /// session are gone (the client registers again by itself).
    SessionLost,
    /// No room for the region now (pool exhausted, or over a cap).
    Exhausted,
    /// The cluster token was refused.
    Unauthenticated,
    /// The node refused the request (bad image, unknown region, another
    /// owner's region, a malformed request): the message says why.
    Refused,
}

/// A failed memory-node call: its kind and a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("memory node {node}: {message}")]
pub struct ClientError {
    pub kind: ClientErrorKind,
    /// The memory node's name ([`ImageStore::name`]).
    pub node: String,
    pub message: String,
}

impl ClientError {
    pub fn new(kind: ClientErrorKind, node: &str, message: impl Into<String>) -> ClientError {
        ClientError {
            kind,
            node: node.to_string(),
            message: message.into(),
        }
    }

    /// True when the images on the node must be considered lost.
    pub fn images_lost(&self) -> bool {
        matches!(
            self.kind,
            ClientErrorKind::Unavailable | ClientErrorKind::SessionLost
        )
    }
}

pub type ClientResult<T> = std::result::Result<T, ClientError>;

/// A region a compute node holds on a memory node: the memory node's
/// descriptor, the transport descriptor one-sided operations use (absent
/// for [`Direct`]), and the session it was allocated in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRegion {
    /// [`ImageStore::session`] when it was allocated: a region of an older
    /// session is gone.
    pub session: u64,
    pub desc: RegionDesc,
    pub data: Option<o3_transport::RegionDesc>,
}

impl RemoteRegion {
    pub fn len(&self) -> u64 {
        self.desc.len
    }

    pub fn is_empty(&self) -> bool {
        self.desc.len == 0
    }
}

/// One read of [`ImageStore::read_many`]: `buf.len()` bytes of `region` at
/// `offset`.
#[derive(Debug)]
pub struct ReadAt<'a> {
    pub region: &'a RemoteRegion,
    pub offset: u64,
    pub buf: &'a mut [u8],
}

/// One memory node as a compute node uses it. Every call is blocking and
/// bounded by the client's operation timeout.
pub trait ImageStore: Send + Sync + fmt::Debug {
    /// A name for logs, stats and errors (an address, or `in-process`).
    fn name(&self) -> &str;

    /// The current session (lease): it changes when the client had to
    /// register again, and regions of an older session are gone.
    fn session(&self) -> u64;

    /// A region of `bytes` bytes for one image.
    fn allocate(&self, bytes: u64) -> ClientResult<RemoteRegion>;

    /// Write `data` into the region at `offset` (one-sided).
    fn write(&self, region: &RemoteRegion, offset: u64, data: &[u8]) -> ClientResult<()>;

    /// Have the memory node validate the image in `region` and index it.
    fn publish(&self, region: &RemoteRegion, meta: ImageMeta) -> ClientResult<()>;

    /// Read bytes of the region at `offset` into `buf` (one-sided).
    fn read(&self, region: &RemoteRegion, offset: u64, buf: &mut [u8]) -> ClientResult<()>;

    /// Several one-sided reads, posted as one batch where the data plane
    /// allows (one round trip for all of them); fails with the first
    /// failing read. Every buffer must be at most [`TRANSFER_CHUNK`] bytes.
    fn read_many(&self, reads: &mut [ReadAt<'_>]) -> ClientResult<()> {
        for r in reads {
            self.read(r.region, r.offset, r.buf)?;
        }
        Ok(())
    }

    /// A batched delegated `get` over this owner's published images.
    fn get(&self, request: &GetRequest) -> ClientResult<GetResponse>;

    /// A delegated `scan` over this owner's published images.
    fn scan(&self, request: &ScanRequest) -> ClientResult<ScanResponse>;

    /// Release the region (and unpublish its image).
    fn release(&self, region: &RemoteRegion) -> ClientResult<()>;

    /// The node's pool and image statistics.
    fn stats(&self) -> ClientResult<NodeStats>;

    /// The data plane the node announced (its transport and node id), which
    /// a flush executor elsewhere reads the images through; `None` without
    /// one.
    fn data_plane(&self) -> Option<(TransportKind, o3_transport::NodeId)> {
        None
    }
}

/// Calls on a [`MemoryNode`] of this process, as one owner, with no
/// transport in between: the compute side's offloading logic can be tested
/// against it, and [`Direct::lose_everything`] emulates the node dying.
#[derive(Debug)]
pub struct Direct {
    node: Arc<MemoryNode>,
    owner: AtomicU64,
    session: AtomicU64,
    down: std::sync::atomic::AtomicBool,
}

impl Direct {
    pub fn new(node: Arc<MemoryNode>) -> Direct {
        Direct {
            node,
            owner: AtomicU64::new(1),
            session: AtomicU64::new(1),
            down: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Like a memory node that died and came back empty: every region of
    /// this owner is released, and calls fail as unavailable while `down`.
    pub fn lose_everything(&self, down: bool) {
        let owner = OwnerId(self.owner.load(Ordering::SeqCst));
        self.node.release_all(owner);
        self.owner.fetch_add(1, Ordering::SeqCst);
        self.session.fetch_add(1, Ordering::SeqCst);
        self.down.store(down, Ordering::SeqCst);
    }

    /// Back up after [`Direct::lose_everything`]`(true)`.
    pub fn come_back(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    fn owner(&self) -> ClientResult<OwnerId> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ClientError::new(
                ClientErrorKind::Unavailable,
                self.name(),
                "down",
            ));
        }
        Ok(OwnerId(self.owner.load(Ordering::SeqCst)))
    }

    fn checked(&self, region: &RemoteRegion) -> ClientResult<OwnerId> {
        let owner = self.owner()?;
        if region.session != self.session() {
            return Err(ClientError::new(
                ClientErrorKind::SessionLost,
                self.name(),
                format!(
                    "region {} belongs to an expired session",
                    region.desc.region
                ),
            ));
        }
        Ok(owner)
    }

    fn refused(&self, e: Error) -> ClientError {
        ClientError::new(kind_of(&e), self.name(), e.to_string())
    }
}

/// The kind of a core error.
pub fn kind_of(error: &Error) -> ClientErrorKind {
    match error {
        Error::PoolExhausted { .. } | Error::RequestTooLarge { .. } => ClientErrorKind::Exhausted,
        _ => ClientErrorKind::Refused,
    }
}

impl ImageStore for Direct {
    fn name(&self) -> &str {
        "direct"
    }

    fn session(&self) -> u64 {
        self.session.load(Ordering::SeqCst)
    }

    fn allocate(&self, bytes: u64) -> ClientResult<RemoteRegion> {
        let owner = self.owner()?;
        let session = self.session();
        let desc = self
            .node
            .allocate(owner, bytes)
            .map_err(|e| self.refused(e))?;
        Ok(RemoteRegion {
            session,
            desc,
            data: None,
        })
    }

    fn write(&self, region: &RemoteRegion, offset: u64, data: &[u8]) -> ClientResult<()> {
        let owner = self.checked(region)?;
        self.node
            .write(owner, &region.desc, offset, data)
            .map_err(|e| self.refused(e))
    }

    fn publish(&self, region: &RemoteRegion, meta: ImageMeta) -> ClientResult<()> {
        let owner = self.checked(region)?;
        self.node
            .publish(owner, &region.desc, meta)
            .map_err(|e| self.refused(e))
    }

    fn read(&self, region: &RemoteRegion, offset: u64, buf: &mut [u8]) -> ClientResult<()> {
        let owner = self.checked(region)?;
        self.node
            .read(owner, &region.desc, offset, buf)
            .map_err(|e| self.refused(e))
    }

    fn get(&self, request: &GetRequest) -> ClientResult<GetResponse> {
        let owner = self.owner()?;
        self.node.get(owner, request).map_err(|e| self.refused(e))
    }

    fn scan(&self, request: &ScanRequest) -> ClientResult<ScanResponse> {
        let owner = self.owner()?;
        self.node.scan(owner, request).map_err(|e| self.refused(e))
    }

    fn release(&self, region: &RemoteRegion) -> ClientResult<()> {
        let owner = self.checked(region)?;
        self.node
            .release(owner, &region.desc)
            .map(|_| ())
            .map_err(|e| self.refused(e))
    }

    fn stats(&self) -> ClientResult<NodeStats> {
        self.owner()?;
        Ok(self.node.stats())
    }
}

/// Which memory node a compute node uses, and how it reaches it.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// A memory node inside this process, reached over the `local`
    /// transport (the embedded default).
    InProcess {
        pool_size: u64,
        /// Emulated link between the compute side and the memory node.
        link: Option<o3_transport::link::LinkModel>,
    },
    /// An `o3-memnode` process: gRPC control plane at `control`, data plane
    /// on the transport the memory node announces when registering.
    Remote(RemoteConfig),
}

/// How to reach an `o3-memnode` process.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// The control plane's `host:port`.
    pub control: String,
    pub token: o3_transport::control::ClusterToken,
    /// This compute node's name (in the memory node's logs and stats).
    pub compute_node: String,
    /// Emulated link on the data-plane connection.
    pub link: Option<o3_transport::link::LinkModel>,
    /// Bound on every call; a node silent for longer is unavailable.
    pub op_timeout: std::time::Duration,
}

/// Connect to the memory node `config` names (starting it, for
/// [`StoreConfig::InProcess`]) and register. Fails when the node cannot be
/// reached or refuses the token; once open, the store registers again by
/// itself whenever its lease is lost.
pub fn open(config: &StoreConfig) -> ClientResult<Arc<dyn ImageStore>> {
    Ok(Arc::new(match config {
        StoreConfig::InProcess { pool_size, link } => in_process::open(*pool_size, *link)?,
        StoreConfig::Remote(remote) => remote::open(remote)?,
    }))
}
