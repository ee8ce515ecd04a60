//! Fencing of job results with the public API (`Db::claim_compaction`,
//! `retry_compaction`, `install_compaction`, `abandon_compaction`): a result
//! installs once, and only the newest attempt of a job claimed by this open
//! of this database; duplicates are acknowledged and change nothing;
//! everything else is rejected with a typed `JobError` and never deletes a
//! live table. Tokens and reserved file numbers never repeat across
//! restarts, crashes included: the same protocol runs under the
//! fault-injecting storage with a crash at every step.

mod common;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{for_each_crash_point, full_scan, key, tiny_options};
use o3_compute::{CompactionJob, Db, DbOptions, Error, JobError, JobResult, WriteOptions};
use o3_storage::env::{LocalFs, Storage};

fn opts(storage: Arc<dyn Storage>) -> DbOptions {
    DbOptions {
        disable_auto_compactions: true,
        max_background_jobs: 1,
        ..tiny_options(storage, 4)
    }
}

/// The "agent": the job's bytes and a storage backend, nothing else.
fn run_elsewhere(job: &CompactionJob, storage: &dyn Storage) -> o3_compute::Result<JobResult> {
    let job = CompactionJob::from_bytes(&job.to_bytes()?)?;
    let result = job.execute(storage)?;
    JobResult::from_bytes(&result.to_bytes()?)
}

/// Write `rounds` rounds over the same 200 keys, each flushed: a
/// compaction of level 0 is due after two.
fn flushed_rounds(db: &Db, first: usize, rounds: usize) -> o3_compute::Result<()> {
    for round in first..first + rounds {
        for i in 0..200 {
            db.write_opt(
                one_put(&key(i), format!("r{round}-{i}").as_bytes()),
                WriteOptions { sync: Some(true) },
            )?;
        }
        db.flush()?;
    }
    Ok(())
}

fn one_put(k: &[u8], v: &[u8]) -> o3_compute::WriteBatch {
    let mut b = o3_compute::WriteBatch::new();
    b.put(k, v);
    b
}

/// A database in a temporary directory with three flushed rounds: a
/// compaction is due. Returns the directory, the storage and the database.
fn loaded(options: DbOptions) -> (tempfile::TempDir, Arc<dyn Storage>, Db) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fs = options.storage.clone();
    let db = Db::open(tmp.path(), options).expect("open");
    flushed_rounds(&db, 0, 3).expect("load");
    (tmp, fs, db)
}

/// Close `db`, open it again and check that it holds `expected`.
fn assert_reopens_with(db: Db, dir: &Path, fs: Arc<dyn Storage>, expected: &common::Model) {
    db.close().expect("close");
    let db = Db::open(dir, opts(fs)).expect("reopen");
    assert_eq!(&full_scan(&db), expected);
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

fn table(dir: &Path, n: u64) -> std::path::PathBuf {
    dir.join(format!("{n:06}.sst"))
}

fn job_error(e: Error) -> JobError {
    match e {
        Error::Job(j) => j,
        other => panic!("expected a typed job error, got: {other}"),
    }
}

#[test]
fn a_result_installed_twice_is_acknowledged_and_changes_nothing() {
    let (tmp, fs, db) = loaded(opts(Arc::new(LocalFs::new())));
    let before = full_scan(&db);
    let job = db.claim_compaction().expect("claim").expect("a job");
    let result = run_elsewhere(&job, fs.as_ref()).expect("run");
    db.install_compaction(result.clone()).expect("install");
    let stats = db.stats();
    db.install_compaction(result.clone())
        .expect("the duplicate is acknowledged");
    let again = db.stats();
    assert_eq!(stats.levels, again.levels, "the duplicate changed the tree");
    assert_eq!(stats.compactions, again.compactions);
    for f in &result.outputs {
        assert!(table(tmp.path(), f.number).exists(), "{} deleted", f.number);
    }
    assert_eq!(full_scan(&db), before);
    assert_reopens_with(db, tmp.path(), fs, &before);
}

#[test]
fn a_result_from_before_a_restart_is_stale_and_jobs_around_it_share_no_number() {
    let (tmp, fs, db) = loaded(opts(Arc::new(LocalFs::new())));
    let old = db.claim_compaction().expect("claim").expect("a job");
    // Restart while an agent still holds the job.
    db.close().expect("close");
    let db = Db::open(tmp.path(), opts(fs.clone())).expect("reopen");
    flushed_rounds(&db, 3, 1).expect("load more");
    let new = db.claim_compaction().expect("claim").expect("a job");
    assert!(
        !overlaps(&old.file_numbers, &new.file_numbers),
        "reservations {:?} (before the restart) and {:?} (after) overlap",
        old.file_numbers,
        new.file_numbers
    );
    assert_eq!(new.token.db_id, old.token.db_id);
    assert!(new.token.incarnation > old.token.incarnation);
    // Both agents run side by side: the old one writes only to numbers
    // nobody else was given.
    let late = run_elsewhere(&old, fs.as_ref()).expect("the old agent runs");
    let result = run_elsewhere(&new, fs.as_ref()).expect("run");
    db.install_compaction(result).expect("install the new job");
    let live = full_scan(&db);
    let live_tables = db.stats().levels;
    // The old agent's result arrives last and is refused.
    let late_outputs: Vec<u64> = late.outputs.iter().map(|f| f.number).collect();
    let err = job_error(db.install_compaction(late).expect_err("stale"));
    assert!(matches!(err, JobError::StaleToken { .. }), "{err}");
    assert!(err.to_string().contains("inc"), "{err}");
    for n in late_outputs {
        assert!(
            !table(tmp.path(), n).exists(),
            "stale output {n} left behind"
        );
    }
    assert_eq!(full_scan(&db), live);
    assert_eq!(db.stats().levels, live_tables);
    assert_reopens_with(db, tmp.path(), fs, &live);
}

#[test]
fn outputs_outside_the_reservation_are_rejected_and_left_alone() {
    let (tmp, fs, db) = loaded(opts(Arc::new(LocalFs::new())));
    let before = full_scan(&db);
    let job = db.claim_compaction().expect("claim").expect("a job");
    let mut result = run_elsewhere(&job, fs.as_ref()).expect("run");
    // Claim a live table of level 0 that is not an input... there is none
    // outside the job, so point an output at a number past the reservation.
    let outside = job.file_numbers.end + 5;
    let real = result.outputs[0].number;
    std::fs::rename(table(tmp.path(), real), table(tmp.path(), outside)).expect("rename");
    result.outputs[0].number = outside;
    let err = job_error(db.install_compaction(result).expect_err("not reserved"));
    match &err {
        JobError::NotReserved { file, reserved, .. } => {
            assert_eq!(*file, outside);
            assert_eq!(*reserved, job.file_numbers);
        }
        other => panic!("expected NotReserved, got {other}"),
    }
    assert!(
        table(tmp.path(), outside).exists(),
        "a file outside the reservation was deleted"
    );
    assert_eq!(full_scan(&db), before);
    // The job is still claimed: a correct result of it installs.
    std::fs::remove_file(table(tmp.path(), outside)).expect("cleanup");
    let retry = db.retry_compaction(job.token.job_id).expect("retry");
    let result = run_elsewhere(&retry, fs.as_ref()).expect("run");
    db.install_compaction(result).expect("install");
    assert_eq!(full_scan(&db), before);
}

#[test]
fn a_retried_attempt_writes_to_fresh_numbers_and_fences_the_first() {
    let (tmp, fs, db) = loaded(opts(Arc::new(LocalFs::new())));
    let before = full_scan(&db);
    let first = db.claim_compaction().expect("claim").expect("a job");
    let second = db.retry_compaction(first.token.job_id).expect("retry");
    assert_eq!(second.token.job_id, first.token.job_id);
    assert_eq!(second.token.attempt, first.token.attempt + 1);
    assert!(
        !overlaps(&first.file_numbers, &second.file_numbers),
        "attempts share file numbers: {:?} and {:?}",
        first.file_numbers,
        second.file_numbers
    );
    // Both run (the first agent was only slow); the second installs, the
    // first is fenced, whichever arrives first.
    let late = run_elsewhere(&first, fs.as_ref()).expect("run first");
    let result = run_elsewhere(&second, fs.as_ref()).expect("run second");
    let err = job_error(db.install_compaction(late.clone()).expect_err("superseded"));
    assert!(
        matches!(
            err,
            JobError::SupersededAttempt {
                current_attempt: 2,
                ..
            }
        ),
        "{err}"
    );
    db.install_compaction(result.clone()).expect("install");
    let err = job_error(db.install_compaction(late).expect_err("still superseded"));
    assert!(matches!(err, JobError::SupersededAttempt { .. }), "{err}");
    db.install_compaction(result)
        .expect("duplicate acknowledged");
    assert_eq!(full_scan(&db), before);
    assert_reopens_with(db, tmp.path(), fs, &before);
}

#[test]
fn abandoned_and_expired_claims_reject_their_late_results() {
    let (_tmp, fs, db) = loaded(DbOptions {
        job_lease: Duration::from_millis(100),
        ..opts(Arc::new(LocalFs::new()))
    });
    let before = full_scan(&db);
    let job = db.claim_compaction().expect("claim").expect("a job");
    db.abandon_compaction(job.token.job_id);
    let result = run_elsewhere(&job, fs.as_ref()).expect("run");
    let err = job_error(db.install_compaction(result).expect_err("abandoned"));
    assert!(matches!(err, JobError::UnknownJob { .. }), "{err}");

    // The inputs were released: the compaction can be claimed again, and
    // this time its lease runs out before the result arrives.
    let job = db.claim_compaction().expect("claim").expect("a job again");
    let result = run_elsewhere(&job, fs.as_ref()).expect("run");
    std::thread::sleep(Duration::from_millis(300));
    let err = job_error(db.install_compaction(result).expect_err("expired"));
    assert!(
        matches!(err, JobError::LeaseExpired { lease_ms: 100, .. }),
        "{err}"
    );
    assert_eq!(full_scan(&db), before);
}

/// What the fencing workload saw before it stopped.
#[derive(Default)]
struct Seen {
    acked: Vec<(Vec<u8>, Vec<u8>)>,
    reservations: Vec<Range<u64>>,
    results: Vec<JobResult>,
}

/// Synced writes and flushes, then the whole protocol — claim, run
/// elsewhere, install, install again, retry, install — stopping at the
/// first error (the injected crash point).
fn fencing_workload(storage: Arc<dyn Storage>, seen: &mut Seen) {
    let run = |seen: &mut Seen| -> o3_compute::Result<()> {
        let db = Db::open("/db", opts(storage.clone()))?;
        for round in 0..4 {
            for i in 0..40 {
                let (k, v) = (key(i * 3 % 120), format!("r{round}-{i}").into_bytes());
                db.write_opt(one_put(&k, &v), WriteOptions { sync: Some(true) })?;
                seen.acked.push((k, v));
            }
            db.flush()?;
            if round == 1 || round == 3 {
                let Some(job) = db.claim_compaction()? else {
                    continue;
                };
                seen.reservations.push(job.file_numbers.clone());
                let job = if round == 3 {
                    let retry = db.retry_compaction(job.token.job_id)?;
                    seen.reservations.push(retry.file_numbers.clone());
                    retry
                } else {
                    job
                };
                let result = run_elsewhere(&job, storage.as_ref())?;
                seen.results.push(result.clone());
                db.install_compaction(result.clone())?;
                db.install_compaction(result)?;
            }
        }
        db.close()
    };
    let _ = run(seen);
}

#[test]
fn a_crash_at_any_step_of_the_protocol_keeps_data_and_fencing() {
    let run = |storage: Arc<dyn Storage>| {
        let mut seen = Seen::default();
        fencing_workload(storage, &mut seen);
        seen
    };
    for_each_crash_point(3, run, |point, all, seen, fs| {
        assert_eq!(all.results.len(), 2, "the clean run installed both jobs");
        let db = Db::open("/db", opts(Arc::new(fs.clone())))
            .unwrap_or_else(|e| panic!("{point}: reopen failed: {e}"));
        let state = full_scan(&db);
        let expected: BTreeMap<Vec<u8>, Vec<u8>> = seen.acked.iter().cloned().collect();
        // Every acknowledged (synced) write is in; the one in flight may be.
        let with_next = all.acked.get(seen.acked.len()).map(|(nk, nv)| {
            let mut m = expected.clone();
            m.insert(nk.clone(), nv.clone());
            m
        });
        assert!(
            state == expected || with_next.as_ref() == Some(&state),
            "{point}: not the acknowledged prefix"
        );
        // Results from before the crash are stale and change nothing.
        for result in seen.results {
            match db.install_compaction(result) {
                Err(Error::Job(JobError::StaleToken { .. })) => {}
                other => panic!("{point}: a pre-crash result gave {other:?}"),
            }
            assert_eq!(full_scan(&db), state, "{point}");
        }
        // Numbers handed out before the crash are never handed out again.
        flushed_rounds(&db, 10, 2).expect("load after the crash");
        let job = db
            .claim_compaction()
            .expect("claim")
            .expect("a compaction is due");
        for r in &seen.reservations {
            assert!(
                !overlaps(r, &job.file_numbers),
                "{point}: {:?} reused from {r:?}",
                job.file_numbers
            );
        }
        db.abandon_compaction(job.token.job_id);
        db.close().expect("close");
    });
}
