//! The `ImageStore` conformance suite: one sequence of checks, run against
//! every way a compute node reaches a memory node — `Direct` (no
//! transport), the embedded node over the `local` transport, and an
//! `o3-memnode` child over `shm` and over `tcp`. Real sealed memtables are
//! shipped (allocate → one-sided write → publish), searched with delegated
//! `get` and `scan` against a `BTreeMap` model, read back, refused when
//! corrupt, and released.

#[allow(dead_code)]
mod common;
#[allow(dead_code)]
mod memnode_child;

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;

use common::{BuiltImage, Entry, build_image};
use memnode_child::MemnodeChild;
use o3_memnode::client::{ClientErrorKind, Direct, ImageStore, ReadAt, StoreConfig};
use o3_memnode::{
    Direction, Found, GetRequest, ImageId, KeyLookup, MemoryNode, ScanEntry, ScanRequest,
};
use o3_storage::key::{ValueKind, parse_internal_key};
use o3_storage::memtable::MemtableImage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// (user key, newest first) → (kind, value), over the images searched.
type Model = BTreeMap<(Vec<u8>, Reverse<u64>), (ValueKind, Vec<u8>)>;

/// Two images of one shard sharing keys: the older holds sequences
/// 1..=400, the newer 401..=800, with tombstones in both.
fn images() -> (Vec<BuiltImage>, Vec<Model>) {
    let mut rng = StdRng::seed_from_u64(0x0003_1a6e);
    let mut built = Vec::new();
    let mut models = Vec::new();
    for serial in 1..=2u64 {
        let mut entries: Vec<Entry> = Vec::new();
        let mut model = Model::new();
        for i in 0..400u64 {
            let seq = (serial - 1) * 400 + i + 1;
            let key = format!("key-{:03}", rng.random_range(0..150u32)).into_bytes();
            let (kind, value) = if rng.random_bool(0.2) {
                (ValueKind::Tombstone, Vec::new())
            } else {
                let len = rng.random_range(0..120usize);
                (ValueKind::Value, (0..len).map(|_| rng.random()).collect())
            };
            entries.push((key.clone(), seq, kind, value.clone()));
            model.insert((key, Reverse(seq)), (kind, value));
        }
        built.push(build_image(ImageId { shard: 0, serial }, &entries));
        models.push(model);
    }
    (built, models)
}

/// What `model` holds for `key` at `snapshot`, offsets aside.
fn model_get(model: &Model, key: &[u8], snapshot: u64) -> Option<(ValueKind, u64, Vec<u8>)> {
    model
        .range((key.to_vec(), Reverse(snapshot))..)
        .next()
        .filter(|((k, _), _)| k == key)
        .map(|((_, Reverse(seq)), (kind, value))| (*kind, *seq, value.clone()))
}

fn without_offset(found: &Found) -> Option<(ValueKind, u64, Vec<u8>)> {
    match found {
        Found::Absent => None,
        Found::Tombstone { sequence, .. } => Some((ValueKind::Tombstone, *sequence, Vec::new())),
        Found::Value {
            sequence, value, ..
        } => Some((ValueKind::Value, *sequence, value.clone())),
    }
}

/// The entry at a found offset is the one found (checked on the bytes
/// shipped, which the node searched in place).
fn check_offset(bytes: &[u8], key: &[u8], found: &Found) {
    let (sequence, offset) = match found {
        Found::Absent => return,
        Found::Tombstone { sequence, offset }
        | Found::Value {
            sequence, offset, ..
        } => (*sequence, *offset),
    };
    let image = MemtableImage::open(bytes, "shipped").unwrap();
    let (ikey, _) = image.value_at(offset).unwrap();
    let parsed = parse_internal_key(ikey).unwrap();
    assert_eq!((parsed.user_key, parsed.sequence), (key, sequence));
}

/// Every visible version in `[lower, upper)` at `snapshot`, in scan order.
fn model_scan(
    models: &[Model],
    lower: &[u8],
    upper: Option<&[u8]>,
    snapshot: u64,
    direction: Direction,
) -> Vec<ScanEntry> {
    let mut merged = Model::new();
    for model in models {
        merged.extend(model.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let mut entries: Vec<ScanEntry> = merged
        .into_iter()
        .filter(|((key, Reverse(seq)), _)| {
            key.as_slice() >= lower && upper.is_none_or(|u| key.as_slice() < u) && *seq <= snapshot
        })
        .map(|((user_key, Reverse(sequence)), (kind, value))| ScanEntry {
            user_key,
            sequence,
            kind,
            value,
        })
        .collect();
    if direction == Direction::Backward {
        entries.reverse();
    }
    entries
}

/// Scan in batches of `limit`, following continuations.
fn scan_all(store: &dyn ImageStore, mut request: ScanRequest) -> Vec<ScanEntry> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let response = store.scan(&request).unwrap();
        assert!(response.entries.len() <= request.limit as usize);
        out.extend(response.entries);
        match response.continuation {
            None => return out,
            Some(after) => request.resume_after = Some(after),
        }
    }
    panic!("the scan never ended");
}

/// The suite.
fn conformance(store: &dyn ImageStore) {
    let (built, models) = images();
    let before = store.stats().unwrap();
    let ids: Vec<ImageId> = built.iter().map(|b| b.meta.id).collect();

    // Ship: allocate, write in two one-sided pieces, publish.
    let mut regions = Vec::new();
    for image in &built {
        let region = store.allocate(image.bytes.len() as u64).unwrap();
        assert_eq!(region.len(), image.bytes.len() as u64);
        assert_eq!(region.session, store.session());
        let half = image.bytes.len() / 2;
        store.write(&region, 0, &image.bytes[..half]).unwrap();
        store
            .write(&region, half as u64, &image.bytes[half..])
            .unwrap();
        store.publish(&region, image.meta).unwrap();
        regions.push(region);
    }
    let shipped = store.stats().unwrap();
    assert_eq!(shipped.published_images, before.published_images + 2);
    assert!(shipped.pool.used > before.pool.used);

    // Published images are read-only; the bytes read back are the image.
    let error = store.write(&regions[0], 0, b"x").unwrap_err();
    assert_eq!(error.kind, ClientErrorKind::Refused, "{error}");
    for (region, image) in regions.iter().zip(&built) {
        let mut back = vec![0u8; image.bytes.len()];
        store.read(region, 0, &mut back).unwrap();
        assert!(back == image.bytes, "read back differs");
        let mut tail = [0u8; 16];
        let at = image.bytes.len() as u64 - 16;
        store.read(region, at, &mut tail).unwrap();
        assert_eq!(&tail[..], &image.bytes[at as usize..]);
    }

    // Several reads of both regions in one batch: each buffer gets the
    // bytes at its offset; an empty batch does nothing.
    let mut spans = Vec::new();
    for (n, image) in built.iter().enumerate() {
        let len = image.bytes.len();
        for (at, take) in [(0, 64), (len / 3, 100), (len - 7, 7), (len / 2, 1)] {
            spans.push((n, at, take));
        }
    }
    let mut bufs: Vec<Vec<u8>> = spans.iter().map(|&(_, _, take)| vec![0u8; take]).collect();
    let mut reads: Vec<ReadAt<'_>> = spans
        .iter()
        .zip(bufs.iter_mut())
        .map(|(&(n, at, _), buf)| ReadAt {
            region: &regions[n],
            offset: at as u64,
            buf,
        })
        .collect();
    store.read_many(&mut reads).unwrap();
    drop(reads);
    for ((n, at, take), buf) in spans.iter().zip(&bufs) {
        assert_eq!(
            buf.as_slice(),
            &built[*n].bytes[*at..at + take],
            "{n} at {at}"
        );
    }
    store.read_many(&mut []).unwrap();
    // A read past a region's end fails the batch.
    let mut past = [0u8; 8];
    let end = built[0].bytes.len() as u64;
    let error = store
        .read_many(&mut [ReadAt {
            region: &regions[0],
            offset: end,
            buf: &mut past,
        }])
        .unwrap_err();
    assert_eq!(error.kind, ClientErrorKind::Refused, "{error}");

    // Delegated get: one batched request over both images, every key at
    // several snapshots.
    let mut lookups = Vec::new();
    for k in 0..160u32 {
        for snapshot in [0, 200, 400, 401, 650, u64::MAX >> 8] {
            lookups.push(KeyLookup {
                key: format!("key-{k:03}").into_bytes(),
                snapshot,
                images: ids.clone(),
            });
        }
    }
    let response = store
        .get(&GetRequest {
            lookups: lookups.clone(),
        })
        .unwrap();
    assert_eq!(response.answers.len(), lookups.len());
    for (lookup, answers) in lookups.iter().zip(&response.answers) {
        assert_eq!(answers.len(), 2);
        for ((found, model), image) in answers.iter().zip(&models).zip(&built) {
            assert_eq!(
                without_offset(found),
                model_get(model, &lookup.key, lookup.snapshot),
                "{:?} at {}",
                String::from_utf8_lossy(&lookup.key),
                lookup.snapshot
            );
            check_offset(&image.bytes, &lookup.key, found);
        }
    }

    // Delegated scan: both directions, bounded and not, with continuations.
    let cases = [
        (&b""[..], None, u64::MAX >> 8),
        (b"key-020", Some(&b"key-090"[..]), 500),
        (b"key-100", Some(b"key-101"), 300),
    ];
    for (lower, upper, snapshot) in cases {
        for direction in [Direction::Forward, Direction::Backward] {
            let request = ScanRequest {
                images: ids.clone(),
                lower: lower.to_vec(),
                upper: upper.map(<[u8]>::to_vec),
                direction,
                limit: 37,
                snapshot,
                resume_after: None,
            };
            assert_eq!(
                scan_all(store, request),
                model_scan(&models, lower, upper, snapshot, direction),
                "scan {lower:?}..{upper:?} at {snapshot} {direction:?}"
            );
        }
    }

    // A corrupt image is refused at publish, naming it; the region stays
    // writable, and the repaired image publishes.
    let corrupt_id = ImageId {
        shard: 0,
        serial: 9,
    };
    let mut spare = built[0].clone();
    spare.meta.id = corrupt_id;
    let region = store.allocate(spare.bytes.len() as u64).unwrap();
    store.write(&region, 0, &spare.bytes).unwrap();
    let flip_at = spare.bytes.len() / 2;
    store
        .write(&region, flip_at as u64, &[spare.bytes[flip_at] ^ 0x10])
        .unwrap();
    let error = store.publish(&region, spare.meta).unwrap_err();
    assert_eq!(error.kind, ClientErrorKind::Refused, "{error}");
    assert!(error.message.contains("image 9 of shard 0"), "{error}");
    assert!(error.message.contains("checksum"), "{error}");
    assert_eq!(
        store.stats().unwrap().published_images,
        before.published_images + 2
    );
    store
        .write(&region, flip_at as u64, &[spare.bytes[flip_at]])
        .unwrap();
    store.publish(&region, spare.meta).unwrap();
    store.release(&region).unwrap();

    // Release: the images are gone, and so is the memory.
    for region in &regions {
        store.release(region).unwrap();
    }
    let error = store
        .get(&GetRequest {
            lookups: vec![lookups[0].clone()],
        })
        .unwrap_err();
    assert_eq!(error.kind, ClientErrorKind::Refused, "{error}");
    let error = store.release(&regions[0]).unwrap_err();
    assert_eq!(error.kind, ClientErrorKind::Refused, "{error}");
    let after = store.stats().unwrap();
    assert_eq!(after.published_images, before.published_images);
    assert_eq!(after.pool.used, before.pool.used);
}

#[test]
fn direct() {
    let node = Arc::new(MemoryNode::with_capacity(64 << 20).unwrap());
    conformance(&Direct::new(node));
}

#[test]
fn in_process_over_the_local_transport() {
    let store = o3_memnode::client::open(&StoreConfig::InProcess {
        pool_size: 64 << 20,
        link: None,
    })
    .unwrap();
    assert_eq!(store.name(), "in-process");
    conformance(store.as_ref());
}

#[test]
fn in_process_behind_a_link_model() {
    let link = o3_transport::link::LinkModel {
        latency: std::time::Duration::from_micros(20),
        bandwidth_bytes_per_sec: Some(2_000_000_000),
    };
    let store = o3_memnode::client::open(&StoreConfig::InProcess {
        pool_size: 64 << 20,
        link: Some(link),
    })
    .unwrap();
    conformance(store.as_ref());
}

#[test]
fn remote_over_shm() {
    let shm = tempfile::tempdir().unwrap();
    let child = MemnodeChild::start(&[
        "--pool-size",
        "64MiB",
        "--transport",
        "shm",
        "--shm-dir",
        shm.path().to_str().unwrap(),
    ]);
    assert_eq!(child.data_plane.0, "shm");
    conformance(child.store("conformance-shm").as_ref());
}

#[test]
fn remote_over_tcp() {
    let child = MemnodeChild::start(&["--pool-size", "64MiB", "--transport", "tcp"]);
    assert_eq!(child.data_plane.0, "tcp");
    conformance(child.store("conformance-tcp").as_ref());
}
