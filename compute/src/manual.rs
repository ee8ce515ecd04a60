//! Work a caller asks for and waits on, run on the caller's thread or
//! handed out: `Db::flush` (seal and wait), `Db::compact_range` (compact a
//! key range level by level, then rewrite files that range deletions
//! emptied), and compactions claimed for execution outside this process
//! (`Db::claim_compaction` / `install_compaction` / `abandon_compaction`).
//! The jobs themselves are built, run and installed by `jobs`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use o3_storage::job::{CompactionJob, JobError, JobResult};
use o3_storage::{Error, Result};

use crate::engine::Engine;
use crate::jobs::registry::{ClaimedWork, Outcome};
use crate::jobs::{self, build, install};

/// Seal every shard's memtable and wait until nothing is left unflushed.
pub(crate) fn flush_all(db: &Engine) -> Result<()> {
    db.check_poisoned()?;
    // With the write leadership held no group is being inserted (a group's
    // writers insert outside the state lock), so sealing here never splits
    // a batch between two memtables of a shard.
    let writes = db.write_queue.exclusive();
    crate::write::wait_all_visible(db)?;
    seal_all(db)?;
    drop(writes);
    wait_flushed(db)
}

/// [`flush_all`] for a caller that holds the write leadership.
pub(crate) fn flush_all_holding_writes(db: &Engine) -> Result<()> {
    db.check_poisoned()?;
    seal_all(db)?;
    wait_flushed(db)
}

fn seal_all(db: &Engine) -> Result<()> {
    let mut st = db.state.lock();
    for shard in 0..st.shards.len() {
        crate::write::seal_active(db, &mut st, shard)?;
    }
    Ok(())
}

/// Wait until no shard has a sealed memtable left to flush.
fn wait_flushed(db: &Engine) -> Result<()> {
    let mut st = db.state.lock();
    st.flush_requests += 1;
    db.bg_cv.notify_all();
    let waited = (|| {
        while st.shards.iter().any(|s| !s.sealed.is_empty() || s.flushing) {
            db.check_poisoned()?;
            if db.shutting_down.load(Ordering::Acquire) {
                return Err(Error::Closed("database"));
            }
            db.bg_cv.wait_for(&mut st, Duration::from_millis(50));
        }
        Ok(())
    })();
    st.flush_requests -= 1;
    waited
}

/// Wait until no background work is due or running: no shard holds a
/// sealed memtable or is flushing, no job of this process is in flight,
/// and (with automatic compactions) the strategy has nothing to pick. A
/// benchmark calls it between phases so the next one does not measure the
/// previous one's backlog (RocksDB's `WaitForCompact`).
pub(crate) fn wait_idle(db: &Engine) -> Result<()> {
    loop {
        db.check_poisoned()?;
        if db.shutting_down.load(Ordering::Acquire) {
            return Err(Error::Closed("database"));
        }
        // Lock order as everywhere: the version set, then the state.
        let vs = db.versions.lock();
        let version = vs.current();
        let mut st = db.state.lock();
        let flushes = st.shards.iter().any(|s| !s.sealed.is_empty() || s.flushing);
        let compaction_due = !db.options.disable_auto_compactions
            && db.strategy.pick(&version, &st.busy_files).is_some();
        if !flushes && st.jobs.in_flight() == 0 && !compaction_due {
            return Ok(());
        }
        drop(vs);
        db.bg_cv.wait_for(&mut st, Duration::from_millis(20));
    }
}

/// Compact `[lo, hi]` level by level into the deepest level that holds data
/// (at least L1), running the jobs on the calling thread; a level whose
/// inputs are busy with an automatic compaction waits for it. Then, level
/// by level, the files holding entries that range tombstones delete for
/// every reader are compacted once more, so the deleted data leaves the
/// disk and the tombstones become garbage.
pub(crate) fn compact_range(db: &Arc<Engine>, lo: Option<&[u8]>, hi: Option<&[u8]>) -> Result<()> {
    let levels = db.versions.lock().current().num_levels();
    let bottom = {
        let v = db.versions.lock().current();
        v.levels
            .iter()
            .rposition(|l| !l.is_empty())
            .unwrap_or(0)
            .max(1)
            .min(levels - 1)
    };
    for level in 0..bottom {
        compact_level(db, level, lo, hi, true)?;
    }
    // Every level, not only `bottom`: automatic compactions running
    // meanwhile may have written below it.
    for level in 0..levels {
        for (a, b) in range_deleted_spans(db, level, lo, hi) {
            compact_level(db, level, Some(&a), Some(&b), false)?;
        }
    }
    Ok(())
}

/// Compact the files of `level` overlapping `[lo, hi]`: until none is left
/// there (`until_empty`), or once.
fn compact_level(
    db: &Arc<Engine>,
    level: usize,
    lo: Option<&[u8]>,
    hi: Option<&[u8]>,
    until_empty: bool,
) -> Result<()> {
    let mut failures = 0;
    loop {
        db.check_poisoned()?;
        let mut vs = db.versions.lock();
        let version = vs.current();
        let mut st = db.state.lock();
        let Some(plan) = db
            .strategy
            .pick_manual(&version, level, lo, hi, &st.busy_files)
        else {
            // Files to compact but no plan: some of them, or of the level
            // they would merge into, are busy with another compaction.
            let busy = !st.busy_files.is_empty() && !version.overlapping(level, lo, hi).is_empty();
            if busy {
                drop(vs);
                db.bg_cv.wait_for(&mut st, Duration::from_millis(20));
                continue;
            }
            return Ok(());
        };
        let job = build::claim_compaction(db, &mut vs, &mut st, plan, false)?;
        drop(st);
        drop(vs);
        jobs::dispatch(db, job.token.job_id);
        if let Err(e) = jobs::wait_for(db, job.token.job_id) {
            // A job given up after its tries (say its outputs kept
            // overlapping another job's): the level is picked again, a
            // bounded number of times, unless the database stopped.
            db.check_poisoned()?;
            failures += 1;
            if failures >= MANUAL_PICKS {
                return Err(e);
            }
            tracing::warn!("manual compaction of level {level}: {e}; picking again");
            continue;
        }
        if !until_empty {
            return Ok(());
        }
    }
}

/// How many failed jobs one manual compaction of a level survives.
const MANUAL_PICKS: u32 = 3;

/// The user-key spans (inclusive, within `[lo, hi]`, merged where they
/// overlap) of the installed range tombstones that every reader sees and
/// that cover a file of `level` holding older entries.
fn range_deleted_spans(
    db: &Engine,
    level: usize,
    lo: Option<&[u8]>,
    hi: Option<&[u8]>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let version = db.versions.lock().current();
    let files = version.levels.get(level).map_or(&[][..], |l| l.as_slice());
    let mut spans: Vec<(Vec<u8>, Vec<u8>)> = version
        .range_tombstones_overlapping(lo, hi, db.smallest_snapshot())
        .into_iter()
        .filter(|t| {
            files.iter().any(|f| {
                t.seq > f.smallest_seq
                    && t.overlaps(Some(f.smallest_user_key()), Some(f.largest_user_key()))
            })
        })
        .map(|t| {
            // `end` is exclusive; as an inclusive bound it may take in one
            // more file, which is harmless.
            let a = lo.map_or(t.start.clone(), |l| t.start.clone().max(l.to_vec()));
            let b = hi.map_or(t.end.clone(), |h| t.end.clone().min(h.to_vec()));
            (a, b)
        })
        .collect();
    spans.sort();
    let mut merged: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(spans.len());
    for (a, b) in spans {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.clone().max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

/// Claim the compaction the strategy would run next, for execution outside
/// this process (a compaction agent, or a test). Its inputs stay busy until
/// its result is installed, it is abandoned, or its lease
/// ([`crate::DbOptions::job_lease`]) runs out.
pub(crate) fn claim_external(db: &Engine) -> Result<Option<CompactionJob>> {
    db.check_poisoned()?;
    let mut vs = db.versions.lock();
    let version = vs.current();
    let mut st = db.state.lock();
    let Some(plan) = db.strategy.pick(&version, &st.busy_files) else {
        return Ok(None);
    };
    build::claim_compaction(db, &mut vs, &mut st, plan, true).map(Some)
}

/// Install the result of a claimed job, fenced by its token (see
/// `jobs::registry`): a duplicate of an installed result is acknowledged,
/// anything else that does not fit is rejected with a typed error.
pub(crate) fn install_external(db: &Engine, result: JobResult) -> Result<()> {
    db.check_poisoned()?;
    let r = install::install_result(db, result);
    install::purge_obsolete_files(db);
    r
}

/// A new attempt of a claimed job, with a new token and fresh file numbers
/// (the executor of the previous attempt may still be writing); results of
/// earlier attempts are rejected from now on.
pub(crate) fn retry_external(db: &Engine, job_id: u64) -> Result<CompactionJob> {
    db.check_poisoned()?;
    let mut vs = db.versions.lock();
    let mut st = db.state.lock();
    let token = build::token(&vs, job_id, 0);
    let unknown = || Error::Job(JobError::UnknownJob { token });
    match st.jobs.get(job_id) {
        Some(c) if c.external => {}
        _ => return Err(unknown()),
    }
    build::next_attempt(db, &mut vs, &mut st, job_id)?;
    match st.jobs.get(job_id).map(|c| &c.work) {
        Some(ClaimedWork::Compaction { job, .. }) => Ok(CompactionJob::clone(job)),
        _ => Err(unknown()),
    }
}

/// Give up a claimed job: its inputs become available again, and a result
/// delivered later is rejected.
pub(crate) fn abandon_external(db: &Engine, job_id: u64) {
    let mut st = db.state.lock();
    if st.jobs.get(job_id).is_some_and(|c| c.external)
        && let Some(claim) = st.jobs.finish(job_id, Outcome::Abandoned)
    {
        install::release_claim(&mut st, &claim);
        db.bg_cv.notify_all();
    }
}
