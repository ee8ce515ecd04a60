//! Helpers shared by the memory node's integration tests: real memtable
//! images built with the storage crate, and publishing them.

use o3_memnode::{ImageId, ImageMeta, MemoryNode, OwnerId, RegionDesc};
use o3_storage::key::ValueKind;
use o3_storage::memtable::Memtable;

/// One internal entry: user key, sequence, kind, value (empty for tombstones).
pub type Entry = (Vec<u8>, u64, ValueKind, Vec<u8>);

/// A sealed image's bytes and the meta a compute node would publish with.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub bytes: Vec<u8>,
    pub meta: ImageMeta,
}

/// Seal `entries` into an image of `id.shard`, as the compute node does.
pub fn build_image(id: ImageId, entries: &[Entry]) -> BuiltImage {
    let payload: usize = entries
        .iter()
        .map(|(k, _, _, v)| k.len() + v.len() + 128)
        .sum();
    let memtable = Memtable::new(64 * 1024 + payload, id.shard).unwrap();
    for (key, seq, kind, value) in entries {
        memtable.insert(key, *seq, *kind, value).unwrap();
    }
    memtable.seal().unwrap();
    BuiltImage {
        bytes: memtable.image_bytes().unwrap().to_vec(),
        meta: ImageMeta {
            id,
            entries: entries.len() as u64,
            largest_seq: entries.iter().map(|e| e.1).max().unwrap_or(0),
        },
    }
}

/// Allocate a region for `image`, write it there and return the region
/// (not yet published).
pub fn ship(node: &MemoryNode, owner: OwnerId, image: &BuiltImage) -> RegionDesc {
    let region = node.allocate(owner, image.bytes.len() as u64).unwrap();
    node.write(owner, &region, 0, &image.bytes).unwrap();
    region
}

/// Ship and publish `image`.
pub fn publish(node: &MemoryNode, owner: OwnerId, image: &BuiltImage) -> RegionDesc {
    let region = ship(node, owner, image);
    node.publish(owner, &region, image.meta).unwrap();
    region
}

pub fn image_id(serial: u64) -> ImageId {
    ImageId { shard: 0, serial }
}
