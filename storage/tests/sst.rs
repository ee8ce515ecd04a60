//! SST behaviour against a sorted model: point lookups, scans in both
//! directions, seeks, bloom filter quality, block cache accounting, and the
//! builder's argument checks.

mod sst_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use o3_storage::env::{LocalFs, Storage};
use o3_storage::error::Error;
use o3_storage::iterator::InternalIterator;
use o3_storage::key::{self, ValueKind, make_internal_key, make_lookup_key};
use o3_storage::options::{Compression, TableOptions};
use o3_storage::sst::{
    BlockCache, BlockHandle, CacheAdmission, Table, TableBuilder, TableProperties,
};
use proptest::prelude::*;
use sst_support::{
    Entry, MemFile, MemWritable, build_table, data_block_handles, expected_get, lower_bound,
    open_table, sample_entries, sort_entries,
};

fn options_strategy() -> impl Strategy<Value = TableOptions> {
    (
        prop_oneof![Just(64usize), Just(200), Just(1024), Just(2048), Just(4096)],
        prop_oneof![Just(1usize), Just(2), Just(5), Just(16)],
        prop_oneof![Just(0u32), Just(4), Just(10)],
        prop_oneof![
            Just(Compression::None),
            Just(Compression::Lz4),
            (-3i32..=9).prop_map(|level| Compression::Zstd { level }),
        ],
        any::<bool>(),
    )
        .prop_map(
            |(block_size, restart_interval, bits, compression, aligned)| TableOptions {
                block_size,
                restart_interval,
                bloom_bits_per_key: bits,
                compression,
                page_aligned_blocks: aligned,
            },
        )
}

/// Entries over a small key alphabet so that user keys repeat with many
/// versions, values and tombstones mixed.
fn entries_strategy() -> impl Strategy<Value = Vec<Entry>> {
    prop::collection::vec(
        (
            prop::collection::vec(prop::sample::select(b"abcz".to_vec()), 0..6),
            0u64..50,
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..40),
        ),
        0..400,
    )
    .prop_map(|raw| {
        sort_entries(
            raw.into_iter()
                .map(|(uk, seq, tomb, v)| {
                    let kind = if tomb {
                        ValueKind::Tombstone
                    } else {
                        ValueKind::Value
                    };
                    (key::make_internal_key(&uk, seq, kind), v)
                })
                .collect(),
        )
    })
}

/// A random operation on an iterator.
#[derive(Debug, Clone)]
enum Op {
    Seek(Vec<u8>, u64),
    SeekForPrev(Vec<u8>, u64),
    First,
    Last,
    Next,
    Prev,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let target = (
        prop::collection::vec(prop::sample::select(b"abcz".to_vec()), 0..6),
        0u64..52,
    );
    prop_oneof![
        target.clone().prop_map(|(k, s)| Op::Seek(k, s)),
        target.prop_map(|(k, s)| Op::SeekForPrev(k, s)),
        Just(Op::First),
        Just(Op::Last),
        Just(Op::Next),
        Just(Op::Next),
        Just(Op::Prev),
        Just(Op::Prev),
    ]
}

fn check_iterator(table: &Arc<Table>, model: &[Entry], ops: &[Op]) {
    let mut it = table.iter(true);
    // Model position: Some(index) when valid.
    let mut pos: Option<usize> = None;
    for op in ops {
        match op {
            Op::Seek(uk, seq) => {
                let t = make_lookup_key(uk, *seq);
                it.seek(&t).unwrap();
                pos = Some(lower_bound(model, &t)).filter(|&i| i < model.len());
            }
            Op::SeekForPrev(uk, seq) => {
                let t = make_lookup_key(uk, *seq);
                it.seek_for_prev(&t).unwrap();
                let upper = model.partition_point(|(k, _)| {
                    key::compare_internal(k, &t) != std::cmp::Ordering::Greater
                });
                pos = upper.checked_sub(1);
            }
            Op::First => {
                it.seek_to_first().unwrap();
                pos = (!model.is_empty()).then_some(0);
            }
            Op::Last => {
                it.seek_to_last().unwrap();
                pos = model.len().checked_sub(1);
            }
            Op::Next => {
                if pos.is_none() {
                    continue;
                }
                it.next().unwrap();
                pos = pos.map(|p| p + 1).filter(|&p| p < model.len());
            }
            Op::Prev => {
                if pos.is_none() {
                    continue;
                }
                it.prev().unwrap();
                pos = pos.and_then(|p| p.checked_sub(1));
            }
        }
        match pos {
            Some(p) => {
                assert!(it.valid(), "after {op:?} expected entry {p}");
                assert_eq!(it.key(), &model[p].0[..], "key after {op:?}");
                assert_eq!(it.value(), &model[p].1[..], "value after {op:?}");
            }
            None => assert!(!it.valid(), "after {op:?} expected invalid"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn table_matches_model(
        model in entries_strategy(),
        options in options_strategy(),
        ops in prop::collection::vec(op_strategy(), 0..60),
        probes in prop::collection::vec(
            (prop::collection::vec(prop::sample::select(b"abcdz".to_vec()), 0..7), 0u64..52),
            0..60,
        ),
        with_cache in any::<bool>(),
    ) {
        let (bytes, props) = build_table(&model, &options);
        prop_assert_eq!(props.file_size, bytes.len() as u64);
        prop_assert_eq!(props.entries, model.len() as u64);
        let cache = with_cache.then(|| BlockCache::new(64 << 10));
        let table = open_table(bytes, "model.sst", cache).unwrap();
        prop_assert_eq!(table.properties(), &props);
        let tombstones = model
            .iter()
            .filter(|(k, _)| key::parse_internal_key(k).unwrap().kind == ValueKind::Tombstone)
            .count() as u64;
        prop_assert_eq!(props.tombstones, tombstones);
        if let (Some(first), Some(last)) = (model.first(), model.last()) {
            prop_assert_eq!(&props.smallest, &first.0);
            prop_assert_eq!(&props.largest, &last.0);
        }

        // Every present entry is found at its own sequence and at the
        // newest snapshot; random probes match the model.
        for (k, v) in &model {
            let p = key::parse_internal_key(k).unwrap();
            prop_assert!(table.may_contain(p.user_key));
            let got = table.get(p.user_key, &make_lookup_key(p.user_key, p.sequence)).unwrap();
            prop_assert_eq!(got.map(|(kind, s, v)| (kind, s, v.to_vec())), Some((p.kind, p.sequence, v.clone())));
        }
        for (uk, seq) in &probes {
            let lookup = make_lookup_key(uk, *seq);
            let got = table.get(uk, &lookup).unwrap().map(|(kind, s, v)| (kind, s, v.to_vec()));
            prop_assert_eq!(got, expected_get(&model, uk, &lookup));
        }

        // Full scans both ways.
        let mut it = table.iter(with_cache);
        it.seek_to_first().unwrap();
        let mut forward = Vec::new();
        while it.valid() {
            forward.push((it.key().to_vec(), it.value().to_vec()));
            it.next().unwrap();
        }
        prop_assert_eq!(&forward, &model);
        it.seek_to_last().unwrap();
        let mut backward = Vec::new();
        while it.valid() {
            backward.push((it.key().to_vec(), it.value().to_vec()));
            it.prev().unwrap();
        }
        backward.reverse();
        prop_assert_eq!(&backward, &model);

        check_iterator(&table, &model, &ops);
    }
}

#[test]
fn bloom_false_positive_rate_below_two_percent() {
    let entries: Vec<Entry> = (0..10_000)
        .map(|i| {
            (
                make_internal_key(format!("present-{i:06}").as_bytes(), 1, ValueKind::Value),
                Vec::new(),
            )
        })
        .collect();
    let (bytes, props) = build_table(&entries, &TableOptions::default());
    assert!(
        props.filter_bytes > 10_000 * 10 / 8,
        "filter of {} bytes",
        props.filter_bytes
    );
    let table = open_table(bytes, "bloom.sst", None).unwrap();
    assert!((0..10_000).all(|i| table.may_contain(format!("present-{i:06}").as_bytes())));
    let false_positives = (0..10_000)
        .filter(|i| table.may_contain(format!("absent-{i:06}").as_bytes()))
        .count();
    assert!(
        false_positives < 200,
        "{false_positives} false positives in 10000 absent keys"
    );
}

/// `sample_entries(n)` in a table of `block_size` blocks, opened over a
/// 1 MiB cache with `admission`.
fn cached_sample_table(
    n: usize,
    block_size: usize,
    admission: CacheAdmission,
) -> (Vec<Entry>, TableProperties, Arc<Table>, Arc<BlockCache>) {
    let entries = sample_entries(n);
    let options = TableOptions {
        block_size,
        ..TableOptions::default()
    };
    let (bytes, props) = build_table(&entries, &options);
    assert!(props.data_blocks > 10);
    let cache = BlockCache::with_admission(1 << 20, admission);
    let table = open_table(bytes, "cache.sst", Some(cache.clone())).unwrap();
    (entries, props, table, cache)
}

#[test]
fn block_cache_counts_hits_and_misses() {
    let (_, props, table, cache) = cached_sample_table(400, 256, CacheAdmission::Always);
    let uk = b"user0100";
    let lookup = make_lookup_key(uk, u64::MAX >> 8);
    assert!(table.get(uk, &lookup).unwrap().is_some());
    assert_eq!((cache.hits(), cache.misses()), (0, 1));
    let usage = cache.usage();
    assert!(usage > 0 && cache.len() == 1);
    assert!(table.get(uk, &lookup).unwrap().is_some());
    assert_eq!((cache.hits(), cache.misses()), (1, 1));
    assert_eq!(cache.usage(), usage);

    // A scan with fill_cache = false reads through the cache without filling it.
    let mut it = table.iter(false);
    it.seek_to_first().unwrap();
    while it.valid() {
        it.next().unwrap();
    }
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.misses(), 1 + props.data_blocks - 1);
    assert_eq!(cache.hits(), 2);
    assert_eq!(cache.declined(), 0);
}

#[test]
fn second_miss_admission_takes_a_block_on_its_second_read() {
    let (entries, _, table, cache) = cached_sample_table(400, 256, CacheAdmission::SecondMiss);
    let uk = b"user0100";
    let lookup = make_lookup_key(uk, u64::MAX >> 8);
    let first = table.get(uk, &lookup).unwrap();
    assert_eq!((cache.misses(), cache.declined(), cache.len()), (1, 1, 0));
    // The second miss finds the first in the admission window.
    assert_eq!(table.get(uk, &lookup).unwrap(), first);
    assert_eq!((cache.misses(), cache.declined(), cache.len()), (2, 1, 1));
    assert_eq!(table.get(uk, &lookup).unwrap(), first);
    assert_eq!((cache.hits(), cache.misses()), (1, 2));
    assert_eq!(first, expected_get(&entries, uk, &lookup));
    assert!(first.is_some());
}

#[test]
fn a_one_pass_scan_does_not_fill_a_second_miss_cache_and_a_second_pass_does() {
    let (_, props, table, cache) = cached_sample_table(3000, 512, CacheAdmission::default());
    let pass = || {
        let mut it = table.iter(true);
        it.seek_to_first().unwrap();
        while it.valid() {
            it.next().unwrap();
        }
    };
    pass();
    assert_eq!(cache.len(), 0);
    assert_eq!(cache.declined(), props.data_blocks);
    pass();
    // Blocks whose fingerprints share a window slot displace each other,
    // so a few miss their admission; most get in.
    let admitted = cache.len() as u64;
    assert!(
        admitted >= props.data_blocks * 3 / 4 && admitted <= props.data_blocks,
        "{admitted} of {} blocks admitted on their second read",
        props.data_blocks
    );
    // Charged: the blocks and the admission window, within capacity.
    assert!(cache.usage() > props.data_bytes && cache.usage() <= 1 << 20);
}

#[test]
fn block_cache_stays_within_capacity() {
    let entries = sample_entries(3000);
    let options = TableOptions {
        block_size: 512,
        ..TableOptions::default()
    };
    let (bytes, props) = build_table(&entries, &options);
    let capacity = 8 << 10;
    assert!(props.data_bytes > 4 * capacity);
    let cache = BlockCache::with_admission(capacity, CacheAdmission::Always);
    assert_eq!(cache.capacity(), capacity);
    let table = open_table(bytes, "small-cache.sst", Some(cache.clone())).unwrap();
    let mut it = table.iter(true);
    it.seek_to_first().unwrap();
    let mut n = 0;
    while it.valid() {
        assert!(
            cache.usage() <= capacity,
            "usage {} > {capacity}",
            cache.usage()
        );
        n += 1;
        it.next().unwrap();
    }
    assert_eq!(n, entries.len());
    assert!(cache.usage() > 0 && cache.usage() <= capacity);
}

#[test]
fn tables_sharing_a_cache_never_see_each_others_blocks() {
    let a = sample_entries(200);
    let b: Vec<Entry> = a
        .iter()
        .map(|(k, v)| (k.clone(), [v.as_slice(), b"-other"].concat()))
        .collect();
    let options = TableOptions {
        block_size: 256,
        ..TableOptions::default()
    };
    let cache = BlockCache::new(1 << 20);
    let ta = open_table(build_table(&a, &options).0, "a.sst", Some(cache.clone())).unwrap();
    let tb = open_table(build_table(&b, &options).0, "b.sst", Some(cache.clone())).unwrap();
    for (model, table) in [(&a, &ta), (&b, &tb), (&a, &ta)] {
        for (k, v) in model.iter() {
            let uk = key::user_key(k);
            let got = table.get(uk, k).unwrap().unwrap();
            assert_eq!(&got.2[..], &v[..]);
        }
    }
    assert!(cache.hits() > 0);
}

/// Iterate `table` from its start and check it yields exactly `entries`.
fn assert_scans_exactly(table: &Arc<Table>, entries: &[Entry]) {
    let mut it = table.iter(false);
    it.seek_to_first().unwrap();
    for (k, v) in entries {
        assert_eq!((it.key(), it.value()), (&k[..], &v[..]));
        it.next().unwrap();
    }
    assert!(!it.valid());
}

#[test]
fn a_scan_open_can_reuse_the_index_of_the_same_file_only() {
    let options = TableOptions {
        block_size: 256,
        ..TableOptions::default()
    };
    let entries = sample_entries(300);
    let (bytes, _) = build_table(&entries, &options);
    let small = build_table(&sample_entries(20), &options).0;
    let reader = open_table(bytes.clone(), "t.sst", None).unwrap();
    let scan = |file: Vec<u8>| {
        Table::open_for_scan(
            Arc::new(MemFile(file)),
            "scan.sst".into(),
            Some(reader.shared_index()),
        )
        .map(Arc::new)
    };
    let table = scan(bytes).unwrap();
    assert_scans_exactly(&table, &entries);
    // An index whose blocks run past a smaller file is refused.
    let err = scan(small).unwrap_err();
    assert!(err.to_string().contains("past its end"), "{err}");
}

#[test]
fn empty_table_round_trips() {
    let (bytes, props) = build_table(&[], &TableOptions::default());
    assert_eq!((props.entries, props.data_blocks), (0, 0));
    let table = open_table(bytes, "empty.sst", None).unwrap();
    assert!(!table.may_contain(b"k"));
    assert!(
        table
            .get(b"k", &make_lookup_key(b"k", 9))
            .unwrap()
            .is_none()
    );
    let mut it = table.iter(true);
    it.seek_to_first().unwrap();
    assert!(!it.valid());
    it.seek_for_prev(&make_lookup_key(b"k", 9)).unwrap();
    assert!(!it.valid());
}

#[test]
fn builder_rejects_disorder_bad_keys_and_bad_options() {
    let buf = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut b = TableBuilder::new(
        Box::new(MemWritable(buf.clone())),
        &TableOptions::default(),
        "order.sst".to_string(),
    );
    b.add(&make_internal_key(b"b", 5, ValueKind::Value), b"1")
        .unwrap();
    for bad in [
        make_internal_key(b"a", 9, ValueKind::Value),
        make_internal_key(b"b", 5, ValueKind::Value),
        make_internal_key(b"b", 6, ValueKind::Value),
        b"short".to_vec(),
    ] {
        let err = b.add(&bad, b"x").unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
    b.add(&make_internal_key(b"b", 4, ValueKind::Tombstone), b"")
        .unwrap();
    assert_eq!(b.entries(), 2);
    assert!(b.estimated_size() > 0);
    b.finish(0).unwrap();

    let bad_options = TableOptions {
        restart_interval: 0,
        ..TableOptions::default()
    };
    let mut b = TableBuilder::new(
        Box::new(MemWritable(buf)),
        &bad_options,
        "opts.sst".to_string(),
    );
    let err = b
        .add(&make_internal_key(b"a", 1, ValueKind::Value), b"")
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

#[test]
fn table_on_local_files_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("000007.sst");
    let fs = LocalFs::new();
    let entries = sample_entries(500);
    let options = TableOptions {
        compression: Compression::Lz4,
        ..TableOptions::default()
    };
    let mut b = TableBuilder::new(
        fs.create(&path).unwrap(),
        &options,
        path.display().to_string(),
    );
    for (k, v) in &entries {
        b.add(k, v).unwrap();
    }
    let props = b.finish(42).unwrap();
    assert_eq!(props.file_size, fs.file_size(&path).unwrap());
    let table =
        Arc::new(Table::open(fs.open(&path).unwrap(), path.display().to_string(), None).unwrap());
    assert_eq!(table.properties(), &props);
    assert_eq!(props.created_ms, 42);
    assert_scans_exactly(&table, &entries);
}

/// A zstd table keeps its data blocks zstd-compressed (trailer type 2), is
/// smaller than the same table uncompressed, records the writer's level,
/// and answers every lookup as a `BTreeMap` of the newest version of each
/// user key says (and every older version at its own sequence).
#[test]
fn zstd_table_reads_back_every_key() {
    let entries = sample_entries(3000);
    let zstd = TableOptions {
        compression: Compression::Zstd { level: 7 },
        ..TableOptions::default()
    };
    let (bytes, props) = build_table(&entries, &zstd);
    let (plain, _) = build_table(&entries, &TableOptions::default());
    assert!(
        bytes.len() * 4 < plain.len() * 3,
        "zstd {} bytes, uncompressed {}",
        bytes.len(),
        plain.len()
    );
    let handles = data_block_handles(&bytes);
    let kinds: Vec<u8> = handles
        .iter()
        .map(|h| bytes[(h.offset + h.size) as usize])
        .collect();
    assert!(handles.len() > 10, "{} data blocks", handles.len());
    assert!(kinds.iter().all(|&k| k == 2), "trailer types {kinds:?}");

    let table = open_table(bytes, "zstd.sst", None).unwrap();
    assert_eq!(table.properties(), &props);
    assert_eq!(props.compression, Compression::Zstd { level: 7 });
    let mut newest: BTreeMap<Vec<u8>, (ValueKind, u64, Vec<u8>)> = BTreeMap::new();
    for (k, v) in &entries {
        let p = key::parse_internal_key(k).unwrap();
        let got = table
            .get(p.user_key, &make_lookup_key(p.user_key, p.sequence))
            .unwrap()
            .map(|(kind, seq, v)| (kind, seq, v.to_vec()));
        assert_eq!(got, Some((p.kind, p.sequence, v.clone())), "{k:?}");
        // Entries are in internal-key order: the first of a user key is
        // its newest version.
        newest
            .entry(p.user_key.to_vec())
            .or_insert((p.kind, p.sequence, v.clone()));
    }
    for (uk, want) in &newest {
        let got = table
            .get(uk, &make_lookup_key(uk, 1 << 50))
            .unwrap()
            .map(|(kind, seq, v)| (kind, seq, v.to_vec()));
        assert_eq!(got.as_ref(), Some(want), "{uk:?}");
    }
    assert_eq!(
        table
            .get(b"user9999x", &make_lookup_key(b"user9999x", 1 << 50))
            .unwrap()
            .map(|_| ()),
        None
    );
    assert_scans_exactly(&table, &entries);
}

/// A file that accepts `budget` bytes and then fails every append.
struct FailingFile {
    budget: usize,
    len: u64,
}

impl o3_storage::env::WritableFile for FailingFile {
    fn append(&mut self, data: &[u8]) -> o3_storage::Result<()> {
        if data.len() > self.budget {
            return Err(Error::io(
                "failing.sst",
                std::io::Error::other("injected write failure"),
            ));
        }
        self.budget -= data.len();
        self.len += data.len() as u64;
        Ok(())
    }
    fn flush(&mut self) -> o3_storage::Result<()> {
        Ok(())
    }
    fn sync(&mut self) -> o3_storage::Result<()> {
        Ok(())
    }
    fn len(&self) -> u64 {
        self.len
    }
}

#[test]
fn builder_refuses_use_after_a_failed_write() {
    let options = TableOptions {
        block_size: 128,
        ..TableOptions::default()
    };
    let mut b = TableBuilder::new(
        Box::new(FailingFile {
            budget: 300,
            len: 0,
        }),
        &options,
        "failing.sst".to_string(),
    );
    let entries = sample_entries(100);
    let mut failed_at = None;
    for (i, (k, v)) in entries.iter().enumerate() {
        if let Err(e) = b.add(k, v) {
            assert!(matches!(e, Error::Io { .. }), "{e}");
            failed_at = Some(i);
            break;
        }
    }
    let i = failed_at.expect("the write budget must run out");
    let err = b.add(&entries[i + 1].0, &entries[i + 1].1).unwrap_err();
    assert!(err.to_string().contains("earlier write failed"), "{err}");
    assert!(b.finish(0).is_err());
}

#[test]
fn page_aligned_blocks_stay_inside_pages_and_unaligned_ones_straddle() {
    // db_bench-like entries: 16-byte user keys, 100-byte values.
    let entries: Vec<Entry> = (0..20_000u64)
        .map(|i| {
            let k = make_internal_key(format!("{i:016}").as_bytes(), 1, ValueKind::Value);
            (k, vec![b'v'; 100])
        })
        .collect();
    let crossing = |handles: &[BlockHandle]| {
        handles
            .iter()
            .filter(|h| h.offset / 4096 != (h.end_with_trailer().unwrap() - 1) / 4096)
            .count()
    };
    let aligned = TableOptions::default();
    assert!(aligned.page_aligned_blocks && aligned.block_size == 2048);
    let (bytes, props) = build_table(&entries, &aligned);
    let handles = data_block_handles(&bytes);
    assert_eq!(handles.len() as u64, props.data_blocks);
    assert_eq!(crossing(&handles), 0, "no aligned block crosses a page");
    assert!(props.padding_bytes > 0);
    // Padding is small: under 2% of the data.
    assert!(props.padding_bytes * 50 < props.data_bytes, "{props:?}");
    let gaps: u64 = handles
        .windows(2)
        .map(|w| w[1].offset - w[0].end_with_trailer().unwrap())
        .sum();
    assert_eq!(gaps, props.padding_bytes);
    assert_scans_exactly(
        &open_table(bytes.clone(), "aligned.sst", None).unwrap(),
        &entries,
    );
    let table = open_table(bytes, "aligned.sst", None).unwrap();
    for (k, v) in entries.iter().step_by(97) {
        let got = table.get(key::user_key(k), k).unwrap().unwrap();
        assert_eq!(got.2, *v);
    }

    let unaligned = TableOptions {
        page_aligned_blocks: false,
        ..TableOptions::default()
    };
    let (bytes, props) = build_table(&entries, &unaligned);
    let handles = data_block_handles(&bytes);
    assert_eq!(props.padding_bytes, 0);
    assert!(
        crossing(&handles) * 4 > handles.len(),
        "about half of unaligned 2 KiB blocks straddle a page: {} of {}",
        crossing(&handles),
        handles.len()
    );
    // Compressed tables are never padded (their stored size is unknown
    // while a block is built).
    for compression in [Compression::Lz4, Compression::zstd()] {
        let compressed = TableOptions {
            compression,
            ..TableOptions::default()
        };
        assert_eq!(build_table(&entries, &compressed).1.padding_bytes, 0);
    }
}
