//! What the compute node keeps of an image it shipped: where it is, its key
//! range and bloom filter (so most lookups never leave the node), and the
//! region it occupies, released when the last holder lets go.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

use o3_memnode::ImageId as RemoteImageId;
use o3_memnode::client::RemoteRegion;
use o3_storage::key::SequenceNumber;
use o3_storage::memtable::{Memtable, SharedImage};
use o3_storage::sst::{BloomBuilder, BloomFilter};
use o3_storage::{Error, Result};

use crate::image_id::ImageId;
use crate::offload::index::ImageIndex;
use crate::offload::runtime::{Offload, Pullable};

/// Bits per key of an offloaded image's filter (about 1% false positives).
const BLOOM_BITS_PER_KEY: u32 = 10;

/// A shipped, published image.
pub(crate) struct OffloadedImage {
    pub id: ImageId,
    /// The database's offloading (the memory node, counters, release queue).
    pub runtime: Arc<Offload>,
    pub region: RemoteRegion,
    /// Bytes of the image (what a flush reads back).
    pub len: u64,
    pub smallest_key: Vec<u8>,
    pub largest_key: Vec<u8>,
    /// Entries in it, and the largest sequence among them: a lookup at a
    /// snapshot at or above it sees each key's newest entry in the image,
    /// the only entries the key→offset cache holds.
    pub entries: u64,
    pub entries_largest_seq: SequenceNumber,
    /// Unique among this database's images, also across a rebuild that
    /// ships the same memtable again: names the image in the cache.
    pub tag: u64,
    filter: Option<BloomFilter>,
    /// Its local key index (`OffloadOptions::index_bytes`), built at
    /// shipping; dropped when a newer image needs the room.
    index: RwLock<Option<Arc<ImageIndex>>>,
    /// A local copy, when the image was pulled back because it is read
    /// often (`ReadPolicy::Adaptive`).
    local: RwLock<Option<SharedImage>>,
    /// Lookups and scans that read it (remotely or from its local copy),
    /// for the pull-back decision.
    pub reads: AtomicU64,
    /// What a remote read of it costs, in nanoseconds (its share of a
    /// delegated call over several images).
    pub remote_cost: crate::offload::costs::Ewma,
    /// The read rate the pull-back decision sees (see [`Self::read_rate`]).
    rate: Mutex<ReadRate>,
    /// When its local copy was made.
    pulled_at: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for OffloadedImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffloadedImage")
            .field("id", &self.id)
            .field("store", &self.runtime.store.name())
            .field("len", &self.len)
            .finish()
    }
}

/// The shortest window a read rate is measured over.
pub(crate) const RATE_WINDOW: std::time::Duration = std::time::Duration::from_millis(200);

/// A smoothed read rate and where its current window began.
struct ReadRate {
    at: Instant,
    reads: u64,
    per_sec: Option<f64>,
}

/// The key range and filter of a sealed memtable, computed before it
/// leaves (one pass over its keys).
pub(crate) struct ImageSummary {
    pub smallest_key: Vec<u8>,
    pub largest_key: Vec<u8>,
    pub filter: Option<BloomFilter>,
    pub entries: u64,
    pub entries_largest_seq: SequenceNumber,
    /// Its key index, when one was asked for.
    pub index: Option<ImageIndex>,
}

impl ImageSummary {
    /// The summary of `mem`, with its key index when `index`.
    pub fn of(mem: &Arc<Memtable>, index: bool) -> Result<ImageSummary> {
        use o3_storage::iterator::InternalIterator;
        let mut it = mem.iter();
        it.seek_to_first()?;
        let mut builder = BloomBuilder::new(BLOOM_BITS_PER_KEY);
        let mut smallest_key = Vec::new();
        let mut largest_key: Vec<u8> = Vec::new();
        let mut any = false;
        let mut keys = index.then(ImageIndex::default);
        while it.valid() {
            if let Some(keys) = keys.as_mut() {
                keys.push(it.key(), it.offset(), it.value().len() as u32)?;
            }
            let user_key = o3_storage::key::user_key(it.key());
            if !any || user_key != largest_key.as_slice() {
                builder.add_key(user_key);
                if !any {
                    smallest_key = user_key.to_vec();
                }
                largest_key.clear();
                largest_key.extend_from_slice(user_key);
                any = true;
            }
            it.next()?;
        }
        let filter = if any {
            let mut bytes = Vec::new();
            builder.finish_into(&mut bytes);
            Some(BloomFilter::new(bytes.into(), "offloaded image filter", 0)?)
        } else {
            None
        };
        Ok(ImageSummary {
            smallest_key,
            largest_key,
            filter,
            entries: mem.entries(),
            entries_largest_seq: mem.entries_largest_seq(),
            index: keys.map(ImageIndex::finish),
        })
    }
}

impl OffloadedImage {
    /// The image as shipped; its summary's index is kept if
    /// `OffloadOptions::index_bytes` has room for it.
    pub fn new(
        id: ImageId,
        runtime: Arc<Offload>,
        region: RemoteRegion,
        len: u64,
        summary: ImageSummary,
    ) -> OffloadedImage {
        let index = summary
            .index
            .filter(|index| runtime.reserve_index(index.bytes()))
            .map(Arc::new);
        if index.is_some() {
            runtime.counters.images_indexed.fetch_add(1, Relaxed);
        }
        OffloadedImage {
            index: RwLock::new(index),
            id,
            tag: runtime.new_tag(),
            runtime,
            region,
            len,
            smallest_key: summary.smallest_key,
            largest_key: summary.largest_key,
            entries: summary.entries,
            entries_largest_seq: summary.entries_largest_seq,
            filter: summary.filter,
            local: RwLock::new(None),
            reads: AtomicU64::new(0),
            remote_cost: Default::default(),
            rate: Mutex::new(ReadRate {
                at: Instant::now(),
                reads: 0,
                per_sec: None,
            }),
            pulled_at: Mutex::new(None),
        }
    }

    /// Its local key index, if it has one.
    pub fn index(&self) -> Option<Arc<ImageIndex>> {
        self.index.read().clone()
    }

    /// Whether it has a key index (nothing cloned).
    pub fn has_index(&self) -> bool {
        self.index.read().is_some()
    }

    /// The pulled-back local copy, if there is one.
    pub fn local_copy(&self) -> Option<SharedImage> {
        self.local.read().clone()
    }

    /// Whether it holds a pulled-back local copy (nothing cloned).
    pub fn has_local_copy(&self) -> bool {
        self.local.read().is_some()
    }

    /// Keep `copy` as the local copy; false if there already was one.
    pub fn keep_local_copy(&self, copy: SharedImage) -> bool {
        let mut local = self.local.write();
        if local.is_some() {
            return false;
        }
        *local = Some(copy);
        *self.pulled_at.lock() = Some(Instant::now());
        true
    }

    /// Drop the local copy; returns its bytes (0 if there was none).
    pub fn drop_local_copy(&self) -> u64 {
        *self.pulled_at.lock() = None;
        // Its remote cost was measured before the copy; reads measure it
        // anew, so a stale figure cannot pull it straight back.
        self.remote_cost.reset();
        self.local.write().take().map_or(0, |c| c.len() as u64)
    }

    /// Reads a second, smoothed: each call at least [`RATE_WINDOW`] after
    /// the last one folds the reads since into a moving average (weight
    /// 1/4), so one burst neither makes an image hot nor a pause cold.
    pub fn read_rate(&self) -> f64 {
        let reads = self.reads.load(Relaxed);
        let mut r = self.rate.lock();
        let elapsed = r.at.elapsed();
        if elapsed >= RATE_WINDOW || r.per_sec.is_none() {
            let now = reads.saturating_sub(r.reads) as f64 / elapsed.as_secs_f64().max(1e-3);
            r.per_sec = Some(match r.per_sec {
                Some(old) => old + (now - old) / 4.0,
                None => now,
            });
            r.at = Instant::now();
            r.reads = reads;
        }
        r.per_sec.unwrap_or(0.0)
    }

    /// How long it has held its local copy (`None` without one).
    pub fn pulled_for(&self) -> Option<std::time::Duration> {
        self.pulled_at.lock().map(|at| at.elapsed())
    }

    /// The image read whole with one-sided reads and validated, ready to
    /// search and iterate locally. Records the transfer's cost per byte.
    pub fn read_whole(&self) -> Result<SharedImage> {
        let start = Instant::now();
        let bytes = self.read_bytes()?;
        self.runtime
            .costs
            .bulk_byte
            .record(start.elapsed().as_nanos() as f64 / self.len.max(1) as f64);
        SharedImage::open(bytes.into(), &format!("{} read back", self.id))
    }

    /// The memory node's name for it.
    pub fn remote_id(&self) -> RemoteImageId {
        remote_id(self.id)
    }

    /// False when the image certainly holds no entry of `key`, whose
    /// `bloom_hash` is `hash`. The filter is asked first: it rules out
    /// most keys in one cache line, where the key range takes two.
    pub fn may_contain(&self, key: &[u8], hash: u64) -> bool {
        self.filter
            .as_ref()
            .is_some_and(|f| f.may_contain_hash(hash))
            && key >= self.smallest_key.as_slice()
            && key <= self.largest_key.as_slice()
    }

    /// About which share of the image's keys lie in `[lower, upper)`, by
    /// linear interpolation of the keys' bytes after their common prefix.
    pub fn share_of(&self, lower: Option<&[u8]>, upper: &[u8]) -> f64 {
        let (low, high) = (self.smallest_key.as_slice(), self.largest_key.as_slice());
        let prefix = low.iter().zip(high).take_while(|(a, b)| a == b).count();
        let at = |k: &[u8]| {
            let mut b = [0u8; 8];
            for (i, byte) in k.iter().skip(prefix).take(8).enumerate() {
                b[i] = *byte;
            }
            u64::from_be_bytes(b) as f64
        };
        let (lo, hi) = (at(low), at(high));
        if hi <= lo {
            return 1.0;
        }
        let from = lower.map_or(lo, |l| if l <= low { lo } else { at(l) });
        let to = if upper > high { hi } else { at(upper) };
        ((to - from) / (hi - lo)).clamp(0.0, 1.0)
    }

    /// True when the image may hold keys in `[lower, upper)`.
    pub fn overlaps(&self, lower: Option<&[u8]>, upper: Option<&[u8]>) -> bool {
        self.filter.is_some()
            && lower.is_none_or(|l| self.largest_key.as_slice() >= l)
            && upper.is_none_or(|u| self.smallest_key.as_slice() < u)
    }

    /// The image's bytes, read back with one-sided reads (for a flush).
    pub fn read_back(&self) -> Result<Vec<u8>> {
        let bytes = self.read_bytes()?;
        self.runtime
            .counters
            .read_back_bytes
            .fetch_add(self.len, Relaxed);
        Ok(bytes)
    }

    fn read_bytes(&self) -> Result<Vec<u8>> {
        let mut bytes = vec![0u8; self.len as usize];
        // Chunks bound each operation's size (and so its time on a
        // bandwidth-limited link) well below the operation timeout.
        const CHUNK: usize = 4 << 20;
        for (i, chunk) in bytes.chunks_mut(CHUNK).enumerate() {
            self.runtime
                .store
                .read(&self.region, (i * CHUNK) as u64, chunk)
                .map_err(|e| {
                    let mut e = lost_or_failed(self.id, &e);
                    if let Error::MemoryNode { lost, .. } = &mut e {
                        *lost |= self.region.session != self.runtime.store.session();
                    }
                    e
                })?;
        }
        Ok(bytes)
    }
}

impl Pullable for OffloadedImage {
    fn bytes(&self) -> u64 {
        self.len
    }

    fn read_rate(&self) -> f64 {
        OffloadedImage::read_rate(self)
    }

    fn has_copy(&self) -> bool {
        self.has_local_copy()
    }

    fn pulled_for(&self) -> Option<std::time::Duration> {
        OffloadedImage::pulled_for(self)
    }

    fn pull(&self) -> Result<bool> {
        let copy = self.read_whole()?;
        Ok(self.keep_local_copy(copy))
    }

    fn drop_copy(&self) -> u64 {
        self.drop_local_copy()
    }

    fn drop_index(&self) -> u64 {
        self.index.write().take().map_or(0, |index| index.bytes())
    }

    fn name(&self) -> String {
        self.id.to_string()
    }
}

impl Drop for OffloadedImage {
    fn drop(&mut self) {
        // Released by a shipping thread, after every reader that held this
        // image let go of it (this is the last reference): a reader never
        // waits for the call, and no lookup runs on a released region.
        let copy = self.drop_local_copy();
        if copy > 0 {
            self.runtime.pulled_bytes.fetch_sub(copy, Relaxed);
        }
        self.runtime.release_index(&*self);
        self.runtime.release_later(self.region.clone(), self.tag);
    }
}

/// The memory node's id of a compute-side image id.
pub(crate) fn remote_id(id: ImageId) -> RemoteImageId {
    RemoteImageId {
        shard: id.shard,
        serial: id.serial,
    }
}

/// The storage error for a failed memory-node call about image `id`.
pub(crate) fn lost_or_failed(id: ImageId, e: &o3_memnode::client::ClientError) -> Error {
    Error::MemoryNode {
        lost: e.images_lost(),
        message: format!("{id}: {e}"),
    }
}
