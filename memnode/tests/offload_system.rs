//! Memtable offloading end to end: a compute node (`o3_compute::Db`) and
//! `o3-memnode` child processes this test starts (over `shm` and `tcp`),
//! with every sealed memtable not being flushed offloaded.
//!
//! - metamorphic: the same random operations (writes, deletes, range
//!   deletions, snapshots, gets, scans both ways, flushes, reopens) give
//!   identical answers, each equal to a `BTreeMap` model, with offloading
//!   off, to an in-process memory node, and to a child over shm and tcp;
//! - faults: the memory node is SIGKILLed while it holds images during a
//!   load of `sync` writes; no read during the outage returns a value older
//!   than one acknowledged before it started, every acknowledged write is
//!   readable afterwards (and after a reopen), with and without the memory
//!   node restarted on the same address (the compute node registers again
//!   and ships to it).

// Only the child process helpers this file needs are used.
#[allow(dead_code)]
mod memnode_child;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use memnode_child::{MemnodeChild, WAIT};
use o3_compute::{Db, DbOptions, MemoryNodeChoice, OffloadOptions, StoreConfig};

/// Where a database under test keeps its sealed memtables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Local,
    InProcess,
    Shm,
    Tcp,
}

fn key(i: u64) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

fn options(memory_node: Option<MemoryNodeChoice>) -> DbOptions {
    DbOptions {
        write_buffer_size: 8 << 10,
        max_unflushed_bytes: 16 << 20,
        wal_segment_size: 64 << 10,
        max_total_wal_size: 64 << 20,
        offload: memory_node.map(|memory_node| OffloadOptions {
            memory_node,
            max_local_sealed_memtables: 0,
            min_memtables_to_merge: 8,
            ..OffloadOptions::default()
        }),
        ..DbOptions::default()
    }
}

/// A database and how to reopen it.
struct Subject {
    target: Target,
    dir: tempfile::TempDir,
    options: DbOptions,
    db: Option<Db>,
    _node: Option<MemnodeChild>,
}

impl Subject {
    fn open(target: Target) -> Subject {
        let (node, choice) = match target {
            Target::Local => (None, None),
            Target::InProcess => (
                None,
                Some(MemoryNodeChoice::Config(StoreConfig::InProcess {
                    pool_size: 256 << 20,
                    link: None,
                })),
            ),
            Target::Shm | Target::Tcp => {
                let transport = if target == Target::Shm { "shm" } else { "tcp" };
                let node =
                    MemnodeChild::start(&["--transport", transport, "--pool-size", "256MiB"]);
                let config = node.remote_config("compute-metamorphic", Duration::from_secs(5));
                (
                    Some(node),
                    Some(MemoryNodeChoice::Config(StoreConfig::Remote(config))),
                )
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let options = options(choice);
        let db = Db::open(dir.path(), options.clone()).unwrap();
        Subject {
            target,
            dir,
            options,
            db: Some(db),
            _node: node,
        }
    }

    fn db(&self) -> &Db {
        self.db.as_ref().unwrap()
    }

    fn reopen(&mut self) {
        self.db.take().unwrap().close().unwrap();
        self.db = Some(Db::open(self.dir.path(), self.options.clone()).unwrap());
    }
}

/// Scan `[lo, hi)` forwards or backwards, as ordered pairs.
fn scan(db: &Db, lo: u64, hi: u64, reverse: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
    let range = db.range(key(lo)..key(hi));
    let mut out: Vec<_> = if reverse {
        range.rev().map(|r| r.unwrap()).collect()
    } else {
        range.map(|r| r.unwrap()).collect()
    };
    if reverse {
        out.reverse();
    }
    out
}

fn model_scan(model: &BTreeMap<Vec<u8>, Vec<u8>>, lo: u64, hi: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    model
        .range(key(lo)..key(hi))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// One random sequence over every target; returns how many images the
/// offloading targets shipped.
fn run_sequence(seed: u64, ops: usize) -> Vec<(Target, u64)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut subjects: Vec<Subject> = [Target::Local, Target::InProcess, Target::Shm, Target::Tcp]
        .into_iter()
        .map(Subject::open)
        .collect();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    // Snapshots taken together, and the model's state they must see.
    type Pinned = (Vec<o3_compute::Snapshot>, BTreeMap<Vec<u8>, Vec<u8>>);
    let mut snapshots: Vec<Pinned> = Vec::new();
    let mut shipped: BTreeMap<String, u64> = BTreeMap::new();
    const KEYS: u64 = 400;
    for step in 0..ops {
        let choice = rng.random_range(0..100);
        match choice {
            0..50 => {
                let k = rng.random_range(0..KEYS);
                let v =
                    format!("v{seed}-{step}-{}", "p".repeat(rng.random_range(0..60))).into_bytes();
                for s in &subjects {
                    s.db().put(&key(k), &v).unwrap();
                }
                model.insert(key(k), v);
            }
            50..58 => {
                let k = rng.random_range(0..KEYS);
                for s in &subjects {
                    s.db().delete(&key(k)).unwrap();
                }
                model.remove(&key(k));
            }
            58..60 => {
                let a = rng.random_range(0..KEYS);
                let b = a + rng.random_range(1..30);
                for s in &subjects {
                    s.db().delete_range(&key(a), &key(b)).unwrap();
                }
                let doomed: Vec<_> = model
                    .range(key(a)..key(b))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in doomed {
                    model.remove(&k);
                }
            }
            60..75 => {
                let k = rng.random_range(0..KEYS);
                for s in &subjects {
                    assert_eq!(
                        s.db().get(&key(k)).unwrap(),
                        model.get(&key(k)).cloned(),
                        "seed {seed} step {step}: get {k} on {:?}",
                        s.target
                    );
                }
            }
            75..85 => {
                let lo = rng.random_range(0..KEYS);
                let hi = lo + rng.random_range(1..120);
                let reverse = rng.random_bool(0.5);
                let expected = model_scan(&model, lo, hi);
                for s in &subjects {
                    assert_eq!(
                        scan(s.db(), lo, hi, reverse),
                        expected,
                        "seed {seed} step {step}: scan [{lo}, {hi}) reverse {reverse} on {:?}",
                        s.target
                    );
                }
            }
            85..88 => {
                let taken = subjects.iter().map(|s| s.db().snapshot()).collect();
                snapshots.push((taken, model.clone()));
            }
            88..94 => {
                if let Some((taken, at)) = snapshots.last() {
                    let k = rng.random_range(0..KEYS);
                    for (s, snap) in subjects.iter().zip(taken) {
                        assert_eq!(
                            s.db().get_at(&key(k), snap).unwrap(),
                            at.get(&key(k)).cloned(),
                            "seed {seed} step {step}: get {k} at a snapshot on {:?}",
                            s.target
                        );
                    }
                }
            }
            94..97 => {
                for s in &subjects {
                    s.db().flush().unwrap();
                }
            }
            _ => {
                snapshots.clear();
                for s in &mut subjects {
                    let before = s.db().stats().offload.images_shipped;
                    *shipped.entry(format!("{:?}", s.target)).or_default() += before;
                    s.reopen();
                }
            }
        }
    }
    snapshots.clear();
    let expected = model_scan(&model, 0, KEYS);
    subjects
        .iter()
        .map(|s| {
            assert_eq!(
                scan(s.db(), 0, KEYS, false),
                expected,
                "final scan on {:?}",
                s.target
            );
            let total = shipped
                .get(&format!("{:?}", s.target))
                .copied()
                .unwrap_or(0)
                + s.db().stats().offload.images_shipped;
            (s.target, total)
        })
        .collect()
}

#[test]
fn offloading_in_process_and_to_memnode_processes_gives_the_same_answers_as_local_memtables() {
    let mut shipped: BTreeMap<String, u64> = BTreeMap::new();
    for seed in 0..3 {
        for (target, n) in run_sequence(seed, 1500) {
            *shipped.entry(format!("{target:?}")).or_default() += n;
        }
    }
    for target in ["InProcess", "Shm", "Tcp"] {
        assert!(
            shipped.get(target).copied().unwrap_or(0) >= 20,
            "{target} shipped too few images for the comparison to mean anything: {shipped:?}"
        );
    }
    assert_eq!(shipped.get("Local").copied().unwrap_or(0), 0);
}

/// Wait (bounded) until `done` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port free on loopback now (for a restart on the same address).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// SIGKILL the memory node mid-load (optionally restarting it on the same
/// address); every acknowledged write survives, no read is stale.
fn kill_memnode_during_sync_writes(transport: &str, restart: bool) {
    let (control, data) = (free_port(), free_port());
    let listen = format!("127.0.0.1:{control}");
    let data_listen = format!("127.0.0.1:{data}");
    let mut flags = vec![
        "--transport",
        transport,
        "--pool-size",
        "256MiB",
        "--lease-ttl",
        "2s",
    ];
    if transport == "tcp" {
        flags.extend(["--data-listen", data_listen.as_str()]);
    }
    let mut node = MemnodeChild::start_in(tempfile::tempdir().unwrap(), &listen, &flags);
    let config = node.remote_config("compute-fault", Duration::from_secs(1));
    let mut o = options(Some(MemoryNodeChoice::Config(StoreConfig::Remote(config))));
    o.sync_writes = true;
    if let Some(off) = o.offload.as_mut() {
        off.min_memtables_to_merge = 1000;
        off.read_wait = Duration::from_secs(20);
    }
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), o.clone()).unwrap());
    const KEYS: u64 = 300;
    // Acknowledged version of each key (0 = never written).
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let stale: Arc<Mutex<Vec<String>>> = Arc::default();
    let read_errors = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let reads = reads.clone();
        let (db, acked, stop, stale, read_errors) = (
            db.clone(),
            acked.clone(),
            stop.clone(),
            stale.clone(),
            read_errors.clone(),
        );
        std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(7);
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
                let k = rng.random_range(0..KEYS);
                let floor = acked[k as usize].load(Ordering::Acquire);
                reads.fetch_add(1, Ordering::Relaxed);
                match db.get(&key(k)) {
                    Ok(found) => {
                        let version = found
                            .map(|v| String::from_utf8(v).unwrap().parse::<u64>().unwrap())
                            .unwrap_or(0);
                        if version < floor {
                            let again = db
                                .get(&key(k))
                                .map(|v| v.map(|v| String::from_utf8(v).unwrap()));
                            stale.lock().push(format!(
                                "key {k}: read {version}, {floor} was acknowledged (read again: {again:?})"
                            ));
                        }
                    }
                    Err(e) => {
                        assert!(
                            e.to_string().contains("memory node"),
                            "unclear read error: {e}"
                        );
                        read_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let mut version = 0u64;
    let mut write = |n: u64| {
        for _ in 0..n {
            version += 1;
            let k = version % KEYS;
            db.put(&key(k), version.to_string().as_bytes()).unwrap();
            acked[k as usize].store(version, Ordering::Release);
        }
    };
    write(3000);
    wait_until("images offloaded", || {
        db.stats().offload.images_offloaded >= 5
    });
    let shipped_before = db.stats().offload.images_shipped;
    node.kill();
    let reads_at_kill = reads.load(Ordering::Relaxed);
    write(3000);
    wait_until("the loss noticed and the images rebuilt", || {
        db.stats().offload.images_rebuilt >= 5
    });
    if restart {
        node = MemnodeChild::start_in(tempfile::tempdir().unwrap(), &listen, &flags);
        write(3000);
        wait_until("shipping to the restarted memory node", || {
            let s = db.stats().offload;
            s.images_shipped > shipped_before && s.images_offloaded > 0
        });
    }
    write(1000);
    stop.store(true, Ordering::Release);
    reader.join().unwrap();
    let stale = stale.lock().clone();
    assert!(stale.is_empty(), "stale reads: {stale:?}");
    assert!(
        reads.load(Ordering::Relaxed) > reads_at_kill,
        "no read ran after the memory node was killed"
    );
    let check = |db: &Db| {
        for k in 0..KEYS {
            let want = acked[k as usize].load(Ordering::Acquire);
            let got = db
                .get(&key(k))
                .unwrap()
                .map(|v| String::from_utf8(v).unwrap().parse::<u64>().unwrap())
                .unwrap_or(0);
            assert_eq!(got, want, "key {k}");
        }
    };
    check(&db);
    let stats = db.stats().offload;
    assert!(stats.memory_node_failures >= 1, "{stats:?}");
    let db = Arc::into_inner(db).unwrap();
    db.close().unwrap();
    let db = Db::open(dir.path(), o).unwrap();
    check(&db);
    db.close().unwrap();
    drop(node);
}

#[test]
fn sigkill_of_the_memory_node_loses_no_acknowledged_write_over_tcp() {
    kill_memnode_during_sync_writes("tcp", false);
}

#[test]
fn sigkill_of_the_memory_node_loses_no_acknowledged_write_over_shm() {
    kill_memnode_during_sync_writes("shm", false);
}

#[test]
fn a_restarted_memory_node_is_used_again_over_tcp() {
    kill_memnode_during_sync_writes("tcp", true);
}

#[test]
fn a_restarted_memory_node_is_used_again_over_shm() {
    kill_memnode_during_sync_writes("shm", true);
}
