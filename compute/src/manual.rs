//! Work a caller asks for and waits on, run on the caller's thread or
//! handed out: `Db::flush` (seal and wait), `Db::compact_range` (compact a
//! key range level by level, then rewrite files that range deletions
//! emptied), and compactions claimed for execution outside this process
//! (`Db::claim_compaction` / `install_compaction` / `abandon_compaction`).
//! The jobs themselves are built, run and installed by `background`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use o3_storage::job::{CompactionJob, JobResult};
use o3_storage::{Error, Result};

use crate::background::{
    compaction_failed, install_compaction, make_compaction_job, purge_obsolete_files,
    release_compaction, remove_rejected_outputs, run_compaction,
};
use crate::db::DbInner;

/// Seal every shard's memtable and wait until nothing is left unflushed.
pub(crate) fn flush_all(db: &DbInner) -> Result<()> {
    db.check_poisoned()?;
    {
        // The write leader inserts under the state lock, so sealing here
        // never splits a batch between two memtables of a shard.
        let mut st = db.state.lock();
        for shard in 0..st.shards.len() {
            crate::write::seal_active(db, &mut st, shard)?;
        }
    }
    let mut st = db.state.lock();
    while st.shards.iter().any(|s| !s.sealed.is_empty() || s.flushing) {
        drop(st);
        db.check_poisoned()?;
        if db.shutting_down.load(Ordering::Acquire) {
            return Err(Error::Closed("database"));
        }
        st = db.state.lock();
        db.bg_cv.wait_for(&mut st, Duration::from_millis(50));
    }
    Ok(())
}

/// Compact `[lo, hi]` level by level into the deepest level that holds data
/// (at least L1), running the jobs on the calling thread; a level whose
/// inputs are busy with an automatic compaction waits for it. Then, level
/// by level, the files holding entries that range tombstones delete for
/// every reader are compacted once more, so the deleted data leaves the
/// disk and the tombstones become garbage.
pub(crate) fn compact_range(db: &DbInner, lo: Option<&[u8]>, hi: Option<&[u8]>) -> Result<()> {
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
    db: &DbInner,
    level: usize,
    lo: Option<&[u8]>,
    hi: Option<&[u8]>,
    until_empty: bool,
) -> Result<()> {
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
        let job = make_compaction_job(db, &mut vs, &mut st, &plan);
        drop(st);
        drop(vs);
        let job = job.inspect_err(|e| db.poison(e))?;
        if let Err(e) = run_compaction(db, &plan, &job) {
            compaction_failed(db, &plan, &e);
            return Err(e);
        }
        purge_obsolete_files(db);
        if !until_empty {
            return Ok(());
        }
    }
}

/// The user-key spans (inclusive, within `[lo, hi]`, merged where they
/// overlap) of the installed range tombstones that every reader sees and
/// that cover a file of `level` holding older entries.
fn range_deleted_spans(
    db: &DbInner,
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
/// [`install_external`] or [`abandon_external`].
pub(crate) fn claim_external(db: &DbInner) -> Result<Option<CompactionJob>> {
    db.check_poisoned()?;
    let mut vs = db.versions.lock();
    let version = vs.current();
    let mut st = db.state.lock();
    let Some(plan) = db.strategy.pick(&version, &st.busy_files) else {
        return Ok(None);
    };
    let job = match make_compaction_job(db, &mut vs, &mut st, &plan) {
        Ok(job) => job,
        Err(e) => {
            // A failed manifest write; `poison` takes the state lock.
            drop(st);
            drop(vs);
            db.poison(&e);
            return Err(e);
        }
    };
    st.external_jobs
        .insert(job.token.job_id, (plan, job.clone()));
    Ok(Some(job))
}

/// Install the result of a claimed job. A result whose token matches no
/// claimed job (an old attempt, another database) is rejected and its output
/// files removed.
pub(crate) fn install_external(db: &DbInner, result: JobResult) -> Result<()> {
    let claimed = db.state.lock().external_jobs.remove(&result.token.job_id);
    match claimed {
        Some((plan, job)) if job.token == result.token => {
            let r = install_compaction(db, &plan, &job, result);
            if r.is_err() {
                release_compaction(db, &plan);
            }
            purge_obsolete_files(db);
            r
        }
        other => {
            if let Some(entry) = other {
                db.state
                    .lock()
                    .external_jobs
                    .insert(result.token.job_id, entry);
            }
            let (removed, kept) = remove_rejected_outputs(db, &result.outputs);
            Err(Error::InvalidArgument(format!(
                "no claimed job matches result token {:?}; {removed} of its output files removed, {kept} kept because a version lists them",
                result.token
            )))
        }
    }
}

/// Give up a claimed job: its inputs become available again.
pub(crate) fn abandon_external(db: &DbInner, job_id: u64) {
    let claimed = db.state.lock().external_jobs.remove(&job_id);
    if let Some((plan, _)) = claimed {
        release_compaction(db, &plan);
    }
}
