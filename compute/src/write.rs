//! The write path: group commit, WAL append, sequence assignment, memtable
//! insertion, memtable rotation and write stalls.
//!
//! Writers queue up; the writer at the front becomes the leader, takes the
//! queued batches (up to [`MAX_GROUP_BYTES`]), appends one WAL record per
//! batch, flushes (and syncs if any of them asked), applies them to the
//! memtables and publishes the new visible sequence, then wakes the group.
//! Only the leader inserts into memtables, so inserts never contend.
//! Waiting writers poll for the leadership to change hands for a few tens
//! of microseconds before they sleep ([`crate::write_queue::WriteQueue::wait`]),
//! so that writers taking turns do not each pay a sleep and a wake-up.
//!
//! A range deletion goes, split at the shard boundaries, into the side list
//! of each touched shard's active memtable. Readers take range tombstones
//! from the super version rather than from memtables, so a group holding
//! range deletions publishes a new super version before its writes become
//! visible.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use o3_storage::batch::{BatchOpKind, WriteBatch};
use o3_storage::filename::wal_path;
use o3_storage::job::shard_of;
use o3_storage::memtable::Memtable;
use o3_storage::range_del::RangeTombstone;
use o3_storage::wal::LogWriter;
use o3_storage::{Error, Result};

use crate::engine::Engine;
use crate::image_id::ImageId;
use crate::offload::slot::ImageSlot;
use crate::state::{DbState, Sealed};
use crate::stats::StallReason;

/// A group stops growing past this many bytes, so one slow group never
/// holds back its followers for long.
const MAX_GROUP_BYTES: usize = 1 << 20;

/// More than the bytes a memtable needs for one entry besides its key and
/// value (header, head node, links, trailer, alignment): a batch whose
/// encoding is smaller than the image limit by this much holds no entry too
/// large for a memtable.
const IMAGE_OVERHEAD_BOUND: usize = 4096;

/// Apply `batch` atomically; returns once it is in the WAL (synced if `sync`)
/// and visible to readers.
pub(crate) fn write(db: &Engine, batch: WriteBatch, sync: bool) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    db.check_poisoned()?;
    if db.shutting_down.load(Ordering::Acquire) {
        return Err(Error::Closed("database"));
    }
    batch.check_ranges()?;
    // An entry larger than the write buffer gets a memtable of its own, but
    // no memtable image exceeds 4 GiB (32-bit offsets). Only a batch whose
    // whole encoding comes near that is decoded to look for such an entry,
    // and it is refused before anything is written.
    let near_limit = batch.approximate_size() + IMAGE_OVERHEAD_BOUND > u32::MAX as usize;
    for op in batch.iter().take_while(|_| near_limit) {
        if Memtable::capacity_for_entry(op.key.len(), op.value.len()).is_none() {
            return Err(Error::InvalidArgument(format!(
                "entry with a {}-byte key and a {}-byte value exceeds the 4 GiB limit of a memtable image",
                op.key.len(),
                op.value.len(),
            )));
        }
    }
    let q = &db.write_queue;
    let mut st = q.state.lock();
    let id = st.next_id;
    st.next_id += 1;
    st.waiting.push_back((id, batch, sync));
    loop {
        if let Some(r) = st.results.remove(&id) {
            return r.map_err(Error::Poisoned);
        }
        if !st.leader_active && st.waiting.front().is_some_and(|w| w.0 == id) {
            break;
        }
        q.wait(&mut st);
    }
    // Leader: take a group.
    st.leader_active = true;
    let mut group = std::mem::take(&mut st.spare);
    let mut bytes = 0;
    while let Some(front) = st.waiting.front() {
        if !group.is_empty() && bytes + front.1.approximate_size() > MAX_GROUP_BYTES {
            break;
        }
        bytes += front.1.approximate_size();
        if let Some(w) = st.waiting.pop_front() {
            group.push(w);
        }
    }
    drop(st);

    let result = commit_group(db, &mut group);

    let mut st = q.state.lock();
    let mut own = Ok(());
    for (wid, _, _) in &group {
        if *wid == id {
            continue;
        }
        st.results.insert(
            *wid,
            result
                .as_ref()
                .map(|_| ())
                .map_err(|e| format!("group commit failed: {e}")),
        );
    }
    if let Err(e) = result {
        own = Err(e);
    }
    group.clear();
    st.spare = group;
    q.hand_off(&mut st);
    own
}

fn commit_group(db: &Engine, group: &mut [(u64, WriteBatch, bool)]) -> Result<()> {
    db.check_poisoned()?;
    wait_for_room(db)?;
    let sync = group.iter().any(|g| g.2);
    let mut seq = db.last_seq.load(Ordering::Acquire);
    for (_, batch, _) in group.iter_mut() {
        batch.set_sequence(seq + 1);
        seq += batch.count() as u64;
    }
    let mut wal_added = 0;
    if !db.options.disable_wal {
        let mut wal = db.wal.lock();
        maybe_roll_wal(db, &mut wal)?;
        let w = wal
            .writer
            .as_mut()
            .ok_or_else(|| Error::InvalidArgument("WAL is not open".into()))?;
        let before = w.len();
        let r = (|| {
            for (_, batch, _) in group.iter() {
                w.add_record(batch.encoded())?;
            }
            if sync { w.sync() } else { w.flush() }
        })();
        if let Err(e) = r {
            // The WAL's tail is now unknown: acknowledging later writes could
            // hide a hole, so the database stops accepting writes.
            db.poison(&e);
            return Err(e);
        }
        wal_added = w.len() - before;
        db.counters
            .wal_bytes
            .fetch_add(wal_added, Ordering::Relaxed);
    }
    db.last_seq.store(seq, Ordering::Release);
    let user_bytes = apply_to_memtables(db, group, wal_added)?;
    db.visible_seq.store(seq, Ordering::Release);
    db.counters
        .user_bytes
        .fetch_add(user_bytes, Ordering::Relaxed);
    db.counters
        .writes
        .fetch_add(group.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// Insert every operation of the group; returns the key + value bytes
/// written (for statistics), counted in the same pass. `wal_added` bytes
/// were appended to the current WAL segment for the group.
fn apply_to_memtables(
    db: &Engine,
    group: &[(u64, WriteBatch, bool)],
    wal_added: u64,
) -> Result<u64> {
    let mut st = db.state.lock();
    let wal_number = st.wal_number;
    if wal_added > 0 {
        *st.wal_segments.entry(wal_number).or_insert(0) += wal_added;
    }
    let mut user_bytes = 0u64;
    let mut range_deletions = false;
    // Held apart from `st` (which inserts change); a re-split replaces it
    // only while no group is being applied.
    let splits = st.splits.clone();
    for (_, batch, _) in group {
        let base = batch.sequence();
        range_deletions |= batch.range_deletions() > 0;
        for (i, op) in batch.iter().enumerate() {
            user_bytes += (op.key.len() + op.value.len()) as u64;
            let seq = base + i as u64;
            let Some(kind) = op.kind.entry_kind() else {
                debug_assert_eq!(op.kind, BatchOpKind::DeleteRange);
                add_range_deletion(db, &mut st, wal_number, op.key, op.value, seq)?;
                continue;
            };
            let shard = shard_of(&splits, op.key) as usize;
            insert(db, &mut st, shard, wal_number, op.key, seq, kind, op.value)?;
            st.shards[shard].written_bytes += (op.key.len() + op.value.len()) as u64;
            if let Some(b) = st.balancer.as_mut() {
                b.observe(op.key);
            }
        }
    }
    if let Some(b) = st.balancer.as_mut()
        && let Some(due) = b.end_of_window(&splits)
    {
        st.resplit_due = Some(due);
        db.resplit_pending.store(true, Ordering::Release);
    }
    if range_deletions {
        let version = db.super_version.read().version.clone();
        db.install_super_version(&st, version);
    }
    Ok(user_bytes)
}

/// Record the deletion of `[start, end)` at `seq` in the active memtable of
/// every shard the range touches (sealing a full one first). An empty range
/// deletes nothing, as in RocksDB.
fn add_range_deletion(
    db: &Engine,
    st: &mut DbState,
    wal_number: u64,
    start: &[u8],
    end: &[u8],
    seq: u64,
) -> Result<()> {
    if start >= end {
        return Ok(());
    }
    let whole = RangeTombstone {
        start: start.to_vec(),
        end: end.to_vec(),
        seq,
    };
    let splits = st.splits.clone();
    for (shard, piece) in whole.split_at_shards(&splits) {
        let shard = shard as usize;
        match st.shards[shard].active.add_range_tombstone(piece.clone()) {
            Ok(()) => {}
            Err(Error::ImageFull { .. }) => {
                seal_active(db, st, shard)?;
                st.shards[shard].active.add_range_tombstone(piece)?;
            }
            Err(e) => return Err(e),
        }
        st.shards[shard].active_first_wal.get_or_insert(wal_number);
    }
    Ok(())
}

/// Insert into the shard's active memtable, sealing it first if it is full.
#[allow(clippy::too_many_arguments)]
pub(crate) fn insert(
    db: &Engine,
    st: &mut DbState,
    shard: usize,
    wal_number: u64,
    key: &[u8],
    seq: u64,
    kind: o3_storage::key::ValueKind,
    value: &[u8],
) -> Result<()> {
    match st.shards[shard].active.insert(key, seq, kind, value) {
        Err(Error::ImageFull { .. }) => {
            seal_active(db, st, shard)?;
            match st.shards[shard].active.insert(key, seq, kind, value) {
                Err(Error::ImageFull { .. }) => {
                    return insert_oversized(db, st, shard, wal_number, key, seq, kind, value);
                }
                other => other?,
            }
        }
        other => other?,
    }
    st.shards[shard].active_first_wal.get_or_insert(wal_number);
    Ok(())
}

/// Insert an entry that does not fit a fresh memtable into a memtable sized
/// for it, sealed at once (as RocksDB does with large writes), so the next
/// writes go to an ordinary one. The shard's active memtable is empty here
/// (it was just sealed), so sequence order across its memtables holds.
#[allow(clippy::too_many_arguments)]
fn insert_oversized(
    db: &Engine,
    st: &mut DbState,
    shard: usize,
    wal_number: u64,
    key: &[u8],
    seq: u64,
    kind: o3_storage::key::ValueKind,
    value: &[u8],
) -> Result<()> {
    let capacity = Memtable::capacity_for_entry(key.len(), value.len()).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "entry with a {}-byte key and a {}-byte value exceeds the 4 GiB limit of a memtable image",
            key.len(),
            value.len()
        ))
    })?;
    let own = Arc::new(Memtable::new(capacity, shard as u32)?);
    own.insert(key, seq, kind, value)?;
    let s = &mut st.shards[shard];
    s.active = own;
    s.active_first_wal = Some(wal_number);
    seal_active(db, st, shard)
}

/// Seal the shard's active memtable (if not empty), start a new one and
/// publish a super version with both; wakes the flush workers.
pub(crate) fn seal_active(db: &Engine, st: &mut DbState, shard: usize) -> Result<()> {
    let s = &mut st.shards[shard];
    if s.active.is_empty() {
        return Ok(());
    }
    let fresh = Arc::new(Memtable::new(db.options.write_buffer_size, shard as u32)?);
    let old = std::mem::replace(&mut s.active, fresh);
    old.seal()?;
    let first_wal = s.active_first_wal.take().unwrap_or(st.wal_number);
    let id = ImageId {
        shard: shard as u32,
        serial: st.next_image_serial,
    };
    st.next_image_serial += 1;
    st.shards[shard].sealed.push_back(Sealed {
        id,
        slot: Arc::new(ImageSlot::sealed(id, old)),
        first_wal,
    });
    let version = db.super_version.read().version.clone();
    db.install_super_version(st, version);
    db.bg_cv.notify_all();
    Ok(())
}

/// Start a new WAL segment once the current one is full. The old segment is
/// synced first, so after a machine crash at most the newest segment has a
/// lost tail (recovery then yields a prefix of the writes, never a hole); the
/// new segment's directory entry is synced before any write in it is
/// acknowledged.
fn maybe_roll_wal(db: &Engine, wal: &mut crate::engine::WalState) -> Result<()> {
    let full = wal
        .writer
        .as_ref()
        .is_some_and(|w| w.len() >= db.options.wal_segment_size);
    if !full {
        return Ok(());
    }
    let r = (|| {
        if let Some(w) = wal.writer.as_mut() {
            w.sync()?;
        }
        let number = db.versions.lock().new_file_number();
        let file = db.storage.create(&wal_path(&db.dir, number))?;
        db.storage.sync_dir(&db.dir)?;
        wal.writer = Some(LogWriter::new(file, number));
        let mut st = db.state.lock();
        st.wal_number = number;
        st.wal_segments.insert(number, 0);
        Ok(())
    })();
    if let Err(e) = &r {
        db.poison(e);
    }
    r?;
    seal_cold_shard_if_wal_too_large(db);
    Ok(())
}

/// When live WAL segments exceed the limit, seal the memtable that pins the
/// oldest segment so its flush lets the segment go.
fn seal_cold_shard_if_wal_too_large(db: &Engine) {
    let mut st = db.state.lock();
    let total: u64 = st.wal_segments.values().sum();
    if total <= db.options.max_total_wal_size {
        return;
    }
    let oldest = st
        .shards
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.active_first_wal.map(|w| (w, i)))
        .min();
    if let Some((_, shard)) = oldest
        && let Err(e) = seal_active(db, &mut st, shard)
    {
        tracing::warn!("sealing shard {shard} to release WAL space: {e}");
    }
}

/// Hold the writer back while the engine is behind: stop (wait) when L0,
/// pending compaction bytes or unflushed memtables pass their hard limits;
/// slow down (sleep briefly) past the soft ones. Time is recorded by reason.
///
/// With automatic compactions off, nothing would ever lower the L0 count or
/// the pending compaction bytes, so (as in RocksDB) only the memtable limit,
/// which flushes resolve, holds writes back.
fn wait_for_room(db: &Engine) -> Result<()> {
    let o = &db.options;
    loop {
        let mut p = db.super_version.read().pressure;
        if o.disable_auto_compactions {
            p.max_l0_files = 0;
            p.pending_compaction_bytes = 0;
        }
        let stop = if p.unflushed_bytes >= o.max_unflushed_bytes {
            Some(StallReason::MemtableLimit)
        } else if p.max_l0_files >= o.l0_stop_writes_trigger {
            Some(StallReason::L0Stop)
        } else if p.pending_compaction_bytes >= o.hard_pending_compaction_bytes_limit {
            Some(StallReason::PendingCompactionStop)
        } else {
            None
        };
        if let Some(reason) = stop {
            // Every install publishes a new super version and signals bg_cv;
            // the timeout only bounds how long a missed signal can cost.
            let t = Instant::now();
            let mut st = db.state.lock();
            db.bg_cv.notify_all();
            db.bg_cv.wait_for(&mut st, Duration::from_millis(50));
            drop(st);
            db.counters
                .add_stall(reason, t.elapsed().as_micros() as u64);
            db.check_poisoned()?;
            if db.shutting_down.load(Ordering::Acquire) {
                return Err(Error::Closed("database"));
            }
            continue;
        }
        let slow = if p.max_l0_files >= o.l0_slowdown_writes_trigger {
            Some(StallReason::L0Slowdown)
        } else if p.pending_compaction_bytes >= o.soft_pending_compaction_bytes_limit {
            Some(StallReason::PendingCompactionSlowdown)
        } else {
            None
        };
        if let Some(reason) = slow {
            let t = Instant::now();
            std::thread::sleep(Duration::from_millis(1));
            db.counters
                .add_stall(reason, t.elapsed().as_micros() as u64);
        }
        return Ok(());
    }
}
