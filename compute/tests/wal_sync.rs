//! `Db::sync_wal` and `Db::flush_wal`: writes made without sync survive a
//! simulated power cut (the fault-injecting backend drops every unsynced
//! byte) once the WAL was synced, and are lost without it.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{full_scan, key, tiny_options};
use o3_compute::{Db, DbOptions, Error};
use o3_storage::env::FaultInjectingFs;

const DIR: &str = "/db";

fn opts(fs: &FaultInjectingFs) -> DbOptions {
    DbOptions {
        // Nothing rolls, flushes or syncs the WAL on its own.
        write_buffer_size: 1 << 20,
        max_unflushed_bytes: 4 << 20,
        wal_segment_size: 1 << 20,
        max_total_wal_size: 8 << 20,
        sync_writes: false,
        ..tiny_options(Arc::new(fs.clone()), 4)
    }
}

/// Put `n` keys starting at `from` with unsynced writes; returns the model.
fn put(db: &Db, model: &mut BTreeMap<Vec<u8>, Vec<u8>>, from: usize, n: usize) {
    for i in from..from + n {
        let v = format!("v{i}").into_bytes();
        db.put(&key(i), &v).expect("put");
        model.insert(key(i), v);
    }
}

/// Cut the power with `db` open, then reopen and read everything.
fn power_cut_and_reopen(fs: &FaultInjectingFs, db: Db) -> BTreeMap<Vec<u8>, Vec<u8>> {
    fs.crash();
    drop(db);
    let db = Db::open(DIR, opts(fs)).expect("reopen after the power cut");
    full_scan(&db)
}

#[test]
fn unsynced_writes_followed_by_sync_wal_survive_a_power_cut() {
    let fs = FaultInjectingFs::new();
    let db = Db::open(DIR, opts(&fs)).expect("open");
    let mut model = BTreeMap::new();
    put(&db, &mut model, 0, 50);
    db.sync_wal().expect("sync_wal");
    let synced = model.clone();
    // Written after the sync: may be lost.
    put(&db, &mut model, 50, 50);
    assert_eq!(power_cut_and_reopen(&fs, db), synced);
}

#[test]
fn flush_wal_with_sync_makes_writes_durable_and_without_does_not() {
    let fs = FaultInjectingFs::new();
    let db = Db::open(DIR, opts(&fs)).expect("open");
    let mut model = BTreeMap::new();
    put(&db, &mut model, 0, 30);
    db.flush_wal(false).expect("flush_wal(false)");
    // Handed to the OS only: a power cut loses it.
    assert_eq!(power_cut_and_reopen(&fs, db), BTreeMap::new());

    let db = Db::open(DIR, opts(&fs)).expect("open");
    let mut model = BTreeMap::new();
    put(&db, &mut model, 100, 30);
    db.flush_wal(true).expect("flush_wal(true)");
    assert_eq!(power_cut_and_reopen(&fs, db), model);
}

#[test]
fn without_a_sync_a_power_cut_loses_unsynced_writes() {
    // The control: the tests above pass because of the sync.
    let fs = FaultInjectingFs::new();
    let db = Db::open(DIR, opts(&fs)).expect("open");
    put(&db, &mut BTreeMap::new(), 0, 50);
    assert_eq!(power_cut_and_reopen(&fs, db), BTreeMap::new());
}

#[test]
fn sync_wal_without_a_wal_is_refused() {
    let fs = FaultInjectingFs::new();
    let o = DbOptions {
        disable_wal: true,
        ..opts(&fs)
    };
    let db = Db::open(DIR, o).expect("open");
    let err = db.sync_wal().expect_err("no WAL to sync");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("disable_wal"), "{err}");
}
