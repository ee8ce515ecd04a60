//! The mutable state behind the database mutex, and the immutable
//! [`SuperVersion`] that readers take without locking.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock};

use o3_storage::memtable::Memtable;
use o3_storage::range_del::RangeTombstoneSet;
use o3_storage::sst::Table;
use o3_storage::version::{FileMeta, Version};

use crate::image_id::ImageId;
use crate::jobs::registry::Registry;
use crate::offload::slot::ImageSlot;
use crate::shard_balance::ShardBalancer;

/// A memtable that no longer takes writes and waits for its flush.
#[derive(Debug, Clone)]
pub(crate) struct Sealed {
    /// Its identity: a flush installs by it.
    pub id: ImageId,
    /// Its bytes, local or on a memory node.
    pub slot: Arc<ImageSlot>,
    /// The WAL segment that held its first record: that segment and every
    /// later one must be kept until this memtable is in an installed SST.
    pub first_wal: u64,
}

#[derive(Debug)]
pub(crate) struct ShardState {
    pub active: Arc<Memtable>,
    /// WAL segment of the active memtable's first record (None while empty).
    pub active_first_wal: Option<u64>,
    /// Oldest first.
    pub sealed: VecDeque<Sealed>,
    /// A flush of this shard is running (flushes of one shard install in order).
    pub flushing: bool,
    /// Key and value bytes written to the shard since the layout began
    /// (its write share).
    pub written_bytes: u64,
    /// Flushes of the shard installed since the layout began.
    pub flushes: u64,
    /// Bytes of `active` promised to write groups whose writers are still
    /// inserting (each group's bound, in every shard, until it publishes):
    /// the next group is logged while they insert, and must not count their
    /// room as free. 0 for a fresh memtable (one is sealed only once every
    /// group that inserts into it is done).
    pub reserved: usize,
}

impl ShardState {
    /// A shard with an empty memtable of `capacity` bytes and nothing
    /// sealed.
    pub fn empty(capacity: usize, shard: usize) -> o3_storage::Result<ShardState> {
        Ok(ShardState {
            active: Arc::new(Memtable::new(capacity, shard as u32)?),
            active_first_wal: None,
            sealed: VecDeque::new(),
            flushing: false,
            written_bytes: 0,
            flushes: 0,
            reserved: 0,
        })
    }
}

/// Everything a reader needs, immutable once published: the memtables of
/// every shard and the current version. Data moves from a memtable to an SST
/// by publishing one new super version that has both changes.
#[derive(Debug)]
pub(crate) struct SuperVersion {
    /// The split keys `shards` are cut at (they change with a re-split,
    /// so a reader routes by the super version it holds).
    pub splits: Arc<Vec<Vec<u8>>>,
    pub shards: Vec<ShardView>,
    pub version: Arc<Version>,
    /// Open tables of `version`, by level and position, filled on first use
    /// from the table cache: a point lookup then borrows its tables from the
    /// super version it already holds instead of taking the cache's lock
    /// and a reference count for each table it probes.
    pub tables: Vec<Vec<OnceLock<Arc<Table>>>>,
    /// What write stalls look at, computed once per super version rather
    /// than on every write.
    pub pressure: Pressure,
    /// Every range tombstone readers must apply: those of all memtables
    /// and of `version`. Empty (and free to test) when there are none.
    pub range_tombstones: Arc<RangeTombstoneSet>,
    /// What `range_tombstones` was built from, so that the next super
    /// version reuses it when nothing changed.
    range_tombstone_sources: RangeTombstoneSources,
}

/// Identifies the range tombstones of a super version: the version's set
/// (shared by versions with the same tombstones) and, for each memtable
/// holding some, its address and count (its list only grows).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct RangeTombstoneSources {
    version_set: usize,
    memtables: Vec<(usize, usize)>,
}

/// The engine's backlog as of one super version.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Pressure {
    /// L0 files of the shard that has the most.
    pub max_l0_files: usize,
    pub pending_compaction_bytes: u64,
    /// Bytes of sealed memtables waiting for a flush.
    pub unflushed_bytes: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct ShardView {
    pub active: Arc<Memtable>,
    /// Newest first.
    pub sealed: Vec<Arc<ImageSlot>>,
}

#[derive(Debug)]
pub(crate) struct DbState {
    /// The shards' split keys: shard `i` holds `[splits[i-1], splits[i])`.
    pub splits: Arc<Vec<Vec<u8>>>,
    pub shards: Vec<ShardState>,
    /// Key sampling of an adaptive database (`None`: static split keys).
    pub balancer: Option<ShardBalancer>,
    /// Split keys the balancer asked for, not yet in place.
    pub resplit_due: Option<Vec<Vec<u8>>>,
    /// Files that running compactions read.
    pub busy_files: HashSet<u64>,
    /// Jobs handed out and not finished, and how recent ones ended.
    pub jobs: Registry,
    /// Serial of the next memtable sealed.
    pub next_image_serial: u64,
    /// Files dropped from the current version; deleted once no reader's
    /// version holds them (their `Arc` is the last one).
    pub obsolete_files: Vec<Arc<FileMeta>>,
    /// Live WAL segments: number → bytes.
    pub wal_segments: BTreeMap<u64, u64>,
    /// Current WAL segment.
    pub wal_number: u64,
    /// Write count last seen by the idle check and when it last changed.
    pub idle_probe: (u64, std::time::Instant),
    /// Callers waiting in `Db::flush`: while any does, every sealed
    /// memtable is flushed at once, however few a shard holds.
    pub flush_requests: usize,
}

impl DbState {
    /// Local memory held by sealed memtables that wait for a flush (an
    /// offloaded one holds none).
    pub fn unflushed_bytes(&self) -> u64 {
        self.shards
            .iter()
            .flat_map(|s| s.sealed.iter())
            .map(|s| s.slot.local_bytes())
            .sum()
    }

    /// The oldest WAL segment that still holds records of an unflushed
    /// memtable, ignoring the sealed memtables `installing` (those a flush
    /// being installed retires).
    pub fn min_live_wal(&self, installing: &[ImageId]) -> u64 {
        let mut min = self.wal_number;
        for s in &self.shards {
            for sealed in s.sealed.iter().filter(|x| !installing.contains(&x.id)) {
                min = min.min(sealed.first_wal);
            }
            if let Some(w) = s.active_first_wal {
                min = min.min(w);
            }
        }
        min
    }

    /// The super version of this state and `version`; its range tombstone
    /// set is taken from `previous` when the tombstones did not change.
    pub fn super_version(
        &self,
        version: Arc<Version>,
        pending_compaction_bytes: u64,
        previous: Option<&SuperVersion>,
    ) -> Arc<SuperVersion> {
        // By the shard each file was written for: after a re-split, files
        // of the old layout may name shards the new one does not have.
        let mut l0_per_shard: BTreeMap<u32, usize> = BTreeMap::new();
        for f in version.levels.first().map(|l| l.as_slice()).unwrap_or(&[]) {
            *l0_per_shard.entry(f.shard).or_insert(0) += 1;
        }
        let (range_tombstones, range_tombstone_sources) = self.range_tombstones(&version, previous);
        Arc::new(SuperVersion {
            splits: self.splits.clone(),
            range_tombstones,
            range_tombstone_sources,
            pressure: Pressure {
                max_l0_files: l0_per_shard.into_values().max().unwrap_or(0),
                pending_compaction_bytes,
                unflushed_bytes: self.unflushed_bytes(),
            },
            shards: self
                .shards
                .iter()
                .map(|s| ShardView {
                    active: s.active.clone(),
                    sealed: s.sealed.iter().rev().map(|x| x.slot.clone()).collect(),
                })
                .collect(),
            tables: version
                .levels
                .iter()
                .map(|files| files.iter().map(|_| OnceLock::new()).collect())
                .collect(),
            version,
        })
    }

    /// The combined range tombstone set of every memtable and `version`:
    /// the previous super version's when nothing changed, that set extended
    /// by the tombstones written since when only memtables grew (the write
    /// path's case), else built anew on top of the version's set.
    fn range_tombstones(
        &self,
        version: &Version,
        previous: Option<&SuperVersion>,
    ) -> (Arc<RangeTombstoneSet>, RangeTombstoneSources) {
        let memtables: Vec<TombstoneSource<'_>> = self
            .shards
            .iter()
            .flat_map(|s| {
                std::iter::once(TombstoneSource::Active(&s.active))
                    .chain(s.sealed.iter().map(|x| TombstoneSource::Sealed(&x.slot)))
            })
            .filter(|m| m.count() > 0)
            .collect();
        let sources = RangeTombstoneSources {
            version_set: Arc::as_ptr(version.range_tombstone_set()) as usize,
            memtables: memtables.iter().map(|m| (m.address(), m.count())).collect(),
        };
        if let Some(prev) = previous
            && let Some(seen) = prev.range_tombstone_sources.grown_into(&sources)
        {
            let added: Vec<_> = memtables
                .iter()
                .zip(seen)
                .flat_map(|(m, skip)| m.after(skip))
                .collect();
            let set = if added.is_empty() {
                prev.range_tombstones.clone()
            } else {
                Arc::new(prev.range_tombstones.extended(&added))
            };
            return (set, sources);
        }
        if memtables.is_empty() {
            return (version.range_tombstone_set().clone(), sources);
        }
        let unflushed: Vec<_> = memtables.iter().flat_map(|m| m.after(0)).collect();
        let set = RangeTombstoneSet::with_base(version.range_tombstone_set().clone(), &unflushed);
        (Arc::new(set), sources)
    }
}

/// A memtable that may hold range tombstones: the active one (its list
/// grows) or a sealed one, local or offloaded (its list is fixed and kept
/// on the compute node).
enum TombstoneSource<'a> {
    Active(&'a Arc<Memtable>),
    Sealed(&'a Arc<ImageSlot>),
}

impl TombstoneSource<'_> {
    /// Identifies the source while it lives.
    fn address(&self) -> usize {
        match self {
            TombstoneSource::Active(m) => Arc::as_ptr(m) as usize,
            TombstoneSource::Sealed(s) => Arc::as_ptr(s) as usize,
        }
    }

    fn count(&self) -> usize {
        match self {
            TombstoneSource::Active(m) => m.range_tombstone_count(),
            TombstoneSource::Sealed(s) => s.range_tombstones.len(),
        }
    }

    /// Its tombstones after the first `skip`.
    fn after(&self, skip: usize) -> Vec<o3_storage::range_del::RangeTombstone> {
        match self {
            TombstoneSource::Active(m) => m.range_tombstones_after(skip),
            TombstoneSource::Sealed(s) => s.range_tombstones.iter().skip(skip).cloned().collect(),
        }
    }
}

impl RangeTombstoneSources {
    /// When `next` holds everything `self` does and more only in memtables
    /// (same version set; every memtable of `self` still there with at
    /// least as many tombstones), how many tombstones of each memtable of
    /// `next` `self` already holds; `None` otherwise.
    fn grown_into(&self, next: &RangeTombstoneSources) -> Option<Vec<usize>> {
        if self.version_set != next.version_set {
            return None;
        }
        let seen: Vec<usize> = next
            .memtables
            .iter()
            .map(|(ptr, _)| {
                self.memtables
                    .iter()
                    .find(|(p, _)| p == ptr)
                    .map_or(0, |(_, n)| *n)
            })
            .collect();
        let all_kept = self
            .memtables
            .iter()
            .all(|(ptr, n)| next.memtables.iter().any(|(p, m)| p == ptr && m >= n));
        all_kept.then_some(seen)
    }
}
