//! The key→offset cache: for hot keys of offloaded images, where the
//! key's newest entry in one image starts, so that the next lookup reads
//! that entry with one one-sided read instead of asking the memory node.
//!
//! Compact: an entry is the key's 64-bit hash, the image's tag, the offset,
//! the read length and the sequence, about [`ENTRY_BYTES`] with the cache's
//! own bookkeeping, whatever the key's length. The key itself is not kept:
//! the one-sided read fetches the entry's internal key, and the reader
//! checks it (key bytes and sequence), so a hash collision is a mismatch
//! that falls back to delegation, never a wrong answer.
//!
//! An entry names its image by a tag that is unique for each shipping of
//! an image (an image rebuilt from the WAL and shipped again gets a new
//! tag), and records the entry's sequence. When the cache may serve an
//! entry is decided by the reader (`offload::read`), not here.
//!
//! Where reading an entry remotely costs much more than a local lookup
//! (over a network rather than shared memory; the adaptive policy decides
//! from measured costs, `OffloadOptions::cache_values`), an entry also
//! holds the entry's key and value ([`HeldEntry`]): a hit then answers
//! with no remote read at all. Such an entry weighs its key and value too,
//! so the same bytes hold fewer, hotter keys; the kept key makes a hash
//! collision a miss, never a wrong answer.
//!
//! Bounded by bytes (quick_cache's weighted eviction); once it is full,
//! keys are admitted by frequency: a count-min sketch counts the lookups of
//! each key that reached offloaded images, and a key displaces others once
//! its count reaches `cache_admit_after` (until then, any key fills free
//! room). The counts are halved after every `width`
//! increments, so the sketch follows the workload as it changes.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64};

use std::sync::Arc;

use quick_cache::Weighter;
use quick_cache::sync::Cache;

/// Bytes charged per entry: the hash, the entry and the cache's own
/// bookkeeping (its slot and index).
pub(crate) const ENTRY_BYTES: u64 = 64;

/// Bytes charged for a [`HeldEntry`] beyond its key and value: its shared
/// count and the two boxes.
const HELD_OVERHEAD: u64 = 48;

/// Bytes charged for holding `key` and `value` in an entry.
fn held_bytes(key: &[u8], value: Option<&[u8]>) -> u64 {
    HELD_OVERHEAD + key.len() as u64 + value.map_or(0, |v| v.len() as u64)
}

/// No held entry takes more than this share of the cache's bytes: a key
/// with a value too large for it keeps only its offset.
const MAX_HELD_SHARE: u64 = 256;

/// A cached entry's key and value, kept in local memory.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HeldEntry {
    /// The user key (a hash collision is told apart by it).
    pub key: Box<[u8]>,
    /// The value; `None` for a tombstone.
    pub value: Option<Box<[u8]>>,
}

impl HeldEntry {
    pub fn new(key: &[u8], value: Option<&[u8]>) -> Arc<HeldEntry> {
        Arc::new(HeldEntry {
            key: key.into(),
            value: value.map(Into::into),
        })
    }
}

/// A key and its value (`None`: a tombstone) for the cache to hold.
pub(crate) type Keep<'a> = Option<(&'a [u8], Option<&'a [u8]>)>;

/// Where a key's newest entry in one offloaded image is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CachedEntry {
    /// The image's tag (unique per shipping of an image).
    pub tag: u64,
    /// The entry node's offset in the image.
    pub offset: u32,
    /// Bytes to read from `offset` to surely hold the whole node.
    pub read_len: u32,
    /// The entry's sequence: the newest of the key in that image.
    pub sequence: u64,
    /// The entry's key and value, when the cache holds them (a hit then
    /// reads nothing remotely).
    pub held: Option<Arc<HeldEntry>>,
}

impl CachedEntry {
    /// Bytes the entry is charged in the cache.
    pub fn bytes(&self) -> u64 {
        ENTRY_BYTES
            + self
                .held
                .as_ref()
                .map_or(0, |h| held_bytes(&h.key, h.value.as_deref()))
    }
}

/// Weighs entries by [`CachedEntry::bytes`].
#[derive(Debug, Clone, Copy)]
struct ByBytes;

impl Weighter<u64, CachedEntry> for ByBytes {
    fn weight(&self, _hash: &u64, entry: &CachedEntry) -> u64 {
        entry.bytes()
    }
}

/// The cache. Every method takes `&self` and is safe from any thread.
pub(crate) struct OffsetCache {
    /// By the key's hash (`o3_storage::sst::bloom_hash`).
    entries: Cache<u64, CachedEntry, ByBytes>,
    sketch: FrequencySketch,
    admit_after: u8,
    /// Bytes its entries may take.
    capacity: AtomicU64,
    /// The entries reached the capacity (less 1/8): from then on, only
    /// frequent keys are admitted, until releases free half of it.
    full: AtomicBool,
}

impl std::fmt::Debug for OffsetCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffsetCache")
            .field("capacity", &self.capacity.load(Relaxed))
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl OffsetCache {
    /// A cache of `bytes` admitting keys seen `admit_after` times; `None`
    /// when `bytes` is 0.
    pub fn new(bytes: u64, admit_after: u32) -> Option<OffsetCache> {
        if bytes == 0 {
            return None;
        }
        let capacity = bytes.max(16 * ENTRY_BYTES);
        let items = (capacity / ENTRY_BYTES) as usize;
        Some(OffsetCache {
            entries: Cache::with_weighter(items, capacity, ByBytes),
            sketch: FrequencySketch::new(items * 2),
            admit_after: admit_after.clamp(1, FrequencySketch::MAX as u32) as u8,
            capacity: AtomicU64::new(capacity),
            full: AtomicBool::new(false),
        })
    }

    /// The cached entry of the key whose hash is `hash`, if any.
    pub fn get(&self, hash: u64) -> Option<CachedEntry> {
        self.entries.get(&hash)
    }

    /// Count one more lookup of the key hashed to `hash` that reached
    /// offloaded images, and
    /// cache `entry` for it while the cache has room, or once the key is
    /// frequent enough to displace others, holding `keep` (the key and
    /// value) when given. True when cached.
    pub fn offer(&self, hash: u64, entry: CachedEntry, keep: Keep<'_>) -> bool {
        let count = self.sketch.increment(hash);
        if count < self.admit_after && self.full.load(Relaxed) {
            return false;
        }
        self.put(hash, entry, keep);
        true
    }

    /// Let the cached entry of the key hashed to `hash` hold `key` and
    /// `value`, if the cache still holds that very entry (after a hit that
    /// read it remotely: the key is frequent already).
    pub fn hold(&self, hash: u64, entry: &CachedEntry, key: &[u8], value: Option<&[u8]>) {
        if self.entries.get(&hash).as_ref() == Some(entry) {
            self.put(hash, entry.clone(), Some((key, value)));
        }
    }

    /// Insert `entry`, holding `keep` unless its key and value would take
    /// more than 1/[`MAX_HELD_SHARE`] of the cache (then it keeps only its
    /// offset). The copies are made only for an entry that goes in.
    fn put(&self, hash: u64, mut entry: CachedEntry, keep: Keep<'_>) {
        let capacity = self.capacity.load(Relaxed);
        if let Some((key, value)) = keep {
            let bytes = ENTRY_BYTES + held_bytes(key, value);
            entry.held = (bytes <= capacity / MAX_HELD_SHARE).then(|| HeldEntry::new(key, value));
        }
        self.entries.insert(hash, entry);
        if self.entries.weight() >= capacity - capacity / 8 {
            self.full.store(true, Relaxed);
        }
    }

    /// Whether the entries reached the capacity (less 1/8), so that only
    /// frequent keys are admitted.
    pub fn is_full(&self) -> bool {
        self.full.load(Relaxed)
    }

    /// Let the entries take `bytes` from now on (evicting when that is
    /// less than they take).
    pub fn set_capacity(&self, bytes: u64) {
        let capacity = bytes.max(16 * ENTRY_BYTES);
        self.capacity.store(capacity, Relaxed);
        self.entries.set_capacity(capacity);
        let full = self.entries.weight() >= capacity - capacity / 8;
        self.full.store(full, Relaxed);
    }

    /// Count one more lookup of `key` without anything to cache.
    pub fn count(&self, hash: u64) {
        self.sketch.increment(hash);
    }

    /// Forget the entry of the key hashed to `hash` if it is about image
    /// `tag`.
    pub fn remove(&self, hash: u64, tag: u64) {
        self.entries.remove_if(&hash, |e| e.tag == tag);
    }

    /// Forget every entry about image `tag`; returns how many there were.
    pub fn forget_image(&self, tag: u64) -> u64 {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.tag != tag);
        if self.entries.weight() < self.capacity.load(Relaxed) / 2 {
            self.full.store(false, Relaxed);
        }
        before.saturating_sub(self.entries.len()) as u64
    }

    pub fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Bytes charged for the entries now.
    pub fn bytes(&self) -> u64 {
        self.entries.weight()
    }
}

/// A count-min sketch of 4-bit-range counters (saturating at 15) over
/// key hashes, with aging.
struct FrequencySketch {
    counters: Box<[AtomicU8]>,
    mask: u64,
    increments: AtomicU64,
    /// Halve every counter after this many increments (the width).
    sample: u64,
}

impl FrequencySketch {
    const MAX: u8 = 15;
    const ROWS: u64 = 4;

    fn new(width: usize) -> FrequencySketch {
        let width = width.next_power_of_two().max(1024);
        FrequencySketch {
            counters: (0..width).map(|_| AtomicU8::new(0)).collect(),
            mask: width as u64 - 1,
            increments: AtomicU64::new(0),
            sample: width as u64,
        }
    }

    /// The counter slots of `hash`, one per row (double hashing).
    fn slots(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let step = (hash >> 32) | 1;
        (0..Self::ROWS).map(move |i| (hash.wrapping_add(i.wrapping_mul(step)) & self.mask) as usize)
    }

    /// Count `hash` once more; returns its estimated count now. Only the
    /// row counters at the current minimum grow (conservative update), so
    /// collisions inflate estimates less.
    fn increment(&self, hash: u64) -> u8 {
        let min = self
            .slots(hash)
            .map(|slot| self.counters[slot].load(Relaxed))
            .min()
            .unwrap_or(0);
        if min < Self::MAX {
            for slot in self.slots(hash) {
                // Racing increments may lose one: the sketch is an estimate.
                let _ = self.counters[slot].compare_exchange(min, min + 1, Relaxed, Relaxed);
            }
        }
        if self.increments.fetch_add(1, Relaxed) + 1 >= self.sample {
            self.increments.store(0, Relaxed);
            for c in self.counters.iter() {
                c.store(c.load(Relaxed) / 2, Relaxed);
            }
        }
        (min + 1).min(Self::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use o3_storage::sst::bloom_hash;

    fn entry(tag: u64) -> CachedEntry {
        CachedEntry {
            tag,
            offset: 64,
            read_len: 100,
            sequence: 7,
            held: None,
        }
    }

    fn held(tag: u64, key: &[u8], value: &[u8]) -> CachedEntry {
        CachedEntry {
            held: Some(HeldEntry::new(key, Some(value))),
            ..entry(tag)
        }
    }

    #[test]
    fn a_full_cache_admits_a_key_only_once_it_is_frequent() {
        let capacity = 1 << 20;
        let cache = OffsetCache::new(capacity, 4).unwrap();
        let h = bloom_hash(b"early");
        assert!(cache.offer(h, entry(1), None), "room: admitted at once");
        for i in 0..20_000u32 {
            let key = format!("filler{i:08}");
            cache.offer(bloom_hash(key.as_bytes()), entry(9), None);
        }
        assert!(cache.full.load(Relaxed), "{} of {capacity}", cache.bytes());
        let h = bloom_hash(b"k");
        assert!(
            !cache.offer(h, entry(1), None),
            "a first lookup of a full cache"
        );
        assert_eq!(cache.get(h), None);
        let admitted = (0..3).any(|_| cache.offer(h, entry(1), None));
        assert!(admitted, "the 4th lookup at the latest");
        assert_eq!(cache.get(h), Some(entry(1)));
    }

    #[test]
    fn forgetting_an_image_removes_its_entries_and_no_others() {
        let cache = OffsetCache::new(1 << 20, 1).unwrap();
        for i in 0..100u32 {
            let key = i.to_be_bytes();
            cache.offer(bloom_hash(&key), entry(u64::from(i % 2)), None);
        }
        assert_eq!(cache.forget_image(0), 50);
        assert_eq!(cache.len(), 50);
        assert!(
            (0..100u32).all(|i| cache.get(bloom_hash(&i.to_be_bytes())).is_some() == (i % 2 == 1))
        );
        let one = bloom_hash(&1u32.to_be_bytes());
        cache.remove(one, 0);
        assert!(cache.get(one).is_some(), "another image's tag");
        cache.remove(one, 1);
        assert!(cache.get(one).is_none());
    }

    #[test]
    fn the_cache_stays_within_its_bytes() {
        let capacity = 64 << 10;
        let cache = OffsetCache::new(capacity, 1).unwrap();
        for i in 0..20_000u32 {
            let key = format!("key{i:012}");
            cache.offer(bloom_hash(key.as_bytes()), entry(1), None);
        }
        assert!(cache.bytes() <= capacity, "{} > {capacity}", cache.bytes());
        assert!(cache.len() > 0);
        assert!(cache.len() < 20_000);
    }

    #[test]
    fn held_keys_and_values_count_against_the_bytes() {
        let capacity = 256 << 10;
        let cache = OffsetCache::new(capacity, 1).unwrap();
        let value = vec![7u8; 500];
        for i in 0..2_000u32 {
            let key = format!("key{i:012}");
            cache.offer(
                bloom_hash(key.as_bytes()),
                entry(1),
                Some((key.as_bytes(), Some(&value))),
            );
        }
        assert!(cache.bytes() <= capacity, "{} > {capacity}", cache.bytes());
        let per_entry = ENTRY_BYTES + HELD_OVERHEAD + 15 + 500;
        assert!(
            cache.len() <= capacity / per_entry,
            "{} entries holding values in {capacity} bytes",
            cache.len()
        );
        let last = b"key000000001999";
        let got = cache.get(bloom_hash(last)).expect("the newest entry");
        assert_eq!(
            got.held.as_deref(),
            Some(&*HeldEntry::new(last, Some(&value)))
        );
    }

    #[test]
    fn a_value_too_large_for_the_cache_keeps_only_its_offset() {
        let capacity = 64 << 10;
        let cache = OffsetCache::new(capacity, 1).unwrap();
        let big = vec![1u8; (capacity / MAX_HELD_SHARE) as usize];
        let h = bloom_hash(b"big");
        assert!(cache.offer(h, entry(1), Some((b"big", Some(&big)))));
        assert_eq!(cache.get(h), Some(entry(1)), "the offset, not the value");
        assert_eq!(cache.bytes(), ENTRY_BYTES);
    }

    #[test]
    fn holding_a_value_needs_the_very_entry_still_cached() {
        let cache = OffsetCache::new(1 << 20, 1).unwrap();
        let h = bloom_hash(b"k");
        cache.offer(h, entry(1), None);
        cache.hold(h, &entry(2), b"k", Some(b"v2"));
        assert_eq!(cache.get(h), Some(entry(1)), "another image's entry");
        cache.hold(h, &entry(1), b"k", Some(b"v1"));
        assert_eq!(cache.get(h), Some(held(1, b"k", b"v1")));
        assert_eq!(cache.bytes(), held(1, b"k", b"v1").bytes());
        assert_eq!(cache.forget_image(1), 1);
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn the_sketch_forgets_old_counts() {
        let sketch = FrequencySketch::new(1024);
        let hot = bloom_hash(b"hot");
        for _ in 0..10 {
            sketch.increment(hot);
        }
        // Enough other increments to age the counts twice.
        for i in 0..(2 * sketch.sample) {
            sketch.increment(bloom_hash(&i.to_le_bytes()));
        }
        assert!(sketch.increment(hot) < 10);
    }
}
