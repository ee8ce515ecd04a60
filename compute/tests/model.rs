//! Model-based test: random operation sequences against the database and a
//! `BTreeMap` model, with tiny memtables and tables so flushes, compactions,
//! WAL rotation and reopen run many times per case. Every answer must match.

mod common;

use proptest::prelude::*;

use common::model::{Memnode, ModelDb, Placement, READ_WEIGHT, ReadOp, read_op, value};
use common::{KEY_SPACE, Model, key};
use o3_compute::{DbRange, WriteBatch};
use o3_storage::compaction::Preset;

#[derive(Debug, Clone)]
enum Op {
    Put(usize, usize),
    Delete(usize),
    DeleteRange(usize, usize),
    Batch(Vec<(usize, Option<usize>)>),
    Read(ReadOp),
    /// Open a range over everything and keep it across later operations.
    OpenRange {
        reverse: bool,
    },
    /// Take up to `n` more pairs from held range `i`.
    StepRange(usize, usize),
    Flush,
    Compact(Option<usize>, Option<usize>),
    Reopen,
    /// Move the shard boundaries to these keys (adaptive runs only).
    Reshard(Vec<usize>),
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0..KEY_SPACE;
    prop_oneof![
        30 => (k.clone(), 0..200usize).prop_map(|(k, v)| Op::Put(k, v)),
        8 => k.clone().prop_map(Op::Delete),
        2 => (k.clone(), 0..40usize).prop_map(|(a, w)| Op::DeleteRange(a, a + w)),
        6 => prop::collection::vec((k.clone(), prop::option::of(0..200usize)), 1..12).prop_map(Op::Batch),
        READ_WEIGHT => read_op().prop_map(Op::Read),
        2 => any::<bool>().prop_map(|reverse| Op::OpenRange { reverse }),
        6 => (0..4usize, 1..30usize).prop_map(|(i, n)| Op::StepRange(i, n)),
        2 => Just(Op::Flush),
        1 => (prop::option::of(k.clone()), prop::option::of(k)).prop_map(|(a, b)| Op::Compact(a, b)),
        1 => Just(Op::Reopen),
    ]
}

/// [`op`] plus forced re-splits at random keys.
fn op_with_reshards() -> impl Strategy<Value = Op> {
    prop_oneof![
        40 => op(),
        1 => prop::collection::vec(0..KEY_SPACE, 0..6).prop_map(Op::Reshard),
    ]
}

/// A range held open, the pairs it must still yield, and its direction.
type HeldRange = (DbRange, std::vec::IntoIter<(Vec<u8>, Vec<u8>)>, bool);

/// Run `ops` under the compaction `preset`, checking every answer against
/// the model; returns the transcript of answers for cross-preset comparison.
fn run(
    ops: Vec<Op>,
    shards: usize,
    preset: Preset,
    placement: Placement,
) -> Result<Vec<String>, TestCaseError> {
    run_on(ops, ModelDb::open(shards, preset, placement))
}

/// [`run`] on an opened database.
fn run_on(ops: Vec<Op>, mut db: ModelDb) -> Result<Vec<String>, TestCaseError> {
    let mut transcript = Vec::new();
    let mut model = Model::new();
    // Ranges held across writes, flushes, trivial moves and compactions,
    // with the pairs they must still yield.
    let mut held: Vec<HeldRange> = Vec::new();
    for op in ops {
        let d = db.db();
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
            Op::Read(r) => transcript.extend(db.read(&r, &model)?),
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
            Op::Compact(a, b) => db.compact(a, b),
            Op::Reopen => {
                // Iterators do not survive a restart.
                held.clear();
                db.reopen();
            }
            Op::Reshard(points) => {
                let mut splits: Vec<Vec<u8>> = points.into_iter().map(key).collect();
                splits.sort();
                splits.dedup();
                d.reshard(splits.clone()).expect("reshard");
                prop_assert_eq!(d.shard_splits(), splits);
            }
        }
    }
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
    db.check_final(&model)?;
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
    fn database_matches_btreemap_model(ops in prop::collection::vec(op(), 1..400), shards in 4usize..7, placement in 0..4usize) {
        let placement = [Placement::Local, Placement::RoundTrip, Placement::Offload(Memnode::Direct), Placement::Service][placement];
        run(ops, shards, Preset::OneLeveling, placement)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases() / 2, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    /// Adaptive shards: the balancer re-splits every few dozen writes
    /// (every key written is sampled), and forced re-splits to random keys
    /// come between the writes, flushes, compactions and reopens; every
    /// answer still matches the model, and so does the database reopened
    /// at the end.
    #[test]
    fn adaptive_shards_match_btreemap_model(ops in prop::collection::vec(op_with_reshards(), 1..400), shards in 2usize..6, placement in 0..2usize) {
        let placement = [Placement::Local, Placement::Offload(Memnode::Direct)][placement];
        run_on(ops, ModelDb::open_adaptive(shards, Preset::OneLeveling, placement))?;
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

    /// The same operations under every compaction preset, and with jobs run
    /// locally, through the bytes-round-tripping executor, with offloaded
    /// memtables or on a compaction service, give the same answers (and
    /// each matches the model).
    #[test]
    fn every_compaction_preset_and_placement_gives_identical_answers(ops in prop::collection::vec(op(), 1..300), shards in 4usize..6) {
        let mut first: Option<(String, Vec<String>)> = None;
        let runs = Preset::ALL
            .iter()
            .map(|&p| (p, Placement::Local))
            .chain([
                (Preset::Leveling, Placement::RoundTrip),
                (Preset::Tiering, Placement::RoundTrip),
                (Preset::Leveling, Placement::Offload(Memnode::Direct)),
                (Preset::Leveling, Placement::Offload(Memnode::InProcess)),
                (Preset::Leveling, Placement::Service),
            ]);
        for (preset, placement) in runs {
            let transcript = run(ops.clone(), shards, preset, placement)?;
            let name = format!("{preset} ({placement:?})");
            match &first {
                None => first = Some((name, transcript)),
                Some((n0, t0)) => prop_assert_eq!(t0, &transcript, "{} and {} disagree", n0, name),
            }
        }
    }
}
