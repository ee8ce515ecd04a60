//! [`RangeTombstoneSet`]: range tombstones fragmented for queries.
//!
//! The tombstones' boundaries cut the key space into elementary intervals;
//! every interval some tombstone covers becomes a fragment `[start, end)`
//! holding the sequences of all tombstones covering it, newest first.
//! Fragments are sorted and disjoint (neighbours with equal sequence lists
//! are merged), so a query is a binary search for the key's fragment and
//! one for the newest sequence at or below the snapshot. Nested or
//! overlapping tombstones can make the fragments hold up to n² sequences in
//! total; ranges written as independent deletions rarely nest deeply.
//!
//! A set may be built on top of a base set ([`RangeTombstoneSet::with_base`])
//! and then answers for both. [`RangeTombstoneSet::extended`] adds
//! tombstones that way with the logarithmic method: a new layer absorbs
//! every layer below it that is not larger, so layers at least double in
//! size downwards — n additions one at a time cost O(n log n) fragmenting
//! work in all and leave O(log n) layers for a query to search, where
//! rebuilding the whole set per addition would cost O(n²).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

use crate::key::SequenceNumber;

use super::RangeTombstone;

/// One interval of the key space and the tombstones covering all of it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fragment {
    start: Vec<u8>,
    end: Vec<u8>,
    /// Range of `RangeTombstoneSet::seqs` holding this fragment's sequences.
    seqs: std::ops::Range<usize>,
}

/// An immutable, query-optimised set of range tombstones. An empty set
/// answers every query without touching memory beyond its own header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeTombstoneSet {
    fragments: Vec<Fragment>,
    /// Each fragment's sequences, newest first, back to back.
    seqs: Vec<SequenceNumber>,
    /// The tombstones this layer was built from (kept for merges).
    tombstones: Vec<RangeTombstone>,
    /// A non-empty set every query also consults (see
    /// [`RangeTombstoneSet::with_base`]).
    base: Option<Arc<RangeTombstoneSet>>,
}

impl RangeTombstoneSet {
    /// Fragment `tombstones` (any order; empty ranges are ignored).
    pub fn new<'a>(tombstones: impl IntoIterator<Item = &'a RangeTombstone>) -> Self {
        Self::from_owned(
            tombstones
                .into_iter()
                .filter(|t| t.start < t.end)
                .cloned()
                .collect(),
        )
    }

    /// Fragment `tombstones`, all non-empty, into one layer.
    fn from_owned(mut tombstones: Vec<RangeTombstone>) -> Self {
        if tombstones.is_empty() {
            return RangeTombstoneSet::default();
        }
        tombstones.sort_by(|a, b| a.start.cmp(&b.start));
        let mut set = RangeTombstoneSet::default();
        set.fragment(&tombstones);
        set.tombstones = tombstones;
        set
    }

    /// Fill `fragments` and `seqs` from `by_start` (sorted by start).
    fn fragment(&mut self, by_start: &[RangeTombstone]) {
        let mut points: Vec<&[u8]> = by_start
            .iter()
            .flat_map(|t| [t.start.as_slice(), t.end.as_slice()])
            .collect();
        points.sort_unstable();
        points.dedup();
        // Sweep the elementary intervals, keeping the covering sequences
        // (with multiplicity: pieces of one write may meet at a boundary
        // only, but nothing forbids duplicates) and a heap of their ends.
        let mut covering: BTreeMap<Reverse<SequenceNumber>, usize> = BTreeMap::new();
        let mut ends: BinaryHeap<Reverse<(&[u8], SequenceNumber)>> = BinaryHeap::new();
        let mut next = 0;
        for w in points.windows(2) {
            let (lo, hi) = (w[0], w[1]);
            while let Some(t) = by_start.get(next).filter(|t| t.start.as_slice() <= lo) {
                *covering.entry(Reverse(t.seq)).or_insert(0) += 1;
                ends.push(Reverse((t.end.as_slice(), t.seq)));
                next += 1;
            }
            while let Some(Reverse((end, seq))) = ends.peek().copied() {
                if end > lo {
                    break;
                }
                ends.pop();
                if let Some(n) = covering.get_mut(&Reverse(seq)) {
                    *n -= 1;
                    if *n == 0 {
                        covering.remove(&Reverse(seq));
                    }
                }
            }
            if covering.is_empty() {
                continue;
            }
            self.push_fragment(lo, hi, covering.keys().map(|r| r.0));
        }
    }

    /// The set of `base` and `tombstones` together, built by fragmenting
    /// `tombstones` alone: queries consult both (one more binary search when
    /// both hold tombstones).
    pub fn with_base<'a>(
        base: Arc<RangeTombstoneSet>,
        tombstones: impl IntoIterator<Item = &'a RangeTombstone>,
    ) -> Self {
        let mut set = RangeTombstoneSet::new(tombstones);
        set.base = (!base.is_empty()).then_some(base);
        set
    }

    /// This set with `added` (see the module docs for the cost).
    pub fn extended(self: &Arc<Self>, added: &[RangeTombstone]) -> RangeTombstoneSet {
        let mut own: Vec<RangeTombstone> =
            added.iter().filter(|t| t.start < t.end).cloned().collect();
        if own.is_empty() {
            return RangeTombstoneSet::clone(self);
        }
        let mut below = (!self.is_empty()).then(|| self.clone());
        while let Some(layer) = below.take_if(|l| l.tombstones.len() <= own.len()) {
            own.extend_from_slice(&layer.tombstones);
            below = layer.base.clone();
        }
        let mut set = RangeTombstoneSet::from_owned(own);
        set.base = below;
        set
    }

    /// Append `[lo, hi)` covered by `seqs` (newest first), merging it into
    /// the previous fragment when that one ends at `lo` with the same list.
    fn push_fragment(&mut self, lo: &[u8], hi: &[u8], seqs: impl Iterator<Item = SequenceNumber>) {
        let first = self.seqs.len();
        self.seqs.extend(seqs);
        if let Some(prev) = self.fragments.last_mut()
            && prev.end.as_slice() == lo
            && self.seqs[prev.seqs.clone()] == self.seqs[first..]
        {
            self.seqs.truncate(first);
            prev.end = hi.to_vec();
            return;
        }
        self.fragments.push(Fragment {
            start: lo.to_vec(),
            end: hi.to_vec(),
            seqs: first..self.seqs.len(),
        });
    }

    /// True when the set holds no tombstone.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.fragments.is_empty() && self.base.is_none()
    }

    /// Number of tombstones the set was built from (its base's included).
    pub fn len(&self) -> usize {
        self.tombstones.len() + self.base.as_ref().map_or(0, |b| b.len())
    }

    /// Layers a query searches (0 for an empty set).
    pub fn layers(&self) -> usize {
        usize::from(!self.fragments.is_empty()) + self.base.as_ref().map_or(0, |b| b.layers())
    }

    /// The newest tombstone sequence `t` with `start <= user_key < end` and
    /// `t <= snapshot`, if any.
    #[inline]
    pub fn max_covering_seq(
        &self,
        user_key: &[u8],
        snapshot: SequenceNumber,
    ) -> Option<SequenceNumber> {
        let own = self.own_max_covering_seq(user_key, snapshot);
        match &self.base {
            None => own,
            Some(base) => own.max(base.max_covering_seq(user_key, snapshot)),
        }
    }

    /// [`Self::max_covering_seq`] over this set's own fragments.
    #[inline]
    fn own_max_covering_seq(
        &self,
        user_key: &[u8],
        snapshot: SequenceNumber,
    ) -> Option<SequenceNumber> {
        if self.fragments.is_empty() {
            return None;
        }
        let i = self
            .fragments
            .partition_point(|f| f.end.as_slice() <= user_key);
        let f = self.fragments.get(i)?;
        if f.start.as_slice() > user_key {
            return None;
        }
        let seqs = &self.seqs[f.seqs.clone()];
        seqs.get(seqs.partition_point(|&s| s > snapshot)).copied()
    }

    /// [`Self::max_covering_seq`] together with the key interval around
    /// `user_key` over which the answer stays the same.
    pub fn coverage(&self, user_key: &[u8], snapshot: SequenceNumber) -> Coverage<'_> {
        let i = self
            .fragments
            .partition_point(|f| f.end.as_slice() <= user_key);
        let own = match self.fragments.get(i) {
            Some(f) if f.start.as_slice() <= user_key => {
                let seqs = &self.seqs[f.seqs.clone()];
                Coverage {
                    seq: seqs.get(seqs.partition_point(|&s| s > snapshot)).copied(),
                    lo: Some(&f.start),
                    hi: Some(&f.end),
                }
            }
            // In the gap before fragment `i`.
            next => Coverage {
                seq: None,
                lo: i.checked_sub(1).map(|p| self.fragments[p].end.as_slice()),
                hi: next.map(|f| f.start.as_slice()),
            },
        };
        match &self.base {
            None => own,
            Some(base) => {
                let below = base.coverage(user_key, snapshot);
                Coverage {
                    seq: own.seq.max(below.seq),
                    lo: own.lo.max(below.lo),
                    hi: match (own.hi, below.hi) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    },
                }
            }
        }
    }

    /// True when a reader at `snapshot` sees the entry of `user_key` with
    /// sequence `seq` deleted by a range tombstone.
    #[inline]
    pub fn hides(&self, user_key: &[u8], seq: SequenceNumber, snapshot: SequenceNumber) -> bool {
        self.max_covering_seq(user_key, snapshot)
            .is_some_and(|t| t > seq)
    }
}

/// The answer of [`RangeTombstoneSet::coverage`]: the newest covering
/// tombstone sequence visible at the snapshot, the same for every key in
/// `[lo, hi)` (`None` bounds are unbounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage<'a> {
    pub seq: Option<SequenceNumber>,
    pub lo: Option<&'a [u8]>,
    pub hi: Option<&'a [u8]>,
}

/// The last [`Coverage`] of one set at one snapshot, kept so that a walk
/// over keys in order (a scan, a compaction) queries the set once per
/// interval rather than once per entry. Use one cache per set and snapshot.
#[derive(Debug, Clone, Default)]
pub struct CoverageCache {
    valid: bool,
    seq: Option<SequenceNumber>,
    lo: Option<Vec<u8>>,
    hi: Option<Vec<u8>>,
}

impl CoverageCache {
    /// [`RangeTombstoneSet::hides`], answered from the cache when `user_key`
    /// lies in the interval of the last answer.
    #[inline]
    pub fn hides(
        &mut self,
        set: &RangeTombstoneSet,
        user_key: &[u8],
        seq: SequenceNumber,
        snapshot: SequenceNumber,
    ) -> bool {
        let inside = self.valid
            && self.lo.as_deref().is_none_or(|lo| lo <= user_key)
            && self.hi.as_deref().is_none_or(|hi| user_key < hi);
        if !inside {
            let c = set.coverage(user_key, snapshot);
            self.seq = c.seq;
            Self::store(&mut self.lo, c.lo);
            Self::store(&mut self.hi, c.hi);
            self.valid = true;
        }
        self.seq.is_some_and(|t| t > seq)
    }

    /// Copy `bound` into `slot`, reusing its buffer.
    fn store(slot: &mut Option<Vec<u8>>, bound: Option<&[u8]>) {
        match bound {
            None => *slot = None,
            Some(b) => {
                let buf = slot.get_or_insert_with(Vec::new);
                buf.clear();
                buf.extend_from_slice(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range_del::tombstone as t;
    use proptest::prelude::*;

    #[test]
    fn overlapping_tombstones_answer_with_the_newest_visible() {
        let ts = [t("b", "f", 5), t("d", "k", 9), t("a", "c", 2)];
        let set = RangeTombstoneSet::new(&ts);
        assert_eq!(set.len(), 3);
        assert_eq!(set.max_covering_seq(b"a", 100), Some(2));
        assert_eq!(set.max_covering_seq(b"b", 100), Some(5));
        assert_eq!(set.max_covering_seq(b"d", 100), Some(9));
        assert_eq!(set.max_covering_seq(b"d", 8), Some(5));
        assert_eq!(set.max_covering_seq(b"d", 4), None);
        assert_eq!(set.max_covering_seq(b"f", 100), Some(9));
        assert_eq!(set.max_covering_seq(b"k", 100), None);
        assert_eq!(set.max_covering_seq(b"", 100), None);
        assert!(set.hides(b"e", 8, 100) && !set.hides(b"e", 9, 100));
        assert!(!set.hides(b"e", 3, 4));
    }

    #[test]
    fn empty_ranges_and_empty_sets_cover_nothing() {
        let set = RangeTombstoneSet::new(&[t("c", "c", 5), t("d", "a", 6)]);
        assert!(set.is_empty());
        assert_eq!(set.max_covering_seq(b"c", 100), None);
        assert!(RangeTombstoneSet::default().is_empty());
    }

    #[test]
    fn touching_tombstones_with_one_sequence_merge_into_one_fragment() {
        let set = RangeTombstoneSet::new(&[t("a", "g", 7), t("g", "p", 7), t("p", "z", 7)]);
        assert_eq!(set.fragments.len(), 1);
        assert_eq!(set.max_covering_seq(b"p", 7), Some(7));
    }

    #[test]
    fn a_set_on_a_base_answers_for_both() {
        let base = Arc::new(RangeTombstoneSet::new(&[t("a", "m", 5), t("p", "r", 20)]));
        let set = RangeTombstoneSet::with_base(base.clone(), &[t("c", "e", 9)]);
        assert_eq!(set.len(), 3);
        assert_eq!(set.max_covering_seq(b"d", 100), Some(9));
        assert_eq!(set.max_covering_seq(b"d", 8), Some(5));
        assert_eq!(set.max_covering_seq(b"q", 100), Some(20));
        assert_eq!(set.max_covering_seq(b"n", 100), None);
        let only_base = RangeTombstoneSet::with_base(base, &[]);
        assert!(!only_base.is_empty());
        assert_eq!(only_base.max_covering_seq(b"b", 100), Some(5));
        let nothing = RangeTombstoneSet::with_base(Arc::default(), &[]);
        assert!(nothing.is_empty());
    }

    #[test]
    fn one_at_a_time_extension_keeps_logarithmically_many_layers() {
        let mut set = Arc::new(RangeTombstoneSet::default());
        let all: Vec<RangeTombstone> = (0..1000u64)
            .map(|i| RangeTombstone {
                start: format!("{:04}", (i * 37) % 1000).into_bytes(),
                end: format!("{:04}", (i * 37) % 1000 + 3).into_bytes(),
                seq: i + 1,
            })
            .collect();
        for t in &all {
            set = Arc::new(set.extended(std::slice::from_ref(t)));
            assert!(
                set.layers() <= 11,
                "{} layers after {}",
                set.layers(),
                t.seq
            );
        }
        assert_eq!(set.len(), 1000);
        let whole = RangeTombstoneSet::new(&all);
        for k in 0..1003u64 {
            let key = format!("{k:04}").into_bytes();
            for snapshot in [0, 500, 2000] {
                assert_eq!(
                    set.max_covering_seq(&key, snapshot),
                    whole.max_covering_seq(&key, snapshot)
                );
            }
        }
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(b'a'..b'e', 0..3)
    }

    proptest! {
        /// A cache answers like the set, over keys in any order.
        #[test]
        fn coverage_cache_answers_like_the_set(
            raw in prop::collection::vec((key(), key(), 1u64..40), 0..25),
            mut probes in prop::collection::vec((key(), 0u64..45), 1..80),
            sorted in any::<bool>(),
            snapshot in 0u64..45,
        ) {
            let ts: Vec<RangeTombstone> = raw
                .into_iter()
                .map(|(start, end, seq)| RangeTombstone { start, end, seq })
                .collect();
            let (below, above) = ts.split_at(ts.len() / 2);
            let set = RangeTombstoneSet::with_base(Arc::new(RangeTombstoneSet::new(below)), above);
            if sorted {
                probes.sort();
            }
            let mut cache = CoverageCache::default();
            for (k, seq) in probes {
                prop_assert_eq!(cache.hides(&set, &k, seq, snapshot), set.hides(&k, seq, snapshot), "key {:?} seq {}", k, seq);
            }
        }

        /// Against brute force over the tombstones: every key and snapshot.
        #[test]
        fn matches_brute_force(
            raw in prop::collection::vec((key(), key(), 1u64..40), 0..25),
            probes in prop::collection::vec((key(), 0u64..45), 1..60),
            split in 0usize..25,
        ) {
            let ts: Vec<RangeTombstone> = raw
                .into_iter()
                .map(|(start, end, seq)| RangeTombstone { start, end, seq })
                .collect();
            let set = RangeTombstoneSet::new(&ts);
            let (below, above) = ts.split_at(split.min(ts.len()));
            let layered = RangeTombstoneSet::with_base(Arc::new(RangeTombstoneSet::new(below)), above);
            let mut grown = Arc::new(RangeTombstoneSet::default());
            for chunk in ts.chunks(split.max(1)) {
                grown = Arc::new(grown.extended(chunk));
            }
            prop_assert_eq!(grown.len(), ts.iter().filter(|t| t.start < t.end).count());
            for w in set.fragments.windows(2) {
                prop_assert!(w[0].end <= w[1].start, "fragments overlap or are unsorted");
            }
            for f in &set.fragments {
                prop_assert!(f.start < f.end);
                let s = &set.seqs[f.seqs.clone()];
                prop_assert!(!s.is_empty() && s.windows(2).all(|w| w[0] > w[1]));
            }
            for (k, snapshot) in probes {
                let want = ts
                    .iter()
                    .filter(|t| t.contains(&k) && t.seq <= snapshot)
                    .map(|t| t.seq)
                    .max();
                prop_assert_eq!(set.max_covering_seq(&k, snapshot), want, "key {:?} at {}", k, snapshot);
                prop_assert_eq!(layered.max_covering_seq(&k, snapshot), want, "layered: key {:?} at {}", k, snapshot);
                prop_assert_eq!(grown.max_covering_seq(&k, snapshot), want, "extended: key {:?} at {}", k, snapshot);
                let c = grown.coverage(&k, snapshot);
                prop_assert_eq!(c.seq, want);
                prop_assert!(c.lo.is_none_or(|lo| lo <= k.as_slice()) && c.hi.is_none_or(|hi| k.as_slice() < hi));
                // The answer holds over the whole interval: at both ends
                // of it (as far as the probe keys go).
                if let Some(lo) = c.lo {
                    prop_assert_eq!(set.max_covering_seq(lo, snapshot), want, "at lo {:?}", lo);
                }
                if let Some(hi) = c.hi {
                    let mut before = hi.to_vec();
                    before.pop();
                    if before.as_slice() >= c.lo.unwrap_or(&[]) && before.as_slice() >= k.as_slice() {
                        prop_assert_eq!(set.max_covering_seq(&before, snapshot), want, "below hi {:?}", hi);
                    }
                }
            }
        }
    }
}
