//! The requester's end of a framed stream connection.
//!
//! Reading follows a leader/follower scheme instead of a dedicated reader
//! thread: a thread waiting for its response reads the socket itself when no
//! other thread is reading, and files every frame it reads under its request
//! id; other waiters sleep on a condition variable until their response has
//! been filed or the reader role is free. A lone caller therefore sends and
//! receives on its own thread with no hand-off, which keeps a round trip as
//! close to a raw socket ping-pong as possible, while many threads can still
//! have many requests in flight on one connection. The reading thread
//! busy-polls the socket for the connection's poll budget before it sleeps
//! in `poll(2)`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use std::io::IoSlice;

use crate::handshake::{Challenge, Connecting};
use crate::identity::Credentials;
use crate::mailbox::{Mailbox, Slotted};
use crate::poll::PollMode;
use crate::socket::{Socket, is_timeout};
use crate::verbs::{CallWait, ConnectOptions, NodeId};
use crate::wire::{FrameKind, HEADER_LEN, Header};

/// A frame addressed to a waiting request.
#[derive(Debug)]
pub struct Reply {
    pub status: u8,
    pub payload: Vec<u8>,
}

/// Hashes request ids, which this client hands out itself (so no peer can
/// pick colliding keys): one multiplication spreads the sequential ids over
/// the table, where the default SipHash would cost more than the rest of a
/// shared-memory round trip's bookkeeping.
#[derive(Clone, Copy, Debug, Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

#[derive(Debug, Default)]
struct Shared {
    /// A thread currently owns the socket's read side.
    reading: bool,
    /// Requests still wanted, with the largest reply payload each accepts.
    waiting: IdMap<u64>,
    done: IdMap<Reply>,
    inbox: VecDeque<Vec<u8>>,
    gone: Option<String>,
}

/// Buffered read side; only the current reader locks it.
#[derive(Debug)]
struct ReadSide<S> {
    /// Reads block for at most the connection's stall limit (set once).
    socket: S,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    poll: PollMode,
}

const READ_BUF: usize = 64 << 10;

/// How long a write may block before the writer checks for replies to read
/// (two peers that both only write would otherwise deadlock on full socket
/// buffers).
const WRITE_STALL: Duration = Duration::from_millis(2);

enum ReadOutcome {
    Frame(Header, Vec<u8>),
    /// A response taken from the mailbox (one at a time: a waiter whose
    /// answer it is returns without allocating a batch).
    Mail(Slotted),
    /// No byte arrived before the deadline; the stream is still in sync.
    Idle,
}

impl<S: Socket> ReadSide<S> {
    /// Read one frame. Waits for its first byte until `deadline`
    /// (busy-polling first, then sleeping in `poll(2)`), or until
    /// `mailbox` holds a message (then `Idle`); once a frame has started,
    /// the rest must follow within the socket's stall limit or the
    /// connection is broken (it cannot be resynchronised).
    fn read_frame(
        &mut self,
        deadline: Instant,
        peer: &NodeId,
        mailbox: Option<&Mailbox>,
        max_payload: impl Fn(&Header) -> Result<u64>,
    ) -> Result<ReadOutcome> {
        if self.start == self.end {
            // With a mailbox, look at the socket (a system call) only every
            // so many turns.
            const SOCKET_CHECK_EVERY: u32 = 1024;
            let socket = &self.socket;
            let buf = &mut self.buf;
            let mut turn = 0u32;
            let polled = self.poll.spin_until(deadline, || {
                if let Some(mailbox) = mailbox {
                    if mailbox.ready() {
                        return Some(None);
                    }
                    turn = turn.wrapping_add(1);
                    if !turn.is_multiple_of(SOCKET_CHECK_EVERY) {
                        return None;
                    }
                }
                match socket.read_now(buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => None,
                    other => Some(Some(other)),
                }
            });
            let got = match polled {
                Some(None) => return Ok(ReadOutcome::Idle),
                Some(Some(got)) => got,
                None => {
                    if let Some(mailbox) = mailbox
                        && mailbox.prepare_to_sleep()?
                    {
                        return Ok(ReadOutcome::Idle);
                    }
                    let wait = deadline.saturating_duration_since(Instant::now());
                    let readable = self.socket.wait_readable(wait);
                    if let Some(mailbox) = mailbox {
                        mailbox.awake();
                    }
                    match readable {
                        Ok(false) => return Ok(ReadOutcome::Idle),
                        Ok(true) => self.socket.read_now(&mut self.buf),
                        Err(e) => Err(e),
                    }
                }
            };
            match got {
                Ok(0) => return Err(Error::peer_gone(peer, "connection closed")),
                Ok(n) => {
                    self.start = 0;
                    self.end = n;
                }
                Err(e) if is_timeout(&e) => return Ok(ReadOutcome::Idle),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                    return Ok(ReadOutcome::Idle);
                }
                Err(e) => return Err(Error::peer_gone(peer, e.to_string())),
            }
        }
        let mut raw = [0u8; HEADER_LEN];
        self.fill(&mut raw, peer)?;
        let header = Header::decode(&raw, peer)?;
        let limit = max_payload(&header)?;
        if header.len > limit {
            return Err(Error::protocol(
                peer,
                format!(
                    "{:?} frame of {} bytes exceeds the limit of {limit}",
                    header.kind, header.len
                ),
            ));
        }
        let mut payload = vec![0u8; header.len as usize];
        self.fill(&mut payload, peer)?;
        Ok(ReadOutcome::Frame(header, payload))
    }

    /// Fill `out` from the buffer, then straight from the socket.
    fn fill(&mut self, out: &mut [u8], peer: &NodeId) -> Result<()> {
        let mut done = 0;
        while done < out.len() {
            if self.start < self.end {
                let n = (self.end - self.start).min(out.len() - done);
                out[done..done + n].copy_from_slice(&self.buf[self.start..self.start + n]);
                self.start += n;
                done += n;
                continue;
            }
            let rest = out.len() - done;
            let result = if rest >= READ_BUF {
                self.socket.read(&mut out[done..])
            } else {
                self.socket.read(&mut self.buf).map(|n| {
                    self.start = 0;
                    self.end = n;
                    0
                })
            };
            match result {
                Ok(n) if n > 0 => done += n,
                Ok(_) if self.end > self.start => {}
                Ok(_) => return Err(Error::peer_gone(peer, "connection closed mid-frame")),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {
                    return Err(Error::peer_gone(
                        peer,
                        "peer stalled in the middle of a frame",
                    ));
                }
                Err(e) => return Err(Error::peer_gone(peer, e.to_string())),
            }
        }
        Ok(())
    }
}

/// The requester's end of a framed connection.
#[derive(Debug)]
pub struct StreamClient<S> {
    peer: NodeId,
    options: ConnectOptions,
    writer: Mutex<S>,
    read_side: Mutex<ReadSide<S>>,
    shared: Mutex<Shared>,
    cond: Condvar,
    next_id: AtomicU64,
    gone_flag: AtomicBool,
    /// The shared-memory fast path for small calls, when the owner offers
    /// one ([`crate::mailbox`]).
    mailbox: OnceLock<Arc<Mailbox>>,
}

impl<S: Socket> StreamClient<S> {
    /// Prove `me` to the owner at the other end of `socket` with
    /// `credentials` ([`crate::handshake`]) and check its proof in turn;
    /// returns the client and the owner's `Welcome` payload (the name of a
    /// mailbox it offers, or empty).
    pub fn handshake(
        socket: S,
        me: &NodeId,
        credentials: &Credentials,
        peer: NodeId,
        options: ConnectOptions,
    ) -> Result<(Self, Vec<u8>)> {
        let writer = socket
            .try_clone()
            .map_err(|e| Error::io(format!("clone socket to {peer}"), e))?;
        writer
            .set_write_timeout(Some(WRITE_STALL))
            .map_err(|e| Error::io(format!("write timeout to {peer}"), e))?;
        socket
            .set_read_timeout(Some(options.op_timeout))
            .map_err(|e| Error::io(format!("read timeout from {peer}"), e))?;
        let client = StreamClient {
            writer: Mutex::new(writer),
            read_side: Mutex::new(ReadSide {
                socket,
                buf: vec![0u8; READ_BUF],
                start: 0,
                end: 0,
                poll: options.poll,
            }),
            shared: Mutex::new(Shared::default()),
            cond: Condvar::new(),
            next_id: AtomicU64::new(1),
            gone_flag: AtomicBool::new(false),
            mailbox: OnceLock::new(),
            peer,
            options,
        };
        let (connecting, hello) = Connecting::start(me, &client.peer)?;
        client.send_frame(FrameKind::Hello, 0, &[&hello.encode()])?;
        let deadline = Instant::now() + client.options.op_timeout;
        let (kind, payload) = client.handshake_frame(deadline)?;
        if kind != FrameKind::Challenge {
            return Err(Error::protocol(
                &client.peer,
                format!("expected a Challenge, got {kind:?}"),
            ));
        }
        let challenge = Challenge::decode(&payload, &client.peer)?;
        let proof = connecting.answer(credentials, &challenge)?;
        client.send_frame(FrameKind::Proof, 0, &[&proof.0])?;
        match client.handshake_frame(deadline)? {
            (FrameKind::Welcome, mailbox) => Ok((client, mailbox)),
            (FrameKind::Refused, reason) => Err(Error::Unauthenticated {
                peer: client.peer.clone(),
                reason: format!("the peer refused us: {}", String::from_utf8_lossy(&reason)),
            }),
            (other, _) => Err(Error::protocol(
                &client.peer,
                format!("expected Welcome or Refused, got {other:?}"),
            )),
        }
    }

    /// The next handshake frame, by `deadline`. A peer that closes instead
    /// of answering is gone (an old owner may close on a proof it cannot
    /// check).
    fn handshake_frame(&self, deadline: Instant) -> Result<(FrameKind, Vec<u8>)> {
        let mut side = self.read_side.lock();
        loop {
            let outcome = side.read_frame(deadline, &self.peer, None, |_| {
                Ok(crate::wire::MAX_HANDSHAKE_FRAME)
            })?;
            match outcome {
                ReadOutcome::Frame(h, payload) => return Ok((h.kind, payload)),
                ReadOutcome::Mail(_) => {
                    return Err(Error::protocol(
                        &self.peer,
                        "mail before the handshake ended",
                    ));
                }
                ReadOutcome::Idle if Instant::now() >= deadline => {
                    return Err(Error::Timeout {
                        op: "connect handshake",
                        after: self.options.op_timeout,
                    });
                }
                ReadOutcome::Idle => {}
            }
        }
    }

    pub fn peer(&self) -> &NodeId {
        &self.peer
    }

    /// Send small calls through `mailbox` from now on.
    pub fn attach_mailbox(&self, mailbox: Mailbox) -> Result<()> {
        self.mailbox
            .set(Arc::new(mailbox))
            .map_err(|_| Error::InvalidArgument("a mailbox is already attached".into()))
    }

    pub fn options(&self) -> &ConnectOptions {
        &self.options
    }

    /// Why the connection is unusable, if it is.
    pub fn gone(&self) -> Option<String> {
        self.shared.lock().gone.clone()
    }

    /// Write one frame made of `parts` (their total length is the payload
    /// length).
    pub fn send_frame(&self, kind: FrameKind, id: u64, parts: &[&[u8]]) -> Result<()> {
        if let Some(reason) = self.gone() {
            return Err(Error::peer_gone(&self.peer, reason));
        }
        let len = parts.iter().map(|p| p.len() as u64).sum();
        let header = Header {
            len,
            id,
            kind,
            status: 0,
        }
        .encode();
        let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
        all.push(&header);
        all.extend_from_slice(parts);
        let mut slices: Vec<IoSlice<'_>> = all.iter().map(|p| IoSlice::new(p)).collect();
        let mut rest = &mut slices[..];
        let mut writer = self.writer.lock();
        let mut progress = Instant::now();
        while rest.iter().any(|s| !s.is_empty()) {
            match writer.write_vectored(rest) {
                Ok(0) => return Err(self.write_failed("connection closed")),
                Ok(n) => {
                    IoSlice::advance_slices(&mut rest, n);
                    progress = Instant::now();
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {
                    // The peer is not draining: it may be blocked writing
                    // replies nobody reads yet. Read them, then go on.
                    if progress.elapsed() >= self.options.op_timeout {
                        return Err(Error::Timeout {
                            op: "send",
                            after: self.options.op_timeout,
                        });
                    }
                    self.drain_once();
                }
                Err(e) => return Err(self.write_failed(&e.to_string())),
            }
        }
        Ok(())
    }

    fn write_failed(&self, why: &str) -> Error {
        let reason = format!("write failed: {why}");
        self.mark_gone(reason.clone());
        Error::peer_gone(&self.peer, reason)
    }

    /// Read and file one frame if no other thread is reading.
    fn drain_once(&self) {
        let mut shared = self.shared.lock();
        if shared.reading || shared.gone.is_some() {
            return;
        }
        shared.reading = true;
        drop(shared);
        let outcome = self.read_one(Instant::now() + WRITE_STALL);
        shared = self.shared.lock();
        shared.reading = false;
        match outcome {
            Ok(ReadOutcome::Idle) => {}
            Ok(ReadOutcome::Frame(header, payload)) => self.file(&mut shared, header, payload),
            Ok(ReadOutcome::Mail(mail)) => self.file_mail(&mut shared, mail),
            Err(e) => {
                self.set_gone(&mut shared, e.to_string());
            }
        }
        self.cond.notify_all();
    }

    /// Send a request frame whose reply payload may be at most `max_reply`
    /// bytes; returns its id.
    pub fn start(&self, kind: FrameKind, parts: &[&[u8]], max_reply: u64) -> Result<u64> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.shared.lock().waiting.insert(id, max_reply);
        if let (FrameKind::Request, Some(mailbox), [request]) = (kind, self.mailbox.get(), parts) {
            // The flag, not `gone()`: no lock and no string on the hot path.
            if self.is_gone() {
                self.cancel(id);
                let reason = self.gone().unwrap_or_default();
                return Err(Error::peer_gone(&self.peer, reason));
            }
            match mailbox.push(id, 0, request) {
                Ok(Some(wake)) => {
                    if wake && let Err(e) = self.send_frame(FrameKind::Doorbell, 0, &[]) {
                        self.cancel(id);
                        return Err(e);
                    }
                    return Ok(id);
                }
                // Too large or the ring is full: a frame it is.
                Ok(None) => {}
                Err(e) => {
                    self.cancel(id);
                    return Err(e);
                }
            }
        }
        if let Err(e) = self.send_frame(kind, id, parts) {
            self.cancel(id);
            return Err(e);
        }
        Ok(id)
    }

    /// Forget a request whose reply is no longer wanted.
    pub fn cancel(&self, id: u64) {
        let mut shared = self.shared.lock();
        shared.waiting.remove(&id);
        shared.done.remove(&id);
    }

    /// Wait for the reply to request `id` until `deadline`.
    pub fn wait(&self, id: u64, deadline: Instant, op: &'static str) -> Result<Reply> {
        self.wait_for(deadline, op, |shared| shared.done.remove(&id))
            .inspect_err(|_| self.cancel(id))
    }

    /// Wait for the next one-way message from the owner.
    pub fn recv(&self, deadline: Instant) -> Result<Vec<u8>> {
        self.wait_for(deadline, "recv", |shared| shared.inbox.pop_front())
    }

    fn wait_for<T>(
        &self,
        deadline: Instant,
        op: &'static str,
        mut ready: impl FnMut(&mut Shared) -> Option<T>,
    ) -> Result<T> {
        let mut shared = self.shared.lock();
        loop {
            if let Some(value) = ready(&mut shared) {
                return Ok(value);
            }
            if let Some(reason) = &shared.gone {
                return Err(Error::peer_gone(&self.peer, reason.clone()));
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    op,
                    after: self.options.op_timeout,
                });
            }
            if shared.reading {
                self.cond.wait_until(&mut shared, deadline);
                continue;
            }
            shared.reading = true;
            drop(shared);
            let outcome = self.read_one(deadline);
            shared = self.shared.lock();
            shared.reading = false;
            match outcome {
                Ok(ReadOutcome::Idle) => {}
                Ok(ReadOutcome::Frame(header, payload)) => self.file(&mut shared, header, payload),
                Ok(ReadOutcome::Mail(mail)) => self.file_mail(&mut shared, mail),
                Err(e) => {
                    self.set_gone(&mut shared, e.to_string());
                }
            }
            self.cond.notify_all();
        }
    }

    /// Read what the owner sent next: mail if the mailbox holds some, else
    /// a frame. Only the thread holding the reader role calls it (the
    /// mailbox's single consumer).
    fn read_one(&self, deadline: Instant) -> Result<ReadOutcome> {
        let mailbox = self.mailbox.get().map(|m| &**m);
        if let Some(mailbox) = mailbox
            && let Some(slotted) = mailbox.pop()?
        {
            return Ok(ReadOutcome::Mail(slotted));
        }
        let outcome = self.read_frame_from_socket(deadline, mailbox)?;
        if let (ReadOutcome::Idle, Some(mailbox)) = (&outcome, mailbox)
            && let Some(slotted) = mailbox.pop()?
        {
            return Ok(ReadOutcome::Mail(slotted));
        }
        Ok(outcome)
    }

    fn read_frame_from_socket(
        &self,
        deadline: Instant,
        mailbox: Option<&Mailbox>,
    ) -> Result<ReadOutcome> {
        let mut side = self.read_side.lock();
        side.read_frame(deadline, &self.peer, mailbox, |h| {
            match h.kind {
                FrameKind::Doorbell => Ok(0),
                FrameKind::Message => Ok(self.options.max_message as u64),
                FrameKind::Response | FrameKind::BatchResult => {
                    // A reply nobody waits for any more is read and dropped;
                    // it still may not exceed the largest message.
                    Ok(self
                        .shared
                        .lock()
                        .waiting
                        .get(&h.id)
                        .copied()
                        .unwrap_or(self.options.max_message as u64))
                }
                other => Err(Error::protocol(
                    &self.peer,
                    format!("unexpected {other:?} frame from the owner"),
                )),
            }
        })
    }

    fn file_mail(&self, shared: &mut Shared, slotted: Slotted) {
        if shared.waiting.remove(&slotted.id).is_some() {
            shared.done.insert(
                slotted.id,
                Reply {
                    status: slotted.status,
                    payload: slotted.payload,
                },
            );
        }
    }

    fn file(&self, shared: &mut Shared, header: Header, payload: Vec<u8>) {
        match header.kind {
            FrameKind::Doorbell => {}
            FrameKind::Message => shared.inbox.push_back(payload),
            _ => {
                if shared.waiting.remove(&header.id).is_some() {
                    shared.done.insert(
                        header.id,
                        Reply {
                            status: header.status,
                            payload,
                        },
                    );
                }
            }
        }
    }

    fn set_gone(&self, shared: &mut Shared, reason: String) {
        shared.gone.get_or_insert(reason);
        self.gone_flag.store(true, Ordering::Release);
    }

    /// True once the connection is unusable (cheap: no lock).
    pub fn is_gone(&self) -> bool {
        self.gone_flag.load(Ordering::Acquire)
    }

    fn mark_gone(&self, reason: String) {
        let mut shared = self.shared.lock();
        self.set_gone(&mut shared, reason);
        self.cond.notify_all();
    }
}

/// A request in flight on a [`StreamClient`].
#[derive(Debug)]
pub struct StreamCall<'c, S: Socket> {
    client: &'c StreamClient<S>,
    id: u64,
    deadline: Instant,
    waited: bool,
}

impl<'c, S: Socket> StreamCall<'c, S> {
    pub fn new(client: &'c StreamClient<S>, id: u64) -> Self {
        StreamCall {
            client,
            id,
            deadline: Instant::now() + client.options.op_timeout,
            waited: false,
        }
    }
}

impl<S: Socket> CallWait for StreamCall<'_, S> {
    fn wait(mut self: Box<Self>) -> Result<Vec<u8>> {
        self.waited = true;
        let reply = self.client.wait(self.id, self.deadline, "call")?;
        if reply.status != 0 {
            return Err(Error::Remote {
                peer: self.client.peer.clone(),
                message: String::from_utf8_lossy(&reply.payload).into_owned(),
            });
        }
        Ok(reply.payload)
    }
}

impl<S: Socket> Drop for StreamCall<'_, S> {
    fn drop(&mut self) {
        if !self.waited {
            self.client.cancel(self.id);
        }
    }
}
