//! [`MemoryNode`]: the pool, the image index and delegated reads behind one
//! `Send + Sync` handle — the object the control plane (allocate, publish,
//! release, stats, lease expiry) and the data plane (delegated `get` and
//! `scan`, see `data_plane.rs`) share.
//!
//! Every call names the owner it acts for; the core trusts it, so callers
//! must pass the identity they authenticated (the lease secret). Lock order:
//! pool table → region state → image index (never the reverse).
//!
//! Built [`MemoryNode::with_fabric`], every region is registered with the
//! data-plane fabric and its owner writes the image into it one-sidedly;
//! publish then validates the bytes in place and lookups search them in
//! place.
//!
//! **An owner can still overwrite its own published image.** The transport
//! has no way to take write access away from one region, so the published
//! state only stops [`MemoryNode::write`]; one-sided writes through the
//! region's transport descriptor still land. That can only harm the
//! owner's own answers (no other owner's descriptor or image is reachable
//! from its region), and the lookup code never crashes on such bytes:
//! every read of the image goes through the bounds-checked accessors of
//! `o3_storage::memtable::MemtableImage` (a node or link outside the image
//! reads as empty or as the end of the list, never out of bounds), and a
//! panic in a request handler would in any case fail only that request
//! (`o3_transport::dispatch` catches it). What validation cannot keep
//! after the fact is termination: links rewritten into a cycle could keep
//! one lookup of that owner spinning on a request worker. The clients in
//! [`crate::client`] refuse writes into a region they published, so only
//! a compute node that bypasses them can do that, and only with its own
//! region's key.

use std::sync::Arc;

use o3_transport::Fabric;
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

    /// A memory node of `pool_size` bytes whose regions are each registered
    /// with the data-plane `fabric` (the pool itself allocates nothing).
    pub fn with_fabric(pool_size: u64, fabric: Arc<dyn Fabric>) -> MemoryNode {
        MemoryNode::over(Pool::registered(pool_size, fabric))
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

    /// The transport descriptor of `owner`'s region, for one-sided access
    /// over the data plane; `None` when the node has no data-plane fabric.
    pub fn data_region(
        &self,
        owner: OwnerId,
        region: &RegionDesc,
    ) -> Result<Option<o3_transport::RegionDesc>> {
        Ok(self.pool.region(owner, region)?.data_desc().cloned())
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
    /// first and returned, and its data-plane registration is revoked.
    /// Lookups already reading it finish normally.
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
        drop(state);
        region.revoke();
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
                lookup::get_key(&lookup.key, lookup.snapshot, &images)
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

/// Publish, for `owner`, an image holding the one entry `k` = `v` at
/// `seq` (image 1 of shard 0); returns its region and id. For unit tests.
#[cfg(test)]
pub(crate) fn publish_one_entry(
    node: &MemoryNode,
    owner: OwnerId,
    seq: u64,
) -> (RegionDesc, ImageId) {
    use o3_storage::key::ValueKind;
    use o3_storage::memtable::Memtable;
    let memtable = Memtable::new(64 * 1024, 0).unwrap();
    memtable.insert(b"k", seq, ValueKind::Value, b"v").unwrap();
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
        largest_seq: seq,
    };
    node.publish(owner, &region, meta).unwrap();
    (region, id)
}

#[cfg(test)]
mod tests {
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
        let (region, id) = publish_one_entry(&node, owner, 1);
        let in_flight = node.images.resolve(owner, &[id]).unwrap();
        assert_eq!(node.release(owner, &region).unwrap(), Some(id));
        let stats = node.stats();
        assert_eq!(stats.published_images, 0);
        assert!(stats.pool.regions_per_owner.is_empty());
        assert_eq!(stats.pool.used, region.len.next_multiple_of(crate::ALIGN));
        // The reader still sees the image it resolved.
        let found = in_flight[0].image().unwrap().get(b"k", 1).map(|e| e.value);
        assert_eq!(found, Some(&b"v"[..]));
        drop(in_flight);
        assert_eq!(node.stats().pool.used, 0);
    }
}
