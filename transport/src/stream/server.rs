//! The owner's end of a framed stream connection: one thread per connection
//! runs the handshake ([`crate::handshake`]), then reads frames in order.
//! Requests go to the node's [`Dispatcher`] (quick ones are answered inline,
//! others on a worker, so several run at once; responses carry the request
//! id). For the `tcp` backend the thread also emulates the NIC: `Batch`
//! frames are executed in order against the node's [`RegionTable`] without
//! involving the application.

use std::io::{BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;

use crate::accept::AcceptQueue;
use crate::access::RemoteOp;
use crate::dispatch::Dispatcher;
use crate::error::{Error, Result};
use crate::handshake::{Accepting, Hello, Proof};
use crate::identity::{Credentials, PeerIdentity};
use crate::poll::PollMode;
use crate::registry::RegionTable;
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

/// Run the acceptor's side of the handshake: the connector's proven
/// identity, or an error after telling a connector whose proof failed why.
fn handshake<S: Socket>(
    reader: &mut BufReader<PolledReader<S>>,
    writer: &Mutex<S>,
    ctx: &ServerContext,
) -> Result<PeerIdentity> {
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
            write_frame(writer, FrameKind::Welcome, 0, 0, &[]).map_err(gone)?;
            Ok(identity)
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
    let identity = Arc::new(handshake(&mut reader, &writer, ctx)?);
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
    let result = frame_loop(&mut reader, &writer, &identity, ctx, &inbox_tx);
    closed.store(true, Ordering::Release);
    match result {
        Err(Error::PeerGone { .. }) => Ok(()),
        other => other,
    }
}

fn frame_loop<S: Socket + std::fmt::Debug>(
    reader: &mut BufReader<PolledReader<S>>,
    writer: &Arc<Mutex<S>>,
    identity: &Arc<PeerIdentity>,
    ctx: &ServerContext,
    inbox: &Sender<Vec<u8>>,
) -> Result<()> {
    let peer = &identity.node;
    let mut bounce = Vec::new();
    loop {
        let header = read_header(reader, peer)?;
        match header.kind {
            FrameKind::Message => {
                let payload = read_bounded(reader, header.len, ctx.max_message, peer)?;
                if inbox.send(payload).is_err() {
                    return Ok(());
                }
            }
            FrameKind::Request => {
                let request = read_bounded(reader, header.len, ctx.max_message, peer)?;
                let writer = Arc::clone(writer);
                let id = header.id;
                ctx.dispatcher.dispatch(identity, request, move |answer| {
                    let (status, response) = match answer {
                        Ok(response) => (0, response),
                        Err(message) => (1, message.into_bytes()),
                    };
                    // A failed write means the connection broke; its reader
                    // notices and ends it.
                    if let Err(e) =
                        write_frame(&writer, FrameKind::Response, id, status, &[&response])
                    {
                        tracing::debug!(request = id, error = %e, "response not delivered");
                    }
                })?;
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
