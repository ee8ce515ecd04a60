//! The `shm` backend: every region is a file in a shared-memory directory
//! (`/dev/shm` by default) mapped by the owner and by each requester on the
//! host. A one-sided read or write is a plain copy between the requester's
//! buffer and its mapping, and an atomic is an `AtomicU64` operation on it:
//! no code of the owner runs. Key, state and bounds are checked by the
//! requester against the descriptor and the file header
//! ([`region_file`]). Two-sided messages use a Unix socket in the node's
//! directory with the stream wire format.
//!
//! A node's directory holds `sock` and `region-<id>` files; the directory is
//! the node's id. A node that exits normally removes it.

mod connection;
pub mod region_file;

pub use connection::ShmConnection;

use std::collections::HashMap;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::accept::AcceptQueue;
use crate::access::RegionAccess;
use crate::dispatch::Dispatcher;
use crate::error::{Error, Result};
use crate::identity::Credentials;
use crate::region::LocalRegion;
use crate::registry::{RegionTable, random_key};
use crate::stream::server::{ServerContext, serve};
use crate::verbs::{
    ConnectOptions, Connection, Fabric, FabricOptions, InboundConnection, NodeId, RegionDesc,
    SharedHandler,
};
use region_file::RegionFile;

/// A node's shared-memory endpoint.
#[derive(Debug)]
pub struct ShmFabric {
    node: NodeId,
    credentials: Credentials,
    dir: PathBuf,
    ids: RegionTable,
    regions: Mutex<HashMap<u64, RegionFile>>,
    accept: Arc<AcceptQueue>,
}

/// The path of region `region`'s file in node directory `dir`.
pub fn region_path(dir: &Path, region: u64) -> PathBuf {
    dir.join(format!("region-{region}"))
}

impl ShmFabric {
    /// Create a node with a fresh directory under `root`.
    pub fn create_in(root: &Path, handler: SharedHandler, options: FabricOptions) -> Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = root.join(format!("o3-node-{}-{n}", std::process::id()));
        Self::open(&dir, handler, options)
    }

    /// Create a node in directory `dir`, which must not exist yet.
    pub fn open(dir: &Path, handler: SharedHandler, options: FabricOptions) -> Result<Self> {
        std::fs::create_dir(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let node = NodeId(dir.to_string_lossy().into_owned());
        let socket_path = dir.join("sock");
        let listener = UnixListener::bind(&socket_path)
            .map_err(|e| Error::io(format!("bind {}", socket_path.display()), e))?;
        let accept = Arc::new(AcceptQueue::default());
        let ctx = Arc::new(ServerContext {
            node: node.clone(),
            credentials: options.credentials.clone(),
            dispatcher: Dispatcher::new(node.0.clone(), handler, options.request_workers),
            poll: options.poll,
            accept: Arc::clone(&accept),
            regions: None,
            max_message: ConnectOptions::default().max_message,
            mailbox_dir: Some(dir.to_path_buf()),
        });
        std::thread::Builder::new()
            .name("o3-shm-listen".into())
            .spawn(move || accept_loop(listener, ctx))
            .map_err(|e| Error::io("spawn shm listener thread", e))?;
        Ok(ShmFabric {
            ids: RegionTable::new(node.clone()),
            credentials: options.credentials,
            node,
            dir: dir.to_path_buf(),
            regions: Mutex::new(HashMap::new()),
            accept,
        })
    }
}

fn accept_loop(listener: UnixListener, ctx: Arc<ServerContext>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { return };
        let ctx = Arc::clone(&ctx);
        let spawned = std::thread::Builder::new()
            .name("o3-shm-conn".into())
            .spawn(move || {
                if let Err(e) = serve(stream, &ctx) {
                    tracing::warn!(node = %ctx.node, error = %e, "shm connection ended with an error");
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot spawn an shm connection thread");
        }
    }
}

impl Fabric for ShmFabric {
    fn node(&self) -> &NodeId {
        &self.node
    }

    fn register(&self, len: u64, access: RegionAccess) -> Result<LocalRegion> {
        let region = self.ids.next_id();
        let rkey = random_key();
        let file = RegionFile::create(&region_path(&self.dir, region), region, len, rkey, access)?;
        let memory = Arc::new(file.memory()?);
        let desc = RegionDesc {
            node: self.node.clone(),
            region,
            base: memory.as_ptr() as u64,
            len,
            rkey,
            access,
        };
        self.regions.lock().insert(region, file);
        Ok(LocalRegion::new(desc, memory))
    }

    fn deregister(&self, desc: &RegionDesc) -> Result<()> {
        let mut regions = self.regions.lock();
        match regions.get(&desc.region) {
            None => Err(Error::RegionGone {
                region: desc.region,
            }),
            Some(file) if file.rkey != desc.rkey => Err(Error::BadKey {
                region: desc.region,
            }),
            Some(file) => {
                file.mark_gone();
                let path = region_path(&self.dir, desc.region);
                std::fs::remove_file(&path)
                    .map_err(|e| Error::io(format!("remove {}", path.display()), e))?;
                regions.remove(&desc.region);
                Ok(())
            }
        }
    }

    fn connect(&self, peer: &NodeId, options: &ConnectOptions) -> Result<Arc<dyn Connection>> {
        let dir = PathBuf::from(&peer.0);
        let stream = UnixStream::connect(dir.join("sock"))
            .map_err(|e| Error::peer_gone(peer, format!("connect: {e}")))?;
        Ok(Arc::new(ShmConnection::open(
            stream,
            &self.node,
            &self.credentials,
            peer.clone(),
            dir,
            options.clone(),
        )?))
    }

    fn accept(&self, timeout: Duration) -> Result<Box<dyn InboundConnection>> {
        self.accept.pop(timeout)
    }
}

impl ShmFabric {
    /// Revoke every region and remove the node's files and directory. Runs
    /// on drop; call it explicitly when other owners of the fabric (request
    /// handlers, accept threads) may outlive the process's last use of it.
    pub fn close(&self) {
        for (region, file) in self.regions.lock().drain() {
            file.mark_gone();
            let _ = std::fs::remove_file(region_path(&self.dir, region));
        }
        // Mailboxes of connections still open (each is removed when its
        // connection ends).
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with("mbox-") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let _ = std::fs::remove_file(self.dir.join("sock"));
        let _ = std::fs::remove_dir(&self.dir);
    }
}

impl Drop for ShmFabric {
    fn drop(&mut self) {
        self.close();
    }
}
