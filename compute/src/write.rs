//! The write path: group commit, WAL append, sequence assignment, memtable
//! insertion, memtable rotation and write stalls.
//!
//! Writers queue up; the writer at the front becomes the leader, takes the
//! queued batches (up to [`MAX_GROUP_BYTES`]), appends one WAL record per
//! batch, flushes (and syncs if any of them asked), applies them to the
//! memtables and publishes the new visible sequence, then wakes the group.
//! A lone writer's batch, or a group with range deletions, is inserted by
//! the leader alone. Otherwise the group's writers insert their own batches
//! at once (RocksDB's concurrent memtable writes; o3's memtable takes
//! concurrent inserts by compare-and-swap), and the write path is a
//! pipeline: the leader makes room for the whole group in every shard's
//! active memtable, hands each follower its batch ([`Outcome::Insert`]) and
//! the leadership to the next writer, so the next group is logged while
//! this one is inserted. Groups publish their sequences in order, each once
//! its batches are in and the group before it is visible. Whatever seals an
//! active memtable (a full one, a WAL roll, a manual flush, a re-split)
//! first waits until every logged group is visible, so no group is ever
//! split across two memtables of a shard or inserted into a sealed one.
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
use crate::write_queue::{GroupInsert, Outcome, Queued};

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
        match st.results.remove(&id) {
            Some(Outcome::Done(r)) => return r.map_err(Error::Poisoned),
            Some(Outcome::Insert(group, i)) => {
                drop(st);
                // An insert error is the group's: `wait_finished` reports it.
                let _ = group.insert(i);
                return group.wait_finished().map_err(Error::Poisoned);
            }
            None => {}
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

    let result = (|| {
        let logged = log_group(db, &mut group)?;
        match room_for_parallel_insert(db, &group, &logged)? {
            Some(room) => Ok(Some((logged, room))),
            None => {
                apply_alone(db, &group, &logged)?;
                Ok(None)
            }
        }
    })();
    if let Ok(Some((logged, room))) = result {
        // The writers insert their own batches; the next group may be
        // logged meanwhile.
        let batches = std::mem::take(&mut group);
        let (wal_number, reserved) = (room.wal_number, room.reserved);
        let parallel = Arc::new(GroupInsert::new(batches, room.memtables, room.splits));
        let mut own = 0;
        let mut st = q.state.lock();
        for (i, (wid, _, _)) in parallel.batches().iter().enumerate() {
            if *wid == id {
                own = i;
            } else {
                st.results
                    .insert(*wid, Outcome::Insert(parallel.clone(), i));
            }
        }
        q.hand_off(&mut st);
        drop(st);
        // An error is also the group's: `wait_inserted` reports it.
        let _ = parallel.insert(own);
        return publish_parallel(db, &parallel, &logged, wal_number, reserved);
    }

    let mut st = q.state.lock();
    for (wid, _, _) in &group {
        if *wid == id {
            continue;
        }
        st.results.insert(
            *wid,
            Outcome::Done(
                result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| format!("group commit failed: {e}")),
            ),
        );
    }
    group.clear();
    st.spare = group;
    q.hand_off(&mut st);
    result.map(|_| ())
}

/// A group written to the WAL: its sequences and where its bytes went.
struct Logged {
    /// Sequences `first..=last`.
    first: u64,
    last: u64,
    /// Bytes appended to the current WAL segment (0 without a WAL).
    wal_added: u64,
}

/// Give the group its sequences and append it to the WAL (flushed, or
/// synced if any writer asked).
fn log_group(db: &Engine, group: &mut [Queued]) -> Result<Logged> {
    db.check_poisoned()?;
    wait_for_room(db)?;
    let sync = group.iter().any(|g| g.2);
    let first = db.last_seq.load(Ordering::Acquire) + 1;
    let mut seq = first - 1;
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
    Ok(Logged {
        first,
        last: seq,
        wal_added,
    })
}

/// The leader inserts the whole group (once earlier groups are visible)
/// and publishes it.
fn apply_alone(db: &Engine, group: &[Queued], logged: &Logged) -> Result<()> {
    wait_visible(db, logged.first - 1)?;
    let user_bytes = apply_to_memtables(db, group, logged.wal_added)?;
    publish(db, logged, user_bytes, group.len());
    Ok(())
}

/// Make the group's writes visible (every group before it is) and count
/// them.
fn publish(db: &Engine, logged: &Logged, user_bytes: u64, batches: usize) {
    db.visible_seq.store(logged.last, Ordering::Release);
    db.counters
        .user_bytes
        .fetch_add(user_bytes, Ordering::Relaxed);
    db.counters
        .writes
        .fetch_add(batches as u64, Ordering::Relaxed);
    db.counters.write_groups.fetch_add(1, Ordering::Relaxed);
}

/// Wait until every write up to `seq` is visible: groups whose writers
/// insert their own batches publish in sequence order, each after the one
/// before. Fails once the database is poisoned (a failed group never
/// publishes).
fn wait_visible(db: &Engine, seq: u64) -> Result<()> {
    let visible = || db.visible_seq.load(Ordering::Acquire) >= seq;
    crate::write_queue::poll(|| visible() || db.check_poisoned().is_err(), Duration::MAX);
    if visible() {
        Ok(())
    } else {
        db.check_poisoned()
    }
}

/// Wait until every group logged so far is visible; with the write
/// leadership held, no memtable is being inserted into afterwards.
pub(crate) fn wait_all_visible(db: &Engine) -> Result<()> {
    wait_visible(db, db.last_seq.load(Ordering::Acquire))
}

/// Where a group's writers insert their own batches.
struct Room {
    /// The active memtable of every shard, each with room for the group.
    memtables: Vec<Arc<Memtable>>,
    splits: Arc<Vec<Vec<u8>>>,
    /// The WAL segment the group went to (the leadership is held, so the
    /// segment is still the current one).
    wal_number: u64,
    /// Bytes reserved for the group in every shard's memtable
    /// ([`crate::state::ShardState::reserved`]).
    reserved: usize,
}

/// Whether the group's writers insert their own batches, and if so the
/// active memtable of every shard, with room for the whole group (a
/// shard's memtable that lacks it is sealed, once earlier groups are
/// visible), and the WAL segment the group went to. `None` when the leader
/// inserts alone: a lone batch with no other writer waiting and no group
/// still inserting (one writer gains nothing from the hand-over), range
/// deletions, an adaptive-shard balancer (it samples the keys in order),
/// or a group too large for an empty memtable.
fn room_for_parallel_insert(
    db: &Engine,
    group: &[Queued],
    logged: &Logged,
) -> Result<Option<Room>> {
    if group.iter().any(|g| g.1.range_deletions() > 0) {
        return Ok(None);
    }
    if group.len() == 1
        && db.visible_seq.load(Ordering::Acquire) + 1 == logged.first
        && db.write_queue.state.lock().waiting.is_empty()
    {
        return Ok(None);
    }
    let bound = group_bound(group);
    let mut st = db.state.lock();
    if st.balancer.is_some() {
        return Ok(None);
    }
    // Room still free: not used yet, nor promised to groups inserting.
    let lacks_room =
        |s: &crate::state::ShardState| s.active.free_bytes().saturating_sub(s.reserved) < bound;
    if st.shards.iter().any(lacks_room) {
        // Sealing needs the memtables' inserts done; once the groups before
        // are visible, nothing is promised any more.
        drop(st);
        wait_visible(db, logged.first - 1)?;
        st = db.state.lock();
        for shard in 0..st.shards.len() {
            if lacks_room(&st.shards[shard]) {
                seal_active(db, &mut st, shard)?;
                if lacks_room(&st.shards[shard]) {
                    return Ok(None);
                }
            }
        }
    }
    let wal_number = st.wal_number;
    if logged.wal_added > 0 {
        *st.wal_segments.entry(wal_number).or_insert(0) += logged.wal_added;
    }
    for s in &mut st.shards {
        s.reserved += bound;
    }
    Ok(Some(Room {
        memtables: st.shards.iter().map(|s| s.active.clone()).collect(),
        splits: st.splits.clone(),
        wal_number,
        reserved: bound,
    }))
}

/// The most memtable bytes `group` can take: the encoding holds every key
/// and value, and each entry adds at most the memtable's overhead bound.
fn group_bound(group: &[Queued]) -> usize {
    group
        .iter()
        .map(|g| g.1.approximate_size() + g.1.count() as usize * Memtable::ENTRY_OVERHEAD_BOUND)
        .sum()
}

/// The leader's end of a group its writers insert: wait for every batch,
/// then for the groups before it, account for it and publish it. An insert
/// that fails leaves the memtables behind the WAL: the database stops
/// accepting writes.
fn publish_parallel(
    db: &Engine,
    group: &GroupInsert,
    logged: &Logged,
    wal_number: u64,
    reserved: usize,
) -> Result<()> {
    let published = (|| {
        group
            .wait_inserted()
            .map_err(|e| {
                Error::InvalidArgument(format!("memtable insert of a write group failed: {e}"))
            })
            .inspect_err(|e| db.poison(e))?;
        wait_visible(db, logged.first - 1)?;
        let mut user_bytes = 0;
        {
            let mut st = db.state.lock();
            // The group's promise ends; a memtable sealed since (none is
            // while the group inserts) took its promises with it.
            for (s, memtable) in st.shards.iter_mut().zip(group.memtables()) {
                if Arc::ptr_eq(&s.active, memtable) {
                    s.reserved = s.reserved.saturating_sub(reserved);
                }
            }
            for (shard, bytes) in group.written() {
                let s = &mut st.shards[shard];
                s.written_bytes += bytes;
                s.active_first_wal.get_or_insert(wal_number);
                user_bytes += bytes;
            }
        }
        publish(db, logged, user_bytes, group.batches().len());
        db.counters
            .parallel_write_groups
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    })();
    group.finish(published.is_ok());
    published
}

/// Insert every operation of the group; returns the key + value bytes
/// written (for statistics), counted in the same pass. `wal_added` bytes
/// were appended to the current WAL segment for the group.
fn apply_to_memtables(db: &Engine, group: &[Queued], wal_added: u64) -> Result<u64> {
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
    // Promises were on the old memtable (and are kept: it is sealed only
    // once the groups inserting into it are done, or the database failed).
    s.reserved = 0;
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
    // Groups still inserting may take the memtable the roll seals below;
    // and a group's segment must stay current until it is accounted for.
    wait_all_visible(db)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Db, DbOptions};

    /// Two writers' batches of 20 KB each, keys starting with `tag`.
    fn group(tag: u8) -> Vec<Queued> {
        (0..2u8)
            .map(|w| {
                let mut b = WriteBatch::new();
                b.put(&[tag, w], &[w; 20_000]);
                (u64::from(w), b, false)
            })
            .collect()
    }

    /// Group A is given room in a 64 KiB memtable and has not inserted yet
    /// when group B, logged meanwhile, asks: B must not be promised the
    /// room A holds (it was, which overflowed the memtable mid-insert and
    /// stopped the database). B waits for A to publish, then gets a fresh
    /// memtable.
    #[test]
    fn a_group_is_not_promised_room_an_earlier_group_holds() {
        let dir = tempfile::tempdir().unwrap();
        let options = DbOptions {
            write_buffer_size: 64 << 10,
            disable_wal: true,
            ..DbOptions::default()
        };
        let db = Db::open(dir.path(), options).unwrap();
        let engine = db.inner.clone();
        let mut a = group(1);
        let logged_a = log_group(&engine, &mut a).unwrap();
        let room_a = room_for_parallel_insert(&engine, &a, &logged_a)
            .unwrap()
            .expect("room for A in an empty memtable");
        assert!(room_a.reserved > 40_000, "{}", room_a.reserved);
        let mut b = group(2);
        let logged_b = log_group(&engine, &mut b).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let asker = {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let room = room_for_parallel_insert(&engine, &b, &logged_b);
                let _ = tx.send(room.map(|r| r.map(|r| r.memtables)));
            })
        };
        // B has no room until A publishes: the memtable's free bytes are
        // A's. (Given time, a B promised A's room answers here; one that
        // answers late only makes this check miss, never fail wrongly.)
        assert!(
            rx.recv_timeout(Duration::from_millis(500)).is_err(),
            "B was given room while A still held it"
        );
        let a_memtable = room_a.memtables[0].clone();
        let inserting = GroupInsert::new(a, room_a.memtables, room_a.splits);
        for i in 0..2 {
            inserting.insert(i).unwrap();
        }
        publish_parallel(
            &engine,
            &inserting,
            &logged_a,
            room_a.wal_number,
            room_a.reserved,
        )
        .unwrap();
        let room_b = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("B still waiting after A published")
            .unwrap()
            .expect("room for B");
        asker.join().unwrap();
        assert!(
            !Arc::ptr_eq(&room_b[0], &a_memtable),
            "B was promised the room A held"
        );
        // What stays promised is B's own bound.
        assert_eq!(
            engine.state.lock().shards[0].reserved,
            group_bound(&group(2))
        );
    }
}
