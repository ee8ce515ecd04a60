//! The queue of writers waiting for a group-commit leader (the protocol is
//! in `write`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use o3_storage::batch::WriteBatch;

#[derive(Default)]
pub(crate) struct QueueState {
    pub waiting: VecDeque<(u64, WriteBatch, bool)>,
    pub results: HashMap<u64, Result<(), String>>,
    /// The last group's vector, kept for the next leader's group so that a
    /// lone writer does not allocate one per write.
    pub spare: Vec<(u64, WriteBatch, bool)>,
    pub leader_active: bool,
    pub next_id: u64,
}

/// Writers waiting for a leader.
#[derive(Default)]
pub(crate) struct WriteQueue {
    pub state: Mutex<QueueState>,
    pub cv: Condvar,
    /// Leaderships handed back (groups committed, exclusive sections
    /// ended): a waiting writer polls it before it sleeps.
    handoffs: AtomicU64,
}

/// How long a waiting writer polls for the leadership to change hands
/// before it sleeps on the condition variable. A group commit takes a few
/// microseconds; a sleep and wake-up of the follower costs as much again
/// and, worse, sits on the critical path of every write once two writers
/// take turns (measured: two fillrandom threads wrote fewer keys per second
/// than one). RocksDB's writers wait the same way (adaptive yield).
const POLL_BEFORE_SLEEP: Duration = Duration::from_micros(50);

/// The first part of the poll spins on the core (a group commit usually
/// ends within it); the rest yields the core to others between looks, so
/// that writers outnumbering the cores do not starve the leader.
const SPIN_BEFORE_YIELD: Duration = Duration::from_micros(10);

impl WriteQueue {
    /// Wait until the leadership changes hands (or, after
    /// [`POLL_BEFORE_SLEEP`] of polling, until woken): first polling with
    /// the lock released, yielding the core, then on the condition
    /// variable. The caller checks its condition again after each return.
    pub fn wait(&self, st: &mut MutexGuard<'_, QueueState>) {
        let seen = self.handoffs.load(Ordering::Acquire);
        let handed = MutexGuard::unlocked(st, || {
            let start = Instant::now();
            loop {
                if self.handoffs.load(Ordering::Acquire) != seen {
                    return true;
                }
                let waited = start.elapsed();
                if waited >= POLL_BEFORE_SLEEP {
                    return false;
                }
                if waited < SPIN_BEFORE_YIELD {
                    for _ in 0..64 {
                        std::hint::spin_loop();
                    }
                } else {
                    std::thread::yield_now();
                }
            }
        });
        if !handed && self.handoffs.load(Ordering::Acquire) == seen {
            self.cv.wait(st);
        }
    }

    /// Hand the leadership back (with the state locked) and wake the
    /// waiting writers.
    pub fn hand_off(&self, st: &mut QueueState) {
        st.leader_active = false;
        self.handoffs.fetch_add(1, Ordering::AcqRel);
        self.cv.notify_all();
    }

    /// Become the leader without a batch: no group commits until the
    /// returned guard is dropped (writers queue up meanwhile).
    pub fn exclusive(&self) -> ExclusiveWrites<'_> {
        let mut st = self.state.lock();
        while st.leader_active {
            self.wait(&mut st);
        }
        st.leader_active = true;
        ExclusiveWrites { queue: self }
    }
}

/// Leadership held by [`WriteQueue::exclusive`]; handed back on drop.
pub(crate) struct ExclusiveWrites<'a> {
    queue: &'a WriteQueue,
}

impl Drop for ExclusiveWrites<'_> {
    fn drop(&mut self) {
        let mut st = self.queue.state.lock();
        self.queue.hand_off(&mut st);
    }
}
