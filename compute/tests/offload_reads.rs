//! The cache-enhanced read path over offloaded images: the same operations
//! under every read policy (delegation only, the key→offset cache, the
//! adaptive policy that also pulls hot images back and reads scans' images
//! whole, with key indexes of every image, of some, or of none) give the
//! `BTreeMap` model's answers, with snapshots, overwrites
//! of cached keys, flushes that release images and a memory node that loses
//! them; a cached entry is never served stale and is gone once its image is
//! released.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::{held_back_options, wait_for};
use o3_compute::{
    CacheValues, Db, DbStats, MemoryNodeChoice, OffloadOptions, ReadPolicy, Snapshot,
};
use o3_memnode::MemoryNode;
use o3_memnode::client::Direct;
use proptest::prelude::*;

fn direct() -> Arc<Direct> {
    Arc::new(Direct::new(Arc::new(
        MemoryNode::with_capacity(64 << 20).expect("memory node"),
    )))
}

/// A database offloading every sealed memtable to `store` under `policy`,
/// flushes held back, with `index_bytes` for key indexes of images and
/// cache entries holding values as `values` says.
fn open_indexed(
    store: &Arc<Direct>,
    policy: ReadPolicy,
    index_bytes: u64,
    values: CacheValues,
) -> Db {
    let mut o = held_back_options(2);
    o.offload = Some(OffloadOptions {
        memory_node: MemoryNodeChoice::Store(store.clone()),
        max_local_sealed_memtables: 0,
        min_memtables_to_merge: 1000,
        read_policy: policy,
        offset_cache_bytes: 64 << 10,
        cache_admit_after: 1,
        cache_values: values,
        // Room for a few of the tiny test images, so pulling back also
        // drops colder copies.
        pull_back_bytes: 16 << 10,
        index_bytes,
        ..OffloadOptions::default()
    });
    Db::open(Path::new("/db"), o).expect("open")
}

/// Every sealed memtable is on the memory node.
fn all_offloaded(s: &DbStats) -> bool {
    s.offload.local_sealed_memtables == 0
}

fn key(i: u8) -> Vec<u8> {
    format!("key{i:03}").into_bytes()
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    /// Every key written once (several memtables' worth).
    Fill(u8),
    Delete(u8),
    Get(u8),
    /// The same key read many times (a hot key: its image gets many reads).
    HotGets(u8),
    TakeSnapshot,
    GetAt(u8, usize),
    Scan(u8, u8, bool),
    ScanAt(u8, usize),
    /// Wait for shipping to catch up, so the reads that follow go remote.
    Settle,
    /// Flush every memtable: every image is released.
    Flush,
    /// The memory node loses every image (it died and came back empty).
    Lose,
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0u8..48;
    prop_oneof![
        8 => (k.clone(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => any::<u8>().prop_map(Op::Fill),
        1 => k.clone().prop_map(Op::Delete),
        4 => k.clone().prop_map(Op::Get),
        2 => k.clone().prop_map(Op::HotGets),
        1 => Just(Op::TakeSnapshot),
        2 => (k.clone(), 0usize..4).prop_map(|(k, s)| Op::GetAt(k, s)),
        2 => (k.clone(), k.clone(), any::<bool>()).prop_map(|(a, b, r)| Op::Scan(a.min(b), a.max(b), r)),
        1 => (k, 0usize..4).prop_map(|(k, s)| Op::ScanAt(k, s)),
        2 => Just(Op::Settle),
        1 => Just(Op::Flush),
        1 => Just(Op::Lose),
    ]
}

fn value(k: u8, v: u8) -> Vec<u8> {
    format!("v{k}-{v}-{}", "x".repeat(v as usize % 120)).into_bytes()
}

/// One database under a policy, its memory node and its snapshots.
struct Subject {
    db: Db,
    store: Arc<Direct>,
    snapshots: Vec<Snapshot>,
}

/// What a read answered, compared across policies and with the model.
type Answer = Vec<(Vec<u8>, Vec<u8>)>;

fn scan(db: &Db, lo: &[u8], hi: &[u8], reverse: bool, at: Option<&Snapshot>) -> Answer {
    let range = lo.to_vec()..hi.to_vec();
    let it = match at {
        Some(s) => db.range_at(range, s),
        None => db.range(range),
    };
    let mut out: Answer = if reverse {
        it.rev().map(|r| r.unwrap()).collect()
    } else {
        it.map(|r| r.unwrap()).collect()
    };
    if reverse {
        out.reverse();
    }
    out
}

fn model_scan(model: &BTreeMap<Vec<u8>, Vec<u8>>, lo: &[u8], hi: &[u8]) -> Answer {
    model
        .range(lo.to_vec()..hi.to_vec())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Key index room of the adaptive variants: none, a few of the tiny test
/// images' indexes (scans then merge indexed images here and delegate the
/// rest), all of them.
const FEW_INDEXES: u64 = 1200;
const ALL_INDEXES: u64 = 1 << 20;

/// The variants every operation runs under, as (policy, index bytes,
/// cache entries holding values): the last holds every cached entry's key
/// and value (the adaptive policy's choice over a slow link).
const VARIANTS: [(ReadPolicy, u64, CacheValues); 6] = [
    (ReadPolicy::Delegate, 0, CacheValues::Auto),
    (ReadPolicy::Cache, 0, CacheValues::Auto),
    (ReadPolicy::Adaptive, 0, CacheValues::Auto),
    (ReadPolicy::Adaptive, FEW_INDEXES, CacheValues::Auto),
    (ReadPolicy::Adaptive, ALL_INDEXES, CacheValues::Auto),
    (ReadPolicy::Adaptive, FEW_INDEXES, CacheValues::On),
];

/// Run `ops` on a database per variant and on the model; every read's
/// answer must be the model's under every variant. Returns the stats, in
/// the order of [`VARIANTS`].
fn run(ops: &[Op]) -> Vec<DbStats> {
    let mut subjects: Vec<Subject> = VARIANTS
        .iter()
        .map(|&(policy, index_bytes, values)| {
            let store = direct();
            Subject {
                db: open_indexed(&store, policy, index_bytes, values),
                store,
                snapshots: Vec::new(),
            }
        })
        .collect();
    let mut model = BTreeMap::new();
    let mut models_at: Vec<BTreeMap<Vec<u8>, Vec<u8>>> = Vec::new();
    for (n, op) in ops.iter().enumerate() {
        for (s, (policy, index_bytes, values)) in subjects.iter_mut().zip(VARIANTS) {
            let db = &s.db;
            let ctx = || {
                format!(
                    "op {n} {op:?} under {policy} with {index_bytes} index bytes, values {values}"
                )
            };
            match op {
                Op::Put(k, v) => db.put(&key(*k), &value(*k, *v)).unwrap(),
                Op::Fill(v) => {
                    for k in 0..48 {
                        db.put(&key(k), &value(k, v.wrapping_add(k))).unwrap();
                    }
                }
                Op::Delete(k) => db.delete(&key(*k)).unwrap(),
                Op::Get(k) => assert_eq!(
                    db.get(&key(*k)).unwrap(),
                    model.get(&key(*k)).cloned(),
                    "{}",
                    ctx()
                ),
                Op::HotGets(k) => {
                    for _ in 0..80 {
                        assert_eq!(
                            db.get(&key(*k)).unwrap(),
                            model.get(&key(*k)).cloned(),
                            "{}",
                            ctx()
                        );
                    }
                }
                Op::TakeSnapshot => s.snapshots.push(db.snapshot()),
                Op::GetAt(k, i) => {
                    if let Some(snap) = s.snapshots.get(*i) {
                        assert_eq!(
                            db.get_at(&key(*k), snap).unwrap(),
                            models_at[*i].get(&key(*k)).cloned(),
                            "{}",
                            ctx()
                        );
                    }
                }
                Op::Scan(a, b, reverse) => {
                    let (lo, hi) = (key(*a), key(b.saturating_add(1)));
                    assert_eq!(
                        scan(db, &lo, &hi, *reverse, None),
                        model_scan(&model, &lo, &hi),
                        "{}",
                        ctx()
                    );
                }
                Op::ScanAt(a, i) => {
                    if let Some(snap) = s.snapshots.get(*i) {
                        let (lo, hi) = (key(*a), key(255));
                        assert_eq!(
                            scan(db, &lo, &hi, false, Some(snap)),
                            model_scan(&models_at[*i], &lo, &hi),
                            "{}",
                            ctx()
                        );
                    }
                }
                Op::Settle => wait_for(db, "shipping to catch up", all_offloaded),
                Op::Flush => db.flush().unwrap(),
                Op::Lose => s.store.lose_everything(false),
            }
        }
        match op {
            Op::Put(k, v) => {
                model.insert(key(*k), value(*k, *v));
            }
            Op::Fill(v) => {
                for k in 0..48 {
                    model.insert(key(k), value(k, v.wrapping_add(k)));
                }
            }
            Op::Delete(k) => {
                model.remove(&key(*k));
            }
            Op::TakeSnapshot => models_at.push(model.clone()),
            _ => {}
        }
    }
    // A last full comparison, then the stats.
    for s in &subjects {
        assert_eq!(
            scan(&s.db, b"", b"\xff", false, None),
            model_scan(&model, b"", b"\xff")
        );
        for k in 0..48 {
            assert_eq!(s.db.get(&key(k)).unwrap(), model.get(&key(k)).cloned());
        }
    }
    subjects
        .into_iter()
        .map(|s| {
            let stats = s.db.stats();
            drop(s.snapshots);
            s.db.close().unwrap();
            stats
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if std::env::var_os("CI").is_some() { 24 } else { 12 },
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    /// Delegation only, the cache, and the adaptive policy with key indexes
    /// of no image, some or all answer every read as the model does.
    #[test]
    fn every_read_policy_answers_as_the_model(ops in proptest::collection::vec(op(), 20..160)) {
        run(&ops);
    }
}

/// A fixed workload that takes every path: the cache serves hits under
/// `Cache`; the adaptive policy pulls hot images back, answers lookups
/// from the copies and reads scans' images whole or from copies; with key
/// indexes it answers lookups and scans through them, and with room for
/// only some it also delegates for the others; all agree with delegation
/// only.
#[test]
fn the_adaptive_policy_takes_every_read_path_and_agrees_with_delegation() {
    let mut ops = Vec::new();
    for round in 0..6u8 {
        ops.extend((0..48).map(|k| Op::Put(k, round)));
    }
    ops.push(Op::TakeSnapshot);
    ops.extend((0..48).step_by(5).map(Op::Delete));
    ops.push(Op::Settle);
    for _ in 0..3 {
        ops.extend((0..48).step_by(3).map(Op::HotGets));
        ops.push(Op::Scan(0, 47, false));
        ops.push(Op::Scan(0, 47, true));
        ops.push(Op::ScanAt(0, 0));
        ops.extend((0..48).step_by(7).map(|k| Op::GetAt(k, 0)));
    }
    ops.extend((0..48).map(|k| Op::Put(k, 99)));
    ops.push(Op::Settle);
    ops.extend((0..48).step_by(3).map(Op::HotGets));
    ops.push(Op::Lose);
    ops.extend((0..48).step_by(4).map(Op::Get));
    ops.push(Op::Flush);
    ops.extend((0..48).step_by(4).map(Op::Get));
    let stats = run(&ops);
    let (delegate, cache, adaptive) = (&stats[0].offload, &stats[1].offload, &stats[2].offload);
    let (some, all, held) = (&stats[3].offload, &stats[4].offload, &stats[5].offload);
    // Entries holding values answer hot lookups with no remote read.
    assert!(
        held.cache_value_hits > 0 && held.cache_value_hits * 2 > held.one_sided_reads,
        "{held:?}"
    );
    assert_eq!(
        adaptive.images_indexed + adaptive.indexed_gets + adaptive.indexed_scans,
        0,
        "{adaptive:?}"
    );
    // Every image indexed: no lookup or scan batch is delegated before the
    // memory node is lost (after, rebuilt images are shipped and indexed
    // again).
    assert!(all.indexed_gets > 0 && all.indexed_scans > 0, "{all:?}");
    assert!(all.indexed_scan_reads > 0, "{all:?}");
    assert_eq!(all.delegated_scans, 0, "{all:?}");
    // Every image shipped (the rebuilt ones too) got an index, and the
    // room was never exceeded.
    assert_eq!(all.images_indexed, all.images_shipped, "{all:?}");
    assert_eq!(all.indexes_dropped, 0, "{all:?}");
    assert!(all.index_bytes <= ALL_INDEXES, "{all:?}");
    // Some indexed: both kinds of scan batch, and the budget holds.
    assert!(
        some.images_indexed > 0 && some.indexes_dropped > 0,
        "newer images took older ones' room: {some:?}"
    );
    assert!(
        some.indexed_scans > 0 && some.delegated_scans > 0,
        "{some:?}"
    );
    assert!(some.index_bytes <= FEW_INDEXES, "{some:?}");
    assert_eq!(
        delegate.cache_hits + delegate.one_sided_reads + delegate.pulled_back_gets,
        0,
        "{delegate:?}"
    );
    assert!(delegate.delegated_gets > 0, "{delegate:?}");
    assert!(
        cache.cache_hits > 0 && cache.one_sided_reads >= cache.cache_hits,
        "{cache:?}"
    );
    assert!(
        cache.cache_hits * 2 > delegate.delegated_gets,
        "most hot lookups are cache hits: {cache:?}"
    );
    assert_eq!(cache.pulled_back_gets, 0, "{cache:?}");
    assert!(
        adaptive.images_pulled_back > 0 && adaptive.pulled_back_gets > 0,
        "{adaptive:?}"
    );
    assert!(
        adaptive.scans_read_whole + adaptive.scans_on_pulled_back > 0,
        "{adaptive:?}"
    );
    assert!(
        adaptive.delegated_gets < delegate.delegated_gets,
        "{adaptive:?}"
    );
}

/// A key cached for an older image and overwritten later: the newer value
/// is returned while it is in the active memtable and after it too is
/// offloaded; a snapshot from before the overwrite still reads the old
/// value; once the images are released their entries are gone.
#[test]
fn a_stale_cache_entry_is_never_served_and_goes_with_its_image() {
    stale_entries_are_never_served(CacheValues::Off);
}

/// As above, with the cache holding keys and values.
#[test]
fn a_stale_held_value_is_never_served_and_goes_with_its_image() {
    stale_entries_are_never_served(CacheValues::On);
}

fn stale_entries_are_never_served(values: CacheValues) {
    let store = direct();
    let db = open_indexed(&store, ReadPolicy::Cache, 0, values);
    let hot = key(7);
    db.put(&hot, b"old").unwrap();
    // Two versions of another key in one image, a snapshot between them.
    let twice = key(8);
    db.put(&twice, b"first").unwrap();
    let between = db.snapshot();
    db.put(&twice, b"second").unwrap();
    // Fill memtables so the one holding `hot` is sealed and offloaded.
    for round in 0..12u8 {
        for k in 10..48 {
            db.put(&key(k), &value(k, round)).unwrap();
        }
    }
    wait_for(&db, "images offloaded", |s| {
        s.offload.images_offloaded >= 3 && all_offloaded(s)
    });
    let shipped = db.stats().offload.images_offloaded;
    for _ in 0..3 {
        assert_eq!(db.get(&hot).unwrap().as_deref(), Some(&b"old"[..]));
    }
    let s = db.stats().offload;
    assert!(
        s.cache_admissions >= 1 && s.cache_hits >= 1,
        "cached and used: {s:?}"
    );
    assert_eq!(
        s.cache_value_hits > 0,
        values == CacheValues::On,
        "hits answered by held values: {s:?}"
    );
    // An older version read at an old snapshot is not the key's newest in
    // its image: it must not be cached for later lookups.
    for _ in 0..3 {
        assert_eq!(
            db.get_at(&twice, &between).unwrap().as_deref(),
            Some(&b"first"[..])
        );
    }
    for _ in 0..3 {
        assert_eq!(db.get(&twice).unwrap().as_deref(), Some(&b"second"[..]));
    }
    drop(between);
    let before = db.snapshot();
    db.put(&hot, b"new").unwrap();
    assert_eq!(
        db.get(&hot).unwrap().as_deref(),
        Some(&b"new"[..]),
        "from the active memtable"
    );
    for round in 12..24u8 {
        for k in 10..48 {
            db.put(&key(k), &value(k, round)).unwrap();
        }
    }
    wait_for(&db, "the overwrite offloaded", |s| {
        all_offloaded(s) && s.offload.images_offloaded >= shipped + 3
    });
    let hits = db.stats().offload.cache_hits;
    for _ in 0..3 {
        assert_eq!(
            db.get(&hot).unwrap().as_deref(),
            Some(&b"new"[..]),
            "from the newer image"
        );
        assert_eq!(
            db.get_at(&hot, &before).unwrap().as_deref(),
            Some(&b"old"[..]),
            "at the snapshot"
        );
    }
    // The first lookup after the overwrite could not use the old image's
    // entry (a newer image may hold the key); later ones may hit the new
    // image's entry, never the old one (the answers above prove it).
    assert!(db.stats().offload.cache_hits >= hits);
    drop(before);
    db.flush().unwrap();
    wait_for(&db, "images released and their entries gone", |s| {
        s.offload.images_offloaded == 0 && s.offload.cache_entries == 0
    });
    let s = db.stats().offload;
    assert!(s.cache_invalidated >= 1, "{s:?}");
    assert_eq!(db.get(&hot).unwrap().as_deref(), Some(&b"new"[..]));
    db.close().unwrap();
}
