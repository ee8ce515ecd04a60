//! The read path. `get`: the key's shard's active and sealed memtables
//! (newest first), then that shard's L0 files (newest first), then at most
//! one file per deeper level; the first entry found decides, unless a range
//! tombstone of the super version that covers the key is newer. Scans merge
//! the same sources, restricted to the shards and files that overlap the
//! bounds, and hide what the range tombstones delete.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use o3_storage::iter::{KeyBounds, MergingIterator, UserIterator};
use o3_storage::iterator::InternalIterator;
use o3_storage::job::shard_of;
use o3_storage::key::{SequenceNumber, ValueKind, compare_internal, with_lookup_key};
use o3_storage::sst::bloom_hash;
use o3_storage::version::FileMeta;
use o3_storage::{Error, Result};

use crate::engine::Engine;
use crate::key_range::KeyRange;
use crate::level_iter::LevelIterator;
use crate::offload::image::OffloadedImage;
use crate::offload::read::RemoteScan;
use crate::offload::runtime::Offload;
use crate::offload::slot::{FoundEntry, Held, ImageSlot, LocalGet, copied};
use crate::snapshot::Snapshot;
use crate::state::SuperVersion;
use crate::table_cache::TableCache;

/// Options for reads through an iterator ([`crate::Db::iter`],
/// [`crate::Db::range_with`]).
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Read as of this snapshot; `None` reads the latest state (fixed when
    /// the iterator is created). A clone of the caller's snapshot: the
    /// options keep the point in time alive on their own.
    pub snapshot: Option<Snapshot>,
    /// Inclusive lower bound on user keys.
    pub lower: Option<Vec<u8>>,
    /// Exclusive upper bound on user keys.
    pub upper: Option<Vec<u8>>,
}

impl ReadOptions {
    /// Read as of `snapshot`.
    pub fn at(snapshot: &Snapshot) -> ReadOptions {
        ReadOptions {
            snapshot: Some(snapshot.clone()),
            ..ReadOptions::default()
        }
    }

    /// Restrict to the user keys in `range`.
    pub fn bounded(mut self, range: impl KeyRange) -> ReadOptions {
        (self.lower, self.upper) = range.to_bounds();
        self
    }

    /// Restrict to the user keys that start with `prefix`.
    pub fn prefix(mut self, prefix: &[u8]) -> ReadOptions {
        self.lower = Some(prefix.to_vec());
        self.upper = prefix_successor(prefix);
        self
    }
}

/// The smallest key greater than every key that starts with `prefix`:
/// `prefix` with its last byte below 0xff incremented and the rest cut;
/// `None` when there is none (empty, or all 0xff).
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xff)?;
    let mut upper = prefix[..=last].to_vec();
    upper[last] += 1;
    Some(upper)
}

/// One consistent state to read from: a super version and the sequence the
/// reads see in it. Holds no reference to the database itself, so an
/// iterator never keeps a closed database (and its lock) alive.
pub(crate) struct ReadView {
    sv: Arc<SuperVersion>,
    table_cache: Arc<TableCache>,
    offload: Option<Arc<Offload>>,
    seq: SequenceNumber,
}

/// Take the state reads at `snapshot` (or the latest) see. A snapshot of
/// another database is refused: its sequence means nothing here.
pub(crate) fn view(db: &Engine, snapshot: Option<&Snapshot>) -> Result<ReadView> {
    // Read the sequence before the super version: any data at or below it is
    // then in the super version (data leaves a memtable only by a super
    // version that also holds its SST).
    let seq = sequence_for(db, snapshot)?;
    Ok(ReadView {
        sv: db.super_version.read().clone(),
        table_cache: db.table_cache.clone(),
        offload: db.offload.clone(),
        seq,
    })
}

/// The sequence a read at `snapshot` (or the latest) sees.
pub(crate) fn sequence_for(db: &Engine, snapshot: Option<&Snapshot>) -> Result<SequenceNumber> {
    match snapshot {
        Some(s) if !db.snapshots.owns(s) => Err(Error::InvalidArgument(format!(
            "snapshot at sequence {} belongs to another database than {}",
            s.sequence(),
            db.dir.display()
        ))),
        Some(s) => Ok(s.sequence()),
        None => Ok(db.visible_seq.load(Ordering::Acquire)),
    }
}

pub(crate) fn get(db: &Engine, key: &[u8], snapshot: Option<&Snapshot>) -> Result<Option<Vec<u8>>> {
    // The sequence first, then the super version (see `view`).
    let seq = sequence_for(db, snapshot)?;
    rebuilt_if_lost(db, || {
        let sv = db.super_version.read().clone();
        get_in(db, &sv, key, seq)
    })
}

/// Look up every key of `keys` as of one sequence and one super version;
/// answers come back in the order of `keys`. The probes run in key order,
/// so lookups that land in the same table and block follow each other.
pub(crate) fn multi_get(
    db: &Engine,
    keys: &[&[u8]],
    snapshot: Option<&Snapshot>,
) -> Result<Vec<Option<Vec<u8>>>> {
    let seq = sequence_for(db, snapshot)?;
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_unstable_by_key(|&i| keys[i]);
    rebuilt_if_lost(db, || {
        let sv = db.super_version.read().clone();
        let mut out = vec![None; keys.len()];
        for &i in &order {
            out[i] = get_in(db, &sv, keys[i], seq)?;
        }
        Ok(out)
    })
}

/// The point lookup of `key` at `seq` in `sv`.
fn get_in(
    db: &Engine,
    sv: &SuperVersion,
    key: &[u8],
    seq: SequenceNumber,
) -> Result<Option<Vec<u8>>> {
    let found = newest_entry(db, sv, key, seq)?;
    if sv.range_tombstones.is_empty() {
        return Ok(found.and_then(|(_, value)| value));
    }
    Ok(unless_range_deleted(sv, key, seq, found))
}

/// The answer of a lookup that found `found` (`(sequence, value or None
/// for a tombstone)`): `None` when a range tombstone visible at `snapshot`
/// covers `key` and is newer than the entry.
fn unless_range_deleted(
    sv: &SuperVersion,
    key: &[u8],
    snapshot: SequenceNumber,
    found: Option<FoundEntry>,
) -> Option<Vec<u8>> {
    let (entry_seq, value) = found?;
    if sv.range_tombstones.hides(key, entry_seq, snapshot) {
        return None;
    }
    value
}

/// The newest entry of `key` visible at `seq`, as `(sequence, value or
/// None for a tombstone)`; `None` when no source holds one.
fn newest_entry(
    db: &Engine,
    sv: &SuperVersion,
    key: &[u8],
    seq: SequenceNumber,
) -> Result<Option<FoundEntry>> {
    let view = sv.shards.get(shard_of(&sv.splits, key) as usize);
    if let Some(e) = view.and_then(|v| v.active.get(key, seq)) {
        return Ok(Some(copied(e)));
    }
    // Past the active memtable, every source filters by this hash.
    let hash = bloom_hash(key);
    if let Some(view) = view {
        // Consecutive offloaded images (newest first) that may hold the key
        // are asked together, before the next older local memtable.
        let mut remote: Vec<Arc<OffloadedImage>> = Vec::new();
        let mut excluded = 0;
        for slot in &view.sealed {
            // One look at the slot: it may flip between local and offloaded
            // at any time, and a second look could miss it in both forms.
            match slot.local_get(key, hash, seq) {
                LocalGet::Local(found) => {
                    if let Some(found) = remote_get(db, &remote, excluded, key, hash, seq)? {
                        return Ok(Some(found));
                    }
                    remote.clear();
                    excluded = 0;
                    if let Some(e) = found {
                        return Ok(Some(e));
                    }
                }
                LocalGet::Offloaded(image) => remote.push(image),
                LocalGet::Excluded => excluded += 1,
            }
        }
        if let Some(found) = remote_get(db, &remote, excluded, key, hash, seq)? {
            return Ok(Some(found));
        }
    }
    with_lookup_key(key, seq, |lookup| {
        let probe = Probe { key, lookup, hash };
        let in_range = |f: &FileMeta| f.smallest_user_key() <= key && key <= f.largest_user_key();
        let levels = &sv.version.levels;
        // L0: every file that covers the key, newest first. Not only the
        // key's shard's: files flushed before a re-split were cut at the
        // old split keys.
        for (i, f) in levels.first().into_iter().flatten().enumerate() {
            if in_range(f)
                && let Some(found) = table_get(db, sv, (0, i), &probe)?
            {
                return Ok(Some(found));
            }
        }
        // Deeper levels: at most one file each (fence pointers).
        for (level, files) in levels.iter().enumerate().skip(1) {
            let i = files.partition_point(|f| f.largest_user_key() < key);
            if files.get(i).is_some_and(|f| in_range(f))
                && let Some(found) = table_get(db, sv, (level, i), &probe)?
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    })
}

/// The newest entry of `key` in offloaded `images` (newest first), the
/// ones of a run of offloaded memtables whose filters admit the key;
/// `excluded` more of the run were ruled out.
fn remote_get(
    db: &Engine,
    images: &[Arc<OffloadedImage>],
    excluded: u64,
    key: &[u8],
    hash: u64,
    seq: SequenceNumber,
) -> Result<Option<FoundEntry>> {
    let Some(offload) = &db.offload else {
        return Ok(None);
    };
    offload.note_filter_skips(excluded);
    if images.is_empty() {
        return Ok(None);
    }
    crate::offload::read::get(offload, images, key, hash, seq)
}

/// Run `read`; when it found an offloaded image lost with its memory node,
/// wait (bounded) for the images to be rebuilt from the WAL and run it
/// again on the rebuilt state. A read never answers from a partial view.
fn rebuilt_if_lost<T>(db: &Engine, mut read: impl FnMut() -> Result<T>) -> Result<T> {
    match read() {
        Err(e @ Error::MemoryNode { lost: true, .. }) => match &db.offload {
            Some(offload) => {
                offload.recover(&e)?;
                read()
            }
            None => Err(e),
        },
        other => other,
    }
}

/// One point lookup's key in the forms the tables need, built once.
struct Probe<'a> {
    key: &'a [u8],
    lookup: &'a [u8],
    hash: u64,
}

/// Look the key up in the table at `(level, index)` of the super version:
/// `Some((sequence, answer))` when the table decides it.
fn table_get(
    db: &Engine,
    sv: &SuperVersion,
    (level, index): (usize, usize),
    p: &Probe<'_>,
) -> Result<Option<FoundEntry>> {
    let slot = &sv.tables[level][index];
    let table = match slot.get() {
        Some(t) => t,
        None => {
            let opened = db.table_cache.get(sv.version.levels[level][index].number)?;
            slot.get_or_init(|| opened)
        }
    };
    Ok(table
        .get_hashed(p.key, p.lookup, p.hash)?
        .map(|(kind, seq, value)| {
            (
                seq,
                match kind {
                    ValueKind::Value => Some(value),
                    ValueKind::Tombstone => None,
                },
            )
        }))
}

/// A cursor over user keys, positioned with `seek*` and moved with
/// `next`/`prev`; it keeps the files and memtables it reads alive.
pub struct DbIterator {
    inner: UserIterator<'static>,
}

impl std::fmt::Debug for DbIterator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbIterator")
            .field("valid", &self.valid())
            .finish()
    }
}

impl DbIterator {
    pub fn valid(&self) -> bool {
        self.inner.valid()
    }
    pub fn seek_to_first(&mut self) -> Result<()> {
        self.inner.seek_to_first()
    }
    pub fn seek_to_last(&mut self) -> Result<()> {
        self.inner.seek_to_last()
    }
    /// First key >= `key`.
    pub fn seek(&mut self, key: &[u8]) -> Result<()> {
        self.inner.seek(key)
    }
    /// Last key <= `key`.
    pub fn seek_for_prev(&mut self, key: &[u8]) -> Result<()> {
        self.inner.seek_for_prev(key)
    }
    /// A cursor step that can fail, not `Iterator::next`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<()> {
        self.inner.next()
    }
    pub fn prev(&mut self) -> Result<()> {
        self.inner.prev()
    }
    pub fn key(&self) -> &[u8] {
        self.inner.key()
    }
    pub fn value(&self) -> &[u8] {
        self.inner.value()
    }
}

pub(crate) fn iter(db: &Engine, opts: ReadOptions) -> Result<DbIterator> {
    // No `ReadView` here: a cursor per seek is common (db_bench's
    // seekrandom), and every reference count taken and dropped shows.
    let seq = sequence_for(db, opts.snapshot.as_ref())?;
    let sv = db.super_version.read().clone();
    let sources = CursorSources {
        table_cache: &db.table_cache,
        offload: &db.offload,
    };
    Ok(DbIterator {
        inner: cursor(sources, sv, seq, opts.lower, opts.upper)?,
    })
}

/// What a cursor needs besides the super version it reads.
#[derive(Clone, Copy)]
pub(crate) struct CursorSources<'a> {
    pub table_cache: &'a Arc<TableCache>,
    pub offload: &'a Option<Arc<Offload>>,
}

impl ReadView {
    /// An unpositioned cursor over this view, bounded to `[lower, upper)`.
    pub(crate) fn cursor(
        &self,
        lower: Option<Vec<u8>>,
        upper: Option<Vec<u8>>,
    ) -> Result<UserIterator<'static>> {
        let sources = CursorSources {
            table_cache: &self.table_cache,
            offload: &self.offload,
        };
        cursor(sources, self.sv.clone(), self.seq, lower, upper)
    }
}

/// An unpositioned cursor over `sv` at `seq`, bounded to `[lower, upper)`.
fn cursor(
    sources: CursorSources<'_>,
    sv: Arc<SuperVersion>,
    seq: SequenceNumber,
    lower: Option<Vec<u8>>,
    upper: Option<Vec<u8>>,
) -> Result<UserIterator<'static>> {
    let lo = lower.as_deref();
    // `upper` is exclusive; file and shard filters below use inclusive
    // bounds, which only makes them include a little more.
    let hi = upper.as_deref();
    // Room for the usual children (memtables, level-0 tables, one per
    // deeper level) in one allocation.
    let mut children: Vec<Box<dyn InternalIterator>> =
        Vec::with_capacity(8 + sv.version.levels.len());
    let splits = sv.splits.as_slice();
    let first_shard = lo.map_or(0, |k| shard_of(splits, k) as usize);
    let last_shard = hi.map_or(splits.len(), |k| shard_of(splits, k) as usize);
    let mut remote: Vec<(Arc<ImageSlot>, Arc<OffloadedImage>)> = Vec::new();
    let mut pulled_back = false;
    for shard in sv.shards.iter().take(last_shard + 1).skip(first_shard) {
        if !shard.active.is_empty() {
            children.push(Box::new(shard.active.iter()));
        }
        for slot in &shard.sealed {
            match slot.held() {
                Held::Local(mem) if !mem.is_empty() => children.push(Box::new(mem.iter())),
                Held::Local(_) => {}
                Held::Offloaded(image) if image.overlaps(lo, hi) => match image.local_copy() {
                    // Pulled back: read here (the copy is the image's bytes).
                    Some(copy) => {
                        image
                            .reads
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        pulled_back = true;
                        children.push(Box::new(copy.iter()));
                    }
                    None => remote.push((slot.clone(), image)),
                },
                Held::Offloaded(_) => {}
            }
        }
    }
    if let (Some(offload), true) = (sources.offload, pulled_back) {
        offload
            .counters
            .scans_on_pulled_back
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    if let (Some(offload), false) = (sources.offload, remote.is_empty()) {
        offload.note_scan();
    }
    if let Some(offload) = sources.offload {
        // Images with a key index are merged here and read one-sidedly;
        // the others are merged by the memory node.
        let (mut indexed, mut indexes, mut delegated) = (Vec::new(), Vec::new(), Vec::new());
        for (slot, image) in remote {
            match image.index() {
                Some(index) => {
                    indexes.push(index);
                    indexed.push((slot, image));
                }
                None => delegated.push((slot, image)),
            }
        }
        for (images, indexes) in [(indexed, Some(indexes)), (delegated, None)] {
            if !images.is_empty() {
                children.push(Box::new(RemoteScan::new(
                    offload.clone(),
                    images,
                    indexes,
                    seq,
                    lo,
                    hi,
                )));
            }
        }
    }
    for (level, files) in sv.version.levels.iter().enumerate() {
        if level == 0 {
            for f in files.iter().filter(|f| f.overlaps(lo, hi)) {
                let table = sources.table_cache.get(f.number)?;
                children.push(Box::new(table.iter(true)));
            }
            continue;
        }
        debug_assert!(
            files
                .windows(2)
                .all(|w| compare_internal(&w[0].largest, &w[1].smallest).is_lt())
        );
        // Sorted and disjoint: the files overlapping `[lo, hi]` are those
        // after every file ending below `lo` and before every file
        // starting above `hi`.
        let start = files.partition_point(|f| lo.is_some_and(|l| f.largest_user_key() < l));
        let end = files.partition_point(|f| hi.is_none_or(|h| f.smallest_user_key() <= h));
        if start >= end {
            continue;
        }
        children.push(Box::new(LevelIterator::new(
            sv.version.clone(),
            level,
            start..end,
            sources.table_cache.clone(),
        )));
    }
    // The iterator must keep the super version's memtables and files alive:
    // memtable iterators hold their memtable, and the table cache keeps
    // tables open; file deletion waits for the FileMeta Arcs held here.
    let merged = MergingIterator::new(children);
    let bounds = KeyBounds { lower, upper };
    let range_tombstones = (!sv.range_tombstones.is_empty()).then(|| sv.range_tombstones.clone());
    let it = UserIterator::new(
        Box::new(KeepAlive {
            inner: merged,
            _sv: sv,
        }),
        seq,
        bounds,
    );
    Ok(match range_tombstones {
        Some(set) => it.with_range_tombstones(set),
        None => it,
    })
}

/// Holds a super version for as long as an iterator over it lives, so the
/// files it reads are not deleted underneath it.
struct KeepAlive {
    inner: MergingIterator<'static>,
    _sv: Arc<crate::state::SuperVersion>,
}

impl InternalIterator for KeepAlive {
    fn valid(&self) -> bool {
        self.inner.valid()
    }
    fn seek_to_first(&mut self) -> Result<()> {
        self.inner.seek_to_first()
    }
    fn seek_to_last(&mut self) -> Result<()> {
        self.inner.seek_to_last()
    }
    fn seek(&mut self, target: &[u8]) -> Result<()> {
        self.inner.seek(target)
    }
    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        self.inner.seek_for_prev(target)
    }
    fn next(&mut self) -> Result<()> {
        self.inner.next()
    }
    fn prev(&mut self) -> Result<()> {
        self.inner.prev()
    }
    fn key(&self) -> &[u8] {
        self.inner.key()
    }
    fn value(&self) -> &[u8] {
        self.inner.value()
    }
}
