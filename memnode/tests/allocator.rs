//! The pool allocator against a model: random allocate / release /
//! release_all sequences over several owners.

use std::collections::BTreeMap;

use o3_memnode::{ALIGN, Error, MemoryNode, OwnerId, RegionDesc};
use proptest::prelude::*;

const CAPACITY: u64 = 64 * ALIGN;

#[derive(Debug, Clone)]
enum Op {
    Allocate {
        owner: u64,
        bytes: u64,
    },
    /// Release the live region at this index (modulo the live count).
    Release {
        pick: usize,
    },
    ReleaseAll {
        owner: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u64, 1..12 * ALIGN).prop_map(|(owner, bytes)| Op::Allocate { owner, bytes }),
        3 => any::<usize>().prop_map(|pick| Op::Release { pick }),
        1 => (0..3u64).prop_map(|owner| Op::ReleaseAll { owner }),
    ]
}

fn extent(desc: &RegionDesc) -> (u64, u64) {
    (desc.offset, desc.offset + desc.len.next_multiple_of(ALIGN))
}

/// The live regions never overlap, stay inside the pool, are aligned, and
/// the stats agree with them.
fn check(node: &MemoryNode, live: &[RegionDesc]) {
    let mut extents: Vec<(u64, u64)> = live.iter().map(extent).collect();
    extents.sort();
    for pair in extents.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "overlapping regions {pair:?}");
    }
    for &(start, end) in &extents {
        assert_eq!(start % ALIGN, 0);
        assert!(end <= CAPACITY);
    }
    let stats = node.stats().pool;
    let used: u64 = extents.iter().map(|(s, e)| e - s).sum();
    assert_eq!(stats.used, used);
    assert_eq!(stats.used + stats.free, stats.capacity);
    assert!(stats.largest_free <= stats.free);
    let mut per_owner = BTreeMap::new();
    for desc in live {
        *per_owner.entry(desc.owner).or_insert(0usize) += 1;
    }
    assert_eq!(stats.regions_per_owner, per_owner);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn allocator_matches_model(ops in proptest::collection::vec(op(), 1..80)) {
        let node = MemoryNode::with_capacity(CAPACITY).unwrap();
        let mut live: Vec<RegionDesc> = Vec::new();
        for op in ops {
            match op {
                Op::Allocate { owner, bytes } => {
                    let largest = node.stats().pool.largest_free;
                    match node.allocate(OwnerId(owner), bytes) {
                        Ok(desc) => {
                            prop_assert!(bytes.next_multiple_of(ALIGN) <= largest);
                            prop_assert_eq!(desc.len, bytes);
                            prop_assert_eq!(desc.owner, OwnerId(owner));
                            live.push(desc);
                        }
                        Err(Error::PoolExhausted { requested, largest_free, .. }) => {
                            // First fit fails only when no extent fits.
                            prop_assert_eq!(requested, bytes);
                            prop_assert_eq!(largest_free, largest);
                            prop_assert!(bytes.next_multiple_of(ALIGN) > largest);
                        }
                        Err(other) => prop_assert!(false, "unexpected {other}"),
                    }
                }
                Op::Release { pick } => {
                    if !live.is_empty() {
                        let desc = live.swap_remove(pick % live.len());
                        prop_assert_eq!(node.release(desc.owner, &desc).unwrap(), None);
                        // Released once: a second release is refused.
                        let again = node.release(desc.owner, &desc);
                        prop_assert!(matches!(again, Err(Error::UnknownRegion { .. })), "{:?}", again);
                    }
                }
                Op::ReleaseAll { owner } => {
                    let before = live.len();
                    live.retain(|d| d.owner != OwnerId(owner));
                    prop_assert_eq!(node.release_all(OwnerId(owner)), before - live.len());
                }
            }
            check(&node, &live);
        }
        for owner in 0..3 {
            node.release_all(OwnerId(owner));
        }
        let stats = node.stats().pool;
        prop_assert_eq!(stats.free, CAPACITY);
        prop_assert_eq!(stats.largest_free, CAPACITY);
        prop_assert_eq!(stats.free_extents, 1);
        prop_assert_eq!(stats.fragmentation, 0.0);
    }
}

#[test]
fn zero_and_oversized_requests_are_refused() {
    let node = MemoryNode::with_capacity(CAPACITY).unwrap();
    assert!(matches!(
        node.allocate(OwnerId(1), 0),
        Err(Error::EmptyRequest { .. })
    ));
    assert!(matches!(
        node.allocate(OwnerId(1), CAPACITY + 1),
        Err(Error::RequestTooLarge { requested, capacity: CAPACITY, .. }) if requested == CAPACITY + 1
    ));
    assert!(matches!(
        node.allocate(OwnerId(1), u64::MAX),
        Err(Error::RequestTooLarge { .. })
    ));
    // The whole pool is one allocation.
    let all = node.allocate(OwnerId(1), CAPACITY).unwrap();
    assert!(matches!(
        node.allocate(OwnerId(2), 1),
        Err(Error::PoolExhausted {
            requested: 1,
            largest_free: 0,
            ..
        })
    ));
    node.release(OwnerId(1), &all).unwrap();
    assert_eq!(node.stats().pool.free, CAPACITY);
}

#[test]
fn fragmentation_reports_scattered_free_space() {
    let node = MemoryNode::with_capacity(4 * ALIGN).unwrap();
    let owner = OwnerId(1);
    let regions: Vec<_> = (0..4)
        .map(|_| node.allocate(owner, ALIGN).unwrap())
        .collect();
    node.release(owner, &regions[0]).unwrap();
    node.release(owner, &regions[2]).unwrap();
    let stats = node.stats().pool;
    assert_eq!(
        (stats.free, stats.largest_free, stats.free_extents),
        (2 * ALIGN, ALIGN, 2)
    );
    assert_eq!(stats.fragmentation, 0.5);
    // Two free pages, but not adjacent: a two-page request cannot be served.
    assert!(matches!(
        node.allocate(owner, 2 * ALIGN),
        Err(Error::PoolExhausted {
            largest_free: ALIGN,
            ..
        })
    ));
}
