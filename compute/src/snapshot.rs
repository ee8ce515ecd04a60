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

/// A consistent point-in-time view; released on drop.
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

impl Drop for Snapshot {
    fn drop(&mut self) {
        self.list.release(self.seq);
    }
}
