//! The requester's end of an shm connection: one-sided operations on cached
//! mappings of the owner's region files, two-sided traffic over the owner's
//! Unix socket, and a watcher thread that notices the owner's death (its
//! socket hangs up) so that one-sided operations on an orphaned mapping
//! fail with [`Error::PeerGone`] instead of silently succeeding.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::RwLock;

use super::region_file::{RegionFile, map_shared};
use crate::batch_codec::post_validated;
use crate::error::{Error, Result};
use crate::identity::Credentials;
use crate::mailbox::{MAILBOX_LEN, Mailbox};
use crate::region::RegionMemory;
use crate::stream::client::{StreamCall, StreamClient};
use crate::verbs::{
    Completion, ConnectOptions, Connection, NodeId, PendingCall, RegionDesc, WorkRequest,
};
use crate::wire::FrameKind;

#[derive(Debug)]
struct Mapping {
    file: RegionFile,
    memory: RegionMemory,
}

/// A connection to an shm node on the same host.
#[derive(Debug)]
pub struct ShmConnection {
    client: StreamClient<UnixStream>,
    dir: PathBuf,
    mappings: RwLock<HashMap<u64, Arc<Mapping>>>,
    owner_gone: Arc<AtomicBool>,
    /// Dropped with the connection, which tells the watcher to stop.
    _alive: Arc<()>,
}

impl ShmConnection {
    pub(crate) fn open(
        stream: UnixStream,
        me: &NodeId,
        credentials: &Credentials,
        peer: NodeId,
        dir: PathBuf,
        options: ConnectOptions,
    ) -> Result<Self> {
        let watched = stream
            .try_clone()
            .map_err(|e| Error::io(format!("clone socket to {peer}"), e))?;
        let (client, mailbox) = StreamClient::handshake(stream, me, credentials, peer, options)?;
        if !mailbox.is_empty() {
            let name = String::from_utf8(mailbox)
                .ok()
                .filter(|n| n.starts_with("mbox-") && !n.contains('/'))
                .ok_or_else(|| Error::protocol(client.peer(), "bad mailbox name"))?;
            let memory = map_shared(&dir.join(name), MAILBOX_LEN, false)?;
            client.attach_mailbox(Mailbox::open(memory, client.peer().clone())?)?;
        }
        let owner_gone = Arc::new(AtomicBool::new(false));
        let alive = Arc::new(());
        let (flag, token) = (Arc::clone(&owner_gone), Arc::downgrade(&alive));
        std::thread::Builder::new()
            .name("o3-shm-watch".into())
            .spawn(move || watch_owner(watched, flag, token))
            .map_err(|e| Error::io("spawn shm watcher", e))?;
        Ok(ShmConnection {
            client,
            dir,
            mappings: RwLock::new(HashMap::new()),
            owner_gone,
            _alive: alive,
        })
    }

    /// The mapping for `desc`, opened on first use and dropped once the
    /// owner has deregistered the region.
    fn mapping(&self, desc: &RegionDesc) -> Result<Arc<Mapping>> {
        if let Some(m) = self.mappings.read().get(&desc.region)
            && m.file.is_live()
        {
            return Ok(Arc::clone(m));
        }
        let mut mappings = self.mappings.write();
        mappings.remove(&desc.region);
        let path = self.dir.join(format!("region-{}", desc.region));
        let file = RegionFile::open(&path, desc.region, self.client.peer())?;
        let memory = file.memory()?;
        let mapping = Arc::new(Mapping { file, memory });
        mappings.insert(desc.region, Arc::clone(&mapping));
        Ok(mapping)
    }

    fn execute(&self, request: &mut WorkRequest<'_>) -> Result<Completion> {
        if self.owner_gone.load(Ordering::Acquire) || self.client.is_gone() {
            return Err(Error::peer_gone(self.client.peer(), "owner process exited"));
        }
        let desc = request.remote().clone();
        let mapping = self.mapping(&desc)?;
        if mapping.file.rkey != desc.rkey {
            return Err(Error::BadKey {
                region: desc.region,
            });
        }
        if !mapping.file.is_live() {
            return Err(Error::RegionGone {
                region: desc.region,
            });
        }
        // The owner's record in the file header decides, not the
        // descriptor.
        let op = request.op();
        if !mapping.file.access.permits(op) {
            return Err(Error::AccessDenied {
                region: desc.region,
                op,
                access: mapping.file.access,
            });
        }
        mapping.memory.execute(&desc, request)
    }
}

/// Wait for the owner's end of the socket to hang up; stop when the
/// connection is dropped. Polls without reading, so it never consumes
/// frames.
fn watch_owner(socket: UnixStream, owner_gone: Arc<AtomicBool>, alive: Weak<()>) {
    let hangup = libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR;
    while alive.strong_count() > 0 {
        let mut pfd = libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: `pfd` is a valid pollfd for a socket this thread owns, and
        // the count matches the single entry.
        let n = unsafe { libc::poll(&mut pfd, 1, 100) };
        if n > 0 && pfd.revents & hangup != 0 {
            owner_gone.store(true, Ordering::Release);
            return;
        }
    }
}

impl Connection for ShmConnection {
    fn peer(&self) -> &NodeId {
        self.client.peer()
    }

    fn options(&self) -> &ConnectOptions {
        self.client.options()
    }

    fn post(&self, batch: &mut [WorkRequest<'_>]) -> Vec<Result<Completion>> {
        post_validated(self.client.peer(), batch, |valid| {
            let mut failed = false;
            valid
                .iter_mut()
                .enumerate()
                .map(|(index, request)| {
                    if failed {
                        return Err(Error::Flushed { index });
                    }
                    let result = self.execute(request);
                    failed = result.is_err();
                    result
                })
                .collect()
        })
    }

    fn send(&self, message: &[u8]) -> Result<()> {
        self.client.send_frame(FrameKind::Message, 0, &[message])
    }

    fn recv(&self) -> Result<Vec<u8>> {
        self.client
            .recv(Instant::now() + self.client.options().op_timeout)
    }

    fn start_call(&self, request: &[u8]) -> Result<PendingCall<'_>> {
        let id = self.client.start(
            FrameKind::Request,
            &[request],
            self.client.options().max_message as u64,
        )?;
        Ok(PendingCall::new(Box::new(StreamCall::new(
            &self.client,
            id,
        ))))
    }
}
