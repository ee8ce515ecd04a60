//! The `local` backend: every node lives in this process, inside one
//! [`LocalNetwork`]. One-sided operations are copies under the owner's key,
//! access and bounds checks; requests go to a receiving thread per
//! connection that serves them through the owner's [`Dispatcher`] (so a
//! call honours the operation timeout and the owner's handler never runs on
//! the caller's stack, as with the other backends). Connections run the
//! same handshake as the other backends ([`crate::handshake`]), through
//! function calls. This is the embedded default: zero setup.
//!
//! A small request travels in the request ring of an in-process mailbox
//! (`crate::mailbox`), its slot carrying the sending half of the caller's
//! reply slot (`crate::reply_slot`) as the request id (only this module's
//! callers push into the ring, and the receiving thread turns each id back
//! into the sender exactly once, when it takes the request or when it
//! stops); a large one, or one that finds the ring full, goes through a
//! channel. The answer is left in the caller's reply slot. A receiving
//! thread that stops polling parks; callers unpark it when the ring says it
//! sleeps (or after using the channel).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, select};
use parking_lot::Mutex;

use crate::accept::AcceptQueue;
use crate::access::RegionAccess;
use crate::batch_codec::post_validated;
use crate::dispatch::Dispatcher;
use crate::error::{Error, Result};
use crate::handshake;
use crate::identity::PeerIdentity;
use crate::mailbox::{self, Mailbox};
use crate::region::{LocalRegion, RegionMemory};
use crate::registry::RegionTable;
use crate::reply_slot::{NoAnswer, ReplySender, ReplyWaiter, reply_slot};
use crate::verbs::{
    CallWait, Completion, ConnectOptions, Connection, Fabric, FabricOptions, InboundConnection,
    NodeId, PendingCall, RegionDesc, SharedHandler, WorkRequest,
};

/// One-way messages buffered per direction before `send` blocks.
const CHANNEL_DEPTH: usize = 4096;

/// The nodes of one process, by name.
#[derive(Debug, Default)]
pub struct LocalNetwork {
    nodes: Mutex<HashMap<NodeId, Weak<LocalNode>>>,
}

#[derive(Debug)]
struct LocalNode {
    id: NodeId,
    options: FabricOptions,
    regions: RegionTable,
    dispatcher: Arc<Dispatcher>,
    accept: AcceptQueue,
    down: Arc<AtomicBool>,
    /// Dropped when the node goes down, which wakes every waiting caller.
    alive: Mutex<Option<Sender<()>>>,
    down_signal: Receiver<()>,
}

impl LocalNode {
    fn check_up(&self) -> Result<()> {
        if self.down.load(Ordering::Acquire) {
            return Err(Error::peer_gone(&self.id, "node is down"));
        }
        Ok(())
    }
}

/// A node's endpoint on a [`LocalNetwork`].
#[derive(Debug, Clone)]
pub struct LocalFabric {
    node: Arc<LocalNode>,
    network: Arc<LocalNetwork>,
}

impl LocalNetwork {
    pub fn new() -> Arc<Self> {
        Arc::new(LocalNetwork::default())
    }

    /// Create node `name`, answering requests with `handler`.
    pub fn node(
        self: &Arc<Self>,
        name: &str,
        handler: SharedHandler,
        options: FabricOptions,
    ) -> Result<LocalFabric> {
        let id = NodeId(format!("local:{name}"));
        let mut nodes = self.nodes.lock();
        if nodes.get(&id).is_some_and(|w| w.strong_count() > 0) {
            return Err(Error::InvalidArgument(format!("node {id} already exists")));
        }
        let (alive, down_signal) = crossbeam_channel::bounded(0);
        let node = Arc::new(LocalNode {
            regions: RegionTable::new(id.clone()),
            dispatcher: Dispatcher::new(id.0.clone(), handler, options.request_workers),
            options,
            id: id.clone(),
            accept: AcceptQueue::default(),
            down: Arc::new(AtomicBool::new(false)),
            alive: Mutex::new(Some(alive)),
            down_signal,
        });
        nodes.insert(id, Arc::downgrade(&node));
        Ok(LocalFabric {
            node,
            network: Arc::clone(self),
        })
    }
}

impl LocalFabric {
    /// Take the node down as if its process died: its regions vanish and
    /// every operation on it, including calls in flight, fails with
    /// [`Error::PeerGone`].
    pub fn shut_down(&self) {
        self.node.down.store(true, Ordering::Release);
        self.node.regions.clear();
        self.node.alive.lock().take();
    }
}

impl Fabric for LocalFabric {
    fn node(&self) -> &NodeId {
        &self.node.id
    }

    fn register(&self, len: u64, access: RegionAccess) -> Result<LocalRegion> {
        self.node.check_up()?;
        Ok(self
            .node
            .regions
            .insert(Arc::new(RegionMemory::heap(len)?), access))
    }

    fn deregister(&self, region: &RegionDesc) -> Result<()> {
        self.node.regions.remove(region)
    }

    fn connect(&self, peer: &NodeId, options: &ConnectOptions) -> Result<Arc<dyn Connection>> {
        let target = self
            .network
            .nodes
            .lock()
            .get(peer)
            .and_then(Weak::upgrade)
            .ok_or_else(|| Error::peer_gone(peer, "no such node in this process"))?;
        target.check_up()?;
        let identity = Arc::new(handshake::in_process(
            (&self.node.id, &self.node.options.credentials),
            (&target.id, &target.options.credentials),
        )?);
        let (to_owner, owner_inbox) = crossbeam_channel::bounded(CHANNEL_DEPTH);
        let (to_requester, requester_inbox) = crossbeam_channel::bounded(CHANNEL_DEPTH);
        let (requests, receiving) = crossbeam_channel::unbounded::<Job>();
        let (owner_end, requester_end) = mailbox::in_process(peer.clone(), self.node.id.clone())?;
        let owner = Arc::clone(&target);
        let from = Arc::clone(&identity);
        let receiver = std::thread::Builder::new()
            .name(format!("o3-local {peer}"))
            .spawn(move || receive_requests(&owner, &from, &owner_end, &receiving))
            .map_err(|e| Error::io("spawn local connection thread", e))?
            .thread()
            .clone();
        let closed = Arc::new(AtomicBool::new(false));
        target.accept.push(
            Box::new(LocalInbound {
                peer: PeerIdentity::clone(&identity),
                to_requester,
                inbox: owner_inbox,
            }),
            Arc::clone(&closed),
        );
        Ok(Arc::new(LocalConnection {
            peer: peer.clone(),
            down: Arc::clone(&target.down),
            node: Arc::downgrade(&target),
            down_signal: target.down_signal.clone(),
            options: options.clone(),
            to_owner,
            inbox: requester_inbox,
            requests,
            mailbox: requester_end,
            receiver,
            closed,
        }))
    }

    fn accept(&self, timeout: Duration) -> Result<Box<dyn InboundConnection>> {
        self.node.accept.pop(timeout)
    }
}

/// The owner's receiving thread of one connection: takes requests from the
/// mailbox ring and the channel and hands each to the owner's dispatcher,
/// until the requester drops the connection or the owner goes down.
fn receive_requests(
    owner: &LocalNode,
    from: &Arc<PeerIdentity>,
    mailbox: &Mailbox,
    requests: &Receiver<Job>,
) {
    let serve = |request: Cow<'_, [u8]>, reply: ReplySender| {
        if let Some(answer) = owner.dispatcher.quick(from, &request) {
            reply.fill(answer);
            return;
        }
        let dispatched = owner
            .dispatcher
            .dispatch(from, request.into_owned(), move |answer| reply.fill(answer));
        if let Err(e) = dispatched {
            tracing::error!(node = %owner.id, error = %e, "cannot serve a request");
        }
    };
    let poll = owner.options.poll;
    while !owner.down.load(Ordering::Acquire) {
        // Served from the stack copy: a quick request allocates nothing for
        // itself.
        let popped = mailbox.pop_with(|id, _, request| {
            // SAFETY: ring ids are reply senders published once by
            // `start_call`, and this is their only consumer.
            serve(Cow::Borrowed(request), unsafe { ReplySender::from_id(id) });
        });
        match popped {
            Ok(Some(())) => continue,
            Ok(None) => {}
            Err(e) => {
                tracing::error!(node = %owner.id, error = %e, "local mailbox broken");
                break;
            }
        }
        match requests.try_recv() {
            Ok(job) => {
                serve(Cow::Owned(job.request), job.reply);
                continue;
            }
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {}
        }
        let waiting = || mailbox.ready() || !requests.is_empty();
        if poll
            .spin_until(Instant::now() + poll.spin(), || waiting().then_some(()))
            .is_some()
        {
            continue;
        }
        match mailbox.prepare_to_sleep() {
            Ok(false) if requests.is_empty() => std::thread::park_timeout(PARK_LIMIT),
            Ok(_) => {}
            Err(_) => break,
        }
        mailbox.awake();
    }
    // Drop the reply senders of requests nobody will serve (their callers
    // are told so).
    while let Ok(Some(slotted)) = mailbox.pop() {
        // SAFETY: as above; the thread stops consuming after this.
        drop(unsafe { ReplySender::from_id(slotted.id) });
    }
}

/// Longest park of an idle receiving thread between looks at its queues
/// (it is unparked when work arrives; this only bounds a missed wake-up).
const PARK_LIMIT: Duration = Duration::from_secs(1);

struct Job {
    request: Vec<u8>,
    reply: ReplySender,
}

/// A connection to a node of the same [`LocalNetwork`].
#[derive(Debug)]
pub struct LocalConnection {
    peer: NodeId,
    /// The owner's down flag (cheap to poll, unlike its down signal).
    down: Arc<AtomicBool>,
    node: Weak<LocalNode>,
    down_signal: Receiver<()>,
    options: ConnectOptions,
    to_owner: Sender<Vec<u8>>,
    inbox: Receiver<Vec<u8>>,
    requests: Sender<Job>,
    /// The requester's end of the connection's request ring.
    mailbox: Mailbox,
    /// The owner's receiving thread, to unpark.
    receiver: std::thread::Thread,
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("len", &self.request.len())
            .finish()
    }
}

impl Drop for LocalConnection {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
        // The channel closes with us; let a parked receiving thread see it.
        self.receiver.unpark();
    }
}

impl LocalConnection {
    fn owner(&self) -> Result<Arc<LocalNode>> {
        let node = self
            .node
            .upgrade()
            .ok_or_else(|| Error::peer_gone(&self.peer, "node dropped"))?;
        node.check_up()?;
        Ok(node)
    }

    /// Wait on `rx` until `deadline`, failing early when the owner goes down.
    /// Busy-polls first when the connection's poll mode says so.
    fn wait_on<T>(&self, rx: &Receiver<T>, deadline: Instant, op: &'static str) -> Result<T> {
        let polled = self.options.poll.spin_until(deadline, || {
            match rx.try_recv() {
                Ok(value) => return Some(Ok(value)),
                Err(TryRecvError::Disconnected) => {
                    return Some(Err(Error::peer_gone(&self.peer, "connection closed")));
                }
                Err(TryRecvError::Empty) => {}
            }
            self.down
                .load(Ordering::Acquire)
                .then(|| Err(Error::peer_gone(&self.peer, "node is down")))
        });
        if let Some(outcome) = polled {
            return outcome;
        }
        let timeout = Error::Timeout {
            op,
            after: self.options.op_timeout,
        };
        select! {
            recv(rx) -> value => value.map_err(|_| Error::peer_gone(&self.peer, "connection closed")),
            recv(self.down_signal) -> _ => Err(Error::peer_gone(&self.peer, "node is down")),
            default(deadline.saturating_duration_since(Instant::now())) => Err(timeout),
        }
    }
}

impl Connection for LocalConnection {
    fn peer(&self) -> &NodeId {
        &self.peer
    }

    fn options(&self) -> &ConnectOptions {
        &self.options
    }

    fn post(&self, batch: &mut [WorkRequest<'_>]) -> Vec<Result<Completion>> {
        post_validated(&self.peer, batch, |valid| {
            let mut failed = false;
            valid
                .iter_mut()
                .enumerate()
                .map(|(index, request)| {
                    if failed {
                        return Err(Error::Flushed { index });
                    }
                    let desc = request.remote().clone();
                    let result = self.owner().and_then(|node| {
                        let memory = node.regions.lookup(desc.region, desc.rkey, request.op())?;
                        memory.execute(&desc, request)
                    });
                    failed = result.is_err();
                    result
                })
                .collect()
        })
    }

    fn send(&self, message: &[u8]) -> Result<()> {
        self.owner()?;
        self.to_owner
            .send_timeout(message.to_vec(), self.options.op_timeout)
            .map_err(|_| Error::peer_gone(&self.peer, "owner stopped receiving"))
    }

    fn recv(&self) -> Result<Vec<u8>> {
        self.wait_on(
            &self.inbox,
            Instant::now() + self.options.op_timeout,
            "recv",
        )
    }

    fn start_call(&self, request: &[u8]) -> Result<PendingCall<'_>> {
        // The down flag rather than `owner()`: no reference count to touch
        // on the hot path (a dropped owner shows as a closed queue).
        if self.down.load(Ordering::Acquire) {
            return Err(Error::peer_gone(&self.peer, "node is down"));
        }
        let (reply, sender) = reply_slot();
        let id = sender.into_id();
        match self.mailbox.push(id, 0, request) {
            Ok(Some(asleep)) => {
                if asleep {
                    self.receiver.unpark();
                }
            }
            unpublished => {
                // SAFETY: `id` was not published, so this is its only use.
                let sender = unsafe { ReplySender::from_id(id) };
                if let Err(e) = unpublished {
                    drop(sender);
                    return Err(e);
                }
                self.requests
                    .send(Job {
                        request: request.to_vec(),
                        reply: sender,
                    })
                    .map_err(|_| Error::peer_gone(&self.peer, "connection thread stopped"))?;
                self.receiver.unpark();
            }
        }
        Ok(PendingCall::new(Box::new(LocalCall {
            connection: self,
            reply,
            deadline: Instant::now() + self.options.op_timeout,
        })))
    }
}

struct LocalCall<'c> {
    connection: &'c LocalConnection,
    reply: ReplyWaiter,
    deadline: Instant,
}

impl CallWait for LocalCall<'_> {
    fn wait(self: Box<Self>) -> Result<Vec<u8>> {
        let c = self.connection;
        let gone = || c.down.load(Ordering::Acquire);
        match self.reply.wait(c.options.poll, self.deadline, gone) {
            Ok(answer) => answer.map_err(|message| Error::Remote {
                peer: c.peer.clone(),
                message,
            }),
            Err(NoAnswer::TimedOut) => Err(Error::Timeout {
                op: "call",
                after: c.options.op_timeout,
            }),
            Err(NoAnswer::GaveUp) => Err(Error::peer_gone(&c.peer, "node is down")),
            Err(NoAnswer::Dropped) => Err(Error::peer_gone(
                &c.peer,
                "the owner stopped serving the connection",
            )),
        }
    }
}

/// The owner's end of a local connection.
#[derive(Debug)]
struct LocalInbound {
    peer: PeerIdentity,
    to_requester: Sender<Vec<u8>>,
    inbox: Receiver<Vec<u8>>,
}

impl InboundConnection for LocalInbound {
    fn peer(&self) -> &PeerIdentity {
        &self.peer
    }

    fn send(&self, message: &[u8]) -> Result<()> {
        self.to_requester
            .send(message.to_vec())
            .map_err(|_| Error::peer_gone(&self.peer.node, "connection closed"))
    }

    fn recv(&self, timeout: Duration) -> Result<Vec<u8>> {
        self.inbox.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => Error::Timeout {
                op: "recv",
                after: timeout,
            },
            RecvTimeoutError::Disconnected => {
                Error::peer_gone(&self.peer.node, "connection closed")
            }
        })
    }
}
