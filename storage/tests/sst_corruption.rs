//! Damaged tables: every flipped byte and every truncation is either reported
//! as corruption naming the table and an offset, or (never, in this format,
//! which has no unchecked bytes) harmless — a wrong value is never returned.
//! Decoders fed arbitrary bytes, including bytes that pass the checksums,
//! never panic.

mod sst_support;

use std::sync::Arc;

use bytes::Bytes;
use o3_storage::coding::{get_varint64, put_varint64};
use o3_storage::error::Error;
use o3_storage::iterator::InternalIterator;
use o3_storage::key::{self, ValueKind, make_internal_key, make_lookup_key};
use o3_storage::options::{Compression, TableOptions};
use o3_storage::sst::{Block, BlockHandle, FOOTER_LEN, Footer, Table, read_block};
use proptest::prelude::*;
use sst_support::{Entry, MemFile, build_table, data_block_handles, open_table, sample_entries};

const LOCATION: &str = "damaged/000042.sst";

/// The error must be a corruption report naming the table.
fn assert_reported(err: &Error, what: &str) {
    assert!(
        matches!(
            err,
            Error::Corruption { .. } | Error::ChecksumMismatch { .. }
        ),
        "{what}: unexpected error kind: {err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(LOCATION) && text.contains("offset"),
        "{what}: {text}"
    );
}

/// Read everything the table offers; every answer must be correct or an error.
fn check_damaged(bytes: Vec<u8>, model: &[Entry], what: &str) {
    let table = match open_table(bytes, LOCATION, None) {
        Ok(t) => t,
        Err(e) => return assert_reported(&e, what),
    };
    for (k, v) in model {
        let uk = key::user_key(k);
        match table.get(uk, k) {
            Ok(Some((_, seq, got))) => {
                assert_eq!(seq, key::sequence(k), "{what}: wrong entry for {k:?}");
                assert_eq!(&got[..], &v[..], "{what}: wrong value for {k:?}");
            }
            Ok(None) => panic!("{what}: entry {k:?} vanished"),
            Err(e) => assert_reported(&e, what),
        }
    }
    let mut it = table.iter(false);
    let mut scanned = Vec::new();
    let mut step = it.seek_to_first();
    while step.is_ok() && it.valid() {
        scanned.push((it.key().to_vec(), it.value().to_vec()));
        step = it.next();
    }
    match step {
        Ok(()) => assert_eq!(scanned, model, "{what}: scan differs"),
        Err(e) => {
            assert_reported(&e, what);
            assert!(!it.valid(), "{what}: iterator still valid after an error");
            assert_eq!(
                &scanned[..],
                &model[..scanned.len()],
                "{what}: scan prefix differs"
            );
        }
    }
}

/// The undamaged table reads back every entry without any error: the
/// damaged cases above accept errors, so this is what shows that a codec's
/// output is read correctly at all.
fn check_intact(bytes: Vec<u8>, model: &[Entry], what: &str) {
    let table = open_table(bytes, LOCATION, None).unwrap_or_else(|e| panic!("{what}: {e}"));
    for (k, v) in model {
        let got = table.get(key::user_key(k), k);
        let (_, seq, value) = got
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .unwrap_or_else(|| panic!("{what}: entry {k:?} vanished"));
        assert_eq!((seq, &value[..]), (key::sequence(k), &v[..]), "{what}");
    }
    let mut it = table.iter(false);
    let mut scanned = Vec::new();
    it.seek_to_first().unwrap();
    while it.valid() {
        scanned.push((it.key().to_vec(), it.value().to_vec()));
        it.next().unwrap();
    }
    assert_eq!(scanned, model, "{what}: scan differs");
}

fn small_table(compression: Compression) -> (Vec<u8>, Vec<Entry>) {
    let model = sample_entries(60);
    let options = TableOptions {
        block_size: 256,
        restart_interval: 4,
        compression,
        ..TableOptions::default()
    };
    let (bytes, props) = build_table(&model, &options);
    assert!(props.data_blocks >= 4, "want several data blocks");
    (bytes, model)
}

#[test]
fn every_flipped_byte_is_reported_or_harmless() {
    for compression in [Compression::None, Compression::Lz4, Compression::zstd()] {
        let (bytes, model) = small_table(compression);
        check_intact(bytes.clone(), &model, &format!("{compression}: undamaged"));
        for i in 0..bytes.len() {
            for mask in [0x01u8, 0x80] {
                let mut damaged = bytes.clone();
                damaged[i] ^= mask;
                check_damaged(
                    damaged,
                    &model,
                    &format!("{compression:?}: byte {i} ^ {mask:#x}"),
                );
            }
        }
    }
}

#[test]
fn every_truncation_is_reported() {
    let (bytes, model) = small_table(Compression::None);
    for len in 0..bytes.len() {
        let err = open_table(bytes[..len].to_vec(), LOCATION, None).unwrap_err();
        assert_reported(&err, &format!("truncated to {len}"));
    }
    check_damaged(bytes, &model, "whole");
}

#[test]
fn checksum_error_names_the_block_offset() {
    let (bytes, _) = small_table(Compression::None);
    // Byte 10 lies in the first data block, at file offset 0.
    let mut damaged = bytes;
    damaged[10] ^= 0x40;
    let table = open_table(damaged, LOCATION, None).unwrap();
    let uk = b"user0000";
    let err = table.get(uk, &make_lookup_key(uk, 1 << 40)).unwrap_err();
    assert!(
        matches!(err, Error::ChecksumMismatch { offset: 0, .. }),
        "{err}"
    );
}

/// `table` with the data block at `h` replaced by `contents` (of the same
/// length) stored as `kind`, under a checksum that matches.
fn with_rewritten_block(table: &[u8], h: BlockHandle, contents: &[u8], kind: u8) -> Vec<u8> {
    assert_eq!(contents.len() as u64, h.size);
    let mut out = table.to_vec();
    let start = h.offset as usize;
    let end = start + contents.len();
    out[start..end].copy_from_slice(contents);
    out[end] = kind;
    let crc = crc32c::crc32c_append(crc32c::crc32c(contents), &[kind]);
    out[end + 1..end + 5].copy_from_slice(&crc.to_le_bytes());
    out
}

/// A zstd data block damaged behind a matching checksum — the frame's magic
/// number wiped, or the declared length off by one — is reported as
/// corruption at that block's offset by a scan, and lookups never return a
/// wrong value.
#[test]
fn damaged_zstd_block_behind_a_valid_checksum_is_reported() {
    let (bytes, model) = small_table(Compression::zstd());
    let h = data_block_handles(&bytes)[1];
    let kind = bytes[(h.offset + h.size) as usize];
    assert_eq!(
        kind,
        Compression::zstd().as_byte(),
        "block 1 is stored as zstd"
    );
    let contents = &bytes[h.offset as usize..(h.offset + h.size) as usize];
    let (declared, n) = get_varint64(contents).unwrap();
    let mut wiped = contents.to_vec();
    wiped[n..n + 4].fill(0);
    let mut longer = Vec::new();
    put_varint64(&mut longer, declared + 1);
    assert_eq!(
        longer.len(),
        n,
        "the longer length must keep the varint's size"
    );
    longer.extend_from_slice(&contents[n..]);
    for (what, damaged) in [("magic wiped", wiped), ("declared + 1", longer)] {
        let damaged = with_rewritten_block(&bytes, h, &damaged, kind);
        let table = open_table(damaged.clone(), LOCATION, None).unwrap();
        let mut it = table.iter(false);
        let mut step = it.seek_to_first();
        let mut steps = 0;
        while step.is_ok() && it.valid() && steps < 10_000 {
            step = it.next();
            steps += 1;
        }
        let err = step.expect_err(what);
        assert!(
            matches!(&err, Error::Corruption { offset, reason, .. }
                if *offset == h.offset && reason.contains("zstd")),
            "{what}: {err}"
        );
        assert_reported(&err, what);
        check_damaged(damaged, &model, what);
    }
}

/// Re-frame `contents` as a block with a valid trailer.
fn framed(contents: &[u8]) -> Vec<u8> {
    let mut out = contents.to_vec();
    out.push(Compression::None.as_byte());
    let crc = crc32c::crc32c_append(crc32c::crc32c(contents), &[Compression::None.as_byte()]);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Replace the index block (`which = 0`) or meta-index block (`which = 1`)
/// of `table` by `contents` with a valid checksum: the new block goes just
/// before a rewritten footer.
fn with_replaced_block(table: &[u8], which: u8, contents: &[u8]) -> Vec<u8> {
    let body_end = table.len() - FOOTER_LEN;
    let old = Footer::decode(&table[body_end..], table.len() as u64, "t").unwrap();
    let mut out = table[..body_end].to_vec();
    let handle = BlockHandle::new(out.len() as u64, contents.len() as u64);
    out.extend_from_slice(&framed(contents));
    let footer = if which == 0 {
        Footer {
            index: handle,
            ..old
        }
    } else {
        Footer {
            meta_index: handle,
            ..old
        }
    };
    out.extend_from_slice(&footer.encode());
    out
}

/// Open, look up and scan without panicking; results are not checked.
fn exercise(bytes: Vec<u8>) {
    let Ok(table) = Table::open(Arc::new(MemFile(bytes)), LOCATION.to_string(), None) else {
        return;
    };
    let table = Arc::new(table);
    for uk in [&b"user0003"[..], b"", b"zzz"] {
        let _ = table.get(uk, &make_lookup_key(uk, 5));
    }
    let mut it = table.iter(true);
    let mut steps = 0;
    let mut r = it.seek_to_first();
    while r.is_ok() && it.valid() && steps < 10_000 {
        r = it.next();
        steps += 1;
    }
    let mut r = it.seek_to_last();
    while r.is_ok() && it.valid() && steps < 20_000 {
        r = it.prev();
        steps += 1;
    }
    assert!(steps < 20_000, "table iterator did not terminate");
    let _ = it.seek_for_prev(&make_internal_key(b"user0010", 3, ValueKind::Value));
}

/// Drive a block iterator through every operation.
fn exercise_block(bytes: Vec<u8>, target: &[u8]) {
    // Shared blocks (cache, iterators) and borrowed ones (point lookups
    // searching a block in place) decode alike.
    exercise_block_over(bytes.as_slice(), target);
    exercise_block_over(Bytes::from(bytes), target);
}

fn exercise_block_over<D: AsRef<[u8]> + Clone + Send>(data: D, target: &[u8]) {
    let Ok(block) = Block::new(data, LOCATION, 7) else {
        return;
    };
    let mut it = block.iter(LOCATION.into(), 7);
    let mut r = it.seek_to_first();
    let mut steps = 0;
    while r.is_ok() && it.valid() && steps < 10_000 {
        let _ = (it.key(), it.value());
        r = it.next();
        steps += 1;
    }
    let mut r = it.seek_to_last();
    while r.is_ok() && it.valid() && steps < 20_000 {
        r = it.prev();
        steps += 1;
    }
    assert!(steps < 20_000, "block iterator did not terminate");
    if it.seek(target).is_err() {
        assert!(!it.valid());
    }
}

#[test]
fn flipped_bytes_behind_valid_checksums_never_panic() {
    let (bytes, _) = small_table(Compression::None);
    let body_end = bytes.len() - FOOTER_LEN;
    let footer = Footer::decode(&bytes[body_end..], bytes.len() as u64, "t").unwrap();
    for (which, h) in [(0u8, footer.index), (1, footer.meta_index)] {
        let contents = &bytes[h.offset as usize..(h.offset + h.size) as usize];
        for i in 0..contents.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut c = contents.to_vec();
                c[i] ^= mask;
                exercise(with_replaced_block(&bytes, which, &c));
            }
        }
    }
    // Data blocks: flip each byte of each data block's contents and decode
    // the result as a block, as a reader would after a matching checksum.
    let file = MemFile(bytes.clone());
    let index = read_block(&file, footer.index, body_end as u64, "t").unwrap();
    let mut index = Block::new(index, "t", 0).unwrap().iter("t".into(), 0);
    index.seek_to_first().unwrap();
    let target = make_lookup_key(b"user0002", 99_999);
    while index.valid() {
        let h = BlockHandle::decode(index.value()).unwrap();
        let contents = &bytes[h.offset as usize..(h.offset + h.size) as usize];
        for i in 0..contents.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut c = contents.to_vec();
                c[i] ^= mask;
                exercise_block(c, &target);
            }
        }
        index.next().unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_the_block_decoder(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        target in prop::collection::vec(any::<u8>(), 0..20),
    ) {
        exercise_block(bytes, &target);
    }

    #[test]
    fn arbitrary_bytes_never_panic_table_open(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        exercise(bytes);
    }

    #[test]
    fn arbitrary_checksummed_index_or_meta_index_never_panics(
        which in 0u8..2,
        contents in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let (bytes, _) = small_table(Compression::Lz4);
        exercise(with_replaced_block(&bytes, which, &contents));
    }
}
