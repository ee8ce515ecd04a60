//! A compaction job travels as bytes: it is claimed from the database,
//! serialized, executed from the bytes alone in a fresh context that has
//! only storage access, and its (serialized) result is installed. The
//! database content must be unchanged, before and after a restart.

mod common;

use std::sync::Arc;

use common::{full_scan, key, tiny_options};
use o3_compute::{Db, DbOptions};
use o3_storage::Error;
use o3_storage::env::{LocalFs, Storage};
use o3_storage::job::{CompactionJob, JobError, JobResult};
use o3_storage::key::{ValueKind, make_internal_key};

fn opts() -> DbOptions {
    DbOptions {
        disable_auto_compactions: true,
        ..tiny_options(Arc::new(LocalFs::new()), 4)
    }
}

/// The "agent": knows nothing but the job bytes and a storage backend.
fn run_elsewhere(job_bytes: &[u8]) -> Vec<u8> {
    let storage: Arc<dyn Storage> = Arc::new(LocalFs::new());
    let job = CompactionJob::from_bytes(job_bytes).expect("decode job");
    job.execute(storage.as_ref())
        .expect("execute job")
        .to_bytes()
        .expect("encode result")
}

#[test]
fn serialized_compaction_runs_elsewhere_and_installs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts()).expect("open");
    for round in 0..4 {
        for i in 0..200 {
            if (i + round) % 7 == 0 {
                db.delete(&key(i)).expect("delete");
            } else {
                db.put(&key(i), format!("r{round}-{i}").as_bytes())
                    .expect("put");
            }
        }
        db.flush().expect("flush");
    }
    let before = full_scan(&db);
    let l0_before = db.stats().levels[0].files;
    assert!(l0_before >= 4, "expected L0 files, got {l0_before}");

    let mut installed = 0;
    while let Some(job) = db.claim_compaction().expect("claim") {
        let bytes = job.to_bytes().expect("encode job");
        let result = JobResult::from_bytes(&run_elsewhere(&bytes)).expect("decode result");
        assert_eq!(result.token, job.token);
        db.install_compaction(result).expect("install");
        installed += 1;
        assert_eq!(
            full_scan(&db),
            before,
            "content changed after job {installed}"
        );
    }
    assert!(installed > 0, "no compaction was claimed");
    let stats = db.stats();
    assert!(
        stats.levels[0].files < l0_before,
        "L0 did not shrink: {:?}",
        stats.levels
    );
    db.close().expect("close");

    let db = Db::open(tmp.path(), opts()).expect("reopen");
    assert_eq!(full_scan(&db), before, "content changed after restart");
}

/// A database with three flushed rounds over the same 200 keys: a
/// compaction is due.
fn three_flushed_rounds() -> (tempfile::TempDir, Db) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts()).expect("open");
    for round in 0..3 {
        for i in 0..200 {
            db.put(&key(i), format!("r{round}-{i}").as_bytes())
                .expect("put");
        }
        db.flush().expect("flush");
    }
    (tmp, db)
}

/// A result whose token names another incarnation is refused with a typed
/// error. Its outputs carry numbers of the live attempt's reservation
/// (the token was forged from the claimed job), so they are left for that
/// attempt, which then installs. Fencing across real restarts, retries and
/// duplicates is in `fencing.rs`.
#[test]
fn a_result_with_a_stale_token_is_rejected_and_the_live_attempt_installs() {
    let (_tmp, db) = three_flushed_rounds();
    let before = full_scan(&db);
    let job = db.claim_compaction().expect("claim").expect("a job");
    let mut stale = job.clone();
    stale.token.incarnation += 1;
    let result =
        JobResult::from_bytes(&run_elsewhere(&stale.to_bytes().expect("encode"))).expect("decode");
    assert!(!result.outputs.is_empty());
    let err = db
        .install_compaction(result)
        .expect_err("stale token must be rejected");
    assert!(
        matches!(err, o3_compute::Error::Job(JobError::StaleToken { .. })),
        "unexpected error: {err}"
    );
    let result =
        JobResult::from_bytes(&run_elsewhere(&job.to_bytes().expect("encode"))).expect("decode");
    db.install_compaction(result)
        .expect("install the real attempt");
    assert_eq!(full_scan(&db), before);
}

/// A result whose output overlaps a file at its output level that the job
/// did not read (what a second job writing the same level meanwhile would
/// leave) is refused before anything is written: its outputs are removed,
/// the database keeps running with the same content, and once the claim is
/// given up the inputs are compacted again.
#[test]
fn a_result_overlapping_a_file_it_did_not_read_is_refused_and_the_database_goes_on() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts_shards(1)).expect("open");
    for i in 0..100 {
        db.put(&key(i), b"low").expect("put");
    }
    db.compact_range(None, None).expect("compact into level 1");
    // Enough level-0 files above the level-1 file for a compaction.
    for round in 0..6 {
        for i in 200..300 {
            db.put(&key(i), format!("high{round}").as_bytes())
                .expect("put");
        }
        db.flush().expect("flush");
    }
    let before = full_scan(&db);
    let job = db.claim_compaction().expect("claim").expect("a job");
    assert_eq!(job.output_level, 1);
    assert!(
        job.inputs.iter().all(|(level, _)| *level == 0),
        "the job reads level 1 too: {:?}",
        job.inputs
    );
    let mut result =
        JobResult::from_bytes(&run_elsewhere(&job.to_bytes().expect("encode"))).expect("decode");
    // Stretch the first output down to key 0: it now overlaps the level-1
    // file holding keys 0..100, which the job did not read.
    let forged = result.outputs[0].number;
    result.outputs[0].smallest = make_internal_key(&key(0), 1, ValueKind::Value);
    let table = tmp.path().join(format!("{forged:06}.sst"));
    assert!(table.exists());
    match db.install_compaction(result) {
        Err(Error::Job(JobError::OutputsOverlap { file, level, .. })) => {
            assert_eq!((file, level), (forged, 1));
        }
        other => panic!("expected OutputsOverlap, got {other:?}"),
    }
    assert_eq!(
        db.background_error(),
        None,
        "the refusal stopped the database"
    );
    assert!(!table.exists(), "the refused output was left on disk");
    assert_eq!(full_scan(&db), before);
    // Like any refused result, the claim stays the caller's: given up, its
    // inputs are free again and the same compaction runs and installs.
    db.abandon_compaction(job.token.job_id);
    let job = db.claim_compaction().expect("claim").expect("a job again");
    let result =
        JobResult::from_bytes(&run_elsewhere(&job.to_bytes().expect("encode"))).expect("decode");
    db.install_compaction(result).expect("install");
    assert_eq!(full_scan(&db), before);
    db.close().expect("close");
    let db = Db::open(tmp.path(), opts_shards(1)).expect("reopen");
    assert_eq!(full_scan(&db), before, "content changed after restart");
}

fn opts_shards(shards: usize) -> DbOptions {
    DbOptions {
        disable_auto_compactions: true,
        ..tiny_options(Arc::new(LocalFs::new()), shards)
    }
}
