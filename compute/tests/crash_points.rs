//! Crash-point enumeration on the fault-injecting backend: for every k, the
//! k-th mutating file operation (create, append, flush, sync, rename, delete,
//! directory sync) and everything after it fails, as if power were lost
//! there; then the simulated crash drops unsynced data and directory entries.
//! Reopening must succeed (so the manifest references no missing or partial
//! file: open verifies every referenced file's size and a full scan reads
//! every block), every write acknowledged with sync must be present, and the
//! state must be a prefix of the issued writes.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{for_each_crash_point, full_scan, key, tiny_options};
use o3_compute::{Db, DbOptions, WriteOptions};
use o3_storage::env::Storage;

fn opts(storage: Arc<dyn Storage>) -> DbOptions {
    DbOptions {
        max_background_jobs: 1,
        ..tiny_options(storage, 4)
    }
}

/// The scripted workload: synced writes, flushes, a range compaction and a
/// reopen, so that crash points land in every protocol (WAL, SST, manifest,
/// CURRENT, deletions). Returns the acknowledged ops; stops at the first error.
fn workload(storage: Arc<dyn Storage>, acked: &mut Vec<(Vec<u8>, Option<Vec<u8>>)>) {
    let mut db = match Db::open("/db", opts(storage.clone())) {
        Ok(db) => db,
        Err(_) => return,
    };
    for round in 0..3 {
        for i in 0..60 {
            let k = key((i * 37 + round * 11) % 120);
            let v =
                (i % 6 != 5).then(|| format!("r{round}-i{i}-{}", "z".repeat(i % 30)).into_bytes());
            let mut b = o3_compute::WriteBatch::new();
            match &v {
                Some(v) => b.put(&k, v),
                None => b.delete(&k),
            }
            if db.write_opt(b, WriteOptions { sync: Some(true) }).is_err() {
                return;
            }
            acked.push((k, v));
        }
        if db.flush().is_err() {
            return;
        }
        if round == 1 && db.compact_range(None, None).is_err() {
            return;
        }
        if round == 1 {
            if db.close().is_err() {
                return;
            }
            db = match Db::open("/db", opts(storage.clone())) {
                Ok(db) => db,
                Err(_) => return,
            };
        }
    }
    let _ = db.close();
}

fn state_after(ops: &[(Vec<u8>, Option<Vec<u8>>)]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut m = BTreeMap::new();
    for (k, v) in ops {
        match v {
            Some(v) => m.insert(k.clone(), v.clone()),
            None => m.remove(k),
        };
    }
    m
}

#[test]
fn no_crash_point_loses_synced_data_or_breaks_the_manifest() {
    let run = |storage: Arc<dyn Storage>| {
        let mut acked = Vec::new();
        workload(storage, &mut acked);
        acked
    };
    for_each_crash_point(1, run, |point, all, acked, fs| {
        let db = Db::open("/db", opts(Arc::new(fs.clone())))
            .unwrap_or_else(|e| panic!("{point}: reopen failed: {e}"));
        let state = full_scan(&db);
        // Every acknowledged (synced) op is in; the one in flight may be too.
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
