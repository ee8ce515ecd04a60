//! `Db::checkpoint`: a consistent, openable copy taken while the database
//! runs. Under concurrent writes (with flushes and compactions deleting
//! files meanwhile) the copy holds exactly the state after some prefix of
//! the writes that includes every write acknowledged before the call; the
//! copy and the source then evolve independently; the copy is durable once
//! the call returns, also where files must be copied instead of linked; an
//! existing target directory is refused.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::{full_scan, key, tiny_options};
use o3_compute::{Db, DbOptions, Error, LocalFs, WriteBatch};
use o3_storage::env::{FaultInjectingFs, FaultPlan, Storage};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn opts(storage: Arc<dyn Storage>) -> DbOptions {
    DbOptions {
        max_background_jobs: 2,
        ..tiny_options(storage, 4)
    }
}

/// Write `i` of the stream: one batch putting two keys in different shards
/// (an atomic cross-shard write), every 9th deleting one instead.
fn op(i: u64) -> WriteBatch {
    let mut b = WriteBatch::new();
    let (a, c) = op_keys(i);
    b.put(&key(a), format!("v{i}").as_bytes());
    if i % 9 == 8 {
        b.delete(&key(c));
    } else {
        b.put(&key(c), format!("v{i}").as_bytes());
    }
    b
}

fn op_keys(i: u64) -> (usize, usize) {
    let a = (i * 31 % 100) as usize;
    (a, a + 100)
}

fn apply(i: u64, m: &mut Model) {
    let (a, c) = op_keys(i);
    m.insert(key(a), format!("v{i}").into_bytes());
    if i % 9 == 8 {
        m.remove(&key(c));
    } else {
        m.insert(key(c), format!("v{i}").into_bytes());
    }
}

/// The n for which `state` is the state after writes `0..n`, searched in
/// `lo..=hi`.
fn prefix_length(state: &Model, lo: u64, hi: u64) -> Option<u64> {
    let mut m = Model::new();
    for n in 0..=hi {
        if n >= lo && m == *state {
            return Some(n);
        }
        apply(n, &mut m);
    }
    None
}

#[test]
fn a_checkpoint_under_concurrent_writes_is_a_prefix_holding_every_earlier_write() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let storage: Arc<dyn Storage> = Arc::new(LocalFs::new());
    let db = Arc::new(Db::open(tmp.path().join("db"), opts(storage.clone())).expect("open"));
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, acked, stop) = (db.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Acquire) {
                db.write(op(i)).expect("write");
                i += 1;
                acked.store(i, Ordering::Release);
            }
        })
    };
    let mut checkpoints = Vec::new();
    for round in 0..4u64 {
        while acked.load(Ordering::Acquire) < 600 * (round + 1) {
            std::thread::yield_now();
        }
        if round == 3 {
            // The last checkpoint is taken after background work has run
            // (on a loaded machine the writer can outpace the first
            // compaction): wait for one, boundedly.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while db.stats().compactions == 0 {
                assert!(std::time::Instant::now() < deadline, "no compaction ran");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        let dir = tmp.path().join(format!("checkpoint-{round}"));
        let before = acked.load(Ordering::Acquire);
        db.checkpoint(&dir).expect("checkpoint");
        let after = acked.load(Ordering::Acquire);
        checkpoints.push((dir, before, after));
    }
    stop.store(true, Ordering::Release);
    writer.join().expect("writer");
    let s = db.stats();
    assert!(
        s.flushes > 0 && s.compactions > 0,
        "no background work ran: {s}"
    );
    for (dir, before, after) in checkpoints {
        let copy = Db::open(&dir, opts(storage.clone())).expect("open checkpoint");
        let state = full_scan(&copy);
        // The write in flight when the call returned may be in it too.
        let n = prefix_length(&state, before, after + 1).unwrap_or_else(|| {
            panic!(
                "{}: not the state after any prefix of {before}..={} writes",
                dir.display(),
                after + 1
            )
        });
        assert!(n >= before);
        for (k, v) in &state {
            assert_eq!(copy.get(k).expect("get").as_ref(), Some(v));
        }
    }
}

#[test]
fn the_copy_and_the_source_evolve_independently() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let storage: Arc<dyn Storage> = Arc::new(LocalFs::new());
    let (src_dir, copy_dir) = (tmp.path().join("db"), tmp.path().join("copy"));
    let src = Db::open(&src_dir, opts(storage.clone())).expect("open");
    let mut model = Model::new();
    for i in 0..500 {
        src.write(op(i)).expect("write");
        apply(i, &mut model);
        if i == 250 {
            src.compact_range(None, None).expect("compact");
        }
    }
    src.checkpoint(&copy_dir).expect("checkpoint");
    let copy = Db::open(&copy_dir, opts(storage.clone())).expect("open copy");
    assert_eq!(full_scan(&copy), model);
    let (mut src_model, mut copy_model) = (model.clone(), model);
    for i in 0..common::KEY_SPACE {
        src.put(&key(i), b"source").expect("put");
        src_model.insert(key(i), b"source".to_vec());
        if i % 2 == 0 {
            copy.delete(&key(i)).expect("delete");
            copy_model.remove(&key(i));
        }
    }
    // Compactions on each side delete files the other side linked.
    src.compact_range(None, None).expect("compact source");
    copy.compact_range(None, None).expect("compact copy");
    assert_eq!(full_scan(&src), src_model);
    assert_eq!(full_scan(&copy), copy_model);
    src.close().expect("close");
    copy.close().expect("close");
    let src = Db::open(&src_dir, opts(storage.clone())).expect("reopen source");
    let copy = Db::open(&copy_dir, opts(storage)).expect("reopen copy");
    assert_eq!(full_scan(&src), src_model);
    assert_eq!(full_scan(&copy), copy_model);
}

/// A database on the simulated file system with data in SSTs at several
/// levels and in the WAL; returns it and its content.
fn simulated_source(fs: &FaultInjectingFs, options: DbOptions) -> (Db, Model) {
    fs.create_dir_all(Path::new("/db")).expect("mkdir");
    let db = Db::open("/db", options).expect("open");
    let mut model = Model::new();
    for i in 0..400 {
        db.write(op(i)).expect("write");
        apply(i, &mut model);
        if i == 200 {
            db.compact_range(None, None).expect("compact");
        }
    }
    (db, model)
}

#[test]
fn a_checkpoint_is_durable_when_it_returns_linked_or_copied() {
    for refuse_links in [false, true] {
        let fs = FaultInjectingFs::new();
        let (db, model) = simulated_source(&fs, opts(Arc::new(fs.clone())));
        fs.set_plan(FaultPlan {
            refuse_links,
            ..FaultPlan::default()
        });
        db.checkpoint("/copy").expect("checkpoint");
        // Power is cut at once: the copy must not need anything unsynced.
        fs.crash();
        drop(db);
        let copy = Db::open("/copy", opts(Arc::new(fs.clone())))
            .unwrap_or_else(|e| panic!("refuse_links {refuse_links}: open copy: {e}"));
        assert_eq!(full_scan(&copy), model, "refuse_links {refuse_links}");
    }
}

#[test]
fn without_a_wal_the_checkpoint_flushes_first() {
    let fs = FaultInjectingFs::new();
    let o = DbOptions {
        disable_wal: true,
        ..opts(Arc::new(fs.clone()))
    };
    let (db, model) = simulated_source(&fs, o.clone());
    db.checkpoint("/copy").expect("checkpoint");
    let copy = Db::open("/copy", o).expect("open copy");
    assert_eq!(full_scan(&copy), model);
}

#[test]
fn a_checkpoint_into_an_existing_directory_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path().join("db"), opts(Arc::new(LocalFs::new()))).expect("open");
    db.put(b"k", b"v").expect("put");
    let existing = tmp.path().join("existing");
    std::fs::create_dir(&existing).expect("mkdir");
    for dir in [existing.clone(), tmp.path().join("db")] {
        match db.checkpoint(&dir) {
            Err(Error::InvalidArgument(msg)) => {
                assert!(msg.contains("already exists"), "{msg}");
                assert!(msg.contains(&*dir.to_string_lossy()), "{msg}");
            }
            other => panic!("checkpoint into {}: {other:?}", dir.display()),
        }
    }
    assert_eq!(std::fs::read_dir(&existing).expect("read dir").count(), 0);
    assert_eq!(db.get(b"k").expect("get"), Some(b"v".to_vec()));
}
