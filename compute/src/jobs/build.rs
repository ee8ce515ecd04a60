//! Building jobs: a flush of a shard's sealed memtables, a compaction from
//! the strategy's plan, and the next attempt of either. Building claims: it
//! reserves the outputs' file numbers (durably, before the job can leave
//! the process) and registers the job under its token.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::offload::slot::ImageSlot;
use o3_storage::Result;
use o3_storage::compaction::CompactionPlan;
use o3_storage::job::{CompactionJob, FlushJob, JobToken};
use o3_storage::key::SequenceNumber;
use o3_storage::options::TableOptions;
use o3_storage::version::{FileMeta, VersionSet};

use super::executor::SealedImage;
use super::registry::{Claim, ClaimedWork};
use crate::engine::Engine;
use crate::state::DbState;

/// The token of attempt `attempt` of job `job_id` in this incarnation.
pub(crate) fn token(vs: &VersionSet, job_id: u64, attempt: u32) -> JobToken {
    JobToken {
        db_id: vs.db_id(),
        incarnation: vs.incarnation(),
        job_id,
        attempt,
    }
}

/// Reserve `count` output file numbers, durably; a failed manifest write
/// stops the database like every failed manifest write (and counts as a
/// failed background job). Called with the state lock held.
pub(crate) fn reserve(engine: &Engine, vs: &mut VersionSet, count: u64) -> Result<Range<u64>> {
    vs.reserve_file_numbers(count).inspect_err(|e| {
        engine
            .counters
            .background_errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        engine.poison_locked(e);
    })
}

/// The flush of `images` (one shard's sealed memtables, oldest first, as
/// their entry counts and largest entry sequences) into
/// one level-0 table: the job the scheduler hands out and recovery runs.
/// One table per flush and shard (not cut at the target file size), so
/// level 0 holds one sorted run per flush and shard and the L0 write
/// triggers count exactly what reads have to merge.
pub(crate) fn flush_job(
    token: JobToken,
    dir: &Path,
    shard: usize,
    images: Vec<(u64, SequenceNumber)>,
    table_options: &TableOptions,
    smallest_snapshot: SequenceNumber,
    file_numbers: Range<u64>,
) -> FlushJob {
    FlushJob {
        token,
        dir: dir.to_path_buf(),
        shard: shard as u32,
        images,
        table_options: table_options.clone(),
        target_file_size: u64::MAX,
        smallest_snapshot,
        file_numbers,
    }
}

/// File numbers one flush job needs.
pub(crate) const FLUSH_OUTPUTS: u64 = 1;

/// File numbers reserved for one flush: a slice per try when the executor
/// may hand it to several executors in turn (each try writes its own).
fn flush_outputs(engine: &Engine) -> u64 {
    FLUSH_OUTPUTS * u64::from(engine.executor.reservation_slices().max(1))
}

/// Claim the flush of the sealed memtables of `shard`; returns its job id.
///
/// Every sealed memtable, oldest first, except when flushes may run where
/// the images are and the oldest ones are offloaded: then only those (the
/// longest run of offloaded ones from the oldest). A flush with one image
/// still in local memory runs here, so taking the newest, local memtables
/// along would pull every offloaded image back over the link; they stay
/// sealed for the next flush, or are shipped when the pool has room again.
pub(crate) fn claim_flush(
    engine: &Engine,
    vs: &mut VersionSet,
    st: &mut DbState,
    shard: usize,
) -> Result<u64> {
    let numbers = reserve(engine, vs, flush_outputs(engine))?;
    let job_id = st.jobs.next_job_id();
    let token = token(vs, job_id, 1);
    // Read under the state lock, like `Db::snapshot` registers.
    let smallest_snapshot = engine.smallest_snapshot();
    let leave = engine.flushes_leave();
    let s = &mut st.shards[shard];
    s.flushing = true;
    let offloaded = s.sealed.iter().take_while(|x| !x.slot.is_local()).count();
    let take = if leave && offloaded > 0 {
        offloaded
    } else {
        s.sealed.len()
    };
    let images: Vec<SealedImage> = s
        .sealed
        .iter()
        .take(take)
        .map(|x| {
            // A claimed memtable is not shipped any more.
            x.slot.claim();
            SealedImage::new(x.id, x.slot.clone())
        })
        .collect();
    let slots: Vec<Arc<ImageSlot>> = s.sealed.iter().take(take).map(|x| x.slot.clone()).collect();
    let job = flush_job(
        token,
        &engine.dir,
        shard,
        slots
            .iter()
            .map(|m| (m.entries, m.entries_largest_seq))
            .collect(),
        &engine.options.table,
        smallest_snapshot,
        numbers.clone(),
    );
    let largest_seq = slots.iter().map(|m| m.largest_seq).max().unwrap_or(0);
    let range_tombstones = slots
        .iter()
        .flat_map(|m| m.range_tombstones.iter().cloned())
        .map(|t| (shard as u32, t))
        .collect();
    st.jobs.register(Claim {
        token,
        reservation: numbers,
        earlier: Vec::new(),
        work: ClaimedWork::Flush {
            job,
            shard,
            images,
            largest_seq,
            range_tombstones,
        },
        external: false,
        since: Instant::now(),
        lease: None,
        failures: 0,
        in_flight: false,
        place_locally: false,
    });
    Ok(job_id)
}

/// Claim the compaction `plan` (its inputs become busy); returns its job.
/// `external` claims are run by the caller of `Db::claim_compaction` and
/// hold a lease.
pub(crate) fn claim_compaction(
    engine: &Engine,
    vs: &mut VersionSet,
    st: &mut DbState,
    plan: CompactionPlan,
    external: bool,
) -> Result<CompactionJob> {
    let smallest_snapshot = engine.smallest_snapshot();
    // Tombstones over the inputs that every reader sees: the job drops what
    // they cover. Any later tombstone is newer than the job's view.
    let range_tombstones = match plan.user_key_range() {
        Some((lo, hi)) => {
            vs.current()
                .range_tombstones_overlapping(Some(lo), Some(hi), smallest_snapshot)
        }
        None => Vec::new(),
    };
    let numbers = reserve(
        engine,
        vs,
        compaction_outputs(engine, &plan, range_tombstones.len()),
    )?;
    for files in &plan.inputs {
        for f in files {
            st.busy_files.insert(f.number);
        }
    }
    let job_id = st.jobs.next_job_id();
    let token = token(vs, job_id, 1);
    let job = CompactionJob {
        token,
        dir: engine.dir.clone(),
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
        table_options: engine.options.table.clone(),
        smallest_snapshot,
        drop_tombstones: plan.bottommost,
        shard_splits: st.splits.to_vec(),
        file_numbers: numbers.clone(),
        range_tombstones,
    };
    st.jobs.register(Claim {
        token,
        reservation: numbers,
        earlier: Vec::new(),
        work: ClaimedWork::Compaction {
            plan,
            job: Box::new(job.clone()),
        },
        external,
        since: Instant::now(),
        lease: external.then_some(engine.options.job_lease),
        failures: 0,
        in_flight: false,
        place_locally: false,
    });
    Ok(job)
}

/// Outputs are cut at the target size, at shard boundaries and at the
/// range tombstones' bounds: reserve enough numbers for all of them, with
/// slack for files that end early.
fn compaction_outputs(engine: &Engine, plan: &CompactionPlan, range_tombstones: usize) -> u64 {
    let input_bytes: u64 = plan.inputs.iter().flatten().map(|f| f.size).sum();
    let one_try = input_bytes / plan.target_file_size.max(1)
        + engine.shard_splits().len() as u64
        + 2 * range_tombstones as u64
        + 16;
    // An executor that may hand the job to several agents in turn gives
    // each try its own slice of the numbers.
    one_try * u64::from(engine.executor.reservation_slices().max(1))
}

/// Start the next attempt of a claimed job: a new token and fresh file
/// numbers (the previous attempt's may still be written by an executor
/// that has not given up). Returns the new token, or `None` when the job
/// is no longer claimed.
pub(crate) fn next_attempt(
    engine: &Engine,
    vs: &mut VersionSet,
    st: &mut DbState,
    job_id: u64,
) -> Result<Option<JobToken>> {
    let Some(claim) = st.jobs.get(job_id) else {
        return Ok(None);
    };
    let count = match &claim.work {
        ClaimedWork::Flush { .. } => flush_outputs(engine),
        ClaimedWork::Compaction { job, .. } => job.file_numbers.end - job.file_numbers.start,
    };
    let attempt = claim.token.attempt + 1;
    let numbers = reserve(engine, vs, count)?;
    let token = token(vs, job_id, attempt);
    Ok(st.jobs.new_attempt(job_id, token, numbers).map(|c| c.token))
}
