//! Model-based test: random operation sequences against the database and a
//! `BTreeMap` model, with tiny memtables and tables so flushes, compactions,
//! WAL rotation and reopen run many times per case. Every answer must match.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use proptest::prelude::*;

use common::{KEY_SPACE, key, tiny_options};
use o3_compute::{Db, DbRange, Snapshot, WriteBatch};
use o3_storage::compaction::Preset;
use o3_storage::env::{FaultInjectingFs, Storage};

#[derive(Debug, Clone)]
enum Op {
    Put(usize, usize),
    Delete(usize),
    DeleteRange(usize, usize),
    Batch(Vec<(usize, Option<usize>)>),
    Get(usize),
    TakeSnapshot,
    GetAtSnapshot(usize, usize),
    DropSnapshot(usize),
    Scan {
        lo: Option<usize>,
        hi: Option<usize>,
        reverse: bool,
        at_snapshot: Option<usize>,
    },
    MultiGet(Vec<usize>),
    /// Open a range over everything and keep it across later operations.
    OpenRange {
        reverse: bool,
    },
    /// Take up to `n` more pairs from held range `i`.
    StepRange(usize, usize),
    Flush,
    Compact(Option<usize>, Option<usize>),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0..KEY_SPACE;
    prop_oneof![
        30 => (k.clone(), 0..200usize).prop_map(|(k, v)| Op::Put(k, v)),
        8 => k.clone().prop_map(Op::Delete),
        2 => (k.clone(), 0..40usize).prop_map(|(a, w)| Op::DeleteRange(a, a + w)),
        6 => prop::collection::vec((k.clone(), prop::option::of(0..200usize)), 1..12).prop_map(Op::Batch),
        12 => k.clone().prop_map(Op::Get),
        2 => Just(Op::TakeSnapshot),
        4 => (k.clone(), 0..8usize).prop_map(|(k, s)| Op::GetAtSnapshot(k, s)),
        1 => (0..8usize).prop_map(Op::DropSnapshot),
        4 => (prop::option::of(k.clone()), prop::option::of(k.clone()), any::<bool>(), prop::option::of(0..8usize))
            .prop_map(|(lo, hi, reverse, at_snapshot)| Op::Scan { lo, hi, reverse, at_snapshot }),
        3 => prop::collection::vec(k.clone(), 0..10).prop_map(Op::MultiGet),
        2 => any::<bool>().prop_map(|reverse| Op::OpenRange { reverse }),
        6 => (0..4usize, 1..30usize).prop_map(|(i, n)| Op::StepRange(i, n)),
        2 => Just(Op::Flush),
        1 => (prop::option::of(k.clone()), prop::option::of(k)).prop_map(|(a, b)| Op::Compact(a, b)),
        1 => Just(Op::Reopen),
    ]
}

/// The expected content: key → value.
type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// A value that names the key and the write, padded so entries fill
/// memtables and blocks quickly.
fn value(k: usize, v: usize) -> Vec<u8> {
    format!("value-{k}-{v}-{}", "x".repeat(v % 40)).into_bytes()
}

fn model_scan(
    m: &BTreeMap<Vec<u8>, Vec<u8>>,
    lo: Option<usize>,
    hi: Option<usize>,
    reverse: bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let lo_b = lo.map_or(Bound::Unbounded, |l| Bound::Included(key(l)));
    let hi_b = hi.map_or(Bound::Unbounded, |h| Bound::Excluded(key(h)));
    if let (Some(l), Some(h)) = (lo, hi)
        && l >= h
    {
        return Vec::new();
    }
    let mut v: Vec<_> = m
        .range((lo_b, hi_b))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if reverse {
        v.reverse();
    }
    v
}

/// A range held open, the pairs it must still yield, and its direction.
type HeldRange = (DbRange, std::vec::IntoIter<(Vec<u8>, Vec<u8>)>, bool);

/// Run `ops` under the compaction `preset`, checking every answer against
/// the model; returns the transcript of answers for cross-preset comparison.
fn run(ops: Vec<Op>, shards: usize, preset: Preset) -> Result<Vec<String>, TestCaseError> {
    let mut transcript = Vec::new();
    let fs = FaultInjectingFs::new();
    let storage: Arc<dyn Storage> = Arc::new(fs.clone());
    let dir = std::path::Path::new("/db");
    let open = || {
        let mut o = tiny_options(storage.clone(), shards);
        o.compaction.preset = preset;
        Db::open(dir, o).expect("open")
    };
    let mut db = Some(open());
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut snapshots: Vec<(Snapshot, Model)> = Vec::new();
    // Ranges held across writes, flushes, trivial moves and compactions,
    // with the pairs they must still yield.
    let mut held: Vec<HeldRange> = Vec::new();
    for op in ops {
        let d = db.as_ref().expect("open database");
        match op {
            Op::Put(k, v) => {
                d.put(&key(k), &value(k, v)).expect("put");
                model.insert(key(k), value(k, v));
            }
            Op::Delete(k) => {
                d.delete(&key(k)).expect("delete");
                model.remove(&key(k));
            }
            Op::DeleteRange(a, b) => {
                d.delete_range(&key(a), &key(b)).expect("delete_range");
                let doomed: Vec<_> = model
                    .range(key(a)..key(b))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in doomed {
                    model.remove(&k);
                }
            }
            Op::Batch(items) => {
                let mut b = WriteBatch::new();
                for (k, v) in items {
                    match v {
                        Some(v) => {
                            b.put(&key(k), &value(k, v));
                            model.insert(key(k), value(k, v));
                        }
                        None => {
                            b.delete(&key(k));
                            model.remove(&key(k));
                        }
                    }
                }
                d.write(b).expect("write batch");
            }
            Op::Get(k) => {
                let got = d.get(&key(k)).expect("get");
                transcript.push(format!("get {k} {got:?}"));
                prop_assert_eq!(got, model.get(&key(k)).cloned(), "get {}", k);
            }
            Op::TakeSnapshot => {
                if snapshots.len() < 8 {
                    snapshots.push((d.snapshot(), model.clone()));
                }
            }
            Op::GetAtSnapshot(k, s) => {
                if let Some((snap, m)) = snapshots.get(s) {
                    let got = d.get_at(&key(k), snap).expect("get_at");
                    transcript.push(format!("get_at {k} {s} {got:?}"));
                    prop_assert_eq!(got, m.get(&key(k)).cloned());
                }
            }
            Op::DropSnapshot(s) => {
                if s < snapshots.len() {
                    snapshots.remove(s);
                }
            }
            Op::Scan {
                lo,
                hi,
                reverse,
                at_snapshot,
            } => {
                let lo_b = lo.map(key);
                let hi_b = hi.map(key);
                let range = (
                    lo_b.as_deref().map_or(Bound::Unbounded, Bound::Included),
                    hi_b.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
                );
                if lo.is_some() && hi.is_some() && lo >= hi {
                    continue;
                }
                let (got, want) = match at_snapshot.and_then(|s| snapshots.get(s)) {
                    Some((snap, m)) => (
                        d.scan_at(range, reverse, Some(snap)).expect("scan"),
                        model_scan(m, lo, hi, reverse),
                    ),
                    None => (
                        d.scan(range, reverse).expect("scan"),
                        model_scan(&model, lo, hi, reverse),
                    ),
                };
                transcript.push(format!(
                    "scan {lo:?} {hi:?} {reverse} {at_snapshot:?} {got:?}"
                ));
                prop_assert_eq!(
                    got,
                    want,
                    "scan lo={:?} hi={:?} reverse={}",
                    lo,
                    hi,
                    reverse
                );
            }
            Op::MultiGet(keys) => {
                let keys: Vec<Vec<u8>> = keys.into_iter().map(key).collect();
                let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
                let got = d.multi_get(&refs).expect("multi_get");
                transcript.push(format!("multi_get {got:?}"));
                let want: Vec<_> = keys.iter().map(|k| model.get(k).cloned()).collect();
                prop_assert_eq!(got, want, "multi_get");
            }
            Op::OpenRange { reverse } => {
                if held.len() < 4 {
                    let mut want: Vec<_> =
                        model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    if reverse {
                        want.reverse();
                    }
                    held.push((d.range(..), want.into_iter(), reverse));
                }
            }
            Op::StepRange(i, n) => {
                if let Some((range, want, reverse)) = held.get_mut(i) {
                    for _ in 0..n {
                        let got = if *reverse {
                            range.next_back()
                        } else {
                            range.next()
                        };
                        let got = got
                            .transpose()
                            .map_err(|e| TestCaseError::fail(format!("held range: {e}")))?;
                        transcript.push(format!("step {i} {got:?}"));
                        prop_assert_eq!(got, want.next(), "held range {}", i);
                    }
                }
            }
            Op::Flush => d.flush().expect("flush"),
            Op::Compact(a, b) => {
                let (a, b) = (a.map(key), b.map(key));
                d.compact_range(a.as_deref(), b.as_deref())
                    .expect("compact");
            }
            Op::Reopen => {
                // Snapshots and iterators do not survive a restart.
                snapshots.clear();
                held.clear();
                db.take().expect("db").close().expect("close");
                db = Some(open());
            }
        }
    }
    let d = db.as_ref().expect("open database");
    prop_assert_eq!(common::full_scan(d), model.clone(), "final scan");
    // Every held range finishes with exactly what it had left.
    for (i, (range, want, reverse)) in held.drain(..).enumerate() {
        let rest: Vec<_> = if reverse {
            range.rev().collect::<Result<_, _>>()
        } else {
            range.collect::<Result<_, _>>()
        }
        .map_err(|e| TestCaseError::fail(format!("held range {i}: {e}")))?;
        prop_assert_eq!(rest, want.collect::<Vec<_>>(), "rest of held range {}", i);
    }
    // And once more after a restart, from disk alone.
    snapshots.clear();
    db.take().expect("db").close().expect("close");
    let d = open();
    prop_assert_eq!(common::full_scan(&d), model, "scan after reopen");
    Ok(transcript)
}

fn cases() -> u32 {
    std::env::var("O3_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn database_matches_btreemap_model(ops in prop::collection::vec(op(), 1..400), shards in 4usize..7) {
        run(ops, shards, Preset::OneLeveling)?;
    }
}

fn metamorphic_cases() -> u32 {
    std::env::var("O3_METAMORPHIC_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: metamorphic_cases(), max_shrink_iters: 500, ..ProptestConfig::default() })]

    /// The same operations under every compaction preset give the same
    /// answers (and each matches the model).
    #[test]
    fn every_compaction_preset_gives_identical_answers(ops in prop::collection::vec(op(), 1..300), shards in 4usize..6) {
        let mut first: Option<(Preset, Vec<String>)> = None;
        for &preset in Preset::ALL {
            let transcript = run(ops.clone(), shards, preset)?;
            match &first {
                None => first = Some((preset, transcript)),
                Some((p0, t0)) => prop_assert_eq!(t0, &transcript, "{} and {} disagree", p0, preset),
            }
        }
    }
}
