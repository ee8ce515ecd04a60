//! The shared block cache: uncompressed, checksum-verified data blocks keyed
//! by (table cache id, block offset), bounded by total block bytes.
//!
//! Every open [`super::Table`] takes a fresh cache id from a process-wide
//! counter, so tables of different databases (or a table reopened after its
//! file number was reused) never see each other's blocks in a shared cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use quick_cache::Weighter;
use quick_cache::sync::Cache;

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
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("capacity", &self.capacity)
            .field("usage", &self.usage())
            .field("hits", &self.hits())
            .field("misses", &self.misses())
            .finish()
    }
}

impl BlockCache {
    /// A cache holding at most `capacity_bytes` of blocks (plus a small
    /// per-block overhead charge).
    pub fn new(capacity_bytes: u64) -> Arc<BlockCache> {
        let capacity = capacity_bytes.max(1);
        let estimated_items = (capacity / 4096).clamp(16, 1 << 24) as usize;
        Arc::new(BlockCache {
            cache: Cache::with_weighter(estimated_items, capacity, BlockWeighter),
            capacity: capacity_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// Bytes currently charged (block bytes plus per-block overhead).
    pub fn usage(&self) -> u64 {
        self.cache.weight()
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

    pub(crate) fn insert(&self, cache_id: u64, offset: u64, block: Bytes) {
        self.cache.insert((cache_id, offset), block);
    }
}
