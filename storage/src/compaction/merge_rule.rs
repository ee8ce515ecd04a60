//! The compaction merge rule: which entries of the merged inputs a
//! compaction (or flush) writes out.
//!
//! For each user key, walking its entries newest first:
//! - an entry is dropped when a NEWER entry of the same key has a sequence
//!   `<= smallest_snapshot`: every reader (every live snapshot and every
//!   future read) sees that newer entry instead;
//! - a tombstone with sequence `<= smallest_snapshot` that is the newest such
//!   entry of its key is dropped when `drop_tombstones` is set, i.e. the
//!   output is bottommost and nothing older of the key can exist below it:
//!   every reader that would see it sees "absent" without it too.
//!
//! - an entry is dropped when a range tombstone `t` covers its key with
//!   `entry.seq < t.seq <= smallest_snapshot` (the tombstones come with the
//!   job, [`CompactionStream::with_range_tombstones`]). This is the first
//!   rule with a range deletion as the newer write: every reader at
//!   `smallest_snapshot` or later sees `t` (it stays installed until no
//!   file can hold an entry it covers, see
//!   `crate::version::Version::obsolete_range_tombstones`) and therefore
//!   sees the key deleted as of `t`, whether the entry is there or not;
//!   older entries of the key have smaller sequences and are covered too.
//!   Readers below `smallest_snapshot` do not exist.
//!
//! Entries newer than `smallest_snapshot` are always kept, so every snapshot
//! `>= smallest_snapshot` reads the same state from the output as from the
//! input.

use std::sync::Arc;

use crate::error::Result;
use crate::iterator::InternalIterator;
use crate::key::{SequenceNumber, ValueKind, parse_internal_key};
use crate::range_del::{CoverageCache, RangeTombstoneSet};

/// What a [`CompactionStream`] has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeCounters {
    /// Entries read from the input.
    pub entries_in: u64,
    /// Entries not written out (tombstones included).
    pub entries_dropped: u64,
    /// Dropped entries that were tombstones (shadowed or bottommost).
    pub tombstones_dropped: u64,
    /// Dropped entries (of any kind) that a range tombstone covered.
    pub range_deleted: u64,
}

/// The entries of `input` to keep, in order, borrowed from the input.
pub struct CompactionStream<'a> {
    input: Box<dyn InternalIterator + 'a>,
    smallest_snapshot: SequenceNumber,
    drop_tombstones: bool,
    /// Range tombstones to apply; `None` when there are none.
    range_tombstones: Option<Arc<RangeTombstoneSet>>,
    /// Their last answer, reused while keys stay in its interval.
    coverage: CoverageCache,
    /// The user key of the entries being walked (buffer reused).
    current_user_key: Vec<u8>,
    /// Sequence of the previous entry of `current_user_key`; `None` before
    /// its first entry.
    last_sequence: Option<SequenceNumber>,
    /// The input is positioned (`seek_to_first` ran).
    started: bool,
    /// The entry last returned is still under the input's cursor.
    returned: bool,
    counters: MergeCounters,
}

impl std::fmt::Debug for CompactionStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompactionStream")
            .field("smallest_snapshot", &self.smallest_snapshot)
            .field("drop_tombstones", &self.drop_tombstones)
            .field("counters", &self.counters)
            .finish()
    }
}

impl<'a> CompactionStream<'a> {
    /// Filter `input` for readers at `smallest_snapshot` or later; with
    /// `drop_tombstones`, the input is everything stored for its keys.
    pub fn new(
        input: Box<dyn InternalIterator + 'a>,
        smallest_snapshot: SequenceNumber,
        drop_tombstones: bool,
    ) -> Self {
        CompactionStream {
            input,
            smallest_snapshot,
            drop_tombstones,
            range_tombstones: None,
            coverage: CoverageCache::default(),
            current_user_key: Vec::new(),
            last_sequence: None,
            started: false,
            returned: false,
            counters: MergeCounters::default(),
        }
    }

    /// Also drop the entries that these range tombstones delete for every
    /// reader (see the module docs).
    pub fn with_range_tombstones(mut self, set: Arc<RangeTombstoneSet>) -> Self {
        self.range_tombstones = (!set.is_empty()).then_some(set);
        self
    }

    /// Position at the start of the input and reset the counters.
    /// [`Self::next_entry`] does this itself on its first call.
    pub fn seek_to_first(&mut self) -> Result<()> {
        self.counters = MergeCounters::default();
        self.last_sequence = None;
        self.current_user_key.clear();
        self.returned = false;
        self.started = true;
        self.input.seek_to_first()
    }

    /// The next entry to keep as `(internal key, value)`, or `None` at the
    /// end. An undecodable key is an error naming its offset in the stream.
    pub fn next_entry(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        if !self.started {
            self.seek_to_first()?;
        } else if self.returned {
            self.returned = false;
            self.input.next()?;
        }
        while self.input.valid() {
            if self.keep_current()? {
                self.returned = true;
                return Ok(Some((self.input.key(), self.input.value())));
            }
            self.input.next()?;
        }
        Ok(None)
    }

    /// Counters so far.
    pub fn counters(&self) -> MergeCounters {
        self.counters
    }

    /// Apply the rule to the entry under the cursor and count it.
    fn keep_current(&mut self) -> Result<bool> {
        let entry_index = self.counters.entries_in;
        let parsed = parse_internal_key(self.input.key()).map_err(|e| match e {
            crate::error::Error::Corruption { reason, .. } => crate::error::Error::corruption(
                "compaction input",
                entry_index,
                format!("entry {entry_index}: {reason}"),
            ),
            other => other,
        })?;
        self.counters.entries_in += 1;
        if self.last_sequence.is_none() || parsed.user_key != self.current_user_key.as_slice() {
            self.current_user_key.clear();
            self.current_user_key.extend_from_slice(parsed.user_key);
            self.last_sequence = None;
        }
        let visible_to_all = parsed.sequence <= self.smallest_snapshot;
        let mut drop = match self.last_sequence {
            // A newer entry every reader sees shadows this one.
            Some(newer) if newer <= self.smallest_snapshot => true,
            // The newest entry every reader sees, and it is a deletion of
            // nothing that can exist below the output.
            _ => visible_to_all && parsed.kind == ValueKind::Tombstone && self.drop_tombstones,
        };
        // A range deletion every reader sees covers this entry.
        if !drop
            && let Some(set) = &self.range_tombstones
            && self.coverage.hides(
                set,
                parsed.user_key,
                parsed.sequence,
                self.smallest_snapshot,
            )
        {
            drop = true;
            self.counters.range_deleted += 1;
        }
        self.last_sequence = Some(parsed.sequence);
        if drop {
            self.counters.entries_dropped += 1;
            if parsed.kind == ValueKind::Tombstone {
                self.counters.tombstones_dropped += 1;
            }
        }
        Ok(!drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iter::VecIterator;
    use crate::key::{make_internal_key, sequence};

    fn input(entries: &[(&str, u64, bool)]) -> Box<dyn InternalIterator> {
        Box::new(VecIterator::new(
            entries
                .iter()
                .map(|(k, s, live)| {
                    let kind = if *live {
                        ValueKind::Value
                    } else {
                        ValueKind::Tombstone
                    };
                    (make_internal_key(k.as_bytes(), *s, kind), Vec::new())
                })
                .collect(),
        ))
    }

    fn kept(stream: &mut CompactionStream) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some((k, _)) = stream.next_entry().unwrap() {
            out.push(sequence(k));
        }
        out
    }

    #[test]
    fn keeps_versions_above_the_smallest_snapshot() {
        // a: 9 (value), 7 (value), 5 (tombstone), 3 (value); snapshot 6.
        let src = [
            ("a", 9, true),
            ("a", 7, true),
            ("a", 5, false),
            ("a", 3, true),
        ];
        let mut s = CompactionStream::new(input(&src), 6, false);
        assert_eq!(kept(&mut s), [9, 7, 5]);
        assert_eq!(
            s.counters(),
            MergeCounters {
                entries_in: 4,
                entries_dropped: 1,
                tombstones_dropped: 0,
                range_deleted: 0,
            }
        );
        let mut s = CompactionStream::new(input(&src), 6, true);
        assert_eq!(kept(&mut s), [9, 7]);
        assert_eq!(s.counters().tombstones_dropped, 1);
        let mut s = CompactionStream::new(input(&src), 100, true);
        assert_eq!(kept(&mut s), [9]);
    }

    #[test]
    fn range_tombstone_visible_to_all_drops_exactly_the_older_entries() {
        use crate::range_del::RangeTombstone;
        // a: 9, 4 ; b: 12, 8 (tombstone), 2 ; c: 3 ; d: 1 (outside).
        let src = [
            ("a", 9, true),
            ("a", 4, true),
            ("b", 12, true),
            ("b", 8, false),
            ("b", 2, true),
            ("c", 3, true),
            ("d", 1, true),
        ];
        let tombstones = Arc::new(RangeTombstoneSet::new(&[RangeTombstone {
            start: b"a".to_vec(),
            end: b"d".to_vec(),
            seq: 10,
        }]));
        // Every reader sees the tombstone: entries below 10 in [a, d) go.
        let mut s =
            CompactionStream::new(input(&src), 20, false).with_range_tombstones(tombstones.clone());
        assert_eq!(kept(&mut s), [12, 1]);
        let c = s.counters();
        assert_eq!(
            (c.entries_in, c.entries_dropped, c.range_deleted),
            (7, 5, 2)
        );
        assert_eq!(c.tombstones_dropped, 1);
        // A snapshot at 9 does not see it: only shadowing applies.
        let mut s =
            CompactionStream::new(input(&src), 9, false).with_range_tombstones(tombstones.clone());
        assert_eq!(kept(&mut s), [9, 12, 8, 3, 1]);
        assert_eq!(s.counters().range_deleted, 0);
        // At exactly the tombstone's sequence it is visible to all.
        let mut s = CompactionStream::new(input(&src), 10, false).with_range_tombstones(tombstones);
        assert_eq!(kept(&mut s), [12, 1]);
    }

    #[test]
    fn bad_key_is_an_error_naming_the_entry() {
        let mut s = CompactionStream::new(
            Box::new(VecIterator::new(vec![(b"short".to_vec(), Vec::new())])),
            0,
            false,
        );
        let err = s.next_entry().unwrap_err();
        assert!(err.is_corruption());
        assert!(err.to_string().contains("compaction input"), "{err}");
    }
}
