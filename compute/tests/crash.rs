//! Crash tests.
//!
//! 1. `sigkill_loses_no_acknowledged_write`: a child process writes with WAL
//!    fsync on and is killed with SIGKILL at random moments; after each
//!    reopen, every acknowledged write is present and the state equals the
//!    state after some prefix of the issued writes (at most the one write in
//!    flight may or may not be there). `O3_CRASH_KILLS` sets the number of
//!    kills (default 30).
//! 2. `simulated_machine_crash_without_fsync_recovers_a_prefix`: with fsync
//!    off, the fault-injecting backend drops everything not synced; the
//!    recovered state must equal the state after some prefix of the writes.

mod common;

use std::sync::Arc;

use rand::{Rng, SeedableRng};

use common::crash::{child_writes, kill_and_recover};
use common::{Model, full_scan, key, tiny_options};
use o3_compute::{Db, DbOptions};
use o3_storage::env::{FaultInjectingFs, FaultPlan, Storage};

/// Operation `i` of the deterministic write stream: every 5th is a delete.
/// Applied to `db` when given, and always to the model `m`.
fn apply_op(db: Option<&Db>, i: u64, m: &mut Model) {
    let k = key((i.wrapping_mul(7919) % common::KEY_SPACE as u64) as usize);
    if i % 5 == 4 {
        if let Some(db) = db {
            db.delete(&k).expect("delete");
        }
        m.remove(&k);
    } else {
        let v = format!("v{i}-{}", "p".repeat((i % 64) as usize)).into_bytes();
        if let Some(db) = db {
            db.put(&k, &v).expect("put");
        }
        m.insert(k, v);
    }
}

fn model_after(n: u64) -> Model {
    let mut m = Model::new();
    for i in 0..n {
        apply_op(None, i, &mut m);
    }
    m
}

/// The child: not a test of its own (ignored, so a normal run never counts
/// it as passing). The parent starts this binary with `--ignored`; it
/// writes the stream until it is killed.
#[test]
#[ignore = "child process of sigkill_loses_no_acknowledged_write"]
fn crash_child_writer() {
    let mut scratch = Model::new();
    child_writes(|db, i| apply_op(Some(db), i, &mut scratch));
}

#[test]
fn sigkill_loses_no_acknowledged_write() {
    let recovered = kill_and_recover("crash_child_writer", 0x03c4a5, model_after, |_, _, _| {});
    assert!(recovered > 0, "the children never acknowledged a write");
}

#[test]
fn simulated_machine_crash_without_fsync_recovers_a_prefix() {
    for seed in 0..12u64 {
        let fs = FaultInjectingFs::new();
        let storage: Arc<dyn Storage> = Arc::new(fs.clone());
        let opts = || DbOptions {
            sync_writes: false,
            ..tiny_options(storage.clone(), 4)
        };
        let db = Db::open("/db", opts()).expect("open");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let total = rng.random_range(50..1500u64);
        let mut scratch = Model::new();
        for i in 0..total {
            apply_op(Some(&db), i, &mut scratch);
        }
        // Power loss while the database is running: from this moment no
        // write reaches the disk (so the dying instance's shutdown cannot
        // sync anything), then unsynced data and directory entries vanish
        // (half of the seeds keep a random part of each file's unsynced tail).
        fs.set_plan(FaultPlan {
            fail_after_mutations: Some(fs.mutations()),
            ..FaultPlan::default()
        });
        drop(db);
        if seed % 2 == 0 {
            fs.crash();
        } else {
            fs.crash_keeping_unsynced(seed);
        }
        let db = Db::open("/db", opts()).expect("reopen after simulated crash");
        let state = full_scan(&db);
        let mut m = Model::new();
        let mut found = state.is_empty();
        for i in 0..total {
            apply_op(None, i, &mut m);
            if m == state {
                found = true;
                break;
            }
        }
        assert!(
            found,
            "seed {seed}: recovered state is not a prefix of the {total} writes"
        );
    }
}
