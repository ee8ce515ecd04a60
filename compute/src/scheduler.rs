//! Scheduling background work: worker threads pick the next job — a due
//! retry, then flushes (they unblock writers), then the highest-scoring
//! compaction, or the idle compaction of level 0 — claim it and dispatch it
//! to its executor (`jobs`). Leases of jobs running elsewhere are checked
//! here too: an expired claim is given up (its late result is rejected)
//! and its work becomes available again.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use o3_storage::compaction::CompactionPlan;
use o3_storage::version::Version;

use crate::engine::Engine;
use crate::jobs::{self, build, install};
use crate::state::DbState;

/// Start the background worker threads.
pub(crate) fn start_workers(engine: &Arc<Engine>) -> Vec<JoinHandle<()>> {
    (0..engine.options.max_background_jobs)
        .filter_map(|i| {
            let engine = engine.clone();
            std::thread::Builder::new()
                .name(format!("o3-bg-{i}"))
                .spawn(move || worker(&engine))
                .map_err(|e| tracing::error!("cannot start background thread: {e}"))
                .ok()
        })
        .collect()
}

fn worker(engine: &Arc<Engine>) {
    // Obsolete inputs are deleted by the install (`jobs::finish`),
    // wherever the result arrives.
    while let Some(job_id) = next_job(engine) {
        jobs::dispatch(engine, job_id);
    }
}

/// Wait for and claim the next job; `None` on shutdown. At most
/// `max_background_jobs` jobs run in this process at once, and at most as
/// many compactions wherever they run; a flush does not wait for
/// compactions running elsewhere.
fn next_job(engine: &Engine) -> Option<u64> {
    loop {
        if engine.shutting_down.load(Ordering::Acquire) {
            return None;
        }
        let mut vs = engine.versions.lock();
        let mut st = engine.state.lock();
        // Read under the locks: a worker that stopped the database while
        // this one waited for them has been seen.
        let poisoned = engine.bg_error.get().is_some();
        expire_leases(engine, &mut st);
        let now = Instant::now();
        // Jobs running elsewhere use no worker here, so a flush does not
        // wait behind remote compactions; compactions, wherever they run,
        // stay at `max_background_jobs` at once (the pickers' safety with
        // concurrent jobs is argued and tested at that concurrency).
        let (here, elsewhere) = st.jobs.in_flight_here_and_elsewhere();
        let max = engine.options.max_background_jobs;
        let room = Room {
            flush: here < max,
            compaction: here + elsewhere < max,
        };
        if !poisoned && (room.flush || room.compaction) {
            match claim_next(engine, &mut vs, &mut st, now, room) {
                Ok(Some(job_id)) => return Some(job_id),
                Ok(None) => {}
                // Reserving file numbers failed: the database is stopped.
                Err(e) => tracing::error!("claiming a background job failed: {e}"),
            }
        }
        drop(vs);
        let wait = st
            .jobs
            .next_retry()
            .map_or(Duration::from_millis(500), |due| {
                due.saturating_duration_since(now)
                    .clamp(Duration::from_millis(1), Duration::from_millis(500))
            });
        engine.bg_cv.wait_for(&mut st, wait);
    }
}

/// Which kinds of job may start now.
#[derive(Debug, Clone, Copy)]
struct Room {
    flush: bool,
    compaction: bool,
}

fn claim_next(
    engine: &Engine,
    vs: &mut o3_storage::version::VersionSet,
    st: &mut DbState,
    now: Instant,
    room: Room,
) -> o3_storage::Result<Option<u64>> {
    if room.compaction
        && let Some(job_id) = st.jobs.due_retry(now)
    {
        return Ok(build::next_attempt(engine, vs, st, job_id)?.map(|t| t.job_id));
    }
    note_writes(engine, st, now);
    if room.flush
        && let Some(shard) = (0..st.shards.len()).find(|&i| flush_due(engine, st, i, now))
    {
        let job_id = build::claim_flush(engine, vs, st, shard)?;
        // Flushes of different shards run side by side (one per shard at a
        // time): record how many did.
        let running = st.shards.iter().filter(|s| s.flushing).count() as u64;
        engine
            .counters
            .max_concurrent_flushes
            .fetch_max(running, Ordering::Relaxed);
        return Ok(Some(job_id));
    }
    if !room.compaction {
        return Ok(None);
    }
    let version = vs.current();
    let plan = if engine.options.disable_auto_compactions {
        None
    } else {
        engine
            .strategy
            .pick(&version, &st.busy_files)
            .or_else(|| idle_compaction(engine, st, &version))
    };
    match plan {
        Some(plan) => {
            build::claim_compaction(engine, vs, st, plan, false).map(|job| Some(job.token.job_id))
        }
        None => Ok(None),
    }
}

/// Whether shard `shard` should be flushed now: it has sealed memtables
/// and no flush running, and either enough of them to merge
/// ([`crate::OffloadOptions::min_memtables_to_merge`]; one without
/// offloading) or a reason not to wait: `Db::flush` is waiting, the WAL or
/// the local memory is over its limit (offloading is not relieving it), or
/// writes stopped.
fn flush_due(engine: &Engine, st: &DbState, shard: usize, now: Instant) -> bool {
    let s = &st.shards[shard];
    if s.flushing || s.sealed.is_empty() {
        return false;
    }
    let merge = engine
        .offload
        .as_ref()
        .map_or(1, |o| o.options.min_memtables_to_merge);
    if st.flush_requests > 0 {
        return true;
    }
    if s.sealed.len() >= merge {
        // A flush that may leave this node takes the offloaded memtables
        // from the oldest on (`jobs::build::claim_flush`); while the oldest
        // is still local and about to be shipped, it waits for the ship.
        return !(engine.flushes_leave() && oldest_being_shipped(engine, s));
    }
    let o = &engine.options;
    let wal_bytes: u64 = st.wal_segments.values().sum();
    let idle = engine.counters.writes.load(Ordering::Relaxed) == st.idle_probe.0
        && now.duration_since(st.idle_probe.1) >= o.idle_compaction_after.unwrap_or(IDLE_FLUSH);
    wal_bytes > o.max_total_wal_size || st.unflushed_bytes() >= o.max_unflushed_bytes / 2 || idle
}

/// Whether the oldest sealed memtable of shard `s` is local and the
/// shipping threads will offload it next (`offload::ship::pick` takes the
/// oldest local one not kept local): shipping not paused, the memtable
/// neither claimed, empty, nor refused for want of room. Only the oldest
/// counts: when it was refused (the pool is full), waiting for a younger
/// one to be shipped would wait for ever, as the room comes back only when
/// flushes release images.
fn oldest_being_shipped(engine: &Engine, s: &crate::state::ShardState) -> bool {
    let Some(offload) = engine.offload.as_ref() else {
        return false;
    };
    if offload
        .paused_until
        .lock()
        .is_some_and(|until| Instant::now() < until)
    {
        return false;
    }
    let Some(oldest) = s.sealed.front() else {
        return false;
    };
    let slot = &oldest.slot;
    if !slot.is_local() || slot.is_claimed() || slot.is_empty() || slot.was_refused() {
        return false;
    }
    let local = s
        .sealed
        .iter()
        .filter(|x| x.slot.is_local() && !x.slot.is_claimed() && !x.slot.is_empty())
        .count();
    local > offload.options.max_local_sealed_memtables
}

/// With offloading, sealed memtables waiting to be merged are flushed
/// after this long without writes when idle compaction is off.
const IDLE_FLUSH: Duration = Duration::from_secs(1);

/// Record when the write count last changed (what "idle" is measured
/// from).
fn note_writes(engine: &Engine, st: &mut DbState, now: Instant) {
    let writes = engine.counters.writes.load(Ordering::Relaxed);
    if st.idle_probe.0 != writes {
        st.idle_probe = (writes, now);
    }
}

/// Give up claims whose lease ran out: their work becomes available again
/// and a late result is rejected.
fn expire_leases(engine: &Engine, st: &mut DbState) {
    for claim in st.jobs.expire(Instant::now()) {
        tracing::warn!(
            "{} did not report within its lease of {:?}; given up",
            claim.token,
            claim.lease.unwrap_or_default()
        );
        install::release_claim(st, &claim);
        engine.bg_cv.notify_all();
    }
}

/// The compaction of every level-0 file into the level below once the
/// database has been idle for `idle_compaction_after`: no write since, no
/// memtable waiting for a flush. `None` otherwise (or when level 0 is empty).
fn idle_compaction(engine: &Engine, st: &mut DbState, version: &Version) -> Option<CompactionPlan> {
    let after = engine.options.idle_compaction_after?;
    let now = std::time::Instant::now();
    let idle = now.duration_since(st.idle_probe.1) >= after
        && st.shards.iter().all(|s| s.sealed.is_empty() && !s.flushing);
    if !idle || version.levels.first().is_none_or(|l0| l0.is_empty()) {
        return None;
    }
    // A strategy that merges level 0 into itself would leave it non-empty
    // and be picked again at every check.
    engine
        .strategy
        .pick_manual(version, 0, None, None, &st.busy_files)
        .filter(|plan| plan.output_level > 0)
}
