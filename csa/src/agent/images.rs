//! Where a flush's memtable images come from ([`ImageSource`]).
//!
//! A plain agent reads them from the memory node that holds them with
//! one-sided reads over that node's data plane ([`DataPlaneImages`]),
//! connecting with the cluster token (any token holder may open a data-plane
//! connection; the region's transport key is what grants the read). One
//! connection per memory node is kept and dropped when it fails. A memory
//! node executing flushes brings its own source, which reads its pool in
//! place (`o3_memnode::flush_executor`).
//!
//! Every failure to reach the memory node or read a region is
//! [`FailureKind::InputUnreadable`], within the transport's operation
//! timeout: a dead memory node fails the try, never hangs it.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use o3_transport::control::ClusterToken;
use o3_transport::control::proto::csa::v1 as pb;
use o3_transport::shm::ShmFabric;
use o3_transport::tcp::TcpFabric;
use o3_transport::verbs::no_requests;
use o3_transport::{
    ConnectOptions, Connection, Fabric, FabricOptions, NodeId, RegionAccess, RegionDesc,
    WorkRequest,
};
use parking_lot::Mutex;

pub use super::execute::Failure;
use crate::failure::FailureKind;

/// Bytes per one-sided read: each well below what a slow link moves within
/// the operation timeout.
const READ_CHUNK: usize = 4 << 20;

/// Reads the images of a flush, in the job's order. Blocking; bounded by
/// timeouts.
pub trait ImageSource: Send + Sync + fmt::Debug {
    fn read(&self, images: &pb::FlushImages) -> Result<Vec<Vec<u8>>, Failure>;
}

/// Reads images from memory nodes' data planes with one-sided reads.
pub struct DataPlaneImages {
    token: ClusterToken,
    connect: ConnectOptions,
    /// One fabric per transport kind (an shm one per directory).
    fabrics: Mutex<HashMap<String, Arc<dyn Fabric>>>,
    /// One connection per memory node (by data-plane node id).
    connections: Mutex<HashMap<String, Arc<dyn Connection>>>,
}

impl fmt::Debug for DataPlaneImages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataPlaneImages")
            .field("connections", &self.connections.lock().len())
            .finish()
    }
}

impl DataPlaneImages {
    /// Reads with `token`, each operation bounded by `op_timeout`.
    pub fn new(token: ClusterToken, op_timeout: Duration) -> DataPlaneImages {
        DataPlaneImages {
            token,
            connect: ConnectOptions {
                op_timeout,
                ..ConnectOptions::default()
            },
            fabrics: Mutex::new(HashMap::new()),
            connections: Mutex::new(HashMap::new()),
        }
    }

    fn fabric(&self, transport: &str, node: &NodeId) -> Result<Arc<dyn Fabric>, String> {
        let key = match transport {
            "shm" => format!("shm:{}", shm_root(node)?.display()),
            other => other.to_owned(),
        };
        if let Some(fabric) = self.fabrics.lock().get(&key) {
            return Ok(Arc::clone(fabric));
        }
        let options = FabricOptions::new(self.token.clone());
        let fabric: Arc<dyn Fabric> = match transport {
            "shm" => Arc::new(
                ShmFabric::create_in(shm_root(node)?, no_requests(), options)
                    .map_err(|e| e.to_string())?,
            ),
            "tcp" => Arc::new(
                TcpFabric::bind("127.0.0.1:0", None, no_requests(), options)
                    .map_err(|e| e.to_string())?,
            ),
            other => {
                return Err(format!(
                    "a {other:?} data plane cannot be reached from this agent"
                ));
            }
        };
        self.fabrics.lock().insert(key, Arc::clone(&fabric));
        Ok(fabric)
    }

    fn connection(&self, images: &pb::FlushImages) -> Result<Arc<dyn Connection>, String> {
        if let Some(c) = self.connections.lock().get(&images.memnode) {
            return Ok(Arc::clone(c));
        }
        let node = NodeId(images.memnode.clone());
        let fabric = self.fabric(&images.transport, &node)?;
        let connection = fabric
            .connect(&node, &self.connect)
            .map_err(|e| format!("cannot connect: {e}"))?;
        self.connections
            .lock()
            .insert(images.memnode.clone(), Arc::clone(&connection));
        Ok(connection)
    }
}

impl ImageSource for DataPlaneImages {
    fn read(&self, images: &pb::FlushImages) -> Result<Vec<Vec<u8>>, Failure> {
        let unreadable = |reason: String| {
            (
                FailureKind::InputUnreadable,
                format!(
                    "images on memory node {} ({}): {reason}",
                    images.memnode, images.transport
                ),
            )
        };
        let connection = self.connection(images).map_err(unreadable)?;
        let mut out = Vec::with_capacity(images.images.len());
        for (i, image) in images.images.iter().enumerate() {
            let desc = image
                .data
                .as_ref()
                .and_then(region_desc)
                .ok_or_else(|| unreadable(format!("image {i} has no data-plane region")))?;
            let len = usize::try_from(image.len)
                .map_err(|_| unreadable(format!("image {i} is too long: {}", image.len)))?;
            let mut bytes = vec![0u8; len];
            if let Err(e) = read_chunked(connection.as_ref(), &desc, &mut bytes) {
                if e.is_connection_failure() {
                    self.connections.lock().remove(&images.memnode);
                }
                return Err(unreadable(format!("reading image {i}: {e}")));
            }
            out.push(bytes);
        }
        Ok(out)
    }
}

/// The directory an shm node lives in (its node id is its path).
fn shm_root(node: &NodeId) -> Result<&Path, String> {
    Path::new(&node.0)
        .parent()
        .ok_or_else(|| format!("shm node {node} is not inside a directory"))
}

/// The transport descriptor a [`pb::DataRegion`] carries.
pub fn region_desc(data: &pb::DataRegion) -> Option<RegionDesc> {
    Some(RegionDesc {
        node: NodeId(data.node.clone()),
        region: data.region_id,
        base: data.base,
        len: data.len,
        rkey: data.rkey,
        access: RegionAccess::from_bits(u64::from(data.access))?,
    })
}

/// The [`pb::DataRegion`] of a transport descriptor.
pub fn data_region(desc: &RegionDesc) -> pb::DataRegion {
    pb::DataRegion {
        node: desc.node.0.clone(),
        region_id: desc.region,
        base: desc.base,
        len: desc.len,
        rkey: desc.rkey,
        access: desc.access.bits() as u32,
    }
}

/// Read `buf.len()` bytes from the start of `region`, in one batch of
/// [`READ_CHUNK`] pieces.
fn read_chunked(
    connection: &dyn Connection,
    region: &RegionDesc,
    buf: &mut [u8],
) -> o3_transport::Result<()> {
    let mut at = 0u64;
    let mut batch: Vec<WorkRequest<'_>> = Vec::new();
    for chunk in buf.chunks_mut(READ_CHUNK) {
        let len = chunk.len() as u64;
        batch.push(WorkRequest::Read {
            remote: region,
            offset: at,
            buf: chunk,
        });
        at += len;
    }
    connection
        .post(&mut batch)
        .into_iter()
        .try_for_each(|r| r.map(drop))
}
