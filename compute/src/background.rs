//! Background work: flushing sealed memtables and running compactions, and
//! installing their results. Placement today is local (this process); the
//! job form lets later placement send the same work to a memory node or a
//! compaction agent without changing installation.
//!
//! Installation rules:
//! - a flush result is installed only after the WAL is synced through the
//!   flushed memtable's last sequence, so a machine crash can never keep an
//!   SST holding writes that a lost WAL tail would make a hole before;
//! - files are referenced by an edit only after they and their directory
//!   entry are durable (the job syncs both);
//! - inputs and WAL segments are deleted only after the edit that drops them
//!   is durable, and SSTs only once no reader's version holds them;
//! - a flush installs the range tombstones of the memtables it flushed in
//!   the edit that adds their L0 files, and every install drops the range
//!   tombstones its new version makes obsolete
//!   (`Version::obsolete_range_tombstones`) in the same edit.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use o3_storage::compaction::CompactionPlan;
use o3_storage::filename::{table_path, wal_path};
use o3_storage::job::{CompactionJob, FlushJob, JobResult, JobStats, JobToken};
use o3_storage::memtable::Memtable;
use o3_storage::range_del::RangeTombstone;
use o3_storage::version::{FileMeta, Version, VersionEdit, VersionSet};
use o3_storage::{Error, Result};

use crate::db::DbInner;
use crate::state::DbState;

enum Work {
    Flush {
        shard: usize,
        mems: Vec<Arc<Memtable>>,
    },
    Compaction {
        plan: CompactionPlan,
        job: Box<CompactionJob>,
    },
}

pub(crate) fn start_workers(db: &Arc<DbInner>) -> Vec<JoinHandle<()>> {
    (0..db.options.max_background_jobs)
        .filter_map(|i| {
            let db = db.clone();
            std::thread::Builder::new()
                .name(format!("o3-bg-{i}"))
                .spawn(move || worker(&db))
                .map_err(|e| tracing::error!("cannot start background thread: {e}"))
                .ok()
        })
        .collect()
}

fn worker(db: &DbInner) {
    let mut compaction_failures = 0u32;
    while let Some(work) = next_work(db) {
        match work {
            Work::Flush { shard, mems } => {
                if let Err(e) = run_flush(db, shard, &mems) {
                    // Writers wait on flushes: an unflushable memtable must
                    // surface as an error rather than stall them forever, so a
                    // failed flush poisons the database (reopen recovers the
                    // data from the WAL).
                    tracing::error!("flush of shard {shard} failed: {e}");
                    db.counters
                        .background_errors
                        .fetch_add(1, Ordering::Relaxed);
                    db.poison(&e);
                    let mut st = db.state.lock();
                    st.shards[shard].flushing = false;
                    db.bg_cv.notify_all();
                }
            }
            Work::Compaction { plan, job } => {
                match run_compaction(db, &plan, &job) {
                    Ok(()) => compaction_failures = 0,
                    Err(e) => {
                        tracing::error!("compaction job {} failed: {e}", job.token.job_id);
                        // Unless the database stopped, the inputs stay valid
                        // and the compaction is tried again later, backing
                        // off while it keeps failing.
                        compaction_failed(db, &plan, &e);
                        compaction_failures = compaction_failures.saturating_add(1);
                        let backoff = 50u64 << compaction_failures.min(7);
                        std::thread::sleep(Duration::from_millis(backoff));
                    }
                }
            }
        }
        purge_obsolete_files(db);
    }
}

/// Account for a failed compaction and release its inputs. A live table
/// that is missing or damaged makes reads of its keys fail or miss data, and
/// retrying cannot help: then the database stops accepting writes and says
/// why.
pub(crate) fn compaction_failed(db: &DbInner, plan: &CompactionPlan, e: &Error) {
    db.counters
        .background_errors
        .fetch_add(1, Ordering::Relaxed);
    if input_unreadable(e) {
        db.poison(e);
    }
    release_compaction(db, plan);
}

/// True when a failed job's error means one of its (live) inputs cannot be
/// read: the file is gone or its bytes are damaged.
fn input_unreadable(e: &Error) -> bool {
    e.is_corruption()
        || matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

/// Wait for and claim the next piece of work: flushes first (they unblock
/// writers), then the highest-scoring compaction. `None` on shutdown.
fn next_work(db: &DbInner) -> Option<Work> {
    loop {
        if db.shutting_down.load(Ordering::Acquire) {
            return None;
        }
        let poisoned = db.bg_error.get().is_some();
        let mut vs = db.versions.lock();
        let mut st = db.state.lock();
        if !poisoned {
            if let Some(shard) = (0..st.shards.len())
                .find(|&i| !st.shards[i].flushing && !st.shards[i].sealed.is_empty())
            {
                let s = &mut st.shards[shard];
                s.flushing = true;
                let mems = s.sealed.iter().map(|x| x.mem.clone()).collect();
                return Some(Work::Flush { shard, mems });
            }
            let version = vs.current();
            let plan = if db.options.disable_auto_compactions {
                None
            } else {
                db.strategy
                    .pick(&version, &st.busy_files)
                    .or_else(|| idle_compaction(db, &mut st, &version))
            };
            if let Some(plan) = plan {
                let job = match make_compaction_job(db, &mut vs, &mut st, &plan) {
                    Ok(job) => job,
                    Err(e) => {
                        // A failed manifest write; `poison` takes the state lock.
                        drop(st);
                        drop(vs);
                        db.poison(&e);
                        continue;
                    }
                };
                return Some(Work::Compaction {
                    plan,
                    job: Box::new(job),
                });
            }
        }
        drop(vs);
        db.bg_cv.wait_for(&mut st, Duration::from_millis(500));
    }
}

/// The compaction of every level-0 file into the level below once the
/// database has been idle for `idle_compaction_after`: no write since, no
/// memtable waiting for a flush. `None` otherwise (or when level 0 is empty).
fn idle_compaction(db: &DbInner, st: &mut DbState, version: &Version) -> Option<CompactionPlan> {
    let after = db.options.idle_compaction_after?;
    let writes = db.counters.writes.load(Ordering::Relaxed);
    let now = std::time::Instant::now();
    if st.idle_probe.0 != writes {
        st.idle_probe = (writes, now);
        return None;
    }
    let idle = now.duration_since(st.idle_probe.1) >= after
        && st.shards.iter().all(|s| s.sealed.is_empty() && !s.flushing);
    if !idle || version.levels.first().is_none_or(|l0| l0.is_empty()) {
        return None;
    }
    // A strategy that merges level 0 into itself would leave it non-empty
    // and be picked again at every check.
    db.strategy
        .pick_manual(version, 0, None, None, &st.busy_files)
        .filter(|plan| plan.output_level > 0)
}

pub(crate) fn make_compaction_job(
    db: &DbInner,
    vs: &mut o3_storage::version::VersionSet,
    st: &mut DbState,
    plan: &CompactionPlan,
) -> Result<CompactionJob> {
    let smallest_snapshot = db.smallest_snapshot();
    // Tombstones over the inputs that every reader sees: the job drops what
    // they cover. Any later tombstone is newer than the job's view.
    let range_tombstones = match plan.user_key_range() {
        Some((lo, hi)) => {
            vs.current()
                .range_tombstones_overlapping(Some(lo), Some(hi), smallest_snapshot)
        }
        None => Vec::new(),
    };
    let input_bytes: u64 = plan.inputs.iter().flatten().map(|f| f.size).sum();
    // Outputs are cut at the target size, at shard boundaries and at the
    // range tombstones' bounds: reserve enough numbers for all of them, with
    // slack for files that end early.
    let count = input_bytes / plan.target_file_size.max(1)
        + db.shard_splits.len() as u64
        + 2 * range_tombstones.len() as u64
        + 16;
    // Reserved before the inputs are marked busy: a failed manifest write
    // leaves no trace.
    let file_numbers = vs.reserve_file_numbers(count)?;
    for files in &plan.inputs {
        for f in files {
            st.busy_files.insert(f.number);
        }
    }
    st.next_job_id += 1;
    Ok(CompactionJob {
        token: JobToken {
            db_id: vs.db_id(),
            incarnation: vs.incarnation(),
            job_id: st.next_job_id,
            attempt: 1,
        },
        dir: db.dir.clone(),
        // Merges of a tiered level's runs and full merges read several levels.
        inputs: plan
            .inputs_by_level()
            .map(|(level, files)| {
                (
                    level as u32,
                    files.iter().map(|f| FileMeta::clone(f)).collect(),
                )
            })
            .collect(),
        output_level: plan.output_level as u32,
        target_file_size: plan.target_file_size,
        table_options: db.options.table.clone(),
        smallest_snapshot,
        drop_tombstones: plan.bottommost,
        shard_splits: db.shard_splits.clone(),
        file_numbers,
        range_tombstones,
    })
}

fn run_flush(db: &DbInner, shard: usize, mems: &[Arc<Memtable>]) -> Result<()> {
    let largest_seq = mems.iter().map(|m| m.largest_seq()).max().unwrap_or(0);
    // A flush writes one L0 table per shard (not cut at the target file
    // size), so level 0 holds one sorted run per flush and shard and the L0
    // write triggers count exactly what reads have to merge.
    let count = 1;
    let (token, numbers, smallest_snapshot) = {
        let mut vs = db.versions.lock();
        let numbers = vs
            .reserve_file_numbers(count)
            .inspect_err(|e| db.poison(e))?;
        let mut st = db.state.lock();
        st.next_job_id += 1;
        // Read under the state lock, like `Db::snapshot` registers.
        let smallest_snapshot = db.smallest_snapshot();
        (
            JobToken {
                db_id: vs.db_id(),
                incarnation: vs.incarnation(),
                job_id: st.next_job_id,
                attempt: 1,
            },
            numbers,
            smallest_snapshot,
        )
    };
    let job = FlushJob {
        token,
        dir: db.dir.clone(),
        shard: shard as u32,
        images: mems
            .iter()
            .map(|m| (m.entries(), m.entries_largest_seq()))
            .collect(),
        table_options: db.options.table.clone(),
        target_file_size: u64::MAX,
        smallest_snapshot,
        file_numbers: numbers,
    };
    let result = job.execute_local(db.storage.as_ref(), mems)?;
    tracing::debug!(
        shard,
        micros = result.stats.micros,
        bytes_read = result.stats.bytes_read,
        bytes_written = result.stats.bytes_written,
        "flush job done"
    );
    // Prefix rule: the WAL must hold every write up to the flushed sequence.
    if !db.options.disable_wal {
        let mut wal = db.wal.lock();
        if let Some(w) = wal.writer.as_mut()
            && let Err(e) = w.sync()
        {
            db.poison(&e);
            return Err(e);
        }
    }
    let range_tombstones = mems
        .iter()
        .flat_map(|m| m.range_tombstones())
        .map(|t| (shard as u32, t))
        .collect();
    install_flush(db, shard, mems.len(), largest_seq, result, range_tombstones)
}

fn install_flush(
    db: &DbInner,
    shard: usize,
    flushed: usize,
    largest_seq: u64,
    result: JobResult,
    range_tombstones: Vec<(u32, RangeTombstone)>,
) -> Result<()> {
    let mut vs = db.versions.lock();
    let log_number = db.state.lock().min_live_wal(Some((shard, flushed)));
    let bytes: u64 = result.outputs.iter().map(|f| f.size).sum();
    let mut edit = VersionEdit {
        log_number: Some(log_number),
        last_sequence: Some(db.visible_seq.load(Ordering::Acquire)),
        shard_flushed: vec![(shard as u32, largest_seq)],
        new_files: result.outputs.into_iter().map(|f| (0, f)).collect(),
        new_range_tombstones: range_tombstones,
        ..VersionEdit::default()
    };
    drop_obsolete_range_tombstones(db, &vs, &mut edit)?;
    let version = apply_edit(db, &mut vs, edit)?;
    let mut st = db.state.lock();
    st.shards[shard].sealed.drain(..flushed);
    db.install_super_version(&st, version);
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
    db.counters.flushes.fetch_add(1, Ordering::Relaxed);
    db.counters.flush_bytes.fetch_add(bytes, Ordering::Relaxed);
    for n in obsolete_wals {
        let path = wal_path(&db.dir, n);
        if let Err(e) = db.storage.delete(&path) {
            tracing::warn!("could not delete obsolete WAL {}: {e}", path.display());
        }
    }
    // The flush is done only once the segments it released are gone, so
    // `Db::flush` returns with the WAL trimmed.
    let mut st = db.state.lock();
    st.shards[shard].flushing = false;
    db.bg_cv.notify_all();
    Ok(())
}

pub(crate) fn run_compaction(
    db: &DbInner,
    plan: &CompactionPlan,
    job: &CompactionJob,
) -> Result<()> {
    let result = match trivial_move(job) {
        Some(moved) => moved,
        // Inputs that readers have open lend their decoded index.
        None => job.execute_with_indexes(db.storage.as_ref(), &|number| {
            db.table_cache.get_if_open(number).map(|t| t.shared_index())
        })?,
    };
    install_compaction(db, plan, job, result)
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

/// Add to `edit` the drops of the range tombstones that its version makes
/// obsolete; a failure (the edit does not apply) poisons the database like
/// a failed [`apply_edit`] would.
fn drop_obsolete_range_tombstones(
    db: &DbInner,
    vs: &VersionSet,
    edit: &mut VersionEdit,
) -> Result<()> {
    vs.drop_obsolete_range_tombstones(edit)
        .inspect_err(|e| db.poison(e))
}

/// Make `edit` durable and return the new version; a failure poisons the
/// database (the manifest's tail is unknown, so nothing may be deleted or
/// acknowledged on top of it).
fn apply_edit(db: &DbInner, vs: &mut VersionSet, edit: VersionEdit) -> Result<Arc<Version>> {
    vs.log_and_apply(edit).inspect_err(|e| db.poison(e))
}

pub(crate) fn install_compaction(
    db: &DbInner,
    plan: &CompactionPlan,
    job: &CompactionJob,
    result: JobResult,
) -> Result<()> {
    if result.token != job.token {
        // A result for another attempt (fencing): its files are garbage.
        let (removed, kept) = remove_rejected_outputs(db, &result.outputs);
        return Err(Error::InvalidArgument(format!(
            "result token {:?} does not match job {:?}; {removed} of its output files removed, {kept} kept because a version lists them",
            result.token, job.token
        )));
    }
    let mut vs = db.versions.lock();
    let mut edit = VersionEdit::default();
    for (level, files) in &job.inputs {
        for f in files {
            edit.deleted_files.push((*level, f.number));
        }
    }
    let written: u64 = result.outputs.iter().map(|f| f.size).sum();
    // Files that are both input and output were moved, not rewritten.
    let inputs: std::collections::HashSet<u64> = plan.input_files().map(|f| f.number).collect();
    let moved: std::collections::HashSet<u64> = result
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
    drop_obsolete_range_tombstones(db, &vs, &mut edit)?;
    let version = apply_edit(db, &mut vs, edit)?;
    let mut st = db.state.lock();
    for files in &plan.inputs {
        for f in files {
            st.busy_files.remove(&f.number);
            if !moved.contains(&f.number) {
                st.obsolete_files.push(f.clone());
            }
        }
    }
    db.install_super_version(&st, version);
    db.bg_cv.notify_all();
    drop(st);
    drop(vs);
    if moved.is_empty() {
        db.counters.compactions.fetch_add(1, Ordering::Relaxed);
        db.counters
            .compaction_bytes_read
            .fetch_add(result.stats.bytes_read, Ordering::Relaxed);
        db.counters
            .compaction_bytes_written
            .fetch_add(written, Ordering::Relaxed);
    } else {
        db.counters.trivial_moves.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Delete the output files of a rejected result, except those a version
/// still lists: a duplicate delivery of a result that was installed names
/// live tables, and so may a result whose tables were installed and then
/// compacted away while an iterator still reads them. Returns how many
/// were removed and how many kept.
pub(crate) fn remove_rejected_outputs(db: &DbInner, outputs: &[FileMeta]) -> (usize, usize) {
    let listed: std::collections::HashSet<u64> = {
        let st = db.state.lock();
        let current = db.super_version.read().version.clone();
        current
            .levels
            .iter()
            .flatten()
            .chain(st.obsolete_files.iter())
            .map(|f| f.number)
            .collect()
    };
    let (mut removed, mut kept) = (0, 0);
    for f in outputs {
        if listed.contains(&f.number) {
            kept += 1;
            continue;
        }
        let path = table_path(&db.dir, f.number);
        match db.storage.delete(&path) {
            Ok(()) => removed += 1,
            Err(e) => tracing::debug!("rejected output {} not removed: {e}", path.display()),
        }
    }
    (removed, kept)
}

pub(crate) fn release_compaction(db: &DbInner, plan: &CompactionPlan) {
    let mut st = db.state.lock();
    for files in &plan.inputs {
        for f in files {
            st.busy_files.remove(&f.number);
        }
    }
    db.bg_cv.notify_all();
}

/// Delete dropped SSTs that no reader's version still holds.
pub(crate) fn purge_obsolete_files(db: &DbInner) {
    let ready: Vec<Arc<FileMeta>> = {
        let mut st = db.state.lock();
        let (ready, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut st.obsolete_files)
            .into_iter()
            .partition(|f| Arc::strong_count(f) == 1);
        st.obsolete_files = keep;
        // Every version shares one `Arc` per file (the version builder keeps
        // it across moves), so the count above is the whole truth; a file
        // the current version lists is never deleted all the same.
        let current = db.super_version.read().version.clone();
        let live: std::collections::HashSet<u64> =
            current.levels.iter().flatten().map(|f| f.number).collect();
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
        db.table_cache.evict(f.number);
        let path = table_path(&db.dir, f.number);
        if let Err(e) = db.storage.delete(&path) {
            tracing::warn!("could not delete obsolete table {}: {e}", path.display());
        }
    }
}
