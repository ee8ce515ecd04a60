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
