//! Shard-level flush and adaptive shard boundaries.
//!
//! 1. `write_share_evens_out_after_a_hot_prefix`: a new adaptive database
//!    starts with one shard and splits into four after its first window of
//!    uniform writes; when the writes move to a hot prefix (all in one
//!    shard), the balancer moves the boundaries and the busiest shard's
//!    share falls under a bound. The contents match a `BTreeMap` model
//!    throughout, across the re-splits and a reopen that keeps the keys.
//! 2. `no_crash_point_around_a_resplit_loses_or_duplicates_a_write`: a
//!    crash at every storage mutation of a workload that re-splits between
//!    synced writes (before, inside and after the flush and the manifest
//!    edit, with writes after the re-split only in the WAL) recovers
//!    exactly the acknowledged prefix.
//!    `a_crash_at_every_step_of_the_resplit_edit_keeps_the_acknowledged_writes`
//!    does the same for every mutation around the manifest edit itself,
//!    and checks that the reopened database has one layout or the other.
//! 3. `flushes_of_different_shards_run_at_once`: four shards sealed
//!    together are flushed by four jobs in flight at once.
//! 4. Options: adaptive and static split keys exclude each other; a static
//!    database refuses a re-split; bad split keys are refused.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use rand::{Rng, SeedableRng};

use common::{Model, for_each_crash_point, full_scan, tiny_options};
use o3_compute::{
    Completion, Db, DbOptions, Executor, Job, RoundTripExecutor, ShardBalanceOptions,
};
use o3_storage::env::{FaultInjectingFs, FaultPlan, Storage};

/// A written key and its value.
type Pair = (Vec<u8>, Vec<u8>);

fn adaptive_options(storage: Arc<dyn Storage>, shards: usize, window: u64) -> DbOptions {
    DbOptions {
        shard_splits: Vec::new(),
        adaptive_shards: true,
        shard_count: shards,
        shard_balance: ShardBalanceOptions {
            window_writes: window,
            sample_size: 256,
            skew_threshold: 1.5,
            cooldown_windows: 1,
        },
        write_buffer_size: 32 * 1024,
        max_unflushed_bytes: 64 * 32 * 1024,
        ..tiny_options(storage, 1)
    }
}

fn shares(db: &Db) -> Vec<f64> {
    db.stats().shards.iter().map(|s| s.write_share).collect()
}

fn written(db: &Db) -> Vec<u64> {
    db.stats().shards.iter().map(|s| s.write_bytes).collect()
}

fn max_share(db: &Db) -> f64 {
    shares(db).into_iter().fold(0.0, f64::max)
}

fn print_shares(db: &Db, when: &str) {
    let s = db.stats();
    let parts: Vec<String> = s
        .shards
        .iter()
        .map(|x| {
            format!(
                "{}..: {:.1}%",
                String::from_utf8_lossy(&x.lower_bound),
                x.write_share * 100.0
            )
        })
        .collect();
    println!("{when}: {} shards, {}", s.shards.len(), parts.join(", "));
}

#[test]
fn write_share_evens_out_after_a_hot_prefix() {
    const WINDOW: u64 = 2000;
    let storage: Arc<dyn Storage> = Arc::new(FaultInjectingFs::new());
    let db = Db::open("/db", adaptive_options(storage.clone(), 4, WINDOW)).expect("open");
    let mut model = Model::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let write = |db: &Db, model: &mut Model, key: String, i: u64| {
        let value = format!("v{i}").into_bytes();
        db.put(key.as_bytes(), &value).expect("put");
        model.insert(key.into_bytes(), value);
    };
    assert_eq!(db.shard_count(), 1, "a new adaptive database has one shard");

    // Uniform keys over the whole space: the first window ends in a split
    // into four at the sample's quartiles.
    let mut i = 0u64;
    for _ in 0..WINDOW {
        let k = format!("u{:08}", rng.random_range(0..100_000_000u64));
        write(&db, &mut model, k, i);
        i += 1;
    }
    assert_eq!(db.shard_count(), 4, "split after the first window");
    for _ in 0..WINDOW - 1 {
        let k = format!("u{:08}", rng.random_range(0..100_000_000u64));
        write(&db, &mut model, k, i);
        i += 1;
    }
    print_shares(&db, "uniform keys");
    assert!(
        max_share(&db) < 0.4,
        "uniform writes spread: {:?}",
        shares(&db)
    );
    let uniform_splits = db.shard_splits();

    // A hot prefix: every write under "u00", inside the first shard. One
    // more write ends the window whose end judged the uniform writes;
    // then a window of hot writes.
    let hot = |rng: &mut rand::rngs::StdRng| format!("u00{:06}", rng.random_range(0..1_000_000u64));
    let before = written(&db);
    for _ in 0..WINDOW {
        let k = hot(&mut rng);
        write(&db, &mut model, k, i);
        i += 1;
    }
    // The counters run since the split: the hot window's share is the
    // difference.
    let hot_window: Vec<u64> = written(&db)
        .iter()
        .zip(&before)
        .map(|(now, then)| now - then)
        .collect();
    let total: u64 = hot_window.iter().sum();
    let skewed_shares: Vec<f64> = hot_window
        .iter()
        .map(|&b| b as f64 / total as f64)
        .collect();
    println!(
        "hot prefix, before re-balancing: {} shards, shares {:?}",
        skewed_shares.len(),
        skewed_shares
    );
    let skewed = skewed_shares.iter().copied().fold(0.0, f64::max);
    for _ in 0..WINDOW {
        let k = hot(&mut rng);
        write(&db, &mut model, k, i);
        i += 1;
    }
    assert_ne!(db.shard_splits(), uniform_splits, "the boundaries moved");
    assert!(
        db.shard_splits().iter().all(|k| k.starts_with(b"u00")),
        "every boundary inside the hot prefix: {:?}",
        db.shard_splits()
    );
    // The counters restarted with the new layout: what they show now is
    // the share of the writes since.
    for _ in 0..WINDOW / 2 {
        let k = hot(&mut rng);
        write(&db, &mut model, k, i);
        i += 1;
    }
    print_shares(&db, "hot prefix, after re-balancing");
    let even = max_share(&db);
    assert!(skewed > 0.9, "the hot prefix went to one shard: {skewed}");
    assert!(
        even < 0.4,
        "after re-balancing the busiest shard has {even}"
    );
    assert!(db.stats().reshards >= 2, "{}", db.stats());
    println!("{}", db.stats());

    // The model holds across the re-splits, and across a reopen, which
    // takes the split keys from the manifest.
    assert_eq!(full_scan(&db), model);
    let splits = db.shard_splits();
    db.close().expect("close");
    let db = Db::open("/db", adaptive_options(storage, 4, WINDOW)).expect("reopen");
    assert_eq!(db.shard_splits(), splits);
    assert_eq!(full_scan(&db), model);
    for (k, v) in model.iter().step_by(97) {
        assert_eq!(db.get(k).expect("get").as_ref(), Some(v));
    }
}

/// The workload of the crash-point test: synced writes, a re-split to
/// three shards, more writes, a re-split to two other keys, more writes;
/// every acknowledged op is recorded. Stops at the first error (the
/// crash).
fn resplit_workload(storage: Arc<dyn Storage>, acked: &mut Vec<Pair>) {
    // The balancer never judges (an endless window): the test re-splits
    // by hand.
    let opts = DbOptions {
        sync_writes: true,
        write_buffer_size: 4096,
        max_unflushed_bytes: 64 * 4096,
        ..adaptive_options(storage, 4, u64::MAX)
    };
    let Ok(db) = Db::open("/db", opts) else {
        return;
    };
    let phases: [&[&str]; 3] = [&["k0060", "k0130"], &["k0030"], &[]];
    let mut i = 0usize;
    for splits in phases {
        for _ in 0..12 {
            let k = common::key(i * 37 % common::KEY_SPACE);
            let v = format!("v{i}").into_bytes();
            if db.put(&k, &v).is_err() {
                return;
            }
            acked.push((k, v));
            i += 1;
        }
        let splits = splits.iter().map(|s| s.as_bytes().to_vec()).collect();
        if db.reshard(splits).is_err() {
            return;
        }
    }
    for _ in 0..8 {
        let k = common::key(i * 37 % common::KEY_SPACE);
        let v = format!("v{i}").into_bytes();
        if db.put(&k, &v).is_err() {
            return;
        }
        acked.push((k, v));
        i += 1;
    }
    // Close keeps the writes since the last re-split in the WAL only (it
    // does not flush memtables): the next open replays them.
    let _ = db.close();
}

fn state_after(ops: &[Pair]) -> Model {
    ops.iter().cloned().collect::<BTreeMap<_, _>>()
}

#[test]
fn no_crash_point_around_a_resplit_loses_or_duplicates_a_write() {
    let run = |storage: Arc<dyn Storage>| {
        let mut acked = Vec::new();
        resplit_workload(storage, &mut acked);
        acked
    };
    // Every third point (O3_CRASH_POINT_STEP=1 tries them all).
    let step = 3;
    for_each_crash_point(step, run, |point, all, acked, fs| {
        let storage: Arc<dyn Storage> = Arc::new(fs.clone());
        let db = Db::open("/db", adaptive_options(storage, 4, u64::MAX))
            .unwrap_or_else(|e| panic!("{point}: reopen failed: {e}"));
        let state = full_scan(&db);
        let with_acked = state_after(&acked);
        let with_next = all.get(acked.len()).map(|op| {
            let mut ops = acked.clone();
            ops.push(op.clone());
            state_after(&ops)
        });
        assert!(
            state == with_acked || with_next.as_ref() == Some(&state),
            "{point}: recovered state is not the acknowledged prefix ({} ops)",
            acked.len()
        );
        db.close().expect("close");
    });
}

/// The re-split itself, crash point by crash point: synced writes, a
/// flush, then the re-split (its flush finds nothing left, so its first
/// mutation is the manifest edit), then synced writes that only the WAL
/// holds. Returns the acknowledged writes and the mutation counts just
/// before and after the re-split.
fn edit_workload(fs: &FaultInjectingFs) -> (Vec<Pair>, u64, u64) {
    let mut acked = Vec::new();
    let opts = DbOptions {
        sync_writes: true,
        // Nothing runs in the background between the marks.
        disable_auto_compactions: true,
        ..adaptive_options(Arc::new(fs.clone()), 4, u64::MAX)
    };
    let Ok(db) = Db::open("/db", opts) else {
        return (acked, 0, 0);
    };
    let mut put = |db: &Db, i: usize| {
        let k = common::key(i * 37 % common::KEY_SPACE);
        let v = format!("v{i}").into_bytes();
        db.put(&k, &v).map(|()| acked.push((k, v))).is_ok()
    };
    for i in 0..30 {
        if !put(&db, i) {
            return (acked, 0, 0);
        }
    }
    if db.flush().is_err() {
        return (acked, 0, 0);
    }
    let before = fs.mutations();
    if db
        .reshard(vec![b"k0050".to_vec(), b"k0150".to_vec()])
        .is_err()
    {
        return (acked, before, before);
    }
    let after = fs.mutations();
    for i in 30..40 {
        if !put(&db, i) {
            break;
        }
    }
    let _ = db.close();
    (acked, before, after)
}

#[test]
fn a_crash_at_every_step_of_the_resplit_edit_keeps_the_acknowledged_writes() {
    let clean = FaultInjectingFs::new();
    let (all, before, after) = edit_workload(&clean);
    assert!(after > before, "the re-split wrote its edit");
    for k in before.saturating_sub(2)..after + 8 {
        let fs = FaultInjectingFs::new();
        fs.set_plan(FaultPlan {
            fail_after_mutations: Some(k),
            ..FaultPlan::default()
        });
        let (acked, ..) = edit_workload(&fs);
        fs.crash();
        let db = Db::open("/db", adaptive_options(Arc::new(fs.clone()), 4, u64::MAX))
            .unwrap_or_else(|e| panic!("crash point {k}: reopen failed: {e}"));
        let state = full_scan(&db);
        let with_next = all.get(acked.len()).map(|op| {
            let mut ops = acked.clone();
            ops.push(op.clone());
            state_after(&ops)
        });
        assert!(
            state == state_after(&acked) || with_next.as_ref() == Some(&state),
            "crash point {k} (re-split between {before} and {after}): not the acknowledged prefix ({} ops)",
            acked.len()
        );
        // Either layout, whole: the old one (one shard) or the new one.
        let splits = db.shard_splits();
        assert!(
            splits.is_empty() || splits == [b"k0050".to_vec(), b"k0150".to_vec()],
            "crash point {k}: split keys {splits:?}"
        );
        db.close().expect("close");
    }
}

/// Holds every flush until `want` flushes are in its hands at once (or a
/// generous timeout passes, so a failure cannot hang the test), then runs
/// them on a round-trip executor.
#[derive(Debug)]
struct FlushGate {
    inner: Arc<dyn Executor>,
    want: usize,
    held: Arc<(Mutex<(usize, usize)>, Condvar)>,
}

impl Executor for FlushGate {
    fn name(&self) -> &str {
        "flush-gate"
    }

    fn submit(&self, job: Job, done: Completion) {
        if !matches!(job, Job::Flush(_)) {
            self.inner.submit(job, done);
            return;
        }
        let inner = self.inner.clone();
        let held = self.held.clone();
        let want = self.want;
        std::thread::spawn(move || {
            let (lock, cv) = &*held;
            let mut g = lock.lock();
            g.0 += 1;
            g.1 = g.1.max(g.0);
            cv.notify_all();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while g.1 < want && std::time::Instant::now() < deadline {
                cv.wait_for(&mut g, Duration::from_millis(100));
            }
            g.0 -= 1;
            drop(g);
            inner.submit(job, done);
        });
    }
}

#[test]
fn flushes_of_different_shards_run_at_once() {
    let storage: Arc<dyn Storage> = Arc::new(FaultInjectingFs::new());
    let held = Arc::new((Mutex::new((0, 0)), Condvar::new()));
    let gate = Arc::new(FlushGate {
        inner: RoundTripExecutor::new(storage.clone(), 4).expect("executor"),
        want: 4,
        held: held.clone(),
    });
    let opts = DbOptions {
        max_background_jobs: 4,
        // L0 files stay where the flushes put them, to be counted.
        disable_auto_compactions: true,
        executor: Some(gate),
        ..tiny_options(storage, 4)
    };
    let db = Db::open("/db", opts).expect("open");
    for i in 0..common::KEY_SPACE {
        db.put(&common::key(i), b"v").expect("put");
    }
    db.flush().expect("flush");
    assert_eq!(held.0.lock().1, 4, "four flushes were held at once");
    let s = db.stats();
    assert_eq!(s.max_concurrent_flushes, 4, "{s}");
    assert_eq!(s.shards.len(), 4);
    for (i, shard) in s.shards.iter().enumerate() {
        assert!(shard.flushes >= 1, "shard {i} flushed: {s}");
        assert!(shard.l0_files >= 1, "shard {i} has L0 files: {s}");
        assert!(
            (shard.write_share - 0.25).abs() < 0.01,
            "shard {i} took a quarter of the writes: {s}"
        );
    }
}

#[test]
fn adaptive_and_static_split_keys_exclude_each_other() {
    let storage: Arc<dyn Storage> = Arc::new(FaultInjectingFs::new());
    let both = DbOptions {
        shard_splits: vec![b"m".to_vec()],
        ..adaptive_options(storage.clone(), 2, 100)
    };
    let e = Db::open("/a", both).expect_err("both").to_string();
    assert!(
        e.contains("adaptive_shards") && e.contains("shard_splits"),
        "{e}"
    );

    let count = DbOptions {
        shard_count: 3,
        ..tiny_options(storage.clone(), 2)
    };
    let e = Db::open("/b", count).expect_err("count").to_string();
    assert!(e.contains("shard_count 3"), "{e}");

    let db = Db::open("/c", tiny_options(storage.clone(), 2)).expect("open");
    let e = db
        .reshard(vec![b"x".to_vec()])
        .expect_err("static")
        .to_string();
    assert!(e.contains("fixed"), "{e}");

    let db = Db::open("/d", adaptive_options(storage, 2, 100)).expect("open");
    for bad in [vec![b"b".to_vec(), b"a".to_vec()], vec![Vec::new()]] {
        let e = db.reshard(bad).expect_err("bad keys").to_string();
        assert!(e.contains("split keys"), "{e}");
    }
}
