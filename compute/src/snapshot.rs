//! Snapshots pin a sequence number: reads through one ignore newer writes,
//! and compactions keep every version a live snapshot can see.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use o3_storage::key::SequenceNumber;

/// Registered snapshot sequences with their reference counts.
#[derive(Debug, Default, Clone)]
pub(crate) struct SnapshotList {
    live: Arc<Mutex<BTreeMap<SequenceNumber, usize>>>,
}

impl SnapshotList {
    pub(crate) fn acquire(&self, seq: SequenceNumber) -> Snapshot {
        *self.live.lock().entry(seq).or_insert(0) += 1;
        Snapshot {
            seq,
            list: self.clone(),
        }
    }

    /// True when `snapshot` was taken from this list's database.
    pub(crate) fn owns(&self, snapshot: &Snapshot) -> bool {
        Arc::ptr_eq(&self.live, &snapshot.list.live)
    }

    pub(crate) fn oldest(&self) -> Option<SequenceNumber> {
        self.live.lock().keys().next().copied()
    }

    fn release(&self, seq: SequenceNumber) {
        let mut live = self.live.lock();
        if let Some(n) = live.get_mut(&seq) {
            *n -= 1;
            if *n == 0 {
                live.remove(&seq);
            }
        }
    }
}

/// A consistent point-in-time view; released on drop. Cloning registers
/// the same point once more, so a clone keeps it alive on its own (handy
/// for putting a snapshot into [`crate::ReadOptions`]).
#[derive(Debug)]
pub struct Snapshot {
    seq: SequenceNumber,
    list: SnapshotList,
}

impl Snapshot {
    /// The pinned sequence number.
    pub fn sequence(&self) -> SequenceNumber {
        self.seq
    }
}

impl Clone for Snapshot {
    fn clone(&self) -> Self {
        self.list.acquire(self.seq)
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        self.list.release(self.seq);
    }
}
