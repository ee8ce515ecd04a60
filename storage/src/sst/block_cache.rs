//! The shared block cache: uncompressed, checksum-verified data blocks keyed
//! by (table cache id, block offset), bounded by total block bytes.
//!
//! Admission: by default a block enters the cache on its second miss within
//! a recent window, not its first ([`CacheAdmission::SecondMiss`]). When the
//! data is many times the cache (uniform point lookups, one-pass scans),
//! inserting every block read only evicts another one that would not have
//! been read again in time either: the hit rate stays the cached fraction of
//! the data, while every miss pays an insert, an eviction and the evicted
//! block's free. A block read twice within the window — anything hot —
//! still gets in on its second read. The window is a direct-mapped table of
//! block fingerprints (four bytes per 512 bytes of capacity, charged to the
//! capacity), so it remembers roughly the last `capacity / 512` missed
//! blocks, a few times what the cache holds.
//!
//! Every open [`super::Table`] takes a fresh cache id from a process-wide
//! counter, so tables of different databases (or a table reopened after its
//! file number was reused) never see each other's blocks in a shared cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use bytes::Bytes;
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use serde::{Deserialize, Serialize};

/// Bytes of capacity per slot of the admission window (see the module
/// documentation); each slot is a 4-byte fingerprint.
const CAPACITY_PER_WINDOW_SLOT: u64 = 512;

/// Which missed blocks the cache takes in. Serialized (and parsed, and
/// displayed) as `always` / `second-miss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheAdmission {
    /// Every block read with `fill_cache` is inserted (LRU-style caches
    /// such as RocksDB's default).
    Always,
    /// A block is inserted on its second miss within the admission window.
    #[default]
    SecondMiss,
}

impl std::fmt::Display for CacheAdmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CacheAdmission::Always => "always",
            CacheAdmission::SecondMiss => "second-miss",
        })
    }
}

impl std::str::FromStr for CacheAdmission {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<CacheAdmission> {
        match s {
            "always" => Ok(CacheAdmission::Always),
            "second-miss" => Ok(CacheAdmission::SecondMiss),
            _ => Err(crate::Error::InvalidArgument(format!(
                "unknown cache admission '{s}' (expected always or second-miss)"
            ))),
        }
    }
}

/// Fixed per-entry charge on top of the block bytes (key, `Bytes` header,
/// cache bookkeeping), so that many tiny blocks cannot exceed the budget.
const ENTRY_OVERHEAD: u64 = 64;

static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

/// A cache id no other table in this process has used.
pub(crate) fn next_cache_id() -> u64 {
    NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed)
}

#[derive(Debug, Clone, Copy, Default)]
struct BlockWeighter;

impl Weighter<(u64, u64), Bytes> for BlockWeighter {
    fn weight(&self, _key: &(u64, u64), block: &Bytes) -> u64 {
        block.len() as u64 + ENTRY_OVERHEAD
    }
}

/// A byte-capacity cache of data blocks shared by all tables that are given
/// it. Blocks are `Bytes`, so a hit hands out the cached memory without
/// copying; an evicted block lives on while a reader still holds it.
pub struct BlockCache {
    cache: Cache<(u64, u64), Bytes, BlockWeighter>,
    capacity: u64,
    /// Fingerprints of recently missed blocks, direct-mapped; empty under
    /// [`CacheAdmission::Always`]. Zero marks an empty slot.
    window: Box<[AtomicU32]>,
    hits: AtomicU64,
    misses: AtomicU64,
    declined: AtomicU64,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("capacity", &self.capacity)
            .field("usage", &self.usage())
            .field("hits", &self.hits())
            .field("misses", &self.misses())
            .field("declined", &self.declined())
            .finish()
    }
}

impl BlockCache {
    /// A cache of `capacity_bytes` with the default admission
    /// ([`CacheAdmission::SecondMiss`]).
    pub fn new(capacity_bytes: u64) -> Arc<BlockCache> {
        Self::with_admission(capacity_bytes, CacheAdmission::default())
    }

    /// A cache charging at most `capacity_bytes` for its blocks (plus a
    /// small per-block overhead) and, under `SecondMiss`, its admission
    /// window.
    pub fn with_admission(capacity_bytes: u64, admission: CacheAdmission) -> Arc<BlockCache> {
        let slots = match admission {
            CacheAdmission::Always => 0,
            CacheAdmission::SecondMiss => capacity_bytes / CAPACITY_PER_WINDOW_SLOT,
        };
        let window: Box<[AtomicU32]> = (0..slots).map(|_| AtomicU32::new(0)).collect();
        let window_bytes = slots * std::mem::size_of::<AtomicU32>() as u64;
        let capacity = capacity_bytes.saturating_sub(window_bytes).max(1);
        let estimated_items = (capacity / 4096).clamp(16, 1 << 24) as usize;
        Arc::new(BlockCache {
            cache: Cache::with_weighter(estimated_items, capacity, BlockWeighter),
            capacity: capacity_bytes,
            window,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            declined: AtomicU64::new(0),
        })
    }

    /// Bytes currently charged: block bytes plus per-block overhead, and
    /// the admission window.
    pub fn usage(&self) -> u64 {
        self.cache.weight() + self.window_bytes()
    }

    fn window_bytes(&self) -> u64 {
        std::mem::size_of_val(&*self.window) as u64
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Lookups that found their block.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that did not.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Missed blocks that the admission policy kept out of the cache.
    pub fn declined(&self) -> u64 {
        self.declined.load(Ordering::Relaxed)
    }

    /// Number of cached blocks.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    pub(crate) fn get(&self, cache_id: u64, offset: u64) -> Option<Bytes> {
        let found = self.cache.get(&(cache_id, offset));
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Whether the block just missed at (`cache_id`, `offset`) should be
    /// inserted: always under [`CacheAdmission::Always`]; under
    /// `SecondMiss`, when the window remembers an earlier miss of it (which
    /// is then forgotten), otherwise the miss is remembered and the block
    /// declined.
    pub(crate) fn admit(&self, cache_id: u64, offset: u64) -> bool {
        if self.window.is_empty() {
            return true;
        }
        let h = block_hash(cache_id, offset);
        let slot = &self.window[(((h >> 32) * self.window.len() as u64) >> 32) as usize];
        // Never zero, so that zero can mark an empty slot.
        let fingerprint = (h as u32) | 1;
        if slot.load(Ordering::Relaxed) == fingerprint {
            slot.store(0, Ordering::Relaxed);
            true
        } else {
            slot.store(fingerprint, Ordering::Relaxed);
            self.declined.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    pub(crate) fn insert(&self, cache_id: u64, offset: u64, block: Bytes) {
        self.cache.insert((cache_id, offset), block);
    }
}

/// A well-mixed 64-bit hash of a block's cache key.
fn block_hash(cache_id: u64, offset: u64) -> u64 {
    let mut x = cache_id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ offset;
    // splitmix64's finalizer.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
