//! The image's central claim: a sealed memtable copied byte for byte anywhere —
//! a buffer at an odd address, a memory-mapped file — is searched in place and
//! answers exactly like the original.

use std::io::Write;
use std::sync::Arc;

use o3_storage::iterator::InternalIterator;
use o3_storage::key::{ValueKind, make_internal_key};
use o3_storage::memtable::{EntryRef, Memtable, MemtableImage, OwnedImageIter};

fn sealed_memtable() -> Arc<Memtable> {
    let mem = Arc::new(Memtable::new(256 << 10, 4).unwrap());
    let mut seq = 0;
    for round in 0..3u64 {
        for i in 0..500u64 {
            // Every 3rd key gets newer versions; some of them are tombstones.
            if round > 0 && i % 3 != 0 {
                continue;
            }
            seq += 1;
            let key = format!("user{:04}", i * 2);
            if round == 2 && i % 2 == 0 {
                mem.insert(key.as_bytes(), seq, ValueKind::Tombstone, b"")
                    .unwrap();
            } else {
                let value = format!("value of {key} at {seq}").repeat(1 + (i % 4) as usize);
                mem.insert(key.as_bytes(), seq, ValueKind::Value, value.as_bytes())
                    .unwrap();
            }
        }
    }
    mem.seal().unwrap();
    mem
}

fn scan_forward(it: &mut dyn InternalIterator) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    it.seek_to_first().unwrap();
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.next().unwrap();
    }
    out
}

fn scan_backward(it: &mut dyn InternalIterator) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    it.seek_to_last().unwrap();
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.prev().unwrap();
    }
    out
}

/// An owned [`EntryRef`]: kind, sequence, value, offset.
type Found = (ValueKind, u64, Vec<u8>, u32);

/// Everything a reader can ask, as owned data for comparison.
#[derive(Debug, PartialEq)]
struct Answers {
    gets: Vec<Option<Found>>,
    forward: Vec<(Vec<u8>, Vec<u8>)>,
    backward: Vec<(Vec<u8>, Vec<u8>)>,
    seeks: Vec<Option<Vec<u8>>>,
}

fn owned(e: Option<EntryRef<'_>>) -> Option<Found> {
    e.map(|e| (e.kind, e.sequence, e.value.to_vec(), e.offset))
}

fn answers(image: &MemtableImage<'_>) -> Answers {
    let snapshots = [0, 1, 250, 500, 501, 800, 1000, u64::MAX];
    let mut gets = Vec::new();
    for i in 0..1001u64 {
        // Even numbers are present, odd ones absent.
        let key = format!("user{i:04}");
        for snap in snapshots {
            gets.push(owned(image.get(key.as_bytes(), snap)));
        }
    }
    let mut it = image.iter();
    let mut seeks = Vec::new();
    for i in (0..1001u64).step_by(7) {
        let target = make_internal_key(format!("user{i:04}").as_bytes(), 600, ValueKind::Value);
        it.seek(&target).unwrap();
        seeks.push(it.valid().then(|| it.key().to_vec()));
        it.seek_for_prev(&target).unwrap();
        seeks.push(it.valid().then(|| it.key().to_vec()));
    }
    Answers {
        gets,
        forward: scan_forward(&mut image.iter()),
        backward: scan_backward(&mut image.iter()),
        seeks,
    }
}

#[test]
fn copies_at_odd_alignment_and_in_a_mapped_file_answer_identically() {
    let mem = sealed_memtable();
    let original = mem.image_bytes().unwrap();

    // A copy starting at an odd address.
    let mut buffer = vec![0u8; original.len() + 3];
    let start = 1 - buffer.as_ptr() as usize % 2;
    buffer[start..start + original.len()].copy_from_slice(original);
    let odd = &buffer[start..start + original.len()];
    assert_eq!(odd.as_ptr() as usize % 2, 1);

    // A copy in a file, read through a memory map.
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(original).unwrap();
    file.sync_all().unwrap();
    // SAFETY: the temporary file is private to this test and not modified
    // while mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();

    let reference = answers(&MemtableImage::open(original, "original").unwrap());
    assert_eq!(reference.forward.len() as u64, mem.entries());
    let mut rev = reference.backward.clone();
    rev.reverse();
    assert_eq!(rev, reference.forward);
    assert!(reference.gets.iter().any(|g| g.is_none()));
    assert!(
        reference
            .gets
            .iter()
            .any(|g| matches!(g, Some((ValueKind::Tombstone, ..))))
    );

    let odd_image = MemtableImage::open(odd, "odd copy").unwrap();
    let map_image = MemtableImage::open(&map, "mapped file").unwrap();
    assert_eq!(answers(&odd_image), reference);
    assert_eq!(answers(&map_image), reference);
    assert_eq!(odd_image.header(), map_image.header());

    // Offsets from one copy fetch the same entry from another.
    for g in reference.gets.iter().flatten().step_by(11) {
        let (_, value) = map_image.value_at(g.3).unwrap();
        assert_eq!(value, &g.2[..]);
        assert_eq!(odd_image.value_at(g.3).unwrap().1, value);
    }

    // The live memtable and owning iterators over each copy scan the same.
    assert_eq!(scan_forward(&mut mem.iter()), reference.forward);
    let mut over_map = OwnedImageIter::new(map, "owned map").unwrap();
    assert_eq!(scan_forward(&mut over_map), reference.forward);
    assert_eq!(scan_backward(&mut over_map), reference.backward);
    let shared: Arc<[u8]> = Arc::from(odd);
    let mut over_arc = OwnedImageIter::new(shared, "owned arc").unwrap();
    assert_eq!(scan_backward(&mut over_arc), reference.backward);
    assert_eq!(over_arc.header().entries, mem.entries());
}
