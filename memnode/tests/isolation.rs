//! One owner can never publish, write, read, release or search another
//! owner's regions and images, and a forged descriptor is refused.

mod common;

use common::{build_image, image_id, publish, ship};
use o3_memnode::{Direction, Error, GetRequest, KeyLookup, MemoryNode, OwnerId, ScanRequest};
use o3_storage::key::ValueKind;

const A: OwnerId = OwnerId(1);
const B: OwnerId = OwnerId(2);

fn image(serial: u64) -> common::BuiltImage {
    build_image(
        image_id(serial),
        &[(
            b"k".to_vec(),
            serial,
            ValueKind::Value,
            b"a's value".to_vec(),
        )],
    )
}

#[test]
fn another_owner_cannot_touch_a_region() {
    let node = MemoryNode::with_capacity(1 << 20).unwrap();
    let a_image = image(1);
    let open = ship(&node, A, &a_image);
    let mut buf = [0u8; 8];
    assert!(matches!(
        node.write(B, &open, 0, b"evil"),
        Err(Error::WrongOwner { .. })
    ));
    assert!(matches!(
        node.read(B, &open, 0, &mut buf),
        Err(Error::WrongOwner { .. })
    ));
    assert!(matches!(
        node.publish(B, &open, a_image.meta),
        Err(Error::WrongOwner { .. })
    ));
    assert!(matches!(
        node.release(B, &open),
        Err(Error::WrongOwner { .. })
    ));
    // B's descriptor copy with B as owner does not help either.
    let forged = o3_memnode::RegionDesc { owner: B, ..open };
    assert!(matches!(
        node.write(B, &forged, 0, b"evil"),
        Err(Error::WrongOwner { .. })
    ));
    assert_eq!(node.release_all(B), 0);
    // A's bytes are unchanged and A can still publish them.
    let mut back = vec![0u8; a_image.bytes.len()];
    node.read(A, &open, 0, &mut back).unwrap();
    assert_eq!(back, a_image.bytes);
    node.publish(A, &open, a_image.meta).unwrap();
}

#[test]
fn a_forged_or_stale_descriptor_is_refused() {
    let node = MemoryNode::with_capacity(1 << 20).unwrap();
    let region = node.allocate(A, 4096).unwrap();
    for forged in [
        o3_memnode::RegionDesc {
            key: region.key ^ 1,
            ..region
        },
        o3_memnode::RegionDesc {
            len: region.len * 2,
            ..region
        },
        o3_memnode::RegionDesc {
            offset: region.offset + 4096,
            ..region
        },
    ] {
        assert!(matches!(
            node.write(A, &forged, 0, b"x"),
            Err(Error::BadDescriptor { .. })
        ));
        assert!(matches!(
            node.release(A, &forged),
            Err(Error::BadDescriptor { .. })
        ));
    }
    node.release(A, &region).unwrap();
    assert!(matches!(
        node.write(A, &region, 0, b"x"),
        Err(Error::UnknownRegion { .. })
    ));
    // Writes outside the region are refused, not clamped.
    let region = node.allocate(A, 100).unwrap();
    assert!(matches!(
        node.write(A, &region, 96, b"12345"),
        Err(Error::OutOfBounds {
            offset: 96,
            len: 5,
            region_len: 100,
            ..
        })
    ));
}

#[test]
fn another_owner_cannot_read_an_image() {
    let node = MemoryNode::with_capacity(1 << 20).unwrap();
    let a_image = image(1);
    publish(&node, A, &a_image);
    let get = GetRequest {
        lookups: vec![KeyLookup {
            key: b"k".to_vec(),
            snapshot: 100,
            images: vec![a_image.meta.id],
        }],
    };
    assert!(matches!(
        node.get(B, &get),
        Err(Error::UnknownImage { owner: B, .. })
    ));
    let scan = ScanRequest {
        images: vec![a_image.meta.id],
        lower: Vec::new(),
        upper: None,
        direction: Direction::Forward,
        limit: 10,
        snapshot: 100,
        resume_after: None,
    };
    assert!(matches!(
        node.scan(B, &scan),
        Err(Error::UnknownImage { owner: B, .. })
    ));
    // A reads it.
    assert_eq!(node.scan(A, &scan).unwrap().entries.len(), 1);
}
