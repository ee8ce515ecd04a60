//! Model tests for the merging iterator, the user iterator and the compaction
//! merge rule: random multi-version data split over several in-memory
//! sources, compared step by step with a BTreeMap model.

mod iter_model;

use std::collections::BTreeMap;

use o3_storage::compaction::CompactionStream;
use o3_storage::error::{Error, Result};
use o3_storage::iter::{KeyBounds, MergingIterator, UserIterator, VecIterator};
use o3_storage::iterator::InternalIterator;
use o3_storage::key::{ValueKind, compare_internal, make_internal_key};
use proptest::prelude::*;

use iter_model::{
    Op, Visible, bounds_strategy, check_user_iterator, in_bounds, merge, op_strategy, target_key,
    user_key, user_step,
};

/// One write: user key index, and a value or a tombstone. Its sequence is
/// its position in the history plus one.
#[derive(Debug, Clone)]
struct Write {
    key: u8,
    tombstone: bool,
    source: usize,
}

fn entries(history: &[Write]) -> Vec<(Vec<u8>, Vec<u8>, usize)> {
    history
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let seq = i as u64 + 1;
            let (kind, value) = if w.tombstone {
                (ValueKind::Tombstone, Vec::new())
            } else {
                (ValueKind::Value, format!("v{seq}").into_bytes())
            };
            (
                make_internal_key(&user_key(w.key), seq, kind),
                value,
                w.source,
            )
        })
        .collect()
}

/// The history split over `sources` in-memory sources, merged.
fn merged(history: &[Write], sources: usize) -> MergingIterator<'_> {
    let mut parts = vec![Vec::new(); sources];
    for (k, v, s) in entries(history) {
        parts[s % sources].push((k, v));
    }
    merge(parts)
}

/// What a reader at `snapshot` sees within `bounds`.
fn visible(history: &[Write], snapshot: u64, bounds: &KeyBounds) -> Visible {
    let mut state = BTreeMap::new();
    for (i, w) in history.iter().enumerate() {
        let seq = i as u64 + 1;
        if seq <= snapshot {
            let v = (!w.tombstone).then(|| format!("v{seq}").into_bytes());
            state.insert(user_key(w.key), v);
        }
    }
    state
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .filter(|(k, _)| in_bounds(bounds, k))
        .collect()
}

fn history_strategy() -> impl Strategy<Value = Vec<Write>> {
    prop::collection::vec(
        (0u8..12, prop::bool::weighted(0.3), 0usize..5).prop_map(|(key, tombstone, source)| {
            Write {
                key,
                tombstone,
                source,
            }
        }),
        0..60,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn user_iterator_matches_model(
        history in history_strategy(),
        sources in 1usize..=5,
        snapshot_frac in 0.0f64..1.2,
        bounds in bounds_strategy(30),
        ops in prop::collection::vec(op_strategy(30), 1..40),
    ) {
        let snapshot = (history.len() as f64 * snapshot_frac) as u64;
        let state = visible(&history, snapshot, &bounds);
        let mut it = UserIterator::new(Box::new(merged(&history, sources)), snapshot, bounds);
        check_user_iterator(&mut it, &state, &ops)?;
    }

    #[test]
    fn merging_iterator_matches_sorted_union(
        history in history_strategy(),
        sources in 1usize..=5,
        ops in prop::collection::vec(
            prop_oneof![
                Just(None),
                (0u8..30, 0u64..70).prop_map(Some),
            ].prop_flat_map(|t| (Just(t), 0u8..6)),
            1..40,
        ),
    ) {
        let mut all: Vec<(Vec<u8>, Vec<u8>)> =
            entries(&history).into_iter().map(|(k, v, _)| (k, v)).collect();
        all.sort_by(|a, b| compare_internal(&a.0, &b.0));
        let mut it = merged(&history, sources);
        // Model position: an index into `all`, `None` when invalid.
        let mut pos: Option<usize> = None;
        for (target, kind) in ops {
            let t = target.map(|(k, s)| make_internal_key(&target_key(k), s, ValueKind::Value));
            match (kind, &t) {
                (0, _) => { it.seek_to_first().unwrap(); pos = (!all.is_empty()).then_some(0); }
                (1, _) => { it.seek_to_last().unwrap(); pos = all.len().checked_sub(1); }
                (2, Some(t)) => {
                    it.seek(t).unwrap();
                    let p = all.partition_point(|e| compare_internal(&e.0, t).is_lt());
                    pos = (p < all.len()).then_some(p);
                }
                (3, Some(t)) => {
                    it.seek_for_prev(t).unwrap();
                    pos = all.partition_point(|e| compare_internal(&e.0, t).is_le()).checked_sub(1);
                }
                (4, _) if pos.is_some() => {
                    it.next().unwrap();
                    pos = pos.map(|p| p + 1).filter(|&p| p < all.len());
                }
                (5, _) if pos.is_some() => {
                    it.prev().unwrap();
                    pos = pos.and_then(|p| p.checked_sub(1));
                }
                _ => continue,
            }
            prop_assert_eq!(it.valid(), pos.is_some());
            if let Some(p) = pos {
                prop_assert_eq!(it.key(), all[p].0.as_slice());
                prop_assert_eq!(it.value(), all[p].1.as_slice());
            }
        }
    }

    /// Every snapshot at or above the smallest one reads the same state from
    /// the compaction output as from its input. With `drop_tombstones` the
    /// input is the whole database.
    #[test]
    fn compaction_stream_preserves_every_live_snapshot(
        history in history_strategy(),
        sources in 1usize..=5,
        snapshot_frac in 0.0f64..1.2,
        drop_tombstones in any::<bool>(),
    ) {
        let top = history.len() as u64 + 1;
        let smallest = (history.len() as f64 * snapshot_frac) as u64;
        let mut stream = CompactionStream::new(Box::new(merged(&history, sources)), smallest, drop_tombstones);
        let mut output = Vec::new();
        while let Some((k, v)) = stream.next_entry().unwrap() {
            output.push((k.to_vec(), v.to_vec()));
        }
        let c = stream.counters();
        prop_assert_eq!(c.entries_in, history.len() as u64);
        prop_assert_eq!(c.entries_in - c.entries_dropped, output.len() as u64);
        prop_assert!(c.tombstones_dropped <= c.entries_dropped);
        for snapshot in smallest..=top {
            let want = visible(&history, snapshot, &KeyBounds::unbounded());
            let mut it = UserIterator::new(
                Box::new(VecIterator::new(output.clone())),
                snapshot,
                KeyBounds::unbounded(),
            );
            let mut got = BTreeMap::new();
            it.seek_to_first().unwrap();
            while it.valid() {
                got.insert(it.key().to_vec(), it.value().to_vec());
                it.next().unwrap();
            }
            prop_assert_eq!(&got, &want, "snapshot {}", snapshot);
        }
        // Nothing is kept that no reader at or above `smallest` can see: at
        // most one entry per key at or below it, and no tombstone there when
        // dropping them.
        let mut seen_old: BTreeMap<Vec<u8>, ()> = BTreeMap::new();
        for (k, _) in &output {
            let p = o3_storage::key::parse_internal_key(k).unwrap();
            if p.sequence <= smallest {
                prop_assert!(seen_old.insert(p.user_key.to_vec(), ()).is_none());
                prop_assert!(!(drop_tombstones && p.kind == ValueKind::Tombstone));
            }
        }
    }
}

/// A source whose every positioning call fails, as a damaged table would.
#[derive(Debug)]
struct FailingSource;

impl FailingSource {
    fn fail() -> Result<()> {
        Err(Error::corruption(
            "table 000042.sst",
            4096,
            "block checksum",
        ))
    }
}

impl InternalIterator for FailingSource {
    fn valid(&self) -> bool {
        false
    }
    fn seek_to_first(&mut self) -> Result<()> {
        Self::fail()
    }
    fn seek_to_last(&mut self) -> Result<()> {
        Self::fail()
    }
    fn seek(&mut self, _: &[u8]) -> Result<()> {
        Self::fail()
    }
    fn seek_for_prev(&mut self, _: &[u8]) -> Result<()> {
        Self::fail()
    }
    fn next(&mut self) -> Result<()> {
        Self::fail()
    }
    fn prev(&mut self) -> Result<()> {
        Self::fail()
    }
    fn key(&self) -> &[u8] {
        &[]
    }
    fn value(&self) -> &[u8] {
        &[]
    }
}

fn healthy_source() -> Box<dyn InternalIterator> {
    Box::new(VecIterator::new(vec![(
        make_internal_key(b"a", 1, ValueKind::Value),
        b"x".to_vec(),
    )]))
}

#[test]
fn child_errors_surface_from_positioning_and_invalidate() {
    let mut m = MergingIterator::new(vec![healthy_source(), Box::new(FailingSource)]);
    let err = m.seek_to_first().unwrap_err();
    assert!(err.to_string().contains("000042.sst"), "{err}");
    assert!(!m.valid());
    assert!(m.seek(b"a\0\0\0\0\0\0\0\0").is_err());
    assert!(!m.valid());

    let inner = MergingIterator::new(vec![healthy_source(), Box::new(FailingSource)]);
    let mut u = UserIterator::new(Box::new(inner), 10, KeyBounds::unbounded());
    assert!(u.seek_to_last().is_err());
    assert!(!u.valid());
    assert!(u.seek_for_prev(b"a").is_err());
    assert!(!u.valid());

    let inner = MergingIterator::new(vec![healthy_source(), Box::new(FailingSource)]);
    let mut s = CompactionStream::new(Box::new(inner), 0, false);
    assert!(s.next_entry().is_err());
}

#[test]
fn many_hidden_versions_between_visible_keys() {
    // Key b has 50 versions newer than the snapshot; both directions must
    // step over them to reach a and c.
    let mut entries = vec![
        (make_internal_key(b"a", 1, ValueKind::Value), b"a1".to_vec()),
        (make_internal_key(b"c", 2, ValueKind::Value), b"c2".to_vec()),
    ];
    for s in 10..60 {
        entries.push((
            make_internal_key(b"b", s, ValueKind::Value),
            b"new".to_vec(),
        ));
    }
    let mut u = UserIterator::new(
        Box::new(VecIterator::new(entries)),
        5,
        KeyBounds::unbounded(),
    );
    u.seek_to_first().unwrap();
    u.next().unwrap();
    assert_eq!(u.key(), b"c");
    u.prev().unwrap();
    assert_eq!(u.key(), b"a");
    u.prev().unwrap();
    assert!(!u.valid());
    u.seek_for_prev(b"b").unwrap();
    assert_eq!((u.key(), u.value()), (&b"a"[..], &b"a1"[..]));
}

#[test]
fn latest_snapshot_reads_everything() {
    let history = [
        Write {
            key: 1,
            tombstone: false,
            source: 0,
        },
        Write {
            key: 2,
            tombstone: false,
            source: 1,
        },
        Write {
            key: 1,
            tombstone: true,
            source: 2,
        },
    ];
    let state = visible(&history, u64::MAX, &KeyBounds::unbounded());
    let mut it = UserIterator::new(
        Box::new(merged(&history, 3)),
        u64::MAX,
        KeyBounds::unbounded(),
    );
    let ops = [
        Op::Seek(0),
        Op::Next,
        Op::Prev,
        Op::Last,
        Op::SeekForPrev(9),
    ];
    check_user_iterator(&mut it, &state, &ops).unwrap();
    assert_eq!(state.len(), 1);
}

proptest! {
    /// Arbitrary bytes as internal keys: every call either works or returns
    /// a corruption error; nothing panics or loops.
    #[test]
    fn garbage_keys_give_errors_not_panics(
        raw in prop::collection::vec(
            (prop::collection::vec(any::<u8>(), 0..12), prop::collection::vec(any::<u8>(), 0..4)),
            0..20,
        ),
        ops in prop::collection::vec(op_strategy(30), 1..20),
        snapshot in any::<u64>(),
    ) {
        let mut it = UserIterator::new(
            Box::new(VecIterator::new(raw.clone())),
            snapshot,
            KeyBounds::unbounded(),
        );
        for op in &ops {
            if matches!(op, Op::Next | Op::Prev) && !it.valid() {
                continue;
            }
            if let Err(e) = user_step(&mut it, op) {
                prop_assert!(e.is_corruption(), "{}", e);
                prop_assert!(!it.valid());
            }
        }
        let mut stream = CompactionStream::new(Box::new(VecIterator::new(raw.clone())), snapshot, true);
        let mut steps = 0;
        loop {
            match stream.next_entry() {
                Ok(Some(_)) => steps += 1,
                Ok(None) => break,
                Err(e) => {
                    prop_assert!(e.is_corruption(), "{}", e);
                    break;
                }
            }
            prop_assert!(steps <= raw.len());
        }
    }
}
