//! Range deletions: a [`RangeTombstone`] deletes every key in `[start, end)`
//! written before it (RocksDB's `DeleteRange`), in O(1) space and time to
//! write, instead of one point tombstone per key.
//!
//! Where range tombstones live (they are never entries of a memtable arena
//! or an SST, so neither format changes):
//! - in the WAL, as a write-batch operation (`docs/wal_format.md`);
//! - while unflushed, in a side list of the active memtable of each shard
//!   the range touches ([`crate::memtable::Memtable::add_range_tombstone`]);
//!   a range spanning several shards is split at the shard boundaries
//!   ([`RangeTombstone::split_at_shards`]) and every piece keeps the
//!   sequence of the write;
//! - once flushed, in the [`crate::version::Version`], tagged with their
//!   shard and recorded in the manifest (`docs/manifest_format.md`).
//!
//! Readers query a [`RangeTombstoneSet`]: the tombstones fragmented into
//! non-overlapping intervals, so "the newest tombstone covering this key
//! visible at this snapshot" is one binary search. A point entry of `key`
//! with sequence `s` is deleted for a reader at snapshot `S` when a tombstone
//! `t` with `t.start <= key < t.end` and `s < t.seq <= S` exists.
//!
//! Compactions drop entries that a tombstone visible to every reader covers
//! (`crate::compaction::CompactionStream`), and a tombstone is dropped from
//! the version once nothing older that it could cover is left
//! ([`crate::version::Version::obsolete_range_tombstones`]).

mod set;

pub use set::{Coverage, CoverageCache, RangeTombstoneSet};

use serde::{Deserialize, Serialize};

use crate::job::shard_of;
use crate::key::SequenceNumber;

/// A deletion of every user key in `[start, end)` older than `seq`.
///
/// Invariant: `start < end` (an empty range is never stored).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RangeTombstone {
    /// First deleted user key (inclusive).
    pub start: Vec<u8>,
    /// End of the deleted range (exclusive).
    pub end: Vec<u8>,
    /// Sequence of the deletion: entries with a smaller sequence are deleted.
    pub seq: SequenceNumber,
}

impl RangeTombstone {
    /// True when `user_key` lies in `[start, end)`.
    pub fn contains(&self, user_key: &[u8]) -> bool {
        self.start.as_slice() <= user_key && user_key < self.end.as_slice()
    }

    /// True when `[start, end)` intersects the inclusive user-key range
    /// `[lo, hi]` (`None` is unbounded).
    pub fn overlaps(&self, lo: Option<&[u8]>, hi: Option<&[u8]>) -> bool {
        let before = matches!(hi, Some(h) if h < self.start.as_slice());
        let after = matches!(lo, Some(l) if l >= self.end.as_slice());
        !(before || after)
    }

    /// The pieces of this tombstone inside each shard it touches, as
    /// `(shard, piece)`, in shard order; `splits` are the sorted shard split
    /// keys (shard `i` covers `[splits[i-1], splits[i])`). Every piece keeps
    /// the sequence, so a reader of any shard sees the same deletion.
    pub fn split_at_shards(&self, splits: &[Vec<u8>]) -> Vec<(u32, RangeTombstone)> {
        let mut pieces = Vec::new();
        let mut shard = shard_of(splits, &self.start);
        let mut lo = self.start.clone();
        loop {
            let hi = match splits.get(shard as usize) {
                Some(split) if split.as_slice() < self.end.as_slice() => split.clone(),
                _ => self.end.clone(),
            };
            let last = hi == self.end;
            pieces.push((
                shard,
                RangeTombstone {
                    start: lo,
                    end: hi.clone(),
                    seq: self.seq,
                },
            ));
            if last {
                return pieces;
            }
            lo = hi;
            shard += 1;
        }
    }

    /// Bytes this tombstone takes in memory (keys plus bookkeeping), as
    /// charged against a memtable's budget.
    pub fn memory_bytes(&self) -> usize {
        self.start.len() + self.end.len() + std::mem::size_of::<RangeTombstone>()
    }
}

/// `[start, end)` deleted at `seq`, from string keys: the unit tests'
/// shorthand, shared by every module that tests range tombstones.
#[cfg(test)]
pub(crate) fn tombstone(start: &str, end: &str, seq: SequenceNumber) -> RangeTombstone {
    RangeTombstone {
        start: start.as_bytes().to_vec(),
        end: end.as_bytes().to_vec(),
        seq,
    }
}

#[cfg(test)]
mod tests {
    use super::tombstone as t;

    #[test]
    fn split_cuts_at_every_shard_boundary_inside_the_range() {
        let splits = vec![b"g".to_vec(), b"p".to_vec()];
        assert_eq!(
            t("a", "c", 5).split_at_shards(&splits),
            [(0, t("a", "c", 5))]
        );
        assert_eq!(
            t("b", "z", 5).split_at_shards(&splits),
            [
                (0, t("b", "g", 5)),
                (1, t("g", "p", 5)),
                (2, t("p", "z", 5))
            ]
        );
        // A range ending exactly at a split stays in the shard below it.
        assert_eq!(
            t("h", "p", 5).split_at_shards(&splits),
            [(1, t("h", "p", 5))]
        );
        assert_eq!(
            t("g", "pa", 5).split_at_shards(&splits),
            [(1, t("g", "p", 5)), (2, t("p", "pa", 5))]
        );
        assert_eq!(t("a", "z", 5).split_at_shards(&[]), [(0, t("a", "z", 5))]);
    }

    #[test]
    fn overlap_uses_the_exclusive_end() {
        let r = t("c", "f", 1);
        assert!(r.overlaps(Some(b"a"), Some(b"c")));
        assert!(r.overlaps(Some(b"e"), None));
        assert!(!r.overlaps(Some(b"f"), None));
        assert!(!r.overlaps(None, Some(b"b")));
        assert!(r.contains(b"c") && r.contains(b"ezz") && !r.contains(b"f"));
    }
}
