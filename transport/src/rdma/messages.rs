//! Two-sided messages over RDMA SEND/RECV.
//!
//! Each side pre-posts `slots` receive buffers of `chunk` bytes and a
//! receiver thread re-posts each one as soon as its content is consumed. A
//! message longer than a buffer travels as several chunks; every chunk
//! starts with a 24-byte header
//! `kind u8 | last u8 | zero [6] | request id u64 LE | message length u64 LE`.
//! Senders hold the channel's send lock for a whole message, and a
//! reliable-connected queue pair delivers in order, so chunks of different
//! messages never interleave and the receiver reassembles one message at a
//! time. A sender whose peer has no buffer posted is held back by the NIC
//! (receiver-not-ready retries), which is the flow control.
//!
//! Requests go to the node's [`Dispatcher`]: quick ones are answered on the
//! receiver thread, others on a worker, so several requests of one
//! connection run at once and responses may leave out of request order;
//! they are matched to waiting callers by id. The receiver thread polls its
//! completion queue, busy for the poll mode's budget after the last
//! completion, then with short sleeps.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rdma_sys::{
    ibv_recv_wr, ibv_send_flags, ibv_send_wr, ibv_sge, ibv_wc, ibv_wc_status, ibv_wr_opcode,
};

use super::device::Device;
use super::memory::{RegisteredBuffer, local_access};
use super::queue_pair::{Pacer, QpDepth, QueuePair};
use crate::dispatch::Dispatcher;
use crate::error::{Error, Result};
use crate::identity::PeerIdentity;
use crate::poll::PollMode;
use crate::verbs::{CallWait, NodeId};

const HEADER_LEN: usize = 24;
const KIND_MESSAGE: u8 = 1;
const KIND_REQUEST: u8 = 2;
const KIND_RESPONSE: u8 = 3;
const KIND_RESPONSE_ERROR: u8 = 4;

/// Sizes of the receive side.
#[derive(Clone, Copy, Debug)]
pub struct MessageBuffers {
    /// Bytes per receive buffer (header included); also the largest chunk.
    pub chunk: usize,
    /// Receive buffers kept posted.
    pub slots: usize,
}

type Reply = std::result::Result<Vec<u8>, String>;

/// How the owner's end of a channel serves requests: the node's dispatcher
/// and the identity the peer proved in the handshake.
#[derive(Debug)]
pub struct Serving {
    pub dispatcher: Arc<Dispatcher>,
    pub from: Arc<PeerIdentity>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Calls in flight; `Some` once their response arrived.
    replies: HashMap<u64, Option<Reply>>,
    inbox: VecDeque<Vec<u8>>,
    gone: Option<String>,
}

/// One side of the message queue pair of a connection.
///
/// Field order matters: the queue pair is destroyed before the buffers it
/// references are deregistered.
#[derive(Debug)]
pub struct MessageChannel {
    qp: QueuePair,
    send: Mutex<RegisteredBuffer>,
    recv: RegisteredBuffer,
    buffers: MessageBuffers,
    peer: NodeId,
    max_message: usize,
    op_timeout: Duration,
    poll: PollMode,
    serving: Option<Serving>,
    state: Mutex<Shared>,
    cond: Condvar,
    next_id: AtomicU64,
    stop: AtomicBool,
}

impl MessageChannel {
    /// Create the queue pair and buffers; `serving` serves the peer's
    /// requests (the owner side) or is `None` (requests are refused).
    pub fn new(
        device: &Arc<Device>,
        peer: NodeId,
        buffers: MessageBuffers,
        max_message: usize,
        op_timeout: Duration,
        poll: PollMode,
        serving: Option<Serving>,
    ) -> Result<Self> {
        if buffers.chunk <= HEADER_LEN || buffers.slots == 0 {
            return Err(Error::InvalidArgument(format!(
                "message buffers of {} bytes × {} (need > {HEADER_LEN} bytes and ≥ 1 slot)",
                buffers.chunk, buffers.slots
            )));
        }
        let slots = u32::try_from(buffers.slots)
            .map_err(|_| Error::InvalidArgument(format!("{} receive slots", buffers.slots)))?;
        let qp = QueuePair::create(
            device,
            QpDepth {
                send: 4,
                recv: slots,
            },
        )?;
        let send = RegisteredBuffer::new(device, buffers.chunk, local_access())?;
        let recv = RegisteredBuffer::new(device, buffers.chunk * buffers.slots, local_access())?;
        let channel = MessageChannel {
            qp,
            send: Mutex::new(send),
            recv,
            buffers,
            peer,
            max_message,
            op_timeout,
            poll,
            serving,
            state: Mutex::new(Shared::default()),
            cond: Condvar::new(),
            next_id: AtomicU64::new(1),
            stop: AtomicBool::new(false),
        };
        for slot in 0..buffers.slots {
            channel.post_slot(slot)?;
        }
        Ok(channel)
    }

    pub fn queue_pair(&self) -> &QueuePair {
        &self.qp
    }

    /// Start the receiver thread (after the queue pair is connected).
    pub fn spawn_receiver(self: &Arc<Self>) -> Result<()> {
        let channel = Arc::clone(self);
        std::thread::Builder::new()
            .name(format!("o3-rdma-recv {}", self.peer))
            .spawn(move || channel.receive_loop())
            .map(|_| ())
            .map_err(|e| Error::io("spawn rdma receiver thread", e))
    }

    /// Tear down: waiters fail with `PeerGone`, the receiver thread exits.
    pub fn close(&self, reason: &str) {
        self.stop.store(true, Ordering::Release);
        self.mark_gone(reason);
        // Flushes the posted receives so the receiver thread wakes up.
        self.qp.fail();
    }

    /// Send a one-way message.
    pub fn send_message(&self, message: &[u8]) -> Result<()> {
        self.send_frames(KIND_MESSAGE, 0, message)
    }

    /// Receive the next one-way message, waiting at most `timeout`.
    pub fn recv_message(&self, timeout: Duration) -> Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock();
        loop {
            if let Some(message) = state.inbox.pop_front() {
                return Ok(message);
            }
            if let Some(reason) = &state.gone {
                return Err(Error::peer_gone(&self.peer, reason.clone()));
            }
            if self.cond.wait_until(&mut state, deadline).timed_out() && state.inbox.is_empty() {
                return Err(Error::Timeout {
                    op: "rdma recv",
                    after: timeout,
                });
            }
        }
    }

    /// Send a request; the returned waiter yields its response.
    pub fn start_call(self: &Arc<Self>, request: &[u8]) -> Result<CallWaiter> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.state.lock().replies.insert(id, None);
        let waiter = CallWaiter {
            channel: Arc::clone(self),
            id,
            deadline: Instant::now() + self.op_timeout,
        };
        self.send_frames(KIND_REQUEST, id, request)?;
        Ok(waiter)
    }

    fn send_frames(&self, kind: u8, id: u64, payload: &[u8]) -> Result<()> {
        if payload.len() > self.max_message {
            return Err(Error::InvalidArgument(format!(
                "message of {} bytes exceeds the limit of {}",
                payload.len(),
                self.max_message
            )));
        }
        if let Some(reason) = &self.state.lock().gone {
            return Err(Error::peer_gone(&self.peer, reason.clone()));
        }
        let room = self.buffers.chunk - HEADER_LEN;
        let buffer = self.send.lock();
        let mut sent = 0;
        loop {
            let take = (payload.len() - sent).min(room);
            let last = sent + take == payload.len();
            let mut header = [0u8; HEADER_LEN];
            header[0] = kind;
            header[1] = u8::from(last);
            header[8..16].copy_from_slice(&id.to_le_bytes());
            header[16..24].copy_from_slice(&(payload.len() as u64).to_le_bytes());
            buffer.memory().copy_in(0, &header);
            buffer
                .memory()
                .copy_in(HEADER_LEN as u64, &payload[sent..sent + take]);
            self.post_and_wait_send(&buffer, HEADER_LEN + take)?;
            sent += take;
            if last {
                return Ok(());
            }
        }
    }

    fn post_and_wait_send(&self, buffer: &RegisteredBuffer, len: usize) -> Result<()> {
        let mut sge = ibv_sge {
            addr: buffer.addr(0),
            length: len as u32,
            lkey: buffer.lkey(),
        };
        // SAFETY: all-zero is a valid value of this plain C struct.
        let mut wr: ibv_send_wr = unsafe { std::mem::zeroed() };
        wr.sg_list = &mut sge;
        wr.num_sge = 1;
        wr.opcode = ibv_wr_opcode::IBV_WR_SEND;
        wr.send_flags = ibv_send_flags::IBV_SEND_SIGNALED.0;
        // SAFETY: `wr`, `sge` and the buffer (locked by the caller) outlive
        // the wait below; on timeout the queue pair is failed, so the NIC
        // stops using them before they go away.
        unsafe { self.qp.post_send(&mut wr)? };
        // SAFETY: all-zero is a valid value of this plain C struct.
        let mut wc: [ibv_wc; 1] = [unsafe { std::mem::zeroed() }];
        let mut pacer = Pacer::new(self.op_timeout, self.poll);
        loop {
            if self.qp.poll_send(&mut wc)? == 1 {
                if wc[0].status == ibv_wc_status::IBV_WC_SUCCESS {
                    return Ok(());
                }
                let reason = format!("send failed: {}", status_text(wc[0].status));
                self.close(&reason);
                return Err(Error::peer_gone(&self.peer, reason));
            }
            if !pacer.pause() {
                self.close("send timed out");
                return Err(Error::Timeout {
                    op: "rdma send",
                    after: self.op_timeout,
                });
            }
        }
    }

    fn post_slot(&self, slot: usize) -> Result<()> {
        let mut sge = ibv_sge {
            addr: self.recv.addr(slot * self.buffers.chunk),
            length: self.buffers.chunk as u32,
            lkey: self.recv.lkey(),
        };
        // SAFETY: all-zero is a valid value of this plain C struct.
        let mut wr: ibv_recv_wr = unsafe { std::mem::zeroed() };
        wr.wr_id = slot as u64;
        wr.sg_list = &mut sge;
        wr.num_sge = 1;
        // SAFETY: the verbs library copies the request while posting; the
        // buffer slot belongs to `self.recv`, which outlives the queue pair.
        unsafe { self.qp.post_recv(&mut wr) }
    }

    fn receive_loop(self: Arc<Self>) {
        if let Err(e) = self.receive_messages() {
            if !self.stop.load(Ordering::Acquire) {
                tracing::warn!(peer = %self.peer, error = %e, "rdma message channel failed");
            }
            self.mark_gone(&e.to_string());
        }
    }

    fn receive_messages(self: &Arc<Self>) -> Result<()> {
        // SAFETY: all-zero is a valid value of this plain C struct.
        let mut wcs: [ibv_wc; 16] = std::array::from_fn(|_| unsafe { std::mem::zeroed() });
        let mut assembly: Option<(u8, u64, Vec<u8>)> = None;
        let mut idle = 0u32;
        let mut last_completion = Instant::now();
        let spin = self.poll.spin();
        while !self.stop.load(Ordering::Acquire) {
            let n = self.qp.poll_recv(&mut wcs)?;
            if n == 0 {
                idle = idle.saturating_add(1);
                if idle > 2000 && last_completion.elapsed() >= spin {
                    std::thread::sleep(Duration::from_micros(50));
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
            idle = 0;
            last_completion = Instant::now();
            for wc in &wcs[..n] {
                if wc.status != ibv_wc_status::IBV_WC_SUCCESS {
                    return Err(Error::peer_gone(
                        &self.peer,
                        format!("receive failed: {}", status_text(wc.status)),
                    ));
                }
                let slot = usize::try_from(wc.wr_id).unwrap_or(usize::MAX);
                if slot >= self.buffers.slots {
                    return Err(Error::protocol(
                        &self.peer,
                        format!("unknown receive slot {slot}"),
                    ));
                }
                let len = (wc.byte_len as usize).min(self.buffers.chunk);
                let complete = self.take_chunk(slot, len, &mut assembly)?;
                self.post_slot(slot)?;
                if let Some((kind, id, payload)) = complete {
                    self.dispatch(kind, id, payload)?;
                }
            }
        }
        Ok(())
    }

    /// Append the chunk in `slot` to the message being assembled; returns
    /// the message when this chunk was its last.
    fn take_chunk(
        &self,
        slot: usize,
        len: usize,
        assembly: &mut Option<(u8, u64, Vec<u8>)>,
    ) -> Result<Option<(u8, u64, Vec<u8>)>> {
        let at = (slot * self.buffers.chunk) as u64;
        let offset_note =
            |what: &str| format!("{what} (chunk in receive slot {slot}, {len} bytes)");
        if len < HEADER_LEN {
            return Err(Error::protocol(
                &self.peer,
                offset_note("chunk shorter than its header"),
            ));
        }
        let mut header = [0u8; HEADER_LEN];
        self.recv.memory().copy_out(at, &mut header);
        let kind = header[0];
        let last = header[1] != 0;
        let id = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
        let total = u64::from_le_bytes(header[16..24].try_into().unwrap_or_default());
        if !(KIND_MESSAGE..=KIND_RESPONSE_ERROR).contains(&kind) {
            return Err(Error::protocol(
                &self.peer,
                offset_note(&format!("unknown kind {kind}")),
            ));
        }
        if total > self.max_message as u64 {
            return Err(Error::protocol(
                &self.peer,
                offset_note(&format!(
                    "message of {total} bytes over the limit {}",
                    self.max_message
                )),
            ));
        }
        let (_, _, payload) =
            assembly.get_or_insert_with(|| (kind, id, Vec::with_capacity(total as usize)));
        let start = payload.len();
        let body = len - HEADER_LEN;
        if (start + body) as u64 > total {
            return Err(Error::protocol(
                &self.peer,
                offset_note("chunks longer than the message"),
            ));
        }
        payload.resize(start + body, 0);
        self.recv
            .memory()
            .copy_out(at + HEADER_LEN as u64, &mut payload[start..]);
        if !last {
            return Ok(None);
        }
        if payload.len() as u64 != total {
            return Err(Error::protocol(
                &self.peer,
                offset_note("message shorter than announced"),
            ));
        }
        Ok(assembly.take())
    }

    fn dispatch(self: &Arc<Self>, kind: u8, id: u64, payload: Vec<u8>) -> Result<()> {
        match kind {
            KIND_MESSAGE => {
                self.state.lock().inbox.push_back(payload);
                self.cond.notify_all();
            }
            KIND_REQUEST => {
                let Some(serving) = &self.serving else {
                    let refusal = "this endpoint serves no requests";
                    return self.send_frames(KIND_RESPONSE_ERROR, id, refusal.as_bytes());
                };
                let channel = Arc::clone(self);
                serving
                    .dispatcher
                    .dispatch(&serving.from, payload, move |answer| {
                        let sent = match answer {
                            Ok(response) => channel.send_frames(KIND_RESPONSE, id, &response),
                            Err(message) => {
                                channel.send_frames(KIND_RESPONSE_ERROR, id, message.as_bytes())
                            }
                        };
                        // A failed send closes the channel; its waiters
                        // see why.
                        if let Err(e) = sent {
                            tracing::debug!(request = id, error = %e, "response not delivered");
                        }
                    })?;
            }
            _ => {
                let reply = if kind == KIND_RESPONSE {
                    Ok(payload)
                } else {
                    Err(String::from_utf8_lossy(&payload).into_owned())
                };
                let mut state = self.state.lock();
                // A response nobody waits for any more is dropped.
                if let Some(slot) = state.replies.get_mut(&id) {
                    *slot = Some(reply);
                    self.cond.notify_all();
                }
            }
        }
        Ok(())
    }

    fn mark_gone(&self, reason: &str) {
        let mut state = self.state.lock();
        state.gone.get_or_insert_with(|| reason.to_string());
        self.cond.notify_all();
    }
}

/// Waits for one response; dropping it forgets the call.
#[derive(Debug)]
pub struct CallWaiter {
    channel: Arc<MessageChannel>,
    id: u64,
    deadline: Instant,
}

impl CallWait for CallWaiter {
    fn wait(self: Box<Self>) -> Result<Vec<u8>> {
        let channel = &self.channel;
        // Busy-poll for the response first when the connection says so (the
        // receiver thread files it without a wake-up reaching us).
        channel.poll.spin_until(self.deadline, || {
            let state = channel.state.lock();
            (matches!(state.replies.get(&self.id), Some(Some(_))) || state.gone.is_some())
                .then_some(())
        });
        let mut state = channel.state.lock();
        loop {
            if let Some(Some(_)) = state.replies.get(&self.id) {
                let reply = state.replies.remove(&self.id).flatten();
                return match reply {
                    Some(Ok(response)) => Ok(response),
                    Some(Err(message)) => Err(Error::Remote {
                        peer: channel.peer.clone(),
                        message,
                    }),
                    None => Err(Error::protocol(&channel.peer, "response vanished")),
                };
            }
            if let Some(reason) = &state.gone {
                return Err(Error::peer_gone(&channel.peer, reason.clone()));
            }
            if channel
                .cond
                .wait_until(&mut state, self.deadline)
                .timed_out()
            {
                return Err(Error::Timeout {
                    op: "rdma call",
                    after: channel.op_timeout,
                });
            }
        }
    }
}

impl Drop for CallWaiter {
    fn drop(&mut self) {
        self.channel.state.lock().replies.remove(&self.id);
    }
}

/// The verbs library's name for a completion status.
pub fn status_text(status: ibv_wc_status::Type) -> String {
    // SAFETY: returns a static NUL-terminated string for any value.
    let text = unsafe { std::ffi::CStr::from_ptr(rdma_sys::ibv_wc_status_str(status)) };
    format!("{} ({status})", text.to_string_lossy())
}
