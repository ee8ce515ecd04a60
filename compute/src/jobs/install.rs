//! Installing results: the version edit a finished flush or compaction
//! makes, and the cleanup after it.
//!
//! Rules:
//! - a result is installed only if the registry's fencing accepts it
//!   (`jobs::registry`); a duplicate of an installed result is
//!   acknowledged and changes nothing;
//! - a flush result is installed only after the WAL is synced through the
//!   flushed memtables' last sequence, so a machine crash can never keep an
//!   SST holding writes that a lost WAL tail would make a hole before;
//! - files are referenced by an edit only after they and their directory
//!   entry are durable (the executor syncs both);
//! - inputs and WAL segments are deleted only after the edit that drops them
//!   is durable, and SSTs only once no reader's version holds them; a table
//!   the current version lists is never deleted, whatever asks;
//! - a flush installs the range tombstones of the memtables it flushed in
//!   the edit that adds their L0 files, and every install drops the range
//!   tombstones its new version makes obsolete
//!   (`Version::obsolete_range_tombstones`) in the same edit.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use o3_storage::compaction::CompactionPlan;
use o3_storage::filename::{table_path, wal_path};
use o3_storage::job::{CompactionJob, JobResult};
use o3_storage::version::{FileMeta, Version, VersionEdit, VersionSet};
use o3_storage::{Error, Result};

use super::executor::ImageId;
use super::registry::{Claim, ClaimedWork, Outcome, Verdict};
use crate::engine::Engine;

/// Install `result` if fencing accepts it. Errors: a typed
/// [`o3_storage::job::JobError`] for a rejected result (its garbage
/// outputs removed), or the failed manifest or WAL write that stopped the
/// database.
pub(crate) fn install_result(engine: &Engine, result: JobResult) -> Result<()> {
    let claim = loop {
        let verdict = {
            let vs = engine.versions.lock();
            let mut st = engine.state.lock();
            // A lease that ran out since the scheduler last looked ends here.
            for claim in st.jobs.expire(std::time::Instant::now()) {
                release_claim(&mut st, &claim);
            }
            let waiting: HashSet<ImageId> = st
                .shards
                .iter()
                .flat_map(|s| s.sealed.iter().map(|x| x.id))
                .collect();
            st.jobs
                .judge(&result, &vs.current(), &engine.incarnation, &waiting)
        };
        match verdict {
            Verdict::Install(claim) => break claim,
            Verdict::Duplicate => {
                tracing::info!(
                    "result of {} delivered again after its install: acknowledged, nothing changed",
                    result.token
                );
                return Ok(());
            }
            Verdict::Busy => {
                engine.check_poisoned()?;
                let mut st = engine.state.lock();
                engine.bg_cv.wait_for(&mut st, Duration::from_millis(10));
            }
            Verdict::Reject { error, garbage } => {
                let (removed, kept) = remove_rejected_outputs(engine, &garbage);
                tracing::warn!(
                    "rejected a result: {error}; {removed} of its output files removed, {kept} kept because a version lists them"
                );
                return Err(Error::Job(error));
            }
        }
    };
    let job_id = claim.token.job_id;
    let attempt = claim.token.attempt;
    let outputs: HashSet<u64> = result.outputs.iter().map(|f| f.number).collect();
    let outcome = match &claim.work {
        ClaimedWork::Flush {
            shard,
            images,
            largest_seq,
            range_tombstones,
            ..
        } => {
            let ids: Vec<ImageId> = images.iter().map(|i| i.id()).collect();
            install_flush(
                engine,
                *shard,
                &ids,
                *largest_seq,
                result,
                range_tombstones.clone(),
            )
        }
        ClaimedWork::Compaction { plan, job } => install_compaction(engine, plan, job, result),
    };
    let mut st = engine.state.lock();
    match &outcome {
        Ok(()) => {
            st.jobs.finish(job_id, Outcome::Installed { attempt });
        }
        Err(e) => {
            // Only a failed WAL or manifest write gets here, and it stopped
            // the database: nothing more will be installed.
            st.jobs.finish(
                job_id,
                Outcome::Failed {
                    error: e.to_string(),
                },
            );
            release_claim(&mut st, &claim);
        }
    }
    engine.bg_cv.notify_all();
    drop(st);
    if outcome.is_ok() {
        remove_leftovers(engine, &claim, &outputs);
    }
    outcome
}

/// After an install, remove what other tries of the job left: the
/// superseded attempts' files and, for a job tried by several agents in
/// turn, the files of the other slices of its reservation (an agent that
/// died mid-job leaves a partial table there). Only files that exist are
/// touched, and never one a version lists.
fn remove_leftovers(engine: &Engine, claim: &Claim, installed: &HashSet<u64>) {
    let sliced = engine.executor.reservation_slices() > 1 && !claim.work.is_flush();
    if claim.earlier.is_empty() && !sliced {
        return;
    }
    let mut numbers: Vec<u64> = claim
        .earlier
        .iter()
        .flat_map(|(_, range)| range.clone())
        .collect();
    if sliced {
        numbers.extend(claim.reservation.clone());
    }
    numbers.retain(|n| !installed.contains(n));
    let (removed, _) = remove_rejected_outputs(engine, &numbers);
    if removed > 0 {
        tracing::info!(
            "{}: removed {removed} files other tries of it left",
            claim.token
        );
    }
}

/// Undo what a claim holds: a compaction's busy inputs, a flush's shard.
pub(crate) fn release_claim(st: &mut crate::state::DbState, claim: &Claim) {
    match &claim.work {
        ClaimedWork::Flush { shard, .. } => {
            if let Some(s) = st.shards.get_mut(*shard) {
                s.flushing = false;
            }
        }
        ClaimedWork::Compaction { plan, .. } => release_inputs(st, plan),
    }
}

fn install_flush(
    engine: &Engine,
    shard: usize,
    images: &[ImageId],
    largest_seq: u64,
    result: JobResult,
    range_tombstones: Vec<(u32, o3_storage::range_del::RangeTombstone)>,
) -> Result<()> {
    // Prefix rule: the WAL must hold every write up to the flushed sequence.
    if !engine.options.disable_wal {
        let mut wal = engine.wal.lock();
        if let Some(w) = wal.writer.as_mut()
            && let Err(e) = w.sync()
        {
            engine.poison(&e);
            return Err(e);
        }
    }
    let mut vs = engine.versions.lock();
    let log_number = engine.state.lock().min_live_wal(images);
    let bytes: u64 = result.outputs.iter().map(|f| f.size).sum();
    let mut edit = VersionEdit {
        log_number: Some(log_number),
        last_sequence: Some(engine.visible_seq.load(Ordering::Acquire)),
        shard_flushed: vec![(shard as u32, largest_seq)],
        new_files: result.outputs.into_iter().map(|f| (0, f)).collect(),
        new_range_tombstones: range_tombstones,
        ..VersionEdit::default()
    };
    drop_obsolete_range_tombstones(engine, &vs, &mut edit)?;
    let version = apply_edit(engine, &mut vs, edit)?;
    let mut st = engine.state.lock();
    st.shards[shard].sealed.retain(|s| !images.contains(&s.id));
    st.shards[shard].flushes += 1;
    engine.install_super_version(&st, version);
    let obsolete_wals: Vec<u64> = st
        .wal_segments
        .range(..log_number)
        .map(|(n, _)| *n)
        .collect();
    for n in &obsolete_wals {
        st.wal_segments.remove(n);
    }
    drop(st);
    drop(vs);
    engine.counters.flushes.fetch_add(1, Ordering::Relaxed);
    engine
        .counters
        .flush_bytes
        .fetch_add(bytes, Ordering::Relaxed);
    for n in obsolete_wals {
        let path = wal_path(&engine.dir, n);
        if let Err(e) = engine.storage.delete(&path) {
            tracing::warn!("could not delete obsolete WAL {}: {e}", path.display());
        }
    }
    // The flush is done only once the segments it released are gone, so
    // `Db::flush` returns with the WAL trimmed.
    let mut st = engine.state.lock();
    st.shards[shard].flushing = false;
    engine.bg_cv.notify_all();
    Ok(())
}

fn install_compaction(
    engine: &Engine,
    plan: &CompactionPlan,
    job: &CompactionJob,
    result: JobResult,
) -> Result<()> {
    let mut vs = engine.versions.lock();
    let mut edit = VersionEdit::default();
    for (level, files) in &job.inputs {
        for f in files {
            edit.deleted_files.push((*level, f.number));
        }
    }
    let written: u64 = result.outputs.iter().map(|f| f.size).sum();
    // Files that are both input and output were moved, not rewritten.
    let inputs: HashSet<u64> = plan.input_files().map(|f| f.number).collect();
    let moved: HashSet<u64> = result
        .outputs
        .iter()
        .map(|f| f.number)
        .filter(|n| inputs.contains(n))
        .collect();
    edit.new_files = result
        .outputs
        .into_iter()
        .map(|f| (job.output_level, f))
        .collect();
    drop_obsolete_range_tombstones(engine, &vs, &mut edit)?;
    let version = apply_edit(engine, &mut vs, edit)?;
    let mut st = engine.state.lock();
    for files in &plan.inputs {
        for f in files {
            st.busy_files.remove(&f.number);
            if !moved.contains(&f.number) {
                st.obsolete_files.push(f.clone());
            }
        }
    }
    engine.install_super_version(&st, version);
    engine.bg_cv.notify_all();
    drop(st);
    drop(vs);
    if moved.is_empty() {
        engine.counters.compactions.fetch_add(1, Ordering::Relaxed);
        engine
            .counters
            .compaction_bytes_read
            .fetch_add(result.stats.bytes_read, Ordering::Relaxed);
        engine
            .counters
            .compaction_bytes_written
            .fetch_add(written, Ordering::Relaxed);
    } else {
        engine
            .counters
            .trivial_moves
            .fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Add to `edit` the drops of the range tombstones that its version makes
/// obsolete; a failure (the edit does not apply) poisons the database like
/// a failed [`apply_edit`] would.
fn drop_obsolete_range_tombstones(
    engine: &Engine,
    vs: &VersionSet,
    edit: &mut VersionEdit,
) -> Result<()> {
    vs.drop_obsolete_range_tombstones(edit)
        .inspect_err(|e| engine.poison(e))
}

/// Make `edit` durable and return the new version; a failure poisons the
/// database (the manifest's tail is unknown, so nothing may be deleted or
/// acknowledged on top of it).
fn apply_edit(engine: &Engine, vs: &mut VersionSet, edit: VersionEdit) -> Result<Arc<Version>> {
    vs.log_and_apply(edit).inspect_err(|e| engine.poison(e))
}

/// Delete the tables numbered `numbers` (outputs of a rejected or failed
/// attempt), except those a version still lists: the current one, or one
/// an iterator pins (obsolete files not yet deleted). Returns how many were
/// removed and how many kept.
pub(crate) fn remove_rejected_outputs(engine: &Engine, numbers: &[u64]) -> (usize, usize) {
    if numbers.is_empty() {
        return (0, 0);
    }
    let listed: HashSet<u64> = {
        let st = engine.state.lock();
        let current = engine.super_version.read().version.clone();
        current
            .levels
            .iter()
            .flatten()
            .chain(st.obsolete_files.iter())
            .map(|f| f.number)
            .collect()
    };
    let (mut removed, mut kept) = (0, 0);
    for &n in numbers {
        if listed.contains(&n) {
            kept += 1;
            continue;
        }
        let path = table_path(&engine.dir, n);
        if !engine.storage.exists(&path) {
            continue;
        }
        match engine.storage.delete(&path) {
            Ok(()) => removed += 1,
            Err(e) => tracing::debug!("rejected output {} not removed: {e}", path.display()),
        }
    }
    (removed, kept)
}

/// Make a compaction's inputs available to other compactions again.
pub(crate) fn release_inputs(st: &mut crate::state::DbState, plan: &CompactionPlan) {
    for files in &plan.inputs {
        for f in files {
            st.busy_files.remove(&f.number);
        }
    }
}

/// Delete dropped SSTs that no reader's version still holds.
pub(crate) fn purge_obsolete_files(engine: &Engine) {
    let ready: Vec<Arc<FileMeta>> = {
        let mut st = engine.state.lock();
        let (ready, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut st.obsolete_files)
            .into_iter()
            .partition(|f| Arc::strong_count(f) == 1);
        st.obsolete_files = keep;
        // Every version shares one `Arc` per file (the version builder keeps
        // it across moves), so the count above is the whole truth; a file
        // the current version lists is never deleted all the same.
        let current = engine.super_version.read().version.clone();
        let live: HashSet<u64> = current.levels.iter().flatten().map(|f| f.number).collect();
        ready
            .into_iter()
            .filter(|f| {
                let listed = live.contains(&f.number);
                if listed {
                    tracing::error!(
                        "table {} was marked obsolete but the current version lists it; kept",
                        f.number
                    );
                }
                !listed
            })
            .collect()
    };
    for f in ready {
        engine.table_cache.evict(f.number);
        let path = table_path(&engine.dir, f.number);
        if let Err(e) = engine.storage.delete(&path) {
            tracing::warn!("could not delete obsolete table {}: {e}", path.display());
        }
    }
}
