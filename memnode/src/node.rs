//! [`MemoryNode`]: the pool, the image index and delegated reads behind one
//! `Send + Sync` handle — the object the control plane (allocate, publish,
//! release, stats, lease expiry) and the data plane (region writes,
//! delegated `get` and `scan`) will share.
//!
//! Every call names the owner it acts for; the core trusts it, so callers
//! must pass the identity their transport authenticated. Lock order: pool
//! table → region state → image index (never the reverse).

use std::sync::Arc;

use o3_transport::region::RegionMemory;

use crate::error::Result;
use crate::images::{ImageId, ImageIndex, ImageMeta};
use crate::lookup::{self, GetRequest, GetResponse, ScanRequest, ScanResponse};
use crate::pool::{OwnerId, Pool, PoolStats, Region, RegionDesc, RegionState};

#[derive(Debug)]
pub struct MemoryNode {
    pool: Pool,
    images: ImageIndex,
}

/// Occupancy of the pool and the number of published images.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStats {
    pub pool: PoolStats,
    pub published_images: usize,
}

impl MemoryNode {
    /// A memory node over `memory` (e.g. registered by a transport backend).
    pub fn new(memory: Arc<RegionMemory>) -> MemoryNode {
        MemoryNode::over(Pool::new(memory))
    }

    /// A memory node with a heap pool of `pool_size` bytes.
    pub fn with_capacity(pool_size: u64) -> Result<MemoryNode> {
        Ok(MemoryNode::over(Pool::with_capacity(pool_size)?))
    }

    fn over(pool: Pool) -> MemoryNode {
        MemoryNode {
            pool,
            images: ImageIndex::default(),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A region of `bytes` bytes for `owner` to write an image into.
    pub fn allocate(&self, owner: OwnerId, bytes: u64) -> Result<RegionDesc> {
        self.pool.allocate(owner, bytes)
    }

    /// Copy `data` into `owner`'s region at `offset`; refused once the
    /// region holds a published image.
    pub fn write(
        &self,
        owner: OwnerId,
        region: &RegionDesc,
        offset: u64,
        data: &[u8],
    ) -> Result<()> {
        self.pool.write(owner, region, offset, data)
    }

    /// Copy bytes of `owner`'s region at `offset` into `buf`.
    pub fn read(
        &self,
        owner: OwnerId,
        region: &RegionDesc,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<()> {
        self.pool.read(owner, region, offset, buf)
    }

    /// Validate the image in `owner`'s `region` and index it (see
    /// `images.rs` for what is checked and how repeats are handled).
    pub fn publish(&self, owner: OwnerId, region: &RegionDesc, meta: ImageMeta) -> Result<()> {
        let region = self.pool.region(owner, region)?;
        self.images.publish(owner, region, meta)
    }

    /// Release `owner`'s region; an image published in it is unpublished
    /// first and returned. Lookups already reading it finish normally.
    pub fn release(&self, owner: OwnerId, region: &RegionDesc) -> Result<Option<ImageId>> {
        let region = self.pool.remove(owner, region)?;
        Ok(self.retire(owner, &region))
    }

    /// Release every region of `owner` (its lease expired); returns how
    /// many regions were released.
    pub fn release_all(&self, owner: OwnerId) -> usize {
        let regions = self.pool.remove_all(owner);
        for region in &regions {
            self.retire(owner, region);
        }
        regions.len()
    }

    fn retire(&self, owner: OwnerId, region: &Region) -> Option<ImageId> {
        let mut state = region.state().write();
        let unpublished = match *state {
            RegionState::Published(image) => {
                self.images.unpublish(owner, image);
                Some(image)
            }
            RegionState::Open | RegionState::Released => None,
        };
        *state = RegionState::Released;
        unpublished
    }

    pub fn stats(&self) -> NodeStats {
        NodeStats {
            pool: self.pool.stats(),
            published_images: self.images.len(),
        }
    }

    /// A batched delegated `get` over `owner`'s images. Fails as a whole if
    /// any named image is not a published image of `owner`.
    pub fn get(&self, owner: OwnerId, request: &GetRequest) -> Result<GetResponse> {
        let answers = request
            .lookups
            .iter()
            .map(|lookup| {
                let images = self.images.resolve(owner, &lookup.images)?;
                Ok(lookup::get_key(&lookup.key, lookup.snapshot, &images))
            })
            .collect::<Result<_>>()?;
        Ok(GetResponse { answers })
    }

    /// A delegated `scan` over `owner`'s images.
    pub fn scan(&self, owner: OwnerId, request: &ScanRequest) -> Result<ScanResponse> {
        let images = self.images.resolve(owner, &request.images)?;
        lookup::scan(request, &images)
    }
}

#[cfg(test)]
mod tests {
    use o3_storage::key::ValueKind;
    use o3_storage::memtable::Memtable;

    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn a_memory_node_is_shared_by_handler_threads() {
        assert_send_sync::<MemoryNode>();
    }

    /// A region released while a lookup holds its image keeps its extent
    /// until the lookup lets go, so recycled bytes are never searched.
    #[test]
    fn released_memory_is_reused_only_after_readers_finish() {
        let node = MemoryNode::with_capacity(1 << 20).unwrap();
        let owner = OwnerId(1);
        let memtable = Memtable::new(64 * 1024, 0).unwrap();
        memtable.insert(b"k", 1, ValueKind::Value, b"v").unwrap();
        memtable.seal().unwrap();
        let bytes = memtable.image_bytes().unwrap();
        let region = node.allocate(owner, bytes.len() as u64).unwrap();
        node.write(owner, &region, 0, bytes).unwrap();
        let id = ImageId {
            shard: 0,
            serial: 1,
        };
        let meta = ImageMeta {
            id,
            entries: 1,
            largest_seq: 1,
        };
        node.publish(owner, &region, meta).unwrap();
        let in_flight = node.images.resolve(owner, &[id]).unwrap();
        assert_eq!(node.release(owner, &region).unwrap(), Some(id));
        let stats = node.stats();
        assert_eq!(stats.published_images, 0);
        assert!(stats.pool.regions_per_owner.is_empty());
        assert_eq!(stats.pool.used, region.len.next_multiple_of(crate::ALIGN));
        // The reader still sees the image it resolved.
        let found = in_flight[0].image().get(b"k", 1).map(|e| e.value);
        assert_eq!(found, Some(&b"v"[..]));
        drop(in_flight);
        assert_eq!(node.stats().pool.used, 0);
    }
}
