//! The owner's end of a framed stream connection: one thread per connection
//! runs the handshake ([`crate::handshake`]), then reads frames in order.
//! Requests go to the node's [`Dispatcher`] (quick ones are answered inline,
//! others on a worker, so several run at once; responses carry the request
//! id). For the `tcp` backend the thread also emulates the NIC: `Batch`
//! frames are executed in order against the node's [`RegionTable`] without
//! involving the application.

use std::borrow::Cow;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;

use crate::accept::AcceptQueue;
use crate::access::RemoteOp;
use crate::dispatch::Dispatcher;
use crate::error::{Error, Result};
use crate::handshake::{Accepting, Hello, Proof};
use crate::identity::{Credentials, PeerIdentity};
use crate::mailbox::{MAILBOX_LEN, Mailbox};
use crate::poll::PollMode;
use crate::registry::RegionTable;
use crate::shm::region_file::map_shared;
use crate::socket::{PolledReader, Socket, write_all_parts};
use crate::verbs::{InboundConnection, NodeId};
use crate::wire::{
    Cursor, FrameKind, HEADER_LEN, Header, MAX_HANDSHAKE_FRAME, OP_PREFIX_LEN, OpStatus, op,
};

/// One-way messages a connection buffers before its reader applies
/// back-pressure to the peer (like an RDMA receiver that is not ready).
const INBOX_DEPTH: usize = 4096;

/// Write data is moved from the socket into region memory through a bounce
/// buffer of this size, so a huge write never allocates its full length.
const BOUNCE: usize = 256 << 10;

/// How long a connecting peer may take over its handshake before the
/// connection is dropped (an unauthenticated peer must not hold a thread).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every connection thread of a node shares.
#[derive(Debug)]
pub struct ServerContext {
    pub node: NodeId,
    pub credentials: Credentials,
    pub dispatcher: Arc<Dispatcher>,
    /// How connection threads wait for the next frame.
    pub poll: PollMode,
    pub accept: Arc<AcceptQueue>,
    /// Regions served to one-sided `Batch` frames (tcp); `None` rejects them.
    pub regions: Option<Arc<RegionTable>>,
    /// Where to create each connection's shared-memory mailbox (shm, whose
    /// peers share the host); `None`: requests travel as frames only.
    pub mailbox_dir: Option<PathBuf>,
    pub max_message: usize,
}

/// The owner's end of a connection as handed out by `accept`.
#[derive(Debug)]
struct StreamInbound<S> {
    peer: PeerIdentity,
    writer: Arc<Mutex<S>>,
    inbox: Receiver<Vec<u8>>,
}

impl<S: Socket + std::fmt::Debug> InboundConnection for StreamInbound<S> {
    fn peer(&self) -> &PeerIdentity {
        &self.peer
    }

    fn send(&self, message: &[u8]) -> Result<()> {
        write_frame(&self.writer, FrameKind::Message, 0, 0, &[message])
            .map_err(|e| Error::peer_gone(&self.peer.node, e.to_string()))
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

fn write_frame<S: Socket>(
    writer: &Mutex<S>,
    kind: FrameKind,
    id: u64,
    status: u8,
    parts: &[&[u8]],
) -> std::io::Result<()> {
    let header = Header {
        len: parts.iter().map(|p| p.len() as u64).sum(),
        id,
        kind,
        status,
    }
    .encode();
    let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
    all.push(&header);
    all.extend_from_slice(parts);
    write_all_parts(&mut *writer.lock(), &all)
}

/// Read one handshake frame of `kind`.
fn read_handshake<R: Read>(
    reader: &mut BufReader<R>,
    kind: FrameKind,
    peer: &NodeId,
) -> Result<Vec<u8>> {
    let header = read_header(reader, peer)?;
    if header.kind != kind || header.len > MAX_HANDSHAKE_FRAME {
        return Err(Error::protocol(
            peer,
            format!(
                "expected a {kind:?} handshake frame, got {:?} of {} bytes",
                header.kind, header.len
            ),
        ));
    }
    read_payload(reader, header.len, peer)
}

/// A connection's mailbox and its file, removed when the connection ends.
struct MailboxFile {
    mailbox: Arc<Mailbox>,
    path: PathBuf,
}

impl Drop for MailboxFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn create_mailbox(dir: &std::path::Path, peer: &NodeId) -> Result<MailboxFile> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("mbox-{}-{n}", std::process::id()));
    let memory = map_shared(&path, MAILBOX_LEN, true)?;
    let file = MailboxFile {
        mailbox: Arc::new(Mailbox::create(memory, peer.clone())?),
        path,
    };
    Ok(file)
}

/// Run the acceptor's side of the handshake: the connector's proven
/// identity (and the connection's mailbox, if the node offers them), or an
/// error after telling a connector whose proof failed why.
fn handshake<S: Socket>(
    reader: &mut BufReader<PolledReader<S>>,
    writer: &Mutex<S>,
    ctx: &ServerContext,
) -> Result<(PeerIdentity, Option<MailboxFile>)> {
    let unknown = NodeId::from("<unidentified peer>");
    let hello = Hello::decode(
        &read_handshake(reader, FrameKind::Hello, &unknown)?,
        &unknown,
    )?;
    let (accepting, challenge) = Accepting::start(&ctx.credentials, &ctx.node, hello)?;
    let claimed = accepting.claimed().clone();
    let gone = |e: std::io::Error| Error::peer_gone(&claimed, e.to_string());
    write_frame(writer, FrameKind::Challenge, 0, 0, &[&challenge.encode()]).map_err(gone)?;
    let proof = Proof::decode(
        &read_handshake(reader, FrameKind::Proof, &claimed)?,
        &claimed,
    )?;
    match accepting.finish(&ctx.credentials, &proof) {
        Ok(identity) => {
            let mailbox = match &ctx.mailbox_dir {
                Some(dir) => Some(create_mailbox(dir, &identity.node)?),
                None => None,
            };
            let name = mailbox
                .as_ref()
                .and_then(|m| m.path.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            write_frame(writer, FrameKind::Welcome, 0, 0, &[name.as_bytes()]).map_err(gone)?;
            Ok((identity, mailbox))
        }
        Err(e) => {
            let reason = "proof of the cluster token refused";
            let _ = write_frame(writer, FrameKind::Refused, 0, 0, &[reason.as_bytes()]);
            Err(e)
        }
    }
}

/// Serve one connection until the peer closes it or breaks the protocol.
pub fn serve<S: Socket + std::fmt::Debug>(socket: S, ctx: &ServerContext) -> Result<()> {
    let writer = Arc::new(Mutex::new(
        socket
            .try_clone()
            .map_err(|e| Error::io("clone accepted socket", e))?,
    ));
    socket
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(|e| Error::io("set the handshake timeout", e))?;
    let mut reader = BufReader::with_capacity(64 << 10, PolledReader::new(socket, ctx.poll));
    let (identity, mailbox) = handshake(&mut reader, &writer, ctx)?;
    let identity = Arc::new(identity);
    reader
        .get_ref()
        .get_ref()
        .set_read_timeout(None)
        .map_err(|e| Error::io("clear the handshake timeout", e))?;

    let (inbox_tx, inbox_rx) = crossbeam_channel::bounded(INBOX_DEPTH);
    let closed = Arc::new(AtomicBool::new(false));
    ctx.accept.push(
        Box::new(StreamInbound {
            peer: PeerIdentity::clone(&identity),
            writer: Arc::clone(&writer),
            inbox: inbox_rx,
        }),
        Arc::clone(&closed),
    );
    let connection = Served {
        writer: &writer,
        identity: &identity,
        ctx,
        mailbox: mailbox.as_ref().map(|m| &m.mailbox),
    };
    let result = frame_loop(&mut reader, &connection, &inbox_tx);
    closed.store(true, Ordering::Release);
    // The accepted connection's handle keeps the socket open; end it so the
    // peer learns that the connection is over.
    reader.get_ref().get_ref().shut_down();
    match result {
        Err(Error::PeerGone { .. }) => Ok(()),
        other => other,
    }
}

/// One served connection: where its answers go.
struct Served<'a, S> {
    writer: &'a Arc<Mutex<S>>,
    identity: &'a Arc<PeerIdentity>,
    ctx: &'a ServerContext,
    mailbox: Option<&'a Arc<Mailbox>>,
}

impl<S: Socket + std::fmt::Debug> Served<'_, S> {
    /// Hand a request to the dispatcher. Its answer goes back the way the
    /// request came: a request from the mailbox is answered through the
    /// mailbox when the answer fits (else by frame), one that came as a
    /// frame by frame (its peer need not use the mailbox at all).
    fn dispatch(&self, id: u64, request: Cow<'_, [u8]>, by_mailbox: bool) -> Result<()> {
        let mailbox = self.mailbox.filter(|_| by_mailbox);
        if let Some(answer) = self.ctx.dispatcher.quick(self.identity, &request) {
            let (status, response) = match answer {
                Ok(response) => (0, response),
                Err(message) => (1, message.into_bytes()),
            };
            return respond(self.writer, mailbox.map(|m| &**m), id, status, &response)
                .map_err(|e| Error::peer_gone(&self.identity.node, e.to_string()));
        }
        let writer = Arc::clone(self.writer);
        let mailbox = mailbox.cloned();
        self.ctx
            .dispatcher
            .dispatch(self.identity, request.into_owned(), move |answer| {
                let (status, response) = match answer {
                    Ok(response) => (0, response),
                    Err(message) => (1, message.into_bytes()),
                };
                // A failed write means the connection broke; its reader
                // notices and ends it.
                if let Err(e) = respond(&writer, mailbox.as_deref(), id, status, &response) {
                    tracing::debug!(request = id, error = %e, "response not delivered");
                }
            })
    }
}

fn respond<S: Socket>(
    writer: &Mutex<S>,
    mailbox: Option<&Mailbox>,
    id: u64,
    status: u8,
    response: &[u8],
) -> std::io::Result<()> {
    if let Some(mailbox) = mailbox {
        match mailbox.push(id, status, response) {
            Ok(Some(wake)) => {
                if wake {
                    write_frame(writer, FrameKind::Doorbell, 0, 0, &[])?;
                }
                return Ok(());
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "mailbox unusable, answering by frame"),
        }
    }
    write_frame(writer, FrameKind::Response, id, status, &[response])
}

/// Wait until the socket has bytes (`true`) or the mailbox holds a request
/// (`false`): busy-poll for the poll budget (the mailbox on every turn, the
/// socket every 1024 turns, some 10 µs: each check is a system call),
/// then sleep on the socket with the mailbox's sleeping word raised.
fn wait_for_input<S: Socket>(socket: &S, mailbox: &Mailbox, poll: PollMode) -> Result<bool> {
    const SOCKET_CHECK_EVERY: u32 = 1024;
    let readable_now = || socket.wait_readable(Duration::ZERO);
    let mut turn = 0u32;
    let spun = poll.spin_until(Instant::now() + poll.spin(), || {
        if mailbox.ready() {
            return Some(Ok(false));
        }
        turn = turn.wrapping_add(1);
        if turn.is_multiple_of(SOCKET_CHECK_EVERY) {
            return match readable_now() {
                Ok(false) => None,
                Ok(true) => Some(Ok(true)),
                Err(e) => Some(Err(e)),
            };
        }
        None
    });
    let io = |e| Error::io("wait for a request", e);
    if let Some(outcome) = spun {
        return outcome.map_err(io);
    }
    if mailbox.prepare_to_sleep()? {
        return Ok(false);
    }
    // The doorbell arrives on the socket; the periodic look at the mailbox
    // only bounds the damage of a lost wake-up.
    let readable = loop {
        match socket.wait_readable(Duration::from_secs(1)) {
            Ok(true) => break Ok(true),
            Ok(false) if mailbox.ready() => break Ok(false),
            Ok(false) => {}
            Err(e) => break Err(io(e)),
        }
    };
    mailbox.awake();
    readable
}

fn frame_loop<S: Socket + std::fmt::Debug>(
    reader: &mut BufReader<PolledReader<S>>,
    connection: &Served<'_, S>,
    inbox: &Sender<Vec<u8>>,
) -> Result<()> {
    let (writer, ctx) = (connection.writer, connection.ctx);
    let peer = &connection.identity.node;
    let mut bounce = Vec::new();
    loop {
        if let Some(mailbox) = connection.mailbox {
            // Served from the stack copy: a quick request allocates nothing
            // for itself.
            while let Some(served) = mailbox
                .pop_with(|id, _, request| connection.dispatch(id, Cow::Borrowed(request), true))?
            {
                served?;
            }
            let socket = reader.get_ref().get_ref();
            if reader.buffer().is_empty() && !wait_for_input(socket, mailbox, ctx.poll)? {
                continue;
            }
        }
        let header = read_header(reader, peer)?;
        match header.kind {
            FrameKind::Doorbell if header.len == 0 => {}
            FrameKind::Message => {
                let payload = read_bounded(reader, header.len, ctx.max_message, peer)?;
                if inbox.send(payload).is_err() {
                    return Ok(());
                }
            }
            FrameKind::Request => {
                let request = read_bounded(reader, header.len, ctx.max_message, peer)?;
                connection.dispatch(header.id, Cow::Owned(request), false)?;
            }
            FrameKind::Batch => {
                let Some(regions) = &ctx.regions else {
                    return Err(Error::protocol(
                        peer,
                        "one-sided batch on a message-only channel",
                    ));
                };
                let result = execute_batch(reader, header.len, regions, peer, &mut bounce)?;
                write_frame(writer, FrameKind::BatchResult, header.id, 0, &[&result])
                    .map_err(|e| Error::peer_gone(peer, e.to_string()))?;
            }
            other => {
                return Err(Error::protocol(peer, format!("unexpected {other:?} frame")));
            }
        }
    }
}

fn read_header<R: Read>(reader: &mut BufReader<R>, peer: &NodeId) -> Result<Header> {
    let mut raw = [0u8; HEADER_LEN];
    reader
        .read_exact(&mut raw)
        .map_err(|e| Error::peer_gone(peer, e.to_string()))?;
    Header::decode(&raw, peer)
}

fn read_payload<R: Read>(reader: &mut BufReader<R>, len: u64, peer: &NodeId) -> Result<Vec<u8>> {
    let mut payload = vec![0u8; len as usize];
    reader
        .read_exact(&mut payload)
        .map_err(|e| Error::peer_gone(peer, e.to_string()))?;
    Ok(payload)
}

fn read_bounded<R: Read>(
    reader: &mut BufReader<R>,
    len: u64,
    max: usize,
    peer: &NodeId,
) -> Result<Vec<u8>> {
    if len > max as u64 {
        return Err(Error::protocol(
            peer,
            format!("message of {len} bytes exceeds the limit of {max}"),
        ));
    }
    read_payload(reader, len, peer)
}

/// Execute a `Batch` frame of `len` bytes, streaming write data from the
/// socket into region memory; returns the `BatchResult` payload. Operations
/// after the first failure are flushed (their write data is consumed and
/// discarded).
fn execute_batch<R: Read>(
    reader: &mut BufReader<R>,
    len: u64,
    regions: &RegionTable,
    peer: &NodeId,
    bounce: &mut Vec<u8>,
) -> Result<Vec<u8>> {
    let mut remaining = len;
    let mut take = |reader: &mut BufReader<R>, out: &mut [u8]| -> Result<()> {
        if (out.len() as u64) > remaining {
            return Err(Error::protocol(
                peer,
                "batch operation runs past the end of its frame",
            ));
        }
        remaining -= out.len() as u64;
        reader
            .read_exact(out)
            .map_err(|e| Error::peer_gone(peer, e.to_string()))
    };
    let mut count = [0u8; 4];
    take(reader, &mut count)?;
    let count = u32::from_le_bytes(count);
    let mut result = Vec::with_capacity(count as usize * 9);
    let mut failed = false;
    for _ in 0..count {
        let mut prefix = [0u8; OP_PREFIX_LEN + 16];
        take(reader, &mut prefix[..OP_PREFIX_LEN + 8])?;
        if prefix[0] == op::CAS {
            take(reader, &mut prefix[OP_PREFIX_LEN + 8..])?;
        }
        let mut c = Cursor::new(&prefix, peer, "batch operation");
        let (code, region, rkey, offset, arg) = (c.u8()?, c.u64()?, c.u64()?, c.u64()?, c.u64()?);
        let arg2 = c.u64()?;
        let needs = match code {
            op::READ => RemoteOp::Read,
            op::WRITE => RemoteOp::Write,
            _ => RemoteOp::Atomic,
        };
        let target = if failed {
            Err(Error::Flushed { index: 0 })
        } else {
            regions.lookup(region, rkey, needs)
        };
        let outcome: Result<()> = match code {
            op::READ => target.and_then(|memory| {
                let n = usize::try_from(arg).unwrap_or(usize::MAX);
                if usize::try_from(offset).map_or(true, |o| o.saturating_add(n) > memory.len()) {
                    return Err(out_of_bounds(region, offset, arg, &memory));
                }
                let start = result.len() + 1;
                result.push(OpStatus::Ok as u8);
                result.resize(start + n, 0);
                memory.copy_out(offset, &mut result[start..]);
                Ok(())
            }),
            op::WRITE => {
                let checked = target.and_then(|memory| {
                    let end = offset.checked_add(arg);
                    if end.is_none_or(|e| e > memory.len() as u64) {
                        return Err(out_of_bounds(region, offset, arg, &memory));
                    }
                    Ok(memory)
                });
                // The data follows in the frame whether or not it is applied.
                let mut left = arg;
                let mut at = offset;
                while left > 0 {
                    let n = left.min(BOUNCE as u64) as usize;
                    bounce.resize(n, 0);
                    take(reader, &mut bounce[..n])?;
                    if let Ok(memory) = &checked {
                        memory.copy_in(at, &bounce[..n]);
                    }
                    left -= n as u64;
                    at += n as u64;
                }
                checked.map(|_| result.push(OpStatus::Ok as u8))
            }
            op::CAS | op::FETCH_ADD => target.and_then(|memory| {
                let word = memory.word(offset).ok_or_else(|| {
                    if offset % 8 != 0 {
                        Error::Misaligned { region, offset }
                    } else {
                        out_of_bounds(region, offset, 8, &memory)
                    }
                })?;
                let old = if code == op::CAS {
                    match word.compare_exchange(arg, arg2, Ordering::SeqCst, Ordering::SeqCst) {
                        Ok(v) | Err(v) => v,
                    }
                } else {
                    word.fetch_add(arg, Ordering::SeqCst)
                };
                result.push(OpStatus::Ok as u8);
                result.extend_from_slice(&old.to_le_bytes());
                Ok(())
            }),
            other => {
                return Err(Error::protocol(
                    peer,
                    format!("unknown operation code {other}"),
                ));
            }
        };
        if let Err(e) = outcome {
            failed = true;
            result.push(OpStatus::of(&e) as u8);
            match e {
                Error::OutOfBounds { region_len, .. } => {
                    result.extend_from_slice(&region_len.to_le_bytes());
                }
                Error::AccessDenied { access, .. } => result.push(access.bits() as u8),
                _ => {}
            }
        }
    }
    if remaining != 0 {
        return Err(Error::protocol(
            peer,
            format!("{remaining} stray bytes after a batch"),
        ));
    }
    Ok(result)
}

fn out_of_bounds(
    region: u64,
    offset: u64,
    len: u64,
    memory: &crate::region::RegionMemory,
) -> Error {
    Error::OutOfBounds {
        region,
        offset,
        len,
        region_len: memory.len() as u64,
    }
}
