//! The executor seam under failure: a job its executor loses is tried again
//! on this process with fresh file numbers, without stopping the database;
//! a flush that fails on every attempt stops it with the reason, and
//! nothing acknowledged is lost (reopening replays the WAL).

mod common;

use std::sync::Arc;
use std::sync::Mutex;

use common::{full_scan, key, tiny_options};
use o3_compute::{Completion, Db, DbOptions, Error, Executor, Job};
use o3_storage::env::{LocalFs, Storage};

/// An executor that never runs anything: it either drops the job (as a
/// crashed node would) or reports an I/O error, and records the tokens and
/// output numbers it was given.
#[derive(Debug)]
struct Broken {
    drop_jobs: bool,
    seen: Mutex<Vec<(u64, u32, std::ops::Range<u64>)>>,
}

impl Executor for Broken {
    fn name(&self) -> &str {
        "broken"
    }
    fn submit(&self, job: Job, done: Completion) {
        let numbers = match &job {
            Job::Flush(f) => f.job.file_numbers.clone(),
            Job::Compaction(c) => c.file_numbers.clone(),
        };
        let t = job.token();
        self.seen
            .lock()
            .expect("lock")
            .push((t.job_id, t.attempt, numbers));
        if self.drop_jobs {
            drop(done);
        } else {
            done.complete(Err(Error::io(
                "/broken/executor",
                std::io::Error::other("the executor's disk is gone"),
            )));
        }
    }
}

fn options(executor: Arc<Broken>) -> DbOptions {
    DbOptions {
        executor: Some(executor),
        ..tiny_options(Arc::new(LocalFs::new()), 2)
    }
}

fn write_keys(db: &Db, n: usize) -> common::Model {
    for i in 0..n {
        db.put(&key(i), format!("v{i}").as_bytes()).expect("put");
    }
    full_scan(db)
}

#[test]
fn a_lost_job_is_retried_here_with_fresh_numbers_and_the_database_carries_on() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let broken = Arc::new(Broken {
        drop_jobs: true,
        seen: Mutex::new(Vec::new()),
    });
    let db = Db::open(tmp.path(), options(broken.clone())).expect("open");
    let model = write_keys(&db, 300);
    db.flush().expect("flush succeeds on the local retry");
    assert_eq!(db.background_error(), None);
    assert!(db.stats().background_errors >= 1);
    assert!(db.stats().levels[0].files > 0, "nothing was flushed");
    let seen = broken.seen.lock().expect("lock").clone();
    assert!(!seen.is_empty(), "the executor was never used");
    // Each job the executor lost was retried as a later attempt (locally),
    // and no two attempts were given the same numbers.
    let all: Vec<_> = seen.iter().map(|(_, _, r)| r.clone()).collect();
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert!(a.end <= b.start || b.end <= a.start, "{a:?} and {b:?}");
        }
    }
    assert!(seen.iter().all(|(_, attempt, _)| *attempt == 1));
    assert_eq!(full_scan(&db), model);
    db.close().expect("close");
    let db = Db::open(tmp.path(), options(broken)).expect("reopen");
    assert_eq!(full_scan(&db), model);
}

#[test]
fn a_flush_failing_on_every_attempt_stops_the_database_and_loses_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let broken = Arc::new(Broken {
        drop_jobs: false,
        seen: Mutex::new(Vec::new()),
    });
    let db = Db::open(tmp.path(), options(broken.clone())).expect("open");
    // Flushes start (and fail) while the keys are written: the writes
    // acknowledged before the database stops are the model.
    let mut model = common::Model::new();
    for i in 0..300 {
        let v = format!("v{i}").into_bytes();
        if db.put(&key(i), &v).is_err() {
            break;
        }
        model.insert(key(i), v);
    }
    let err = db.flush().expect_err("no attempt can succeed");
    let reason = db.background_error().expect("the database stopped");
    assert!(reason.contains("disk is gone"), "{reason}");
    assert!(matches!(err, Error::Poisoned(_)), "{err}");
    let attempts: Vec<u32> = broken
        .seen
        .lock()
        .expect("lock")
        .iter()
        .filter(|(job, _, _)| *job == 1)
        .map(|(_, a, _)| *a)
        .collect();
    assert!(attempts.len() > 1, "never retried: {attempts:?}");
    assert!(
        attempts.windows(2).all(|w| w[1] == w[0] + 1),
        "{attempts:?}"
    );
    drop(db);
    let storage: Arc<dyn Storage> = Arc::new(LocalFs::new());
    let db = Db::open(tmp.path(), tiny_options(storage, 2)).expect("reopen locally");
    assert_eq!(full_scan(&db), model, "an acknowledged write was lost");
}
