//! What the compute node keeps of an image it shipped: where it is, its key
//! range and bloom filter (so most lookups never leave the node), and the
//! region it occupies, released when the last holder lets go.

use std::sync::Arc;

use std::sync::atomic::Ordering::Relaxed;

use o3_memnode::ImageId as RemoteImageId;
use o3_memnode::client::RemoteRegion;
use o3_storage::memtable::Memtable;
use o3_storage::sst::{BloomBuilder, BloomFilter, bloom_hash};
use o3_storage::{Error, Result};

use crate::image_id::ImageId;
use crate::offload::runtime::Offload;

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
    filter: Option<BloomFilter>,
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

/// The key range and filter of a sealed memtable, computed before it
/// leaves (one pass over its keys).
pub(crate) struct ImageSummary {
    pub smallest_key: Vec<u8>,
    pub largest_key: Vec<u8>,
    pub filter: Option<BloomFilter>,
}

impl ImageSummary {
    pub fn of(mem: &Arc<Memtable>) -> Result<ImageSummary> {
        use o3_storage::iterator::InternalIterator;
        let mut it = mem.iter();
        it.seek_to_first()?;
        let mut builder = BloomBuilder::new(BLOOM_BITS_PER_KEY);
        let mut smallest_key = Vec::new();
        let mut largest_key: Vec<u8> = Vec::new();
        let mut any = false;
        while it.valid() {
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
        })
    }
}

impl OffloadedImage {
    pub fn new(
        id: ImageId,
        runtime: Arc<Offload>,
        region: RemoteRegion,
        len: u64,
        summary: ImageSummary,
    ) -> OffloadedImage {
        OffloadedImage {
            id,
            runtime,
            region,
            len,
            smallest_key: summary.smallest_key,
            largest_key: summary.largest_key,
            filter: summary.filter,
        }
    }

    /// The memory node's name for it.
    pub fn remote_id(&self) -> RemoteImageId {
        remote_id(self.id)
    }

    /// False when the image certainly holds no entry of `key`.
    pub fn may_contain(&self, key: &[u8]) -> bool {
        key >= self.smallest_key.as_slice()
            && key <= self.largest_key.as_slice()
            && self
                .filter
                .as_ref()
                .is_some_and(|f| f.may_contain_hash(bloom_hash(key)))
    }

    /// True when the image may hold keys in `[lower, upper)`.
    pub fn overlaps(&self, lower: Option<&[u8]>, upper: Option<&[u8]>) -> bool {
        self.filter.is_some()
            && lower.is_none_or(|l| self.largest_key.as_slice() >= l)
            && upper.is_none_or(|u| self.smallest_key.as_slice() < u)
    }

    /// The image's bytes, read back with one-sided reads.
    pub fn read_back(&self) -> Result<Vec<u8>> {
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
        self.runtime
            .counters
            .read_back_bytes
            .fetch_add(self.len, Relaxed);
        Ok(bytes)
    }
}

impl Drop for OffloadedImage {
    fn drop(&mut self) {
        // Released by a shipping thread, after every reader that held this
        // image let go of it (this is the last reference): a reader never
        // waits for the call, and no lookup runs on a released region.
        self.runtime.release_later(self.region.clone());
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
