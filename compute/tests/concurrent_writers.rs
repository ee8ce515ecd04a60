//! Several threads writing batches at once (group commit: one leader
//! commits the others' batches, followers poll and then sleep) while
//! readers check snapshots, with memtables rotating, flushes and
//! compactions running; and a power cut under concurrent writers.
//!
//! Every batch of writer `w` sets all of `w`'s keys (spread over every
//! shard) to the batch's number, so a snapshot must show each writer's keys
//! all at one number (a batch is atomic), and one reader's later snapshots
//! never show a lower number (acknowledged writes stay visible, in order).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{key, tiny_options};
use o3_compute::{Db, DbOptions, WriteBatch, WriteOptions};
use o3_storage::env::{FaultInjectingFs, LocalFs};

const WRITERS: usize = 4;
const KEYS_PER_WRITER: usize = 5;

/// Writer `w`'s keys: every 40th key from `w`, so each batch spans the
/// shards of `tiny_options`.
fn keys_of(w: usize) -> Vec<Vec<u8>> {
    (0..KEYS_PER_WRITER).map(|j| key(w + 40 * j)).collect()
}

fn value(w: usize, batch: u64) -> Vec<u8> {
    format!("w{w}:{batch:08}:{}", "x".repeat((batch % 30) as usize)).into_bytes()
}

/// The batch number the values of writer `w` show, if they all show the
/// same one (`None` before its first batch); panics on a torn batch.
fn batch_of(w: usize, values: &[Option<Vec<u8>>], at: &str) -> Option<u64> {
    let first = values[0].clone();
    assert!(
        values.iter().all(|v| *v == first),
        "writer {w}'s batch is torn {at}: {values:?}"
    );
    first.map(|v| {
        let text = String::from_utf8(v).expect("utf-8 value");
        let n: u64 = text
            .split(':')
            .nth(1)
            .expect("batch field")
            .parse()
            .expect("batch number");
        assert_eq!(value(w, n), text.as_bytes(), "writer {w}'s value {at}");
        n
    })
}

/// Write `batches` batches as writer `w`; every 50th writer-0 batch also
/// flushes, so groups commit while memtables rotate and tables are written.
fn writer(db: &Db, w: usize, batches: u64, sync: bool) {
    for n in 0..batches {
        let mut batch = WriteBatch::new();
        for k in keys_of(w) {
            batch.put(&k, &value(w, n));
        }
        db.write_opt(batch, WriteOptions { sync: Some(sync) })
            .expect("write");
        if w == 0 && n % 50 == 49 {
            db.flush().expect("flush");
        }
    }
}

/// Check snapshots until `done`: each writer's keys at one batch, and no
/// writer going back between this reader's snapshots. Returns the checks.
fn reader(db: &Db, done: &AtomicBool) -> usize {
    let mut last = [None::<u64>; WRITERS];
    let mut checks = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done.load(Ordering::Acquire) {
        assert!(
            Instant::now() < deadline,
            "the writers did not finish in time"
        );
        let snap = db.snapshot();
        for (w, seen) in last.iter_mut().enumerate() {
            let keys = keys_of(w);
            let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
            let got = db.multi_get_at(&refs, &snap).expect("multi_get_at");
            let at = format!("at snapshot {}", snap.sequence());
            let n = batch_of(w, &got, &at);
            assert!(
                n >= *seen,
                "writer {w} went back from {seen:?} to {n:?} {at}"
            );
            *seen = n;
            // The same state through point lookups.
            let one = db
                .get_at(&keys[KEYS_PER_WRITER - 1], &snap)
                .expect("get_at");
            assert_eq!(
                one,
                got[KEYS_PER_WRITER - 1],
                "get_at and multi_get_at {at}"
            );
        }
        checks += 1;
    }
    checks
}

#[test]
fn concurrent_batch_writers_are_atomic_and_in_order_for_readers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = tiny_options(Arc::new(LocalFs::new()), 3);
    o.idle_compaction_after = Some(Duration::from_millis(5));
    let db = Db::open(dir.path(), o).expect("open");
    let batches = 600;
    let done = AtomicBool::new(false);
    let checks = std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (db, done) = (&db, &done);
                s.spawn(move || reader(db, done))
            })
            .collect();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let db = &db;
                s.spawn(move || writer(db, w, batches, false))
            })
            .collect();
        for w in writers {
            w.join().expect("writer panicked");
        }
        done.store(true, Ordering::Release);
        readers
            .into_iter()
            .map(|r| r.join().expect("reader panicked"))
            .sum::<usize>()
    });
    assert!(checks > 0, "the readers checked nothing");
    let stats = db.stats();
    assert!(stats.flushes > 0 && stats.compactions > 0, "{stats:?}");
    // The writers inserted their own batches in some groups.
    assert!(stats.parallel_write_groups > 0, "{stats:?}");
    assert_eq!(db.background_error(), None);
    // Every acknowledged batch is in: each writer's last one shows.
    for w in 0..WRITERS {
        let got: Vec<Option<Vec<u8>>> =
            keys_of(w).iter().map(|k| db.get(k).expect("get")).collect();
        assert_eq!(batch_of(w, &got, "at the end"), Some(batches - 1));
    }
    // And nothing else was written.
    let all: BTreeMap<Vec<u8>, Vec<u8>> = db.scan(.., false).expect("scan").into_iter().collect();
    assert_eq!(all.len(), WRITERS * KEYS_PER_WRITER);
    db.close().expect("close");
}

const DIR: &str = "/db";

fn crash_options(fs: &FaultInjectingFs) -> DbOptions {
    tiny_options(Arc::new(fs.clone()), 3)
}

/// Concurrent writers, then a power cut (every unsynced byte dropped) and a
/// reopen: each writer's keys show one whole batch; with synced writes, the
/// last acknowledged one, and without, writer 0's last (it flushed after
/// it).
fn power_cut_after_concurrent_writers(sync: bool) {
    let fs = FaultInjectingFs::new();
    let db = Db::open(DIR, crash_options(&fs)).expect("open");
    // A multiple of 50: writer 0's last batch is followed by a flush.
    let batches = 300;
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let db = &db;
            s.spawn(move || writer(db, w, batches, sync));
        }
    });
    fs.crash();
    drop(db);
    let db = Db::open(DIR, crash_options(&fs)).expect("reopen after the power cut");
    for w in 0..WRITERS {
        let got: Vec<Option<Vec<u8>>> =
            keys_of(w).iter().map(|k| db.get(k).expect("get")).collect();
        let n = batch_of(w, &got, "after the power cut");
        if sync {
            assert_eq!(
                n,
                Some(batches - 1),
                "writer {w} lost acknowledged synced batches"
            );
        } else if w == 0 {
            // Writer 0 flushed right after its last batch: the flush made
            // it durable without a synced WAL.
            assert_eq!(n, Some(batches - 1), "writer 0 lost flushed batches");
        } else {
            assert!(n.is_none_or(|n| n < batches), "writer {w}: {n:?}");
        }
    }
    db.close().expect("close");
}

#[test]
fn synced_concurrent_writers_lose_nothing_at_a_power_cut() {
    power_cut_after_concurrent_writers(true);
}

#[test]
fn unsynced_concurrent_writers_keep_whole_batches_at_a_power_cut() {
    power_cut_after_concurrent_writers(false);
}
