//! Reliable-connected queue pairs: creation, the RESET → INIT → RTR → RTS
//! transitions, posting work requests and polling completions with a
//! deadline.

use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdma_sys::{
    ibv_cq, ibv_create_cq, ibv_create_qp, ibv_destroy_cq, ibv_destroy_qp, ibv_modify_qp,
    ibv_poll_cq, ibv_post_recv, ibv_post_send, ibv_qp, ibv_qp_attr, ibv_qp_attr_mask,
    ibv_qp_init_attr, ibv_qp_state, ibv_qp_type, ibv_recv_wr, ibv_send_wr, ibv_wc,
};

use super::device::Device;
use super::memory::remote_access;
use crate::error::{Error, Result};
use crate::poll::PollMode;

/// What a peer needs to connect its queue pair to ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QpEndpoint {
    pub qpn: u32,
    pub psn: u32,
    pub lid: u16,
    pub gid: [u8; 16],
}

/// Queue depths of one queue pair.
#[derive(Clone, Copy, Debug)]
pub struct QpDepth {
    pub send: u32,
    pub recv: u32,
}

/// A queue pair with its own send and receive completion queues. Dropping
/// it destroys the queue pair first, which discards its outstanding work;
/// buffers it referenced may be released afterwards.
#[derive(Debug)]
pub struct QueuePair {
    qp: NonNull<ibv_qp>,
    send_cq: NonNull<ibv_cq>,
    recv_cq: NonNull<ibv_cq>,
    psn: u32,
    device: Arc<Device>,
}

// SAFETY: posting and polling are thread-safe in libibverbs; callers
// serialise use of each completion queue (see `poll_send` / `poll_recv`).
unsafe impl Send for QueuePair {}
// SAFETY: as above.
unsafe impl Sync for QueuePair {}

impl QueuePair {
    /// Create a queue pair and move it to INIT with remote access enabled.
    pub fn create(device: &Arc<Device>, depth: QpDepth) -> Result<Self> {
        let send_cq = create_cq(device, depth.send)?;
        let recv_cq = match create_cq(device, depth.recv) {
            Ok(cq) => cq,
            Err(e) => {
                // SAFETY: created above, unused.
                unsafe { ibv_destroy_cq(send_cq.as_ptr()) };
                return Err(e);
            }
        };
        // SAFETY: all-zero is a valid value of this plain C struct.
        let mut init: ibv_qp_init_attr = unsafe { std::mem::zeroed() };
        init.send_cq = send_cq.as_ptr();
        init.recv_cq = recv_cq.as_ptr();
        init.qp_type = ibv_qp_type::IBV_QPT_RC;
        init.cap.max_send_wr = depth.send;
        init.cap.max_recv_wr = depth.recv;
        init.cap.max_send_sge = 1;
        init.cap.max_recv_sge = 1;
        // SAFETY: valid PD and init attributes naming live CQs.
        let qp = unsafe { ibv_create_qp(device.pd(), &mut init) };
        let Some(qp) = NonNull::new(qp) else {
            let err = std::io::Error::last_os_error();
            // SAFETY: created above, unused.
            unsafe {
                ibv_destroy_cq(send_cq.as_ptr());
                ibv_destroy_cq(recv_cq.as_ptr());
            }
            return Err(Error::io(
                format!("ibv_create_qp on {}", device.name()),
                err,
            ));
        };
        let qp = QueuePair {
            qp,
            send_cq,
            recv_cq,
            psn: initial_psn(),
            device: Arc::clone(device),
        };
        // SAFETY: all-zero is a valid value of this plain C struct.
        let mut attr: ibv_qp_attr = unsafe { std::mem::zeroed() };
        attr.qp_state = ibv_qp_state::IBV_QPS_INIT;
        attr.pkey_index = 0;
        attr.port_num = device.port();
        attr.qp_access_flags = remote_access().0;
        qp.modify(
            &mut attr,
            ibv_qp_attr_mask::IBV_QP_STATE
                | ibv_qp_attr_mask::IBV_QP_PKEY_INDEX
                | ibv_qp_attr_mask::IBV_QP_PORT
                | ibv_qp_attr_mask::IBV_QP_ACCESS_FLAGS,
            "INIT",
        )?;
        Ok(qp)
    }

    /// Our side of the connection, to send to the peer.
    pub fn endpoint(&self) -> QpEndpoint {
        QpEndpoint {
            // SAFETY: `qp` is valid until drop.
            qpn: unsafe { self.qp.as_ref().qp_num },
            psn: self.psn,
            lid: self.device.lid(),
            gid: self.device.gid(),
        }
    }

    /// Connect to `remote`: INIT → RTR → RTS. Addressing is always global
    /// (GRH), which RoCE requires and InfiniBand accepts.
    pub fn connect(&self, remote: &QpEndpoint) -> Result<()> {
        let device = &self.device;
        // SAFETY: all-zero is a valid value of this plain C struct.
        let mut attr: ibv_qp_attr = unsafe { std::mem::zeroed() };
        attr.qp_state = ibv_qp_state::IBV_QPS_RTR;
        attr.path_mtu = device.active_mtu();
        attr.dest_qp_num = remote.qpn;
        attr.rq_psn = remote.psn;
        attr.max_dest_rd_atomic = device.max_rd_atomic();
        attr.min_rnr_timer = 12;
        attr.ah_attr.is_global = 1;
        attr.ah_attr.dlid = remote.lid;
        attr.ah_attr.sl = 0;
        attr.ah_attr.src_path_bits = 0;
        attr.ah_attr.port_num = device.port();
        attr.ah_attr.grh.dgid.raw = remote.gid;
        attr.ah_attr.grh.sgid_index = device.gid_index();
        attr.ah_attr.grh.hop_limit = 64;
        self.modify(
            &mut attr,
            ibv_qp_attr_mask::IBV_QP_STATE
                | ibv_qp_attr_mask::IBV_QP_AV
                | ibv_qp_attr_mask::IBV_QP_PATH_MTU
                | ibv_qp_attr_mask::IBV_QP_DEST_QPN
                | ibv_qp_attr_mask::IBV_QP_RQ_PSN
                | ibv_qp_attr_mask::IBV_QP_MAX_DEST_RD_ATOMIC
                | ibv_qp_attr_mask::IBV_QP_MIN_RNR_TIMER,
            "RTR",
        )?;

        // SAFETY: all-zero is a valid value of this plain C struct.
        let mut attr: ibv_qp_attr = unsafe { std::mem::zeroed() };
        attr.qp_state = ibv_qp_state::IBV_QPS_RTS;
        // 4.096 µs · 2^14 ≈ 67 ms per try, 7 tries: a dead peer surfaces as
        // a retry-exceeded completion in about half a second.
        attr.timeout = 14;
        attr.retry_cnt = 7;
        // 7 = retry forever while the peer has no receive posted; the
        // operation timeout bounds the wait instead.
        attr.rnr_retry = 7;
        attr.sq_psn = self.psn;
        attr.max_rd_atomic = device.max_rd_atomic();
        self.modify(
            &mut attr,
            ibv_qp_attr_mask::IBV_QP_STATE
                | ibv_qp_attr_mask::IBV_QP_TIMEOUT
                | ibv_qp_attr_mask::IBV_QP_RETRY_CNT
                | ibv_qp_attr_mask::IBV_QP_RNR_RETRY
                | ibv_qp_attr_mask::IBV_QP_SQ_PSN
                | ibv_qp_attr_mask::IBV_QP_MAX_QP_RD_ATOMIC,
            "RTS",
        )
    }

    /// Move to the error state: outstanding work completes with flush errors
    /// and the NIC stops touching the buffers it referenced.
    pub fn fail(&self) {
        // SAFETY: all-zero is a valid value of this plain C struct.
        let mut attr: ibv_qp_attr = unsafe { std::mem::zeroed() };
        attr.qp_state = ibv_qp_state::IBV_QPS_ERR;
        if let Err(e) = self.modify(&mut attr, ibv_qp_attr_mask::IBV_QP_STATE, "ERR") {
            tracing::warn!(error = %e, "cannot move a queue pair to the error state");
        }
    }

    fn modify(&self, attr: &mut ibv_qp_attr, mask: ibv_qp_attr_mask, state: &str) -> Result<()> {
        let mask = libc::c_int::try_from(mask.0)
            .map_err(|_| Error::InvalidArgument(format!("qp attribute mask {:#x}", mask.0)))?;
        // SAFETY: valid QP and a fully initialised attribute struct.
        let rc = unsafe { ibv_modify_qp(self.qp.as_ptr(), attr, mask) };
        if rc != 0 {
            return Err(Error::io(
                format!("ibv_modify_qp to {state} on {}", self.device.name()),
                std::io::Error::from_raw_os_error(rc),
            ));
        }
        Ok(())
    }

    /// Post a linked list of send work requests.
    ///
    /// # Safety
    /// Every request and the buffers its scatter/gather entries name must
    /// stay valid until its completion has been polled or the queue pair has
    /// been moved to the error state and drained, or destroyed.
    pub unsafe fn post_send(&self, first: *mut ibv_send_wr) -> Result<()> {
        let mut bad: *mut ibv_send_wr = std::ptr::null_mut();
        // SAFETY: valid QP; the caller guarantees the requests' validity.
        let rc = unsafe { ibv_post_send(self.qp.as_ptr(), first, &mut bad) };
        if rc != 0 {
            return Err(Error::io(
                format!("ibv_post_send on {}", self.device.name()),
                std::io::Error::from_raw_os_error(rc),
            ));
        }
        Ok(())
    }

    /// Post one receive work request.
    ///
    /// # Safety
    /// As for [`QueuePair::post_send`].
    pub unsafe fn post_recv(&self, wr: *mut ibv_recv_wr) -> Result<()> {
        let mut bad: *mut ibv_recv_wr = std::ptr::null_mut();
        // SAFETY: valid QP; the caller guarantees the request's validity.
        let rc = unsafe { ibv_post_recv(self.qp.as_ptr(), wr, &mut bad) };
        if rc != 0 {
            return Err(Error::io(
                format!("ibv_post_recv on {}", self.device.name()),
                std::io::Error::from_raw_os_error(rc),
            ));
        }
        Ok(())
    }

    /// Poll the send completion queue once into `out`; returns how many
    /// completions were written. Only one thread may poll it at a time.
    pub fn poll_send(&self, out: &mut [ibv_wc]) -> Result<usize> {
        poll(self.send_cq, out)
    }

    /// Poll the receive completion queue once; as for `poll_send`.
    pub fn poll_recv(&self, out: &mut [ibv_wc]) -> Result<usize> {
        poll(self.recv_cq, out)
    }
}

impl Drop for QueuePair {
    fn drop(&mut self) {
        // SAFETY: created in `create`; the QP goes first, then its CQs.
        unsafe {
            ibv_destroy_qp(self.qp.as_ptr());
            ibv_destroy_cq(self.send_cq.as_ptr());
            ibv_destroy_cq(self.recv_cq.as_ptr());
        }
    }
}

fn create_cq(device: &Device, depth: u32) -> Result<NonNull<ibv_cq>> {
    let cqe = libc::c_int::try_from(depth)
        .map_err(|_| Error::InvalidArgument(format!("queue depth {depth}")))?;
    // SAFETY: valid context; no completion channel.
    let cq = unsafe {
        ibv_create_cq(
            device.context(),
            cqe,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    NonNull::new(cq).ok_or_else(|| {
        Error::io(
            format!("ibv_create_cq on {}", device.name()),
            std::io::Error::last_os_error(),
        )
    })
}

fn poll(cq: NonNull<ibv_cq>, out: &mut [ibv_wc]) -> Result<usize> {
    let max = i32::try_from(out.len()).unwrap_or(i32::MAX);
    // SAFETY: valid CQ and room for `max` completions.
    let n = unsafe { ibv_poll_cq(cq.as_ptr(), max, out.as_mut_ptr()) };
    usize::try_from(n).map_err(|_| {
        Error::io(
            "ibv_poll_cq",
            std::io::Error::other(format!("returned {n}")),
        )
    })
}

/// Wait strategy for completion polling: spin (for the poll mode's budget,
/// and at least a short burst since completions of small operations arrive
/// within microseconds), then yield, then sleep, so an idle waiter does not
/// burn a core for long.
#[derive(Debug)]
pub struct Pacer {
    started: Instant,
    timeout: Duration,
    deadline: Instant,
    spin: Duration,
    spins: u32,
}

impl Pacer {
    pub fn new(timeout: Duration, poll: PollMode) -> Self {
        let started = Instant::now();
        Pacer {
            started,
            timeout,
            deadline: started + timeout,
            spin: poll.spin(),
            spins: 0,
        }
    }

    /// The time this pacer allows in all.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Pause before the next poll; `false` once the deadline has passed.
    pub fn pause(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        self.spins = self.spins.saturating_add(1);
        let elapsed = now - self.started;
        if self.spins < 1000 || elapsed < self.spin {
            std::hint::spin_loop();
        } else if elapsed < self.spin + Duration::from_millis(2) {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(100));
        }
        true
    }
}

/// A random 24-bit packet sequence number, so a stale packet from an old
/// queue pair with a reused number is not taken as in sequence.
fn initial_psn() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (bits as u32) & 0x00ff_ffff
}
