//! Delegated `get` and `scan` against a `BTreeMap` model of the same entries,
//! spread over several published images, under random snapshots.

mod common;

use std::cmp::Reverse;
use std::collections::BTreeMap;

use common::{Entry, build_image, image_id, publish};
use o3_memnode::{
    Direction, Found, GetRequest, ImageId, KeyLookup, MemoryNode, OwnerId, ScanEntry, ScanRequest,
};
use o3_storage::key::{ValueKind, parse_internal_key};
use o3_storage::memtable::MemtableImage;
use proptest::prelude::*;

const OWNER: OwnerId = OwnerId(3);

/// Per image: (user key, newest first) → (sequence, kind, value).
type ImageModel = BTreeMap<(Vec<u8>, Reverse<u64>), (ValueKind, Vec<u8>)>;

struct Fixture {
    node: MemoryNode,
    ids: Vec<ImageId>,
    /// The shipped bytes, to check offsets with `MemtableImage::value_at`.
    bytes: Vec<Vec<u8>>,
    models: Vec<ImageModel>,
}

/// Keys from a small alphabet so that images share keys and versions.
fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(b'a'..b'e', 0..4)
}

/// Entries with unique sequences 1..=n, each assigned to one of `images`.
fn entries(images: usize) -> impl Strategy<Value = Vec<(usize, Vec<u8>, bool, Vec<u8>)>> {
    proptest::collection::vec(
        (
            0..images,
            key(),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..6),
        ),
        0..60,
    )
}

fn fixture(spec: &[(usize, Vec<u8>, bool, Vec<u8>)], images: usize) -> Fixture {
    let node = MemoryNode::with_capacity(8 << 20).unwrap();
    let mut per_image: Vec<Vec<Entry>> = vec![Vec::new(); images];
    let mut models = vec![ImageModel::new(); images];
    for (i, (image, key, is_value, value)) in spec.iter().enumerate() {
        let seq = i as u64 + 1;
        let (kind, value) = if *is_value {
            (ValueKind::Value, value.clone())
        } else {
            (ValueKind::Tombstone, Vec::new())
        };
        per_image[*image].push((key.clone(), seq, kind, value.clone()));
        models[*image].insert((key.clone(), Reverse(seq)), (kind, value));
    }
    let mut ids = Vec::new();
    let mut bytes = Vec::new();
    for (serial, entries) in per_image.iter().enumerate() {
        let built = build_image(image_id(serial as u64), entries);
        publish(&node, OWNER, &built);
        ids.push(built.meta.id);
        bytes.push(built.bytes);
    }
    Fixture {
        node,
        ids,
        bytes,
        models,
    }
}

fn model_get(model: &ImageModel, key: &[u8], snapshot: u64) -> Option<(u64, ValueKind, Vec<u8>)> {
    model
        .range((key.to_vec(), Reverse(snapshot))..)
        .next()
        .filter(|((k, _), _)| k == key)
        .map(|((_, Reverse(seq)), (kind, value))| (*seq, *kind, value.clone()))
}

fn model_scan(f: &Fixture, request: &ScanRequest) -> Vec<ScanEntry> {
    let mut all: Vec<ScanEntry> = request
        .images
        .iter()
        .flat_map(|id| &f.models[id.serial as usize])
        .filter(|((k, Reverse(seq)), _)| {
            *seq <= request.snapshot
                && k.as_slice() >= request.lower.as_slice()
                && request.upper.as_ref().is_none_or(|u| k < u)
        })
        .map(|((k, Reverse(seq)), (kind, value))| ScanEntry {
            user_key: k.clone(),
            sequence: *seq,
            kind: *kind,
            value: value.clone(),
        })
        .collect();
    all.sort_by(|a, b| (&a.user_key, Reverse(a.sequence)).cmp(&(&b.user_key, Reverse(b.sequence))));
    if request.direction == Direction::Backward {
        all.reverse();
    }
    all
}

/// Run `request` repeatedly, following continuations; also checks every
/// batch respects the limit.
fn chained(node: &MemoryNode, request: &ScanRequest) -> Vec<ScanEntry> {
    let mut request = request.clone();
    let mut out = Vec::new();
    // Every batch but the last returns `limit` entries, so more batches than
    // entries means the continuation does not advance.
    for _ in 0..1000 {
        let batch = node.scan(OWNER, &request).unwrap();
        assert!(batch.entries.len() <= request.limit as usize);
        out.extend(batch.entries);
        match batch.continuation {
            None => return out,
            Some(after) => request.resume_after = Some(after),
        }
    }
    panic!("scan continuations do not advance");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn get_answers_per_image_like_the_model(
        spec in entries(3),
        probes in proptest::collection::vec((key(), 0..70u64), 1..20),
    ) {
        let f = fixture(&spec, 3);
        let request = GetRequest {
            lookups: probes
                .iter()
                .map(|(key, snapshot)| KeyLookup {
                    key: key.clone(),
                    snapshot: *snapshot,
                    // Newest image first, as a compute node would ask.
                    images: f.ids.iter().rev().copied().collect(),
                })
                .collect(),
        };
        let response = f.node.get(OWNER, &request).unwrap();
        prop_assert_eq!(response.answers.len(), probes.len());
        for (lookup, answers) in request.lookups.iter().zip(&response.answers) {
            prop_assert_eq!(answers.len(), lookup.images.len());
            for (id, found) in lookup.images.iter().zip(answers) {
                let i = id.serial as usize;
                let expected = model_get(&f.models[i], &lookup.key, lookup.snapshot);
                let offset = match (found, expected) {
                    (Found::Absent, None) => continue,
                    (Found::Value { sequence, offset, value }, Some((seq, ValueKind::Value, v))) => {
                        prop_assert_eq!((*sequence, value), (seq, &v));
                        *offset
                    }
                    (Found::Tombstone { sequence, offset }, Some((seq, ValueKind::Tombstone, _))) => {
                        prop_assert_eq!(*sequence, seq);
                        *offset
                    }
                    (found, expected) => {
                        return Err(TestCaseError::fail(format!("{found:?} vs model {expected:?}")));
                    }
                };
                // The offset names the same entry in the shipped bytes.
                let image = MemtableImage::open(&f.bytes[i], "test").unwrap();
                let (ikey, _) = image.value_at(offset).unwrap();
                let parsed = parse_internal_key(ikey).unwrap();
                prop_assert_eq!(parsed.user_key, lookup.key.as_slice());
            }
        }
    }

    #[test]
    fn scans_match_the_model_and_chain_through_continuations(
        spec in entries(3),
        lower in key(),
        upper in proptest::option::of(key()),
        snapshot in 0..70u64,
        limit in 1..6u32,
        backward in any::<bool>(),
        images in proptest::sample::subsequence(vec![0usize, 1, 2], 1..=3),
    ) {
        let f = fixture(&spec, 3);
        let request = ScanRequest {
            images: images.iter().map(|&i| f.ids[i]).collect(),
            lower,
            upper,
            direction: if backward { Direction::Backward } else { Direction::Forward },
            limit: u32::MAX,
            snapshot,
            resume_after: None,
        };
        let expected = model_scan(&f, &request);
        let whole = f.node.scan(OWNER, &request).unwrap();
        prop_assert_eq!(&whole.entries, &expected);
        prop_assert_eq!(whole.continuation, None);
        let batched = chained(&f.node, &ScanRequest { limit, ..request.clone() });
        prop_assert_eq!(batched, expected);
    }
}

#[test]
fn a_scan_that_ends_exactly_at_the_limit_has_no_continuation() {
    let entries: Vec<Entry> = (1..=3u64)
        .map(|i| (vec![b'a' + i as u8], i, ValueKind::Value, vec![i as u8]))
        .collect();
    let node = MemoryNode::with_capacity(1 << 20).unwrap();
    let built = build_image(image_id(0), &entries);
    publish(&node, OWNER, &built);
    let request = ScanRequest {
        images: vec![built.meta.id],
        lower: Vec::new(),
        upper: None,
        direction: Direction::Forward,
        limit: 3,
        snapshot: 10,
        resume_after: None,
    };
    let response = node.scan(OWNER, &request).unwrap();
    assert_eq!((response.entries.len(), response.continuation), (3, None));
    let response = node
        .scan(
            OWNER,
            &ScanRequest {
                limit: 2,
                ..request.clone()
            },
        )
        .unwrap();
    assert_eq!(response.entries.len(), 2);
    assert!(response.continuation.is_some());
    assert!(matches!(
        node.scan(
            OWNER,
            &ScanRequest {
                limit: 0,
                ..request.clone()
            }
        ),
        Err(o3_memnode::Error::InvalidRequest(_))
    ));
    assert!(matches!(
        node.scan(
            OWNER,
            &ScanRequest {
                resume_after: Some(vec![1, 2]),
                ..request
            }
        ),
        Err(o3_memnode::Error::InvalidRequest(_))
    ));
}
