//! One-sided operations: a batch of work requests becomes linked RDMA WRITE,
//! READ, compare-and-swap and fetch-add requests of which only the last is
//! signaled; the NIC executes them in order and a reliable-connected queue
//! pair stops at the first failure.
//!
//! Local buffers must be registered. Small transfers go through a
//! registered staging buffer (one memory copy, no registration cost); a
//! transfer larger than `direct_threshold` registers the caller's buffer for
//! the duration of the operation (no copy, which wins for large transfers).
//! A batch that does not fit the staging buffer runs as several rounds,
//! still in order.

use std::sync::Arc;

use rdma_sys::{ibv_send_flags, ibv_send_wr, ibv_sge, ibv_wc, ibv_wc_status, ibv_wr_opcode};

use super::device::Device;
use super::memory::{MemoryRegion, RegisteredBuffer, local_access};
use super::messages::status_text;
use super::queue_pair::{Pacer, QpDepth, QueuePair};
use crate::error::{Error, Result};
use crate::verbs::{Completion, NodeId, WorkRequest};

/// Work requests posted per round at most (the send queue depth).
pub const MAX_ROUND: usize = 64;

/// How a failed round ended, for the connection to turn into errors.
#[derive(Debug)]
pub enum Failure {
    /// The request at `index` completed with `status`.
    Completion {
        index: usize,
        status: ibv_wc_status::Type,
    },
    /// Posting or polling failed, or the round timed out, starting at `index`.
    Local { index: usize, error: Error },
}

/// The requester's one-sided path on one connection.
///
/// Field order matters: the queue pair goes before the staging buffer.
#[derive(Debug)]
pub struct DataPath {
    qp: Option<QueuePair>,
    staging: RegisteredBuffer,
    direct_threshold: usize,
    device: Arc<Device>,
}

/// Where a request's local bytes live during a round.
#[derive(Clone, Copy, Debug)]
enum Local {
    Staged { offset: usize },
    Direct,
}

impl DataPath {
    pub fn new(
        device: &Arc<Device>,
        staging_bytes: usize,
        direct_threshold: usize,
    ) -> Result<Self> {
        Ok(DataPath {
            qp: None,
            staging: RegisteredBuffer::new(device, staging_bytes, local_access())?,
            direct_threshold: direct_threshold.min(staging_bytes),
            device: Arc::clone(device),
        })
    }

    /// A fresh queue pair (not yet connected) for this path.
    pub fn new_queue_pair(&self) -> Result<QueuePair> {
        let depth = u32::try_from(MAX_ROUND).unwrap_or(64);
        QueuePair::create(
            &self.device,
            QpDepth {
                send: depth,
                recv: 1,
            },
        )
    }

    /// Install a connected queue pair (dropping the previous one).
    pub fn install(&mut self, qp: QueuePair) {
        self.qp = Some(qp);
    }

    /// Whether a connected queue pair is installed; after a failure it is
    /// not, and the connection must install a new one.
    pub fn is_ready(&self) -> bool {
        self.qp.is_some()
    }

    /// Run `batch[start..]` (already validated) in rounds, pushing one
    /// completion per executed request. Stops at the first failure, which it
    /// returns; the queue pair is then destroyed.
    /// `pacer` paces the completion polling and holds the batch's deadline.
    pub fn run(
        &mut self,
        batch: &mut [WorkRequest<'_>],
        start: usize,
        mut pacer: Pacer,
        results: &mut Vec<Result<Completion>>,
    ) -> std::result::Result<(), Failure> {
        let mut next = start;
        while next < batch.len() {
            let end = self.round_end(batch, next);
            if let Err(failure) = self.run_round(&mut batch[..end], next, &mut pacer, results) {
                // Destroying the queue pair guarantees the NIC no longer
                // touches buffers of this round before they are released.
                self.qp = None;
                return Err(failure);
            }
            next = end;
        }
        Ok(())
    }

    /// The end of the round that starts at `start`.
    fn round_end(&self, batch: &[WorkRequest<'_>], start: usize) -> usize {
        let mut used = 0;
        let mut end = start;
        while end < batch.len() && end - start < MAX_ROUND {
            let need = match staged_len(&batch[end], self.direct_threshold) {
                Some(len) => len.next_multiple_of(8),
                None => 0,
            };
            if end > start && used + need > self.staging.len() {
                break;
            }
            used += need;
            end += 1;
        }
        end
    }

    fn run_round(
        &mut self,
        batch: &mut [WorkRequest<'_>],
        start: usize,
        pacer: &mut Pacer,
        results: &mut Vec<Result<Completion>>,
    ) -> std::result::Result<(), Failure> {
        let local_error = |error: Error| Failure::Local {
            index: start,
            error,
        };
        let round = &mut batch[start..];
        let mut places = Vec::with_capacity(round.len());
        let mut direct: Vec<MemoryRegion> = Vec::new();
        let mut sges: Vec<ibv_sge> = Vec::with_capacity(round.len());
        let mut used = 0;
        for wr in round.iter_mut() {
            let (addr, len) = local_bytes(wr);
            let place = match staged_len(wr, self.direct_threshold) {
                Some(staged) => {
                    let offset = used;
                    used += staged.next_multiple_of(8);
                    if let WorkRequest::Write { data, .. } = wr {
                        self.staging.memory().copy_in(offset as u64, data);
                    }
                    sges.push(ibv_sge {
                        addr: self.staging.addr(offset),
                        length: staged as u32,
                        lkey: self.staging.lkey(),
                    });
                    Local::Staged { offset }
                }
                None => {
                    // SAFETY: the caller's buffer outlives this call, and the
                    // registration is dropped before it returns, after the
                    // round completed or its queue pair was destroyed.
                    let mr = unsafe {
                        MemoryRegion::register(&self.device, addr, len, local_access())
                            .map_err(local_error)?
                    };
                    sges.push(ibv_sge {
                        addr: addr as u64,
                        length: u32::try_from(len).map_err(|_| {
                            local_error(Error::InvalidArgument(format!(
                                "transfer of {len} bytes exceeds one RDMA request"
                            )))
                        })?,
                        lkey: mr.lkey(),
                    });
                    direct.push(mr);
                    Local::Direct
                }
            };
            places.push(place);
        }

        // SAFETY: all-zero is a valid value of this plain C struct.
        let mut wrs: Vec<ibv_send_wr> = (0..round.len())
            .map(|_| unsafe { std::mem::zeroed() })
            .collect();
        let last = round.len() - 1;
        for (i, wr) in round.iter().enumerate() {
            let out = &mut wrs[i];
            out.wr_id = (start + i) as u64;
            out.sg_list = &mut sges[i];
            out.num_sge = 1;
            if i == last {
                out.send_flags = ibv_send_flags::IBV_SEND_SIGNALED.0;
            }
            let remote = wr.remote();
            let rkey = u32::try_from(remote.rkey).unwrap_or(0);
            match wr {
                WorkRequest::Read { offset, .. } | WorkRequest::Write { offset, .. } => {
                    out.opcode = if matches!(wr, WorkRequest::Read { .. }) {
                        ibv_wr_opcode::IBV_WR_RDMA_READ
                    } else {
                        ibv_wr_opcode::IBV_WR_RDMA_WRITE
                    };
                    out.wr.rdma.remote_addr = remote.base.wrapping_add(*offset);
                    out.wr.rdma.rkey = rkey;
                }
                WorkRequest::CompareAndSwap {
                    offset,
                    expected,
                    new,
                    ..
                } => {
                    out.opcode = ibv_wr_opcode::IBV_WR_ATOMIC_CMP_AND_SWP;
                    out.wr.atomic.remote_addr = remote.base.wrapping_add(*offset);
                    out.wr.atomic.compare_add = *expected;
                    out.wr.atomic.swap = *new;
                    out.wr.atomic.rkey = rkey;
                }
                WorkRequest::FetchAdd { offset, add, .. } => {
                    out.opcode = ibv_wr_opcode::IBV_WR_ATOMIC_FETCH_AND_ADD;
                    out.wr.atomic.remote_addr = remote.base.wrapping_add(*offset);
                    out.wr.atomic.compare_add = *add;
                    out.wr.atomic.rkey = rkey;
                }
            }
        }
        for i in 0..last {
            let next: *mut ibv_send_wr = &mut wrs[i + 1];
            wrs[i].next = next;
        }

        let qp = self
            .qp
            .as_ref()
            .ok_or_else(|| local_error(Error::InvalidArgument("no queue pair installed".into())))?;
        // SAFETY: `wrs`, `sges`, the staging buffer and the direct
        // registrations stay alive until the signaled completion is polled,
        // or until `run` destroys the queue pair on any failure.
        unsafe { qp.post_send(wrs.as_mut_ptr()).map_err(local_error)? };
        let outcome = wait_round(qp, start, start + last, pacer);
        // Requests before a failed one completed (a reliable-connected queue
        // pair executes in order); after a local failure nothing is known.
        let completed = match &outcome {
            Ok(()) => round.len(),
            Err(Failure::Completion { index, .. }) => index.saturating_sub(start).min(round.len()),
            Err(Failure::Local { .. }) => 0,
        };
        for (wr, place) in round.iter_mut().zip(places).take(completed) {
            results.push(Ok(self.finish(wr, place)));
        }
        drop(direct);
        outcome
    }

    /// The completion of a request that succeeded, with its staged result
    /// copied out.
    fn finish(&self, wr: &mut WorkRequest<'_>, place: Local) -> Completion {
        let staged = match place {
            Local::Staged { offset } => Some(offset as u64),
            Local::Direct => None,
        };
        match wr {
            WorkRequest::Read { buf, .. } => {
                if let Some(offset) = staged {
                    self.staging.memory().copy_out(offset, buf);
                }
                Completion::Read { len: buf.len() }
            }
            WorkRequest::Write { data, .. } => Completion::Write { len: data.len() },
            WorkRequest::CompareAndSwap { .. } | WorkRequest::FetchAdd { .. } => {
                Completion::Atomic {
                    old: staged
                        .and_then(|offset| self.staging.memory().word(offset))
                        .map_or(0, |w| w.load(std::sync::atomic::Ordering::Acquire)),
                }
            }
        }
    }
}

/// Wait until the request with id `last` (signaled) completes, or any
/// request fails, or the pacer's deadline passes.
fn wait_round(
    qp: &QueuePair,
    first: usize,
    last: usize,
    pacer: &mut Pacer,
) -> std::result::Result<(), Failure> {
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut wcs: [ibv_wc; 8] = std::array::from_fn(|_| unsafe { std::mem::zeroed() });
    loop {
        let n = qp.poll_send(&mut wcs).map_err(|error| Failure::Local {
            index: first,
            error,
        })?;
        for wc in &wcs[..n] {
            let index = usize::try_from(wc.wr_id).unwrap_or(first);
            if wc.status != ibv_wc_status::IBV_WC_SUCCESS {
                return Err(Failure::Completion {
                    index,
                    status: wc.status,
                });
            }
            if index == last {
                return Ok(());
            }
        }
        if n == 0 && !pacer.pause() {
            return Err(Failure::Local {
                index: first,
                error: Error::Timeout {
                    op: "rdma one-sided batch",
                    after: pacer.timeout(),
                },
            });
        }
    }
}

/// Bytes of a request that go through staging, or `None` when the caller's
/// buffer is registered directly. Atomics always stage their 8-byte result.
fn staged_len(wr: &WorkRequest<'_>, direct_threshold: usize) -> Option<usize> {
    match wr {
        WorkRequest::Read { buf, .. } => (buf.len() <= direct_threshold).then_some(buf.len()),
        WorkRequest::Write { data, .. } => (data.len() <= direct_threshold).then_some(data.len()),
        WorkRequest::CompareAndSwap { .. } | WorkRequest::FetchAdd { .. } => Some(8),
    }
}

/// The caller's buffer of a read or write.
fn local_bytes(wr: &mut WorkRequest<'_>) -> (*mut u8, usize) {
    match wr {
        WorkRequest::Read { buf, .. } => (buf.as_mut_ptr(), buf.len()),
        // The NIC only reads a write's source; LOCAL_WRITE access is still
        // requested because registration requires it with remote rights.
        WorkRequest::Write { data, .. } => (data.as_ptr().cast_mut(), data.len()),
        WorkRequest::CompareAndSwap { .. } | WorkRequest::FetchAdd { .. } => {
            (std::ptr::null_mut(), 8)
        }
    }
}

/// Turn a completion failure into the transport's error for that request;
/// access errors are diagnosed by the region's owner through `diagnose`.
pub fn completion_error(
    peer: &NodeId,
    index: usize,
    status: ibv_wc_status::Type,
    diagnose: impl FnOnce() -> Error,
) -> Error {
    match status {
        ibv_wc_status::IBV_WC_REM_ACCESS_ERR
        | ibv_wc_status::IBV_WC_REM_INV_REQ_ERR
        | ibv_wc_status::IBV_WC_REM_OP_ERR => diagnose(),
        ibv_wc_status::IBV_WC_WR_FLUSH_ERR => Error::Flushed { index },
        ibv_wc_status::IBV_WC_RETRY_EXC_ERR | ibv_wc_status::IBV_WC_RNR_RETRY_EXC_ERR => {
            Error::peer_gone(peer, format!("request {index}: {}", status_text(status)))
        }
        _ => Error::protocol(peer, format!("request {index}: {}", status_text(status))),
    }
}
