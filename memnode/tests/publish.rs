//! Publishing images: real images are indexed, damaged or misdescribed ones
//! are refused and not indexed, repeats and releases are explicit.

mod common;

use common::{build_image, image_id, publish, ship};
use o3_memnode::{
    Direction, Error, Found, GetRequest, ImageId, ImageMeta, KeyLookup, MemoryNode, OwnerId,
    ScanRequest,
};
use o3_storage::key::ValueKind;
use o3_storage::memtable::store_checksum;

const OWNER: OwnerId = OwnerId(7);

fn sample(serial: u64) -> common::BuiltImage {
    let entries: Vec<common::Entry> = (0..50u64)
        .map(|i| {
            (
                format!("key{i:03}").into_bytes(),
                serial * 100 + i + 1,
                ValueKind::Value,
                vec![i as u8; 10],
            )
        })
        .collect();
    build_image(image_id(serial), &entries)
}

fn get_one(node: &MemoryNode, key: &[u8], image: ImageId) -> Result<Found, Error> {
    let request = GetRequest {
        lookups: vec![KeyLookup {
            key: key.to_vec(),
            snapshot: u64::MAX >> 8,
            images: vec![image],
        }],
    };
    Ok(node.get(OWNER, &request)?.answers.remove(0).remove(0))
}

#[test]
fn a_published_image_is_indexed_and_read_only() {
    let node = MemoryNode::with_capacity(1 << 20).unwrap();
    let image = sample(1);
    let region = publish(&node, OWNER, &image);
    assert_eq!(node.stats().published_images, 1);
    assert!(matches!(
        get_one(&node, b"key007", image.meta.id).unwrap(),
        Found::Value { value, .. } if value == vec![7u8; 10]
    ));
    assert!(matches!(
        node.write(OWNER, &region, 100, b"x"),
        Err(Error::RegionPublished { image: id, .. }) if id == image.meta.id
    ));
    let mut back = vec![0u8; image.bytes.len()];
    node.read(OWNER, &region, 0, &mut back).unwrap();
    assert_eq!(back, image.bytes);
}

#[test]
fn every_flipped_byte_is_refused_and_not_indexed() {
    let node = MemoryNode::with_capacity(1 << 20).unwrap();
    let image = sample(1);
    let region = ship(&node, OWNER, &image);
    // A spread of positions: header fields, first nodes, the last byte.
    let len = image.bytes.len();
    for at in [0, 8, 16, 24, 48, 60, 64, 100, len / 2, len - 1] {
        let original = image.bytes[at];
        node.write(OWNER, &region, at as u64, &[original ^ 0x01])
            .unwrap();
        let refused = node.publish(OWNER, &region, image.meta);
        match refused {
            Err(Error::BadImage {
                region: r,
                image: i,
                ..
            }) => {
                assert_eq!((r, i), (region.region, image.meta.id));
            }
            other => panic!("flipped byte {at} accepted or misreported: {other:?}"),
        }
        assert_eq!(node.stats().published_images, 0);
        assert!(matches!(
            get_one(&node, b"key001", image.meta.id),
            Err(Error::UnknownImage { .. })
        ));
        // The region stays writable: repair the byte.
        node.write(OWNER, &region, at as u64, &[original]).unwrap();
    }
    node.publish(OWNER, &region, image.meta).unwrap();
}

/// Publish checks header and checksum; the skiplist structure is checked
/// before the first search. An image with a valid checksum over a bad
/// structure (a buggy or hostile writer) is therefore indexed, but every
/// lookup naming it is refused, and nothing else is affected.
#[test]
fn a_bad_structure_under_a_valid_checksum_is_refused_at_lookup() {
    let node = MemoryNode::with_capacity(1 << 20).unwrap();
    let image = sample(1);
    let mut bytes = image.bytes.clone();
    // The head node's level-0 link (head at 64, links after its 12-byte
    // prefix) now skips to the last entry.
    let last = bytes[56..60].to_vec();
    bytes[76..80].copy_from_slice(&last);
    assert!(store_checksum(&mut bytes));
    let bad = common::BuiltImage {
        bytes,
        meta: image.meta,
    };
    let region = publish(&node, OWNER, &bad);
    let refused = get_one(&node, b"key001", image.meta.id);
    assert!(
        matches!(&refused, Err(Error::InvalidImage { image: id, .. }) if *id == image.meta.id),
        "{refused:?}"
    );
    let scan = ScanRequest {
        images: vec![image.meta.id],
        lower: Vec::new(),
        upper: None,
        direction: Direction::Forward,
        limit: 10,
        snapshot: u64::MAX >> 8,
        resume_after: None,
    };
    assert!(matches!(
        node.scan(OWNER, &scan),
        Err(Error::InvalidImage { .. })
    ));
    let good = sample(2);
    publish(&node, OWNER, &good);
    assert!(matches!(
        get_one(&node, b"key001", good.meta.id).unwrap(),
        Found::Value { .. }
    ));
    assert_eq!(node.release(OWNER, &region).unwrap(), Some(image.meta.id));
}

#[test]
fn a_meta_that_disagrees_with_the_header_is_refused() {
    let node = MemoryNode::with_capacity(1 << 20).unwrap();
    let image = sample(1);
    let region = ship(&node, OWNER, &image);
    let cases = [
        (
            ImageMeta {
                entries: 49,
                ..image.meta
            },
            "entries",
        ),
        (
            ImageMeta {
                largest_seq: 1,
                ..image.meta
            },
            "largest sequence",
        ),
        (
            ImageMeta {
                id: ImageId {
                    shard: 3,
                    serial: 1,
                },
                ..image.meta
            },
            "shard",
        ),
    ];
    for (meta, expected_field) in cases {
        match node.publish(OWNER, &region, meta) {
            Err(Error::ImageMismatch { field, .. }) => assert_eq!(field, expected_field),
            other => panic!("{expected_field}: {other:?}"),
        }
    }
    assert_eq!(node.stats().published_images, 0);
}

#[test]
fn an_empty_region_is_not_an_image() {
    let node = MemoryNode::with_capacity(1 << 20).unwrap();
    let region = node.allocate(OWNER, 4096).unwrap();
    assert!(matches!(
        node.publish(OWNER, &region, sample(1).meta),
        Err(Error::BadImage { .. })
    ));
}

#[test]
fn publishing_twice_is_idempotent_only_for_the_same_image_and_region() {
    let node = MemoryNode::with_capacity(1 << 20).unwrap();
    let first = sample(1);
    let region = publish(&node, OWNER, &first);
    // A retried publish changes nothing.
    node.publish(OWNER, &region, first.meta).unwrap();
    assert_eq!(node.stats().published_images, 1);
    // Another id into the occupied region.
    assert!(matches!(
        node.publish(OWNER, &region, ImageMeta { id: image_id(9), ..first.meta }),
        Err(Error::RegionOccupied { existing, .. }) if existing == first.meta.id
    ));
    // The same id into a second region holding a copy of the image.
    let copy = ship(&node, OWNER, &first);
    assert!(matches!(
        node.publish(OWNER, &copy, first.meta),
        Err(Error::AlreadyPublished { region: r, .. }) if r == region.region
    ));
    // Another owner may use the same image id: ids are per owner.
    let other = OwnerId(8);
    publish(&node, other, &first);
    assert_eq!(node.stats().published_images, 2);
}

#[test]
fn releasing_a_published_region_unpublishes_it_and_frees_the_pool() {
    let node = MemoryNode::with_capacity(1 << 20).unwrap();
    let image = sample(1);
    let region = publish(&node, OWNER, &image);
    assert_eq!(node.release(OWNER, &region).unwrap(), Some(image.meta.id));
    assert_eq!(node.stats().published_images, 0);
    assert!(matches!(
        get_one(&node, b"key001", image.meta.id),
        Err(Error::UnknownImage { .. })
    ));
    assert_eq!(node.stats().pool.used, 0);
    // The id is free again: the compute node may re-offload the image.
    publish(&node, OWNER, &image);
    // Lease expiry releases published regions too.
    assert_eq!(node.release_all(OWNER), 1);
    let stats = node.stats();
    assert_eq!((stats.published_images, stats.pool.used), (0, 0));
}
