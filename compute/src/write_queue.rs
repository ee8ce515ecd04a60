//! The queue of writers waiting for a group-commit leader (the protocol is
//! in `write`).

use std::collections::{HashMap, VecDeque};

use parking_lot::{Condvar, Mutex};

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
}

impl WriteQueue {
    /// Become the leader without a batch: no group commits until the
    /// returned guard is dropped (writers queue up meanwhile).
    pub fn exclusive(&self) -> ExclusiveWrites<'_> {
        let mut st = self.state.lock();
        while st.leader_active {
            self.cv.wait(&mut st);
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
        self.queue.state.lock().leader_active = false;
        self.queue.cv.notify_all();
    }
}
