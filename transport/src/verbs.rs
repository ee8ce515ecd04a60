//! The verbs model: the traits and types every backend implements.
//!
//! It mirrors RDMA verbs so that the `rdma` backend is a thin layer and the
//! other backends are faithful emulations:
//! - a node **registers** memory ([`Fabric::register`]) with access flags
//!   ([`RegionAccess`]) and hands out a [`RegionDesc`] (node, region id,
//!   base, length, access key, access flags);
//! - a peer that holds a descriptor performs **one-sided** operations on it
//!   through a [`Connection`] ([`WorkRequest`]s posted in batches, one
//!   [`Completion`] each) that never run code of the owner's application;
//! - **two-sided** messages: one-way [`Connection::send`] /
//!   [`Connection::recv`] and request/response [`Connection::call`], served
//!   by the owner's [`RequestHandler`]; many requests may be in flight on one
//!   connection ([`Connection::start_call`]), each matched to its response by
//!   a request id, and served concurrently ([`crate::dispatch`]); one-way
//!   messages are delivered in order per connection.
//! - every connection starts with a handshake ([`crate::handshake`]) that
//!   proves the connector's identity with the fabric's [`Credentials`]; the
//!   owner's handler receives that [`PeerIdentity`] with every request.
//!
//! The API is blocking. Its callers (the compute node's foreground and
//! background threads, memory-node workers) are synchronous threads, and a
//! blocking call that performs the I/O on the calling thread avoids a thread
//! hand-off per operation, which dominates small-operation latency. Backends
//! that need background work (accepting connections, answering requests,
//! watching for a dead peer) run it on their own threads.
//!
//! Addressing: a [`NodeId`] is the address peers connect to (a `host:port`
//! for tcp, a directory for shm, a name inside a `LocalNetwork` for local),
//! so a descriptor alone says where to connect.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::access::{RegionAccess, RemoteOp};
use crate::error::{Error, Result};
use crate::identity::{Credentials, PeerIdentity};
use crate::poll::PollMode;
use crate::region::LocalRegion;

/// The address of a node's endpoint; peers pass it to [`Fabric::connect`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub String);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeId {
    fn from(s: &str) -> Self {
        NodeId(s.to_string())
    }
}

/// Everything a peer needs to access a registered region: it travels in
/// control messages.
///
/// Invariants: `region` ids are never reused by a node during its lifetime,
/// so a descriptor of a deregistered region is answered with
/// [`Error::RegionGone`]; `rkey` is unguessable, so a forged descriptor is
/// answered with [`Error::BadKey`]. Offsets in operations are relative to the
/// region start; `base` is the address of byte 0 in the owner's address space
/// (what RDMA puts in a work request), informational for other backends.
/// `access` lets a requester refuse a forbidden operation before sending it;
/// the owner's NIC enforces its own record of it, whatever a descriptor says.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RegionDesc {
    pub node: NodeId,
    pub region: u64,
    pub base: u64,
    pub len: u64,
    pub rkey: u64,
    pub access: RegionAccess,
}

impl RegionDesc {
    /// Check that `[offset, offset + len)` lies inside the region.
    pub fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::OutOfBounds {
                region: self.region,
                offset,
                len,
                region_len: self.len,
            }),
        }
    }

    /// Check that an 8-byte atomic at `offset` is aligned and in bounds.
    pub fn check_atomic(&self, offset: u64) -> Result<()> {
        if !offset.is_multiple_of(8) {
            return Err(Error::Misaligned {
                region: self.region,
                offset,
            });
        }
        self.check_range(offset, 8)
    }

    /// Check that the region's access flags permit `op`.
    pub fn check_access(&self, op: RemoteOp) -> Result<()> {
        if self.access.permits(op) {
            Ok(())
        } else {
            Err(Error::AccessDenied {
                region: self.region,
                op,
                access: self.access,
            })
        }
    }
}

/// Per-connection settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectOptions {
    /// How long any single operation (a batch, a call, a recv) may take
    /// before it fails with [`Error::Timeout`]. A dead peer is reported within
    /// this time, never by a hang.
    pub op_timeout: Duration,
    /// The largest two-sided message accepted from the peer; a longer one is a
    /// [`Error::Protocol`] error (bounds memory use on a bad length).
    pub max_message: usize,
    /// How a caller waits for a response or a message.
    pub poll: PollMode,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            op_timeout: Duration::from_secs(10),
            max_message: 64 << 20,
            poll: PollMode::Park,
        }
    }
}

/// Per-node settings shared by every backend.
#[derive(Clone, Debug)]
pub struct FabricOptions {
    /// What this node proves its identity with, and checks peers against.
    pub credentials: Credentials,
    /// How the node's receiving threads wait for the next request.
    pub poll: PollMode,
    /// Request handlers that may run at once across the node's connections
    /// (quick requests run inline and do not count); see
    /// [`crate::dispatch`].
    pub request_workers: usize,
}

impl FabricOptions {
    /// Parking waits and [`FabricOptions::DEFAULT_REQUEST_WORKERS`]
    /// workers.
    pub fn new(credentials: impl Into<Credentials>) -> Self {
        FabricOptions {
            credentials: credentials.into(),
            poll: PollMode::Park,
            request_workers: Self::DEFAULT_REQUEST_WORKERS,
        }
    }

    /// Enough for a memory node's handful of concurrent compute peers
    /// without letting a flood of slow requests spawn a thread each.
    pub const DEFAULT_REQUEST_WORKERS: usize = 16;
}

/// One one-sided operation on a remote region.
#[derive(Debug)]
pub enum WorkRequest<'a> {
    /// Copy `buf.len()` bytes from the region at `offset` into `buf`.
    Read {
        remote: &'a RegionDesc,
        offset: u64,
        buf: &'a mut [u8],
    },
    /// Copy `data` into the region at `offset`.
    Write {
        remote: &'a RegionDesc,
        offset: u64,
        data: &'a [u8],
    },
    /// Atomically: if the u64 at `offset` equals `expected`, store `new`.
    /// Completes with the previous value.
    CompareAndSwap {
        remote: &'a RegionDesc,
        offset: u64,
        expected: u64,
        new: u64,
    },
    /// Atomically add `add` (wrapping) to the u64 at `offset`. Completes with
    /// the previous value.
    FetchAdd {
        remote: &'a RegionDesc,
        offset: u64,
        add: u64,
    },
}

impl WorkRequest<'_> {
    /// The descriptor this request targets.
    pub fn remote(&self) -> &RegionDesc {
        match self {
            WorkRequest::Read { remote, .. }
            | WorkRequest::Write { remote, .. }
            | WorkRequest::CompareAndSwap { remote, .. }
            | WorkRequest::FetchAdd { remote, .. } => remote,
        }
    }

    /// The access right this request needs.
    pub fn op(&self) -> RemoteOp {
        match self {
            WorkRequest::Read { .. } => RemoteOp::Read,
            WorkRequest::Write { .. } => RemoteOp::Write,
            WorkRequest::CompareAndSwap { .. } | WorkRequest::FetchAdd { .. } => RemoteOp::Atomic,
        }
    }

    /// Check bounds, alignment, access flags and target node on the
    /// requester side, before anything is sent (a rejected request never
    /// reaches the owner).
    pub fn validate(&self, peer: &NodeId) -> Result<()> {
        let remote = self.remote();
        if &remote.node != peer {
            return Err(Error::WrongNode {
                region: remote.region,
                node: remote.node.clone(),
                peer: peer.clone(),
            });
        }
        remote.check_access(self.op())?;
        match self {
            WorkRequest::Read { offset, buf, .. } => remote.check_range(*offset, buf.len() as u64),
            WorkRequest::Write { offset, data, .. } => {
                remote.check_range(*offset, data.len() as u64)
            }
            WorkRequest::CompareAndSwap { offset, .. } | WorkRequest::FetchAdd { offset, .. } => {
                remote.check_atomic(*offset)
            }
        }
    }
}

/// The successful outcome of one [`WorkRequest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    Read {
        len: usize,
    },
    Write {
        len: usize,
    },
    /// The value the atomic found before it acted.
    Atomic {
        old: u64,
    },
}

/// Serves two-sided requests on the node that owns it. Runs on backend
/// threads; requests of one connection may be served concurrently
/// ([`crate::dispatch`]), and each response is matched to its request by id.
pub trait RequestHandler: Send + Sync {
    /// Answer `request` from `from`, the identity the peer proved when it
    /// connected. An `Err` reaches the caller as [`Error::Remote`].
    fn handle(&self, from: &PeerIdentity, request: &[u8]) -> Result<Vec<u8>, String>;

    /// True when `request` is answered at once without blocking (an echo,
    /// a table lookup): it then runs inline on the connection's receiving
    /// thread, saving a thread hand-off, and holds up later requests of its
    /// connection while it runs. Anything that may wait must say `false`
    /// (the default) and runs on a worker.
    fn is_quick(&self, _request: &[u8]) -> bool {
        false
    }
}

impl<F> RequestHandler for F
where
    F: Fn(&PeerIdentity, &[u8]) -> Result<Vec<u8>, String> + Send + Sync,
{
    fn handle(&self, from: &PeerIdentity, request: &[u8]) -> Result<Vec<u8>, String> {
        self(from, request)
    }
}

impl fmt::Debug for dyn RequestHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RequestHandler")
    }
}

/// The handler a fabric uses for incoming requests.
pub type SharedHandler = Arc<dyn RequestHandler>;

/// A handler that rejects every request; for nodes that only host regions.
pub fn no_requests() -> SharedHandler {
    Arc::new(|_: &PeerIdentity, _: &[u8]| -> Result<Vec<u8>, String> {
        Err("this node serves no requests".to_string())
    })
}

/// Waits for the response of one in-flight request.
pub trait CallWait: Send {
    /// Block until the response arrives, the peer is gone, or the connection's
    /// operation timeout (counted from when the request was started) passes.
    fn wait(self: Box<Self>) -> Result<Vec<u8>>;
}

/// A request in flight; [`PendingCall::wait`] returns its response. Dropping
/// it without waiting discards the response when it arrives.
pub struct PendingCall<'c> {
    inner: Box<dyn CallWait + 'c>,
}

impl<'c> PendingCall<'c> {
    /// Wrap a backend's waiter.
    pub fn new(inner: Box<dyn CallWait + 'c>) -> Self {
        PendingCall { inner }
    }

    /// Block until the response arrives (or the call fails).
    pub fn wait(self) -> Result<Vec<u8>> {
        self.inner.wait()
    }
}

impl fmt::Debug for PendingCall<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PendingCall")
    }
}

/// The requester's end of a connection to one peer. Shared by many threads
/// (`&self` everywhere); operations from one thread complete in order.
pub trait Connection: Send + Sync + fmt::Debug {
    /// The node this connection goes to.
    fn peer(&self) -> &NodeId;

    /// The options the connection was opened with.
    fn options(&self) -> &ConnectOptions;

    /// Execute a batch of one-sided operations in order and return one result
    /// per request, in posting order. The first failing request stops the
    /// batch: later ones are not executed and complete with
    /// [`Error::Flushed`]. A failed request had no effect on memory.
    fn post(&self, batch: &mut [WorkRequest<'_>]) -> Vec<Result<Completion>>;

    /// One-sided read of `buf.len()` bytes at `offset`.
    fn read(&self, remote: &RegionDesc, offset: u64, buf: &mut [u8]) -> Result<()> {
        single(self.post(&mut [WorkRequest::Read {
            remote,
            offset,
            buf,
        }]))
        .map(|_| ())
    }

    /// One-sided write of `data` at `offset`.
    fn write(&self, remote: &RegionDesc, offset: u64, data: &[u8]) -> Result<()> {
        single(self.post(&mut [WorkRequest::Write {
            remote,
            offset,
            data,
        }]))
        .map(|_| ())
    }

    /// One-sided compare-and-swap of the u64 at `offset` (8-byte aligned);
    /// returns the previous value (the swap happened iff it equals
    /// `expected`).
    fn compare_and_swap(
        &self,
        remote: &RegionDesc,
        offset: u64,
        expected: u64,
        new: u64,
    ) -> Result<u64> {
        atomic_old(single(self.post(&mut [WorkRequest::CompareAndSwap {
            remote,
            offset,
            expected,
            new,
        }]))?)
    }

    /// One-sided fetch-and-add of the u64 at `offset` (8-byte aligned);
    /// returns the previous value.
    fn fetch_add(&self, remote: &RegionDesc, offset: u64, add: u64) -> Result<u64> {
        atomic_old(single(self.post(&mut [WorkRequest::FetchAdd {
            remote,
            offset,
            add,
        }]))?)
    }

    /// Send a one-way message; the peer receives it with
    /// [`InboundConnection::recv`], in order.
    fn send(&self, message: &[u8]) -> Result<()>;

    /// Receive the next one-way message the peer sent on this connection.
    /// Fails with [`Error::Timeout`] after the operation timeout.
    fn recv(&self) -> Result<Vec<u8>>;

    /// Send a request to the peer's [`RequestHandler`] without waiting for
    /// the response, so that many requests are in flight at once.
    fn start_call(&self, request: &[u8]) -> Result<PendingCall<'_>>;

    /// Send a request and wait for its response.
    fn call(&self, request: &[u8]) -> Result<Vec<u8>> {
        self.start_call(request)?.wait()
    }
}

/// The owner's end of a connection a peer opened: one-way messages in both
/// directions (the peer's requests go to the fabric's [`RequestHandler`]).
pub trait InboundConnection: Send + Sync + fmt::Debug {
    /// The identity the node that opened the connection proved.
    fn peer(&self) -> &PeerIdentity;
    /// Send a one-way message to the peer (its [`Connection::recv`]).
    fn send(&self, message: &[u8]) -> Result<()>;
    /// Receive the next one-way message the peer sent, waiting at most
    /// `timeout`.
    fn recv(&self, timeout: Duration) -> Result<Vec<u8>>;
}

/// A node's endpoint on one backend: registers memory, opens connections to
/// peers and accepts theirs.
pub trait Fabric: Send + Sync + fmt::Debug {
    /// This node's address.
    fn node(&self) -> &NodeId;

    /// Register `len` bytes of zeroed memory that peers may access as
    /// `access` allows.
    fn register(&self, len: u64, access: RegionAccess) -> Result<LocalRegion>;

    /// Revoke remote access to a region: later accesses through its
    /// descriptor fail with [`Error::RegionGone`]. Local handles stay usable.
    fn deregister(&self, region: &RegionDesc) -> Result<()>;

    /// Open a connection to `peer`, proving this node's identity with its
    /// credentials; a peer that does not accept the proof (or cannot prove
    /// to hold the same token) is [`Error::Unauthenticated`].
    fn connect(&self, peer: &NodeId, options: &ConnectOptions) -> Result<Arc<dyn Connection>>;

    /// Wait at most `timeout` for the next connection a peer opened.
    /// Connections nobody accepts are kept (bounded by the live connections)
    /// until accepted or closed.
    fn accept(&self, timeout: Duration) -> Result<Box<dyn InboundConnection>>;
}

/// The only result of a one-request batch.
fn single(mut results: Vec<Result<Completion>>) -> Result<Completion> {
    results
        .pop()
        .unwrap_or_else(|| Err(Error::InvalidArgument("empty completion list".into())))
}

fn atomic_old(completion: Completion) -> Result<u64> {
    match completion {
        Completion::Atomic { old } => Ok(old),
        other => Err(Error::InvalidArgument(format!(
            "atomic request completed as {other:?}"
        ))),
    }
}
