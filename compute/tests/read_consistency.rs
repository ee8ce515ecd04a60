//! Readers on other threads hold snapshots and iterators while one writer
//! keeps flushes, trivial moves and compactions running under every
//! compaction preset; every answer is checked against the model state at the
//! reader's sequence, rebuilt from the writer's log of operations.
//!
//! This is where an SST deleted under a pinned iterator (a trivial move gave
//! the file a second reference count) and a job started between a
//! snapshot's sequence read and its registration would show up as a read
//! error or a wrong answer.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::{KEY_SPACE, key, tiny_options};
use o3_compute::{Db, DbRange, ReadOptions, Snapshot};
use o3_storage::compaction::Preset;
use o3_storage::env::{LocalFs, Storage};

/// The writer's operations in sequence order: `(key index, value or delete)`.
/// Operation `i` has sequence `base + i + 1` (single-operation writes from a
/// single writer); it is logged before it is written.
struct OpLog {
    base: u64,
    ops: Mutex<Vec<(usize, Option<u64>)>>,
}

impl OpLog {
    fn model_at(&self, seq: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let ops = self.ops.lock();
        let n = (seq - self.base) as usize;
        assert!(n <= ops.len(), "snapshot {seq} is ahead of the log");
        let mut m = BTreeMap::new();
        for &(k, v) in &ops[..n] {
            match v {
                Some(v) => m.insert(key(k), value(k, v)),
                None => m.remove(&key(k)),
            };
        }
        m
    }
}

fn value(k: usize, v: u64) -> Vec<u8> {
    format!("v{k}-{v}-{}", "p".repeat((v % 50) as usize)).into_bytes()
}

fn writer(db: &Db, log: &OpLog, ops: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..ops {
        // Runs of ascending new keys (tables that overlap nothing below
        // them, so compactions move them down without rewriting) alternate
        // with random overwrites and deletes of the older keys.
        let k = if (i / 200) % 2 == 0 {
            KEY_SPACE + i
        } else {
            rng.random_range(0..KEY_SPACE + i)
        };
        let v = (rng.random_range(0..10) > 1).then_some(i as u64);
        log.ops.lock().push((k, v));
        match v {
            Some(v) => db.put(&key(k), &value(k, v)).expect("put"),
            None => db.delete(&key(k)).expect("delete"),
        }
        if i % 150 == 149 {
            db.flush().expect("flush");
        }
        if i % 500 == 499 {
            db.compact_range(None, None).expect("compact_range");
        }
    }
}

/// An iterator opened at a snapshot, drained a few pairs at a time while the
/// writer goes on; its whole output must be the model at the snapshot.
struct HeldRange {
    range: DbRange,
    seq: u64,
    got: Vec<(Vec<u8>, Vec<u8>)>,
    reverse: bool,
    _snapshot: Snapshot,
}

impl HeldRange {
    /// Take up to `n` more pairs; `true` when the range is exhausted.
    fn advance(&mut self, n: usize) -> bool {
        for _ in 0..n {
            let item = if self.reverse {
                self.range.next_back()
            } else {
                self.range.next()
            };
            match item {
                Some(pair) => self.got.push(pair.expect("held iterator step")),
                None => return true,
            }
        }
        false
    }

    fn check(mut self, log: &OpLog) {
        if self.reverse {
            self.got.reverse();
        }
        let want: Vec<_> = log.model_at(self.seq).into_iter().collect();
        assert_eq!(
            self.got.len(),
            want.len(),
            "held iterator at {} saw a different number of pairs",
            self.seq
        );
        assert!(self.got == want, "held iterator at {} disagrees", self.seq);
    }
}

fn reader(db: &Db, log: &OpLog, done: &AtomicBool, seed: u64) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut held: Vec<HeldRange> = Vec::new();
    let mut checks = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(done.load(Ordering::Acquire) && held.is_empty()) {
        assert!(Instant::now() < deadline, "reader did not finish in time");
        if held.len() < 3 && !done.load(Ordering::Acquire) {
            let snap = db.snapshot();
            let range = db.range_at(.., &snap);
            held.push(HeldRange {
                range,
                seq: snap.sequence(),
                got: Vec::new(),
                reverse: rng.random(),
                _snapshot: snap,
            });
        }
        // Point reads and a cursor at a fresh snapshot.
        let snap = db.snapshot();
        let model = log.model_at(snap.sequence());
        let keys: Vec<Vec<u8>> = (0..8)
            .map(|_| key(rng.random_range(0..KEY_SPACE * 10)))
            .collect();
        for k in &keys {
            assert_eq!(db.get_at(k, &snap).expect("get_at"), model.get(k).cloned());
        }
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        let got = db.multi_get_at(&refs, &snap).expect("multi_get_at");
        for (k, g) in keys.iter().zip(got) {
            assert_eq!(g, model.get(k).cloned(), "multi_get_at");
        }
        let lo = rng.random_range(0..KEY_SPACE * 10);
        let mut it = db
            .iter(ReadOptions::at(&snap).bounded(key(lo)..))
            .expect("iter");
        it.seek_to_first().expect("seek");
        let mut want = model.range(key(lo)..);
        for _ in 0..20 {
            match want.next() {
                Some((k, v)) => {
                    assert!(it.valid());
                    assert_eq!((it.key(), it.value()), (k.as_slice(), v.as_slice()));
                }
                None => assert!(!it.valid()),
            }
            it.next().expect("next");
        }
        checks += 1;
        // Advance the held iterators a little; check the finished ones.
        let mut i = 0;
        while i < held.len() {
            if held[i].advance(rng.random_range(1..40)) {
                held.swap_remove(i).check(log);
                checks += 1;
            } else {
                i += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    checks
}

#[test]
fn readers_holding_snapshots_and_iterators_agree_with_the_model() {
    for (n, &preset) in Preset::ALL.iter().enumerate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage: Arc<dyn Storage> = Arc::new(LocalFs::new());
        let mut o = tiny_options(storage, 3);
        o.compaction.preset = preset;
        o.idle_compaction_after = Some(Duration::from_millis(5));
        let db = Db::open(dir.path(), o).expect("open");
        let log = OpLog {
            base: db.snapshot().sequence(),
            ops: Mutex::new(Vec::new()),
        };
        let done = AtomicBool::new(false);
        let checks = std::thread::scope(|s| {
            let readers: Vec<_> = (0..2)
                .map(|r| {
                    let (db, log, done) = (&db, &log, &done);
                    s.spawn(move || reader(db, log, done, 100 * n as u64 + r))
                })
                .collect();
            writer(&db, &log, 2000, n as u64);
            done.store(true, Ordering::Release);
            readers
                .into_iter()
                .map(|r| r.join().expect("reader panicked"))
                .sum::<usize>()
        });
        assert!(checks > 10, "{preset}: readers ran only {checks} checks");
        let stats = db.stats();
        eprintln!(
            "{preset}: {checks} reader checks, {} compactions, {} trivial moves",
            stats.compactions, stats.trivial_moves
        );
        assert!(stats.compactions > 0, "{preset}: no compaction ran");
        assert_eq!(db.background_error(), None, "{preset}");
        let last = db.snapshot().sequence();
        let all: Vec<_> = db.range(..).collect::<Result<_, _>>().expect("scan");
        assert!(all == log.model_at(last).into_iter().collect::<Vec<_>>());
    }
}

/// Run the next claimed compaction here, if one is due: a real merge, or
/// (with `moved`) the trivial move an executor returns for a single input —
/// the input itself named as the output at the next level. Returns the
/// numbers of the job's input tables.
fn run_claimed(db: &Db, storage: &Arc<dyn Storage>, moved: bool) -> Option<Vec<u64>> {
    let job = db.claim_compaction().expect("claim")?;
    let inputs: Vec<_> = job.inputs.iter().flat_map(|(_, f)| f.iter()).collect();
    let result = if moved {
        assert_eq!(inputs.len(), 1, "a trivial move has one input");
        o3_storage::job::JobResult {
            token: job.token,
            outputs: vec![inputs[0].clone()],
            stats: Default::default(),
        }
    } else {
        job.execute(storage.as_ref()).expect("execute")
    };
    let numbers = inputs.iter().map(|f| f.number).collect();
    db.install_compaction(result).expect("install");
    Some(numbers)
}

/// The sequence the independent checker found, step by step: an iterator
/// pins a version in which a table sits unopened at L1; the table is moved
/// to L2 and then compacted away. The iterator must still read it.
#[test]
fn a_table_moved_and_then_compacted_stays_readable_for_an_older_iterator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage: Arc<dyn Storage> = Arc::new(LocalFs::new());
    let mut o = tiny_options(storage.clone(), 1);
    o.disable_auto_compactions = true;
    o.idle_compaction_after = None;
    o.compaction.levels.l0_compaction_trigger = 1;
    o.compaction.levels.max_bytes_for_level_base = 1;
    o.compaction.levels.target_file_size_base = 1 << 20;
    o.compaction.levels.max_compaction_bytes = 1 << 20;
    let db = Db::open(dir.path(), o).expect("open");
    let write_all = |round: u64| {
        for k in 0..50 {
            db.put(&key(k), &value(k, round)).expect("put");
        }
        db.flush().expect("flush");
    };
    let first: Vec<_> = (0..50).map(|k| (key(k), value(k, 1))).collect();
    write_all(1);
    run_claimed(&db, &storage, false).expect("L0 -> L1");
    assert_eq!(db.stats().levels[1].files, 1);
    // Pinned: the L1 table, not opened yet (deeper levels open lazily).
    let mut it = db.iter(ReadOptions::default()).expect("iter");
    let pinned = db.range(..);
    let moved = run_claimed(&db, &storage, true).expect("L1 -> L2 move");
    assert_eq!(db.stats().levels[2].files, 1);
    write_all(2);
    let mut compacted = false;
    for _ in 0..20 {
        match run_claimed(&db, &storage, false) {
            Some(inputs) => compacted |= inputs.contains(&moved[0]),
            None => break,
        }
    }
    assert!(compacted, "the moved table was never compacted");
    it.seek_to_first().expect("the pinned table is still there");
    let mut seen = Vec::new();
    while it.valid() {
        seen.push((it.key().to_vec(), it.value().to_vec()));
        it.next().expect("next");
    }
    assert!(seen == first, "the old iterator reads the old state");
    let old: Vec<_> = pinned.collect::<Result<_, _>>().expect("pinned range");
    assert!(old == first, "the old range reads the old state");
    assert_eq!(db.get(&key(0)).expect("get"), Some(value(0, 2)));
}

/// One writer with sync writes, one reader: a read never returns an older
/// version of a key than one whose write was acknowledged before the read
/// began, across memtable seals and flushes (a lookup racing an insert in
/// the active memtable once missed the key and fell through to an older
/// version).
#[test]
fn a_read_never_goes_back_before_an_acknowledged_write() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let options = o3_compute::DbOptions {
        write_buffer_size: 8 << 10,
        sync_writes: true,
        ..o3_compute::DbOptions::default()
    };
    let db = std::sync::Arc::new(o3_compute::Db::open(dir.path(), options).unwrap());
    const KEYS: u64 = 300;
    let key = |k: u64| format!("key{k:05}").into_bytes();
    let acked: std::sync::Arc<Vec<AtomicU64>> =
        std::sync::Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let reader = {
        let (db, acked, stop) = (db.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut stale = Vec::new();
            let mut k = 0u64;
            while !stop.load(Ordering::Acquire) {
                k = (k * 7 + 13) % KEYS;
                let floor = acked[k as usize].load(Ordering::Acquire);
                let read = db
                    .get(&key(k))
                    .unwrap()
                    .map(|v| String::from_utf8(v).unwrap().parse::<u64>().unwrap())
                    .unwrap_or(0);
                if read < floor {
                    stale.push((k, read, floor));
                }
            }
            stale
        })
    };
    for version in 1..12_000u64 {
        let k = version % KEYS;
        db.put(&key(k), version.to_string().as_bytes()).unwrap();
        acked[k as usize].store(version, Ordering::Release);
    }
    stop.store(true, Ordering::Release);
    let stale = reader.join().unwrap();
    assert!(
        stale.is_empty(),
        "stale reads (key, read, acknowledged): {stale:?}"
    );
}
