//! Behaviour of the live memtable and of sealed images: a model test against a
//! BTreeMap, concurrent readers during inserts, a full arena, corruption of
//! every byte, and hostile images with valid checksums.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use o3_storage::Error;
use o3_storage::iterator::InternalIterator;
use o3_storage::key::{ValueKind, make_internal_key, parse_internal_key};
use o3_storage::memtable::{
    HEADER_LEN, Memtable, MemtableImage, OwnedImageIter, image_checksum, store_checksum,
};
use proptest::prelude::*;

/// The model: (user key, Reverse(trailer)) sorts exactly like internal keys.
type Model = BTreeMap<(Vec<u8>, Reverse<u64>), Vec<u8>>;

fn model_key(user_key: &[u8], seq: u64, kind: ValueKind) -> (Vec<u8>, Reverse<u64>) {
    (user_key.to_vec(), Reverse((seq << 8) | kind as u64))
}

/// The model's entries as (internal key, value), in order.
fn model_entries(model: &Model) -> Vec<(Vec<u8>, Vec<u8>)> {
    model
        .iter()
        .map(|((uk, Reverse(t)), v)| {
            let kind = ValueKind::from_u8((t & 0xff) as u8).unwrap();
            (make_internal_key(uk, t >> 8, kind), v.clone())
        })
        .collect()
}

/// Newest model entry of `user_key` with sequence <= snapshot.
fn model_get(model: &Model, user_key: &[u8], snapshot: u64) -> Option<(ValueKind, u64, Vec<u8>)> {
    let from = (user_key.to_vec(), Reverse((snapshot << 8) | 0xff));
    model
        .range(from..)
        .next()
        .filter(|((uk, _), _)| uk == user_key)
        .map(|((_, Reverse(t)), v)| {
            (
                ValueKind::from_u8((t & 0xff) as u8).unwrap(),
                t >> 8,
                v.clone(),
            )
        })
}

fn forward(it: &mut dyn InternalIterator) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    it.seek_to_first().unwrap();
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.next().unwrap();
    }
    out
}

fn backward(it: &mut dyn InternalIterator) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    it.seek_to_last().unwrap();
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.prev().unwrap();
    }
    out.reverse();
    out
}

/// Position of the first entry >= target (seek) and last entry <= target
/// (seek_for_prev) in the model's entry list.
fn model_seek(entries: &[(Vec<u8>, Vec<u8>)], target: &[u8]) -> (Option<usize>, Option<usize>) {
    use o3_storage::key::compare_internal;
    let ge = entries
        .iter()
        .position(|(k, _)| compare_internal(k, target).is_ge());
    let le = entries
        .iter()
        .rposition(|(k, _)| compare_internal(k, target).is_le());
    (ge, le)
}

fn at(it: &dyn InternalIterator) -> Option<(Vec<u8>, Vec<u8>)> {
    it.valid().then(|| (it.key().to_vec(), it.value().to_vec()))
}

#[derive(Debug, Clone)]
enum Step {
    Next,
    Prev,
    Seek(Vec<u8>),
    SeekForPrev(Vec<u8>),
}

/// Check an iterator against the model: both full scans, then a random walk
/// of seeks and steps in both directions.
fn check_iterator(it: &mut dyn InternalIterator, entries: &[(Vec<u8>, Vec<u8>)], steps: &[Step]) {
    assert_eq!(forward(it), entries);
    assert_eq!(backward(it), entries);
    it.seek_to_first().unwrap();
    let mut pos = if entries.is_empty() { None } else { Some(0) };
    for step in steps {
        match step {
            Step::Next if pos.is_some() => {
                it.next().unwrap();
                pos = pos.map(|p| p + 1).filter(|&p| p < entries.len());
            }
            Step::Prev if pos.is_some() => {
                it.prev().unwrap();
                pos = pos.and_then(|p| p.checked_sub(1));
            }
            Step::Next | Step::Prev => {}
            Step::Seek(t) => {
                it.seek(t).unwrap();
                pos = model_seek(entries, t).0;
            }
            Step::SeekForPrev(t) => {
                it.seek_for_prev(t).unwrap();
                pos = model_seek(entries, t).1;
            }
        }
        assert_eq!(at(it), pos.map(|p| entries[p].clone()), "after {step:?}");
    }
}

fn user_key_strategy() -> impl Strategy<Value = Vec<u8>> {
    // Few distinct keys (many versions each), including the empty key and
    // keys that are prefixes of one another.
    prop::sample::select(vec![
        b"".to_vec(),
        b"a".to_vec(),
        b"ab".to_vec(),
        b"abc".to_vec(),
        b"b".to_vec(),
        b"k\x00".to_vec(),
        b"k\xff".to_vec(),
        vec![b'z'; 40],
    ])
}

fn kind_strategy() -> impl Strategy<Value = ValueKind> {
    prop_oneof![3 => Just(ValueKind::Value), 1 => Just(ValueKind::Tombstone)]
}

fn op_strategy() -> impl Strategy<Value = (Vec<u8>, u64, ValueKind, Vec<u8>)> {
    (
        user_key_strategy(),
        0u64..64,
        kind_strategy(),
        prop::collection::vec(any::<u8>(), 0..24),
    )
}

fn target_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (user_key_strategy(), 0u64..70, kind_strategy())
            .prop_map(|(k, s, kind)| make_internal_key(&k, s, kind)),
        // Targets too short to hold a trailer order like compare_internal says.
        prop::collection::vec(any::<u8>(), 0..8),
    ]
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::Next),
        4 => Just(Step::Prev),
        1 => target_strategy().prop_map(Step::Seek),
        1 => target_strategy().prop_map(Step::SeekForPrev),
    ]
}

/// Insert `ops` into a fresh memtable and the model; duplicates of an
/// existing (key, sequence, kind) must be rejected and change nothing.
fn build(ops: &[(Vec<u8>, u64, ValueKind, Vec<u8>)]) -> (Arc<Memtable>, Model) {
    let mem = Arc::new(Memtable::new(1 << 20, 3).unwrap());
    let mut model = Model::new();
    for (k, seq, kind, v) in ops {
        let v = if *kind == ValueKind::Tombstone {
            Vec::new()
        } else {
            v.clone()
        };
        let r = mem.insert(k, *seq, *kind, &v);
        match model.entry(model_key(k, *seq, *kind)) {
            std::collections::btree_map::Entry::Vacant(e) => {
                r.unwrap();
                e.insert(v);
            }
            std::collections::btree_map::Entry::Occupied(_) => {
                assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
            }
        }
    }
    assert_eq!(mem.entries(), model.len() as u64);
    (mem, model)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn memtable_and_image_match_model(
        ops in prop::collection::vec(op_strategy(), 0..200),
        lookups in prop::collection::vec((user_key_strategy(), 0u64..70), 0..60),
        steps in prop::collection::vec(step_strategy(), 0..80),
    ) {
        let (mem, model) = build(&ops);
        let entries = model_entries(&model);
        let seqs = model.keys().map(|(_, Reverse(t))| t >> 8);
        prop_assert_eq!(mem.smallest_seq(), seqs.clone().min().unwrap_or(0));
        prop_assert_eq!(mem.largest_seq(), seqs.max().unwrap_or(0));

        // The live memtable.
        for (k, snap) in &lookups {
            let got = mem.get(k, *snap).map(|e| (e.kind, e.sequence, e.value.to_vec()));
            prop_assert_eq!(got, model_get(&model, k, *snap));
        }
        check_iterator(&mut mem.iter(), &entries, &steps);

        // The sealed image, borrowed and owned.
        mem.seal().unwrap();
        let image = MemtableImage::open(mem.image_bytes().unwrap(), "model image").unwrap();
        prop_assert_eq!(image.header().entries, model.len() as u64);
        prop_assert_eq!(image.header().shard, 3);
        for (k, snap) in &lookups {
            let got = image.get(k, *snap);
            prop_assert_eq!(
                got.map(|e| (e.kind, e.sequence, e.value.to_vec())),
                model_get(&model, k, *snap)
            );
            prop_assert_eq!(got, mem.get(k, *snap));
            if let Some(e) = got {
                let (ikey, value) = image.value_at(e.offset).unwrap();
                let parsed = parse_internal_key(ikey).unwrap();
                prop_assert_eq!((parsed.user_key, parsed.sequence), (&k[..], e.sequence));
                prop_assert_eq!(value, e.value);
            }
        }
        check_iterator(&mut image.iter(), &entries, &steps);
        let owned = mem.image_bytes().unwrap().to_vec();
        check_iterator(&mut OwnedImageIter::new(owned, "owned").unwrap(), &entries, &steps);

        let range = image.key_range().map(|(a, b)| (a.to_vec(), b.to_vec()));
        let expected = model.keys().next().map(|(first, _)| {
            (first.clone(), model.keys().next_back().unwrap().0.clone())
        });
        prop_assert_eq!(range, expected);
    }
}

#[test]
fn get_honours_snapshots_and_tombstones() {
    let mem = Memtable::new(4096, 0).unwrap();
    mem.insert(b"k", 5, ValueKind::Value, b"v5").unwrap();
    mem.insert(b"k", 9, ValueKind::Tombstone, b"").unwrap();
    mem.insert(b"k", 12, ValueKind::Value, b"v12").unwrap();
    assert!(mem.get(b"k", 4).is_none());
    assert_eq!(mem.get(b"k", 8).unwrap().value, b"v5");
    assert_eq!(mem.get(b"k", 11).unwrap().kind, ValueKind::Tombstone);
    let newest = mem.get(b"k", u64::MAX).unwrap();
    assert_eq!((newest.sequence, newest.value), (12, &b"v12"[..]));
    assert!(mem.get(b"j", u64::MAX).is_none());
    assert!(mem.get(b"k\0", u64::MAX).is_none());
    assert_eq!((mem.smallest_seq(), mem.largest_seq()), (5, 12));
}

#[test]
fn rejects_bad_capacity_and_sequence() {
    assert!(matches!(
        Memtable::new(16, 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Memtable::new(u32::MAX as usize + 1, 0),
        Err(Error::InvalidArgument(_))
    ));
    let mem = Memtable::new(4096, 0).unwrap();
    assert!(mem.is_empty() && mem.smallest_seq() == 0 && mem.largest_seq() == 0);
    assert!(matches!(
        mem.insert(b"k", 1 << 56, ValueKind::Value, b""),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn image_full_leaves_memtable_usable() {
    let mem = Arc::new(Memtable::new(2048, 7).unwrap());
    let mut inserted = Vec::new();
    let mut seq = 0;
    let full = loop {
        seq += 1;
        let key = format!("key{seq:04}");
        match mem.insert(key.as_bytes(), seq, ValueKind::Value, &[seq as u8; 40]) {
            Ok(()) => inserted.push(key),
            Err(e) => break e,
        }
    };
    let Error::ImageFull { needed, available } = full else {
        panic!("expected ImageFull, got {full:?}");
    };
    assert!(needed > available, "{needed} {available}");
    assert_eq!(available, mem.capacity() - mem.used_bytes());
    let (used, entries) = (mem.used_bytes(), mem.entries());
    assert_eq!(entries, inserted.len() as u64);
    // A huge value fails the same way and changes nothing.
    assert!(matches!(
        mem.insert(b"big", seq, ValueKind::Value, &[0; 4096]),
        Err(Error::ImageFull { .. })
    ));
    assert_eq!((mem.used_bytes(), mem.entries()), (used, entries));
    assert!(mem.get(b"big", u64::MAX).is_none());
    // Everything inserted is intact, and a smaller entry may still fit.
    for (i, key) in inserted.iter().enumerate() {
        let e = mem.get(key.as_bytes(), u64::MAX).unwrap();
        assert_eq!(e.value, &[(i + 1) as u8; 40]);
    }
    if available >= 32 {
        mem.insert(b"t", seq, ValueKind::Tombstone, b"").unwrap();
    }
    mem.seal().unwrap();
    let image = MemtableImage::open(mem.image_bytes().unwrap(), "full").unwrap();
    assert_eq!(image.header().entries, mem.entries());
    assert_eq!(forward(&mut image.iter()).len() as u64, mem.entries());
}

#[test]
fn seal_freezes_and_exposes_image() {
    let mem = Memtable::new(4096, 1).unwrap();
    assert!(matches!(mem.image_bytes(), Err(Error::InvalidArgument(_))));
    mem.insert(b"a", 1, ValueKind::Value, b"x").unwrap();
    mem.seal().unwrap();
    mem.seal().unwrap();
    assert!(mem.is_sealed());
    assert!(matches!(
        mem.insert(b"b", 2, ValueKind::Value, b"y"),
        Err(Error::InvalidArgument(_))
    ));
    let bytes = mem.image_bytes().unwrap();
    assert_eq!(bytes.len(), mem.used_bytes());
    let image = MemtableImage::open(bytes, "sealed").unwrap();
    let h = image.header();
    assert_eq!((h.entries, h.shard, h.used as usize), (1, 1, bytes.len()));
    assert_eq!((h.smallest_seq, h.largest_seq), (1, 1));
    assert_eq!(image.key_range(), Some((&b"a"[..], &b"a"[..])));
    assert_eq!(image.bytes(), bytes);
}

#[test]
fn empty_image_opens_and_is_empty() {
    let mem = Arc::new(Memtable::new(1024, 0).unwrap());
    assert!(!mem.iter().valid());
    mem.seal().unwrap();
    let image = MemtableImage::open(mem.image_bytes().unwrap(), "empty").unwrap();
    assert_eq!(image.header().entries, 0);
    assert_eq!(image.key_range(), None);
    assert!(image.get(b"", u64::MAX).is_none());
    assert!(forward(&mut image.iter()).is_empty());
    assert!(backward(&mut image.iter()).is_empty());
}

#[test]
fn value_at_rejects_offsets_that_are_not_entries() {
    let mem = Memtable::new(8192, 0).unwrap();
    for i in 0..50u64 {
        mem.insert(
            format!("k{i:02}").as_bytes(),
            i,
            ValueKind::Value,
            &[i as u8; 9],
        )
        .unwrap();
    }
    mem.seal().unwrap();
    let image = MemtableImage::open(mem.image_bytes().unwrap(), "offsets").unwrap();
    let offsets: Vec<u32> = (0..50u64)
        .map(|i| image.get(format!("k{i:02}").as_bytes(), i).unwrap().offset)
        .collect();
    for (i, &off) in offsets.iter().enumerate() {
        let (_, value) = image.value_at(off).unwrap();
        assert_eq!(value, &[i as u8; 9]);
    }
    let used = image.header().used;
    let head = image.header().head;
    for off in (0..used + 8).filter(|o| !offsets.contains(o)) {
        let e = image.value_at(off).unwrap_err();
        assert!(e.to_string().contains("offsets"), "{off}: {e}");
        assert!(off != head || e.is_corruption());
    }
}

#[test]
fn concurrent_readers_see_sorted_complete_entries() {
    const N: u64 = 20_000;
    let mem = Arc::new(Memtable::new(4 << 20, 0).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    // Readers are running before the first insert.
    let start = Arc::new(std::sync::Barrier::new(4));
    // Each key's value spells its key and sequence, so a torn entry shows.
    let value_of = |key: &[u8], seq: u64| {
        let mut v = key.to_vec();
        v.extend_from_slice(&seq.to_le_bytes());
        v
    };
    let readers: Vec<_> = (0..3u64)
        .map(|r| {
            let (mem, done, start) = (Arc::clone(&mem), Arc::clone(&done), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                let mut rounds = 0u64;
                let mut probe = r;
                while !done.load(Ordering::Acquire) || rounds < 2 {
                    rounds += 1;
                    for _ in 0..200 {
                        probe = probe
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let key = format!("key{:05}", (probe >> 33) % (N / 2));
                        if let Some(e) = mem.get(key.as_bytes(), u64::MAX) {
                            assert_eq!(e.value, value_of(key.as_bytes(), e.sequence));
                        }
                    }
                    // Alternate forward and backward scans.
                    let ascending = rounds.is_multiple_of(2);
                    let expected = if ascending {
                        std::cmp::Ordering::Less
                    } else {
                        std::cmp::Ordering::Greater
                    };
                    let mut it = mem.iter();
                    let mut prev: Option<Vec<u8>> = None;
                    let mut seen = 0u64;
                    if ascending {
                        it.seek_to_first().unwrap();
                    } else {
                        it.seek_to_last().unwrap();
                    }
                    while it.valid() && seen < 3000 {
                        let p = parse_internal_key(it.key()).unwrap();
                        assert_eq!(it.value(), value_of(p.user_key, p.sequence));
                        if let Some(prev) = &prev {
                            let order = o3_storage::key::compare_internal(prev, it.key());
                            assert_eq!(order, expected);
                        }
                        prev = Some(it.key().to_vec());
                        seen += 1;
                        if ascending { it.next() } else { it.prev() }.unwrap();
                    }
                }
                rounds
            })
        })
        .collect();
    start.wait();
    // Keys in a scrambled order, two versions each, so inserts land all over.
    for i in 0..N {
        let key = format!("key{:05}", (i * 7919) % (N / 2));
        let seq = i + 1;
        mem.insert(
            key.as_bytes(),
            seq,
            ValueKind::Value,
            &value_of(key.as_bytes(), seq),
        )
        .unwrap();
    }
    done.store(true, Ordering::Release);
    for r in readers {
        assert!(r.join().unwrap() >= 2);
    }
    assert_eq!(mem.entries(), N);
    assert_eq!(forward(&mut mem.iter()).len() as u64, N);
}

/// A small sealed image used by the corruption tests.
fn small_image() -> Vec<u8> {
    let mem = Memtable::new(4096, 9).unwrap();
    for (i, k) in ["apple", "banana", "cherry", "date", "elder"]
        .iter()
        .enumerate()
    {
        mem.insert(k.as_bytes(), 10 + i as u64, ValueKind::Value, k.as_bytes())
            .unwrap();
        mem.insert(k.as_bytes(), 20 + i as u64, ValueKind::Tombstone, b"")
            .unwrap();
    }
    mem.seal().unwrap();
    mem.image_bytes().unwrap().to_vec()
}

#[test]
fn every_flipped_byte_is_detected_and_named() {
    let image = small_image();
    MemtableImage::open(&image, "intact").unwrap();
    for i in 0..image.len() {
        for mask in [0x01u8, 0x80] {
            let mut bad = image.clone();
            bad[i] ^= mask;
            let e = MemtableImage::open(&bad, "shard-9 image").unwrap_err();
            assert!(e.is_corruption(), "byte {i}: {e}");
            assert!(e.to_string().contains("shard-9 image"), "byte {i}: {e}");
        }
    }
    // Truncation is detected too.
    for len in [0, 1, HEADER_LEN - 1, HEADER_LEN, image.len() - 1] {
        assert!(
            MemtableImage::open(&image[..len], "cut").is_err(),
            "len {len}"
        );
    }
}

/// Open `bytes`; when that succeeds every read must stay in bounds and end.
fn exercise(bytes: &[u8]) {
    let Ok(image) = MemtableImage::open(bytes, "fuzzed") else {
        return;
    };
    let limit = image.header().entries as usize;
    let mut it = image.iter();
    it.seek_to_first().unwrap();
    let mut n = 0;
    while it.valid() {
        n += 1;
        assert!(n <= limit, "forward scan longer than entry count");
        let e = image.get(o3_storage::key::user_key(it.key()), u64::MAX);
        assert!(e.is_some());
        it.next().unwrap();
    }
    assert_eq!(n, limit);
    it.seek_to_last().unwrap();
    let mut n = 0;
    while it.valid() {
        n += 1;
        assert!(n <= limit, "reverse scan longer than entry count");
        it.prev().unwrap();
    }
    assert_eq!(n, limit);
    let _ = image.get(b"apple", 15);
    let _ = image.key_range();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise(&bytes);
    }

    #[test]
    fn arbitrary_bytes_with_valid_header_and_checksum_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..512),
        max_height in 0u32..40,
        head in prop_oneof![Just(64u32), 0u32..600],
        entries in 0u64..8,
    ) {
        let mut bytes = small_image()[..HEADER_LEN].to_vec();
        bytes.extend_from_slice(&body);
        let used = bytes.len() as u32;
        bytes[12..16].copy_from_slice(&max_height.to_le_bytes());
        bytes[16..20].copy_from_slice(&used.to_le_bytes());
        bytes[20..24].copy_from_slice(&head.to_le_bytes());
        bytes[24..32].copy_from_slice(&entries.to_le_bytes());
        prop_assert!(store_checksum(&mut bytes));
        prop_assert_eq!(image_checksum(&bytes), Some(u32::from_le_bytes(bytes[60..64].try_into().unwrap())));
        exercise(&bytes);
    }

    #[test]
    fn mutated_images_with_valid_checksum_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = small_image();
        for (i, b) in edits {
            let i = HEADER_LEN + i.index(bytes.len() - HEADER_LEN);
            bytes[i] = b;
        }
        store_checksum(&mut bytes);
        exercise(&bytes);
    }
}

/// Offsets of every entry of `small_image()`, found through `get`.
fn small_image_offsets(image: &[u8]) -> Vec<u32> {
    let opened = MemtableImage::open(image, "offsets").unwrap();
    let mut offsets = Vec::new();
    for (i, k) in ["apple", "banana", "cherry", "date", "elder"]
        .iter()
        .enumerate()
    {
        for seq in [10 + i as u64, 20 + i as u64] {
            offsets.push(opened.get(k.as_bytes(), seq).unwrap().offset);
        }
    }
    offsets
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Relinking nodes to other nodes (or to the end) yields lists that are
    /// unsorted, cyclic or inconsistent across levels: open must reject them
    /// or, when the result is still a valid skiplist, reads must work.
    #[test]
    fn relinked_images_with_valid_checksum_never_panic(
        edits in prop::collection::vec(
            (any::<prop::sample::Index>(), 0usize..12, any::<prop::sample::Index>()),
            1..4,
        ),
    ) {
        let mut bytes = small_image();
        let offsets = small_image_offsets(&bytes);
        let head = 64usize;
        for (node, level, target) in edits {
            // Node index 0 stands for the head, the others for entries.
            let node = node.index(offsets.len() + 1);
            let node = if node == 0 { head } else { offsets[node - 1] as usize };
            let height = bytes[node] as usize;
            let link = node + 12 + 4 * (level % height);
            let target = target.index(offsets.len() + 1);
            let target = if target == 0 { 0 } else { offsets[target - 1] };
            bytes[link..link + 4].copy_from_slice(&target.to_le_bytes());
        }
        store_checksum(&mut bytes);
        exercise(&bytes);
    }
}

#[test]
fn structural_damage_with_valid_checksum_is_rejected() {
    let image = small_image();
    let opened = MemtableImage::open(&image, "x").unwrap();
    let first = opened.header().first_entry as usize;
    let last = opened.header().last_entry as usize;
    // Level-0 link of the first entry pointing back to itself (a cycle).
    let mut cyc = image.clone();
    cyc[first + 12..first + 16].copy_from_slice(&(first as u32).to_le_bytes());
    // Last entry linking to the head node.
    let mut to_head = image.clone();
    to_head[last + 12..last + 16].copy_from_slice(&64u32.to_le_bytes());
    // A wrong entry count.
    let mut count = image.clone();
    count[24] += 1;
    for (name, mut bad) in [("cycle", cyc), ("head", to_head), ("count", count)] {
        store_checksum(&mut bad);
        let e = MemtableImage::open(&bad, name).unwrap_err();
        assert!(matches!(e, Error::Corruption { .. }), "{name}: {e}");
        assert!(e.to_string().contains(name), "{e}");
    }
}

#[test]
fn memtable_is_send_and_sync_and_iterators_are_send() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Memtable>();
    send::<o3_storage::memtable::MemtableIter>();
    send::<o3_storage::memtable::ImageIter<'static>>();
    send::<OwnedImageIter<Vec<u8>>>();
}

#[test]
fn same_inserts_give_identical_images() {
    let build = || {
        let mem = Memtable::new(8192, 2).unwrap();
        for i in 0..100u64 {
            let key = format!("k{}", (i * 37) % 100);
            mem.insert(key.as_bytes(), i, ValueKind::Value, key.as_bytes())
                .unwrap();
        }
        mem.seal().unwrap();
        mem.image_bytes().unwrap().to_vec()
    };
    assert_eq!(build(), build());
}
