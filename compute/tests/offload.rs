//! Memtable offloading in process: sealed memtables reach the memory node
//! and leave local memory, reads through them match a `BTreeMap` model in
//! both directions and at snapshots, flushes release them, a lost memory
//! node loses nothing the WAL holds (and says so when there is no WAL), and
//! a full pool keeps memtables local.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{held_back_options, tiny_options, wait_for};
use o3_compute::{Db, DbOptions, MemoryNodeChoice, OffloadOptions, StoreConfig};
use o3_memnode::MemoryNode;
use o3_memnode::client::Direct;
use o3_storage::env::FaultInjectingFs;
use o3_transport::link::LinkModel;

fn key(i: usize) -> Vec<u8> {
    format!("key{i:06}").into_bytes()
}

fn value(i: usize, round: usize) -> Vec<u8> {
    format!("value-{i}-{round}-{}", "x".repeat(i % 37)).into_bytes()
}

/// A database offloading to `store`, flushes merging `merge` memtables.
fn open(store: &Arc<Direct>, merge: usize, disable_wal: bool) -> (Db, DbOptions) {
    let mut o = tiny_options(Arc::new(FaultInjectingFs::new()), 2);
    o.disable_wal = disable_wal;
    o.disable_auto_compactions = true;
    o.max_total_wal_size = 64 << 20;
    // Local memory never forces a flush: only shipping relieves it.
    o.max_unflushed_bytes = 64 << 20;
    o.offload = Some(OffloadOptions {
        memory_node: MemoryNodeChoice::Store(store.clone()),
        max_local_sealed_memtables: 0,
        min_memtables_to_merge: merge,
        ..OffloadOptions::default()
    });
    let db = Db::open(Path::new("/db"), o.clone()).expect("open");
    (db, o)
}

fn direct(pool: u64) -> Arc<Direct> {
    Arc::new(Direct::new(Arc::new(
        MemoryNode::with_capacity(pool).expect("memory node"),
    )))
}

fn check_reads(db: &Db, model: &BTreeMap<Vec<u8>, Vec<u8>>, keys: usize) {
    for i in 0..keys {
        assert_eq!(
            db.get(&key(i)).unwrap(),
            model.get(&key(i)).cloned(),
            "get {i}"
        );
    }
    let forward: Vec<_> = db.range(..).map(|r| r.unwrap()).collect();
    let expected: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(forward, expected, "forward scan");
    let mut backward: Vec<_> = db.range(..).rev().map(|r| r.unwrap()).collect();
    backward.reverse();
    assert_eq!(backward, expected, "backward scan");
    let (lo, hi) = (key(keys / 3), key(2 * keys / 3));
    let bounded: Vec<_> = db
        .range(lo.clone()..hi.clone())
        .map(|r| r.unwrap())
        .collect();
    let expected: Vec<_> = model
        .range(lo..hi)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(bounded, expected, "bounded scan");
}

/// Writes over many memtables with flushes held back: most sealed
/// memtables are offloaded, local memory holds none of them, and every
/// read (points, scans both ways, a snapshot taken in the middle) matches
/// the model; a flush then releases every region.
#[test]
fn offloaded_memtables_answer_like_local_ones_and_are_released_after_their_flush() {
    let store = direct(64 << 20);
    let (db, _) = open(&store, 1000, false);
    let keys = 600;
    let mut model = BTreeMap::new();
    for round in 0..3 {
        for i in 0..keys {
            if (i + round) % 7 == 0 {
                db.delete(&key(i)).unwrap();
                model.remove(&key(i));
            } else {
                db.put(&key(i), &value(i, round)).unwrap();
                model.insert(key(i), value(i, round));
            }
        }
    }
    let snapshot = db.snapshot();
    let at_snapshot = model.clone();
    for i in (0..keys).step_by(3) {
        db.put(&key(i), b"after the snapshot").unwrap();
        model.insert(key(i), b"after the snapshot".to_vec());
    }
    // With no local budget, shipping catches up with every sealed memtable.
    wait_for(&db, "most sealed memtables offloaded", |s| {
        s.offload.images_offloaded >= 10
            && s.offload.images_offloaded as usize * 2 > s.unflushed_memtables
    });
    check_reads(&db, &model, keys);
    for i in 0..keys {
        assert_eq!(
            db.get_at(&key(i), &snapshot).unwrap(),
            at_snapshot.get(&key(i)).cloned(),
            "get {i} at the snapshot"
        );
    }
    // Through the memory node: lookups delegated or through key indexes,
    // scans by delegated batches or through key indexes (values read
    // one-sidedly).
    let s = db.stats().offload;
    assert!(s.delegated_gets + s.indexed_gets > 0, "{s:?}");
    assert!(s.delegated_scans + s.indexed_scans > 0, "{s:?}");
    drop(snapshot);
    db.flush().unwrap();
    wait_for(&db, "regions released", |s| s.offload.images_offloaded == 0);
    let stats = db.stats();
    assert!(stats.offload.read_back_bytes > 0, "{:?}", stats.offload);
    assert_eq!(stats.offload.bytes_offloaded, 0);
    check_reads(&db, &model, keys);
    db.close().unwrap();
    let node_stats = o3_memnode::client::ImageStore::stats(store.as_ref()).unwrap();
    assert_eq!(node_stats.published_images, 0, "every image released");
    assert_eq!(node_stats.pool.used, 0, "every region released");
}

/// The memory node loses everything (it died and came back empty): reads
/// still see every acknowledged write (the lost images are rebuilt from the
/// WAL), never an older value, and the rebuilt memtables flush normally.
#[test]
fn images_lost_with_the_memory_node_are_rebuilt_from_the_wal() {
    let store = direct(64 << 20);
    let (db, _) = open(&store, 1000, false);
    let keys = 500;
    let mut model = BTreeMap::new();
    for round in 0..3 {
        for i in 0..keys {
            db.put(&key(i), &value(i, round)).unwrap();
            model.insert(key(i), value(i, round));
        }
    }
    wait_for(&db, "images shipped", |s| s.offload.images_offloaded >= 5);
    store.lose_everything(false);
    check_reads(&db, &model, keys);
    let stats = db.stats();
    assert!(stats.offload.images_rebuilt >= 5, "{:?}", stats.offload);
    assert!(stats.offload.memory_node_failures >= 1);
    assert!(stats.offload.last_error.is_some());
    // Writes go on, images are shipped again, and a flush installs all.
    for i in 0..keys {
        db.put(&key(i), &value(i, 9)).unwrap();
        model.insert(key(i), value(i, 9));
    }
    db.flush().unwrap();
    check_reads(&db, &model, keys);
    assert!(db.background_error().is_none());
}

/// Without a WAL the loss is real: it is reported as such (the database
/// stops with an error naming the lost images), never answered around.
#[test]
fn without_a_wal_a_lost_memory_node_is_reported_as_data_loss() {
    let store = direct(64 << 20);
    let (db, _) = open(&store, 1000, true);
    for i in 0..500 {
        db.put(&key(i), &value(i, 0)).unwrap();
    }
    wait_for(&db, "images shipped", |s| s.offload.images_offloaded >= 3);
    store.lose_everything(false);
    let mut failed = None;
    for i in 0..500 {
        if let Err(e) = db.get(&key(i)) {
            failed = Some(e.to_string());
            break;
        }
    }
    let message = failed.expect("a read of a lost image fails");
    assert!(message.contains("lost"), "{message}");
    assert!(message.contains("WAL is disabled"), "{message}");
    assert!(db.background_error().is_some());
    assert!(db.put(b"k", b"v").is_err(), "the database stopped");
}

/// A memory node with no room: memtables stay local (the reason is in the
/// stats), nothing is lost, and the database keeps working.
#[test]
fn a_full_memory_node_keeps_memtables_local() {
    let store = direct(16 << 10);
    let (db, _) = open(&store, 1000, false);
    let mut model = BTreeMap::new();
    for i in 0..400 {
        db.put(&key(i), &value(i, 0)).unwrap();
        model.insert(key(i), value(i, 0));
    }
    wait_for(&db, "a refusal", |s| s.offload.refused_no_room > 0);
    let stats = db.stats();
    assert!(
        stats
            .offload
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("no room")),
        "{:?}",
        stats.offload
    );
    check_reads(&db, &model, 400);
    db.flush().unwrap();
    check_reads(&db, &model, 400);
}

/// A key and its value, as scans yield them.
type Pair = (Vec<u8>, Vec<u8>);

/// Scans that meet the loss: one opened before the memory node lost its
/// images and continued after, and one started after (before any point
/// lookup rebuilt them), both in each direction, yield exactly the model:
/// they go on over the memtables rebuilt from the WAL.
#[test]
fn scans_that_meet_a_lost_memory_node_go_on_over_the_rebuilt_memtables() {
    for reverse in [false, true] {
        let store = direct(64 << 20);
        let (db, _) = open(&store, 1000, false);
        let keys = 500;
        let mut model = BTreeMap::new();
        for i in 0..keys {
            db.put(&key(i), &value(i, 0)).unwrap();
            model.insert(key(i), value(i, 0));
        }
        wait_for(&db, "images shipped", |s| s.offload.images_offloaded >= 5);
        let expected: Vec<_> = if reverse {
            model
                .iter()
                .rev()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        } else {
            model.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let scan = || -> Box<dyn Iterator<Item = o3_compute::Result<Pair>>> {
            if reverse {
                Box::new(db.range(..).rev())
            } else {
                Box::new(db.range(..))
            }
        };
        let mut before = scan();
        let mut seen: Vec<_> = before.by_ref().take(10).map(|r| r.unwrap()).collect();
        store.lose_everything(false);
        seen.extend(before.map(|r| r.unwrap()));
        assert_eq!(
            seen, expected,
            "a scan running across the loss (reverse {reverse})"
        );
        let after: Vec<_> = scan().map(|r| r.unwrap()).collect();
        assert_eq!(
            after, expected,
            "a scan started after the loss (reverse {reverse})"
        );
        assert!(
            db.stats().offload.images_rebuilt >= 5,
            "{:?}",
            db.stats().offload
        );
    }
}

/// With `max_local_sealed_memtables: 1` the newest sealed memtable stays
/// local however many threads ship and however slow shipping is: a thread
/// never ships a memtable because another, already being shipped, still
/// counted as local.
#[test]
fn the_newest_sealed_memtables_stay_local_while_several_threads_ship() {
    let mut o = held_back_options(1);
    o.offload = Some(OffloadOptions {
        // Every call to the memory node takes 10 ms: shipping is slow next
        // to sealing, and several threads look for work meanwhile.
        memory_node: MemoryNodeChoice::Config(StoreConfig::InProcess {
            pool_size: 64 << 20,
            link: Some(LinkModel::CROSS_DC),
        }),
        max_local_sealed_memtables: 1,
        shipping_threads: 4,
        min_memtables_to_merge: 1000,
        ..OffloadOptions::default()
    });
    let db = Db::open(Path::new("/db"), o).expect("open");
    for round in 0..6 {
        for i in 0..200 {
            db.put(&key(i), &value(i, round)).unwrap();
        }
        // Settled: nothing shipped for 300 ms.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = db.stats().offload.images_offloaded;
        let mut since = Instant::now();
        while since.elapsed() < Duration::from_millis(300) {
            assert!(Instant::now() < deadline, "shipping never settled");
            std::thread::sleep(Duration::from_millis(20));
            let now = db.stats().offload.images_offloaded;
            if now != last {
                (last, since) = (now, Instant::now());
            }
        }
        let s = db.stats().offload;
        assert!(s.images_offloaded >= 1, "round {round}: nothing shipped");
        assert_eq!(
            s.local_sealed_memtables, 1,
            "round {round}: the newest sealed memtable must stay local: {s:?}"
        );
        for i in (0..200).step_by(20) {
            assert_eq!(db.get(&key(i)).unwrap(), Some(value(i, round)), "key {i}");
        }
    }
    db.close().unwrap();
}
