//! Flush and compaction jobs from claim to install: building and claiming
//! them (`build`), the executor seam they run behind (`executor`), the
//! registry that fences their results (`registry`), and installation
//! (`install`). This module dispatches a claimed job to its executor and
//! routes the outcome: a result to installation, a failure to a retry
//! with fresh file numbers (re-placed locally when the executor could not
//! be reached), or — for the failures retrying cannot fix — to stopping
//! the database.

pub(crate) mod build;
pub(crate) mod executor;
pub(crate) mod flush_placement;
pub(crate) mod install;
pub(crate) mod placement;
pub(crate) mod registry;
pub(crate) mod service;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use o3_storage::job::{CompactionJob, JobError, JobResult, JobStats, JobToken};
use o3_storage::{Error, Result};

use crate::engine::Engine;
use executor::{Completion, FlushWork, Job};
use placement::{JobSummary, Placement};
use registry::{ClaimedWork, Outcome};

/// Hand claimed job `job_id` to where it runs: the local executor, or the
/// configured one as placement decides (`placement`; a job retried after
/// the configured executor failed or lost it runs here). A compaction that
/// only moves a file is installed here, without an executor. Call without
/// holding the engine's locks: the local executor reports on this thread.
pub(crate) fn dispatch(engine: &Arc<Engine>, job_id: u64) {
    let (job, executor, summary) = {
        let mut st = engine.state.lock();
        let running_here = st.jobs.in_flight_here_and_elsewhere().0;
        let flushes_waiting = st
            .shards
            .iter()
            .filter(|s| !s.flushing && !s.sealed.is_empty())
            .count();
        let Some(claim) = st.jobs.get_mut(job_id) else {
            return;
        };
        let job = match &claim.work {
            ClaimedWork::Flush { job, images, .. } => Job::Flush(FlushWork {
                job: job.clone(),
                images: images.clone(),
            }),
            ClaimedWork::Compaction { job, .. } => Job::Compaction(CompactionJob::clone(job)),
        };
        let summary = match &claim.work {
            ClaimedWork::Compaction { plan, .. } => Some(JobSummary {
                input_bytes: plan.input_bytes(),
                level: plan.level as u32,
                score: plan.score,
            }),
            ClaimedWork::Flush { .. } => None,
        };
        let trivial = match &job {
            Job::Compaction(c) => trivial_move(c),
            Job::Flush(_) => None,
        };
        let executor = match &trivial {
            Some(_) => engine.local_executor.clone(),
            None => place(
                engine,
                &job,
                summary.as_ref(),
                claim.place_locally,
                (running_here, flushes_waiting),
            ),
        };
        claim.in_flight = true;
        claim.since = Instant::now();
        if !claim.external {
            // A job running in this process cannot outlive it; one running
            // elsewhere may never report.
            claim.lease = (!Arc::ptr_eq(&executor, &engine.local_executor))
                .then_some(engine.options.job_lease);
        }
        if let Some(moved) = trivial {
            drop(st);
            finish(engine, moved.token, Ok(moved));
            return;
        }
        (job, executor, summary)
    };
    let token = job.token();
    let weak = Arc::downgrade(engine);
    let pending = engine.pending_reports.clone();
    let local = Arc::ptr_eq(&executor, &engine.local_executor);
    pending.fetch_add(1, Ordering::AcqRel);
    let done = Completion::new(token, executor.name(), move |outcome| {
        // A database closed meanwhile ignores the report: the next open
        // removes whatever the job wrote.
        if let Some(engine) = weak.upgrade() {
            if let (true, Ok(result)) = (local, &outcome) {
                let elapsed = Duration::from_micros(result.stats.micros);
                match summary {
                    Some(_) => engine.placer.note_local(result.stats.bytes_read, elapsed),
                    None => engine
                        .placer
                        .note_local_flush(result.stats.bytes_read, elapsed),
                }
            }
            finish(&engine, token, outcome);
        }
        pending.fetch_sub(1, Ordering::AcqRel);
    })
    .with_summary(summary);
    executor.submit(job, done);
}

/// Where `job` runs: the local executor when no other is configured, after
/// the configured one failed it, for a flush it does not take, or when the
/// cost model says so; else the configured executor. Every decision made
/// while another executor is configured is counted.
fn place(
    engine: &Engine,
    job: &Job,
    summary: Option<&JobSummary>,
    place_locally: bool,
    (running_here, flushes_waiting): (usize, usize),
) -> Arc<dyn executor::Executor> {
    use crate::stats::PlacementReason as R;
    let local = &engine.local_executor;
    if Arc::ptr_eq(&engine.executor, local) {
        return local.clone();
    }
    let placement = match (job, summary) {
        // A flush given back is counted in FlushPlacementStats, and here as
        // a flush: the compactions' counts stay the compactions'.
        (Job::Flush(_), _) if place_locally => {
            engine.placer.count(Placement::Local(R::LocalFlush));
            Placement::Local(R::LocalFlush)
        }
        _ if place_locally => {
            engine
                .placer
                .count(Placement::Local(R::LocalAfterRemoteFailure));
            Placement::Local(R::LocalAfterRemoteFailure)
        }
        (Job::Compaction(_), Some(summary)) => {
            engine
                .placer
                .place(summary, &engine.executor.offer(summary), running_here)
        }
        _ => {
            let takes = engine.executor.runs_flushes()
                && match job {
                    Job::Flush(work) => engine.executor.takes_flush(
                        work,
                        executor::LocalLoad {
                            bytes_per_sec: engine.placer.local_flush_bytes_per_sec(),
                            running: running_here,
                            waiting: flushes_waiting,
                            slots: engine.options.max_background_jobs,
                        },
                    ),
                    Job::Compaction(_) => true,
                };
            let p = match job {
                Job::Flush(_) if takes => Placement::Remote(R::RemoteFlush),
                _ if takes => Placement::Remote(R::RemoteUnconditional),
                _ => Placement::Local(R::LocalFlush),
            };
            engine.placer.count(p);
            p
        }
    };
    match placement {
        Placement::Local(_) => local.clone(),
        Placement::Remote(_) => engine.executor.clone(),
    }
}

/// Route a job's outcome: install a result, or handle a failure.
pub(crate) fn finish(engine: &Engine, token: JobToken, outcome: Result<JobResult>) {
    let e = match outcome.and_then(|result| install_own(engine, token, result)) {
        Ok(()) => {
            // The inputs the result made obsolete are deleted here (once no
            // reader holds them), on whichever thread the result arrived.
            install::purge_obsolete_files(engine);
            return;
        }
        Err(e) => e,
    };
    if engine.bg_error.get().is_some() {
        // The database stopped: nothing is retried or installed any more.
        // The claim ends here, or closing would wait its whole bound for a
        // job no worker will run again.
        let mut st = engine.state.lock();
        if st
            .jobs
            .get_mut(token.job_id)
            .is_some_and(|c| c.token == token)
            && let Some(claim) = st.jobs.finish(
                token.job_id,
                Outcome::Failed {
                    error: e.to_string(),
                },
            )
        {
            install::release_claim(&mut st, &claim);
        }
        engine.bg_cv.notify_all();
        return;
    }
    failed(engine, token, &e);
}

/// Install a result the engine's own executor reported for `token`.
fn install_own(engine: &Engine, token: JobToken, result: JobResult) -> Result<()> {
    if result.token != token {
        return Err(Error::Job(JobError::StaleToken {
            token: result.token,
            db_id: token.db_id,
            incarnation: token.incarnation,
        }));
    }
    install::install_result(engine, result)
}

/// How many times a job is tried before it is given up.
pub(crate) const MAX_ATTEMPTS: u32 = 4;

/// A job's execution (or the install of its result) failed. Unless the
/// failure means live data is unreadable, the job is tried again after a
/// back-off with a new attempt and fresh file numbers; after
/// [`MAX_ATTEMPTS`] a compaction is given up (the strategy picks it again
/// later) and a flush stops the database (writers would otherwise wait
/// for it forever; reopening replays the WAL).
fn failed(engine: &Engine, token: JobToken, e: &Error) {
    engine
        .counters
        .background_errors
        .fetch_add(1, Ordering::Relaxed);
    let mut st = engine.state.lock();
    let Some(claim) = st.jobs.get_mut(token.job_id) else {
        tracing::warn!("{token} failed after it was finished: {e}");
        return;
    };
    if claim.token != token {
        tracing::warn!("{token} failed after it was superseded: {e}");
        return;
    }
    claim.in_flight = false;
    claim.failures += 1;
    let failures = claim.failures;
    let is_flush = claim.work.is_flush();
    let external = claim.external;
    let garbage: Vec<u64> = claim.reservation.clone().collect();
    tracing::error!("{token} failed (failure {failures} of at most {MAX_ATTEMPTS}): {e}");
    let unreadable = !is_flush && input_unreadable(e);
    if unreadable || failures >= MAX_ATTEMPTS {
        let error = e.to_string();
        if let Some(claim) = st.jobs.finish(token.job_id, Outcome::Failed { error }) {
            install::release_claim(&mut st, &claim);
        }
        engine.bg_cv.notify_all();
        drop(st);
        if unreadable {
            // A live table that is missing or damaged makes reads of its
            // keys fail or miss data, and retrying cannot help.
            engine.poison(e);
        } else if is_flush {
            engine.poison(&Error::InvalidArgument(format!(
                "the flush {token} failed {failures} times, last with: {e}"
            )));
        }
    } else if external {
        // The caller that claimed it retries (`Db::retry_compaction`).
        drop(st);
    } else {
        claim.place_locally |= matches!(e, Error::Job(JobError::NodeUnavailable { .. }));
        let backoff = Duration::from_millis(10u64 << failures.min(9));
        st.jobs.retry_at(token.job_id, Instant::now() + backoff);
        engine.bg_cv.notify_all();
        drop(st);
    }
    install::remove_rejected_outputs(engine, &garbage);
}

/// True when a failed job's error means one of its (live) inputs cannot be
/// read: the file is gone or its bytes are damaged.
fn input_unreadable(e: &Error) -> bool {
    e.is_corruption()
        || matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

/// A compaction with a single input file and nothing to merge it with moves
/// the file down instead of rewriting it — unless it holds tombstones that
/// this (bottommost) compaction would drop, or entries that one of the job's
/// range tombstones may delete. The result names the input file itself as
/// the output.
fn trivial_move(job: &CompactionJob) -> Option<JobResult> {
    let mut files = job
        .inputs
        .iter()
        .flat_map(|(level, files)| files.iter().map(move |f| (*level, f)));
    let (level, only) = files.next()?;
    let range_deleted = job.range_tombstones.iter().any(|t| {
        t.seq > only.smallest_seq
            && t.overlaps(
                Some(only.smallest_user_key()),
                Some(only.largest_user_key()),
            )
    });
    if files.next().is_some()
        || level == job.output_level
        || (job.drop_tombstones && only.tombstones > 0)
        || range_deleted
    {
        return None;
    }
    Some(JobResult {
        token: job.token,
        outputs: vec![only.clone()],
        stats: JobStats::default(),
    })
}

/// Wait until claimed job `job_id` has finished; its error if it failed.
pub(crate) fn wait_for(engine: &Engine, job_id: u64) -> Result<()> {
    let mut st = engine.state.lock();
    loop {
        match st.jobs.outcome(job_id) {
            Some(Outcome::Installed { .. }) => return Ok(()),
            Some(Outcome::Failed { error }) => {
                let error = error.clone();
                drop(st);
                engine.check_poisoned()?;
                return Err(Error::InvalidArgument(format!(
                    "job {job_id} failed: {error}"
                )));
            }
            Some(Outcome::Abandoned) | Some(Outcome::Expired { .. }) => {
                return Err(Error::InvalidArgument(format!("job {job_id} was given up")));
            }
            None => {}
        }
        if let Some(msg) = engine.bg_error.get() {
            return Err(Error::Poisoned(msg.clone()));
        }
        if engine.shutting_down.load(Ordering::Acquire) && st.jobs.get(job_id).is_none() {
            return Err(Error::Closed("database"));
        }
        engine.bg_cv.wait_for(&mut st, Duration::from_millis(20));
    }
}
