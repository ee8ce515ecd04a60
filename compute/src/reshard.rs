//! Changing the shard split keys of a running database (adaptive shards)
//! without losing or duplicating a write, in memory or in recovery.
//!
//! The scheme — flush, then switch:
//!
//! 1. Take the write leadership without a batch
//!    ([`crate::write_queue::WriteQueue::exclusive`]): no write is assigned
//!    a sequence or applied until the switch is over (writers queue up).
//! 2. Seal every shard's memtable and wait until every sealed memtable is
//!    flushed and installed (`Db::flush`'s wait; a first such flush before
//!    step 1, while writes go on, leaves little for this one). Now every write, up to the
//!    last sequence `B`, is in an SST, and every shard's flushed sequence is
//!    `B`.
//! 3. One manifest edit (`storage/docs/manifest_format.md`, "Re-splits")
//!    records the new split keys and a flushed sequence of `B` for every new
//!    shard. Recovery routes WAL records by the split keys of the manifest
//!    and skips those at or below a shard's flushed sequence: before the
//!    edit is durable, the old keys and old sequences apply (as if no
//!    re-split had started); after it, every record at or below `B` is
//!    skipped (it is in an SST) and every later one goes to a new shard.
//!    No record is replayed into two shards or into none.
//! 4. Replace the (empty) shards by empty shards of the new layout and
//!    publish a super version with both the new keys and the new shards, so
//!    a reader routes by the keys of the memtables it reads.
//!
//! What stays from the old layout is on disk: L0 files cut at the old keys
//! (which may cross the new ones) and installed range tombstones. Both keep
//! the shard number they were written with, which names them and nothing
//! more: a point lookup probes every L0 file covering its key, and the L0
//! picker takes older overlapping files of other shards along
//! (`o3_storage::compaction::Leveled`), so none is left to shadow newer data
//! moved below it.
//!
//! The cost is a write stall while the shards flush what they took during
//! the first flush, paid at the first split of a new database and at each
//! re-balance, which the balancer allows at most once per cool-down
//! (`shard_balance`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use o3_storage::version::VersionEdit;
use o3_storage::{Error, Result};

use crate::engine::Engine;
use crate::state::ShardState;

/// Move to `splits` (strictly increasing, non-empty keys) now: the public
/// re-split of an adaptive database.
pub(crate) fn reshard(db: &Engine, splits: Vec<Vec<u8>>) -> Result<()> {
    if !db.options.adaptive_shards {
        return Err(Error::InvalidArgument(
            "the shard split keys of a database without adaptive_shards are fixed".into(),
        ));
    }
    check_splits(&splits)?;
    if *db.shard_splits() == splits {
        return Ok(());
    }
    crate::manual::flush_all(db)?;
    let _writes = db.write_queue.exclusive();
    crate::write::wait_all_visible(db)?;
    switch(db, splits)
}

/// Move to the split keys the balancer asked for, if it still asks (called
/// by a writer after its write; any error is logged, the write stands).
pub(crate) fn run_due(db: &Engine) {
    if !db.resplit_pending.swap(false, Ordering::AcqRel) {
        return;
    }
    // Most of the flush happens here, while other writers go on; the
    // stall below only flushes what they wrote meanwhile.
    if let Err(e) = crate::manual::flush_all(db) {
        tracing::warn!("re-splitting the shards of {}: {e}", db.dir.display());
        return;
    }
    let _writes = db.write_queue.exclusive();
    if let Err(e) = crate::write::wait_all_visible(db) {
        tracing::warn!("re-splitting the shards of {}: {e}", db.dir.display());
        return;
    }
    let Some(splits) = db.state.lock().resplit_due.take() else {
        return;
    };
    let from = db.shard_splits().len() + 1;
    match switch(db, splits) {
        Ok(()) => tracing::info!(
            "shards of {} re-split: {from} → {}",
            db.dir.display(),
            db.shard_splits().len() + 1
        ),
        Err(e) => tracing::warn!("re-splitting the shards of {}: {e}", db.dir.display()),
    }
}

fn check_splits(splits: &[Vec<u8>]) -> Result<()> {
    if let Some(i) = splits.iter().position(|k| k.is_empty()) {
        return Err(Error::InvalidArgument(format!(
            "shard split keys must not be empty (key {i} is)"
        )));
    }
    if let Some(i) = splits.windows(2).position(|w| w[0] >= w[1]) {
        return Err(Error::InvalidArgument(format!(
            "shard split keys must be strictly increasing (key {} is not above key {i})",
            i + 1
        )));
    }
    if splits.len() >= crate::options::MAX_SHARDS {
        return Err(Error::InvalidArgument(format!(
            "{} split keys make more than {} shards",
            splits.len(),
            crate::options::MAX_SHARDS
        )));
    }
    Ok(())
}

/// Steps 2-4 of the scheme; the caller holds the write leadership.
fn switch(db: &Engine, splits: Vec<Vec<u8>>) -> Result<()> {
    if *db.shard_splits() == splits {
        return Ok(());
    }
    crate::manual::flush_all_holding_writes(db)?;
    let mut vs = db.versions.lock();
    let mut st = db.state.lock();
    // Nothing can have been written since: only the write leader (this
    // thread) inserts. Checked, because the recovery argument rests on it.
    if st
        .shards
        .iter()
        .any(|s| !s.active.is_empty() || !s.sealed.is_empty() || s.flushing)
    {
        return Err(Error::InvalidArgument(
            "re-split abandoned: a memtable is unflushed after the flush".into(),
        ));
    }
    let last = db.last_seq.load(Ordering::Acquire);
    let edit = VersionEdit {
        resplit: Some(splits.clone()),
        last_sequence: Some(last),
        shard_flushed: (0..=splits.len()).map(|s| (s as u32, last)).collect(),
        ..VersionEdit::default()
    };
    let version = vs
        .log_and_apply(edit)
        .inspect_err(|e| db.poison_locked(e))?;
    let shards = (0..=splits.len())
        .map(|s| ShardState::empty(db.options.write_buffer_size, s))
        .collect::<Result<Vec<_>>>();
    let shards = match shards {
        Ok(s) => s,
        Err(e) => {
            // The manifest has the new layout but memory does not: stop
            // rather than route writes by the old keys.
            db.poison_locked(&e);
            return Err(e);
        }
    };
    st.shards = shards;
    st.splits = Arc::new(splits);
    st.resplit_due = None;
    if let Some(b) = st.balancer.as_mut() {
        b.changed();
    }
    db.install_super_version(&st, version);
    db.counters.reshards.fetch_add(1, Ordering::Relaxed);
    db.bg_cv.notify_all();
    Ok(())
}
