//! The log format's claims (`docs/wal_format.md`), tested from outside:
//! records round-trip across block boundaries; a cut-short log yields a prefix
//! of its records and reports a torn tail; any single damaged byte is either
//! an error naming the location and offset or (in the last record) a torn
//! tail — never a record that differs from what was written; stale bytes of
//! another log never validate; arbitrary bytes never panic the reader.

use std::path::Path;

use o3_storage::Error;
use o3_storage::env::{FaultInjectingFs, LocalFs, Storage};
use o3_storage::wal::{BLOCK_SIZE, HEADER_LEN, LogReader, LogWriter, MAX_FRAGMENT_PAYLOAD};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const LOCATION: &str = "test.log";

/// A log written in memory: its bytes and, per record, (payload, start, end).
struct WrittenLog {
    bytes: Vec<u8>,
    records: Vec<(Vec<u8>, u64, u64)>,
}

fn write_log(log_number: u64, payloads: &[Vec<u8>]) -> WrittenLog {
    let fs = FaultInjectingFs::new();
    let path = Path::new("/wal.log");
    let mut writer = LogWriter::new(fs.create(path).unwrap(), log_number);
    let mut records = Vec::new();
    for p in payloads {
        let start = writer.add_record(p).unwrap();
        records.push((p.clone(), start, writer.len()));
    }
    writer.flush().unwrap();
    WrittenLog {
        bytes: fs.read_all(path).unwrap(),
        records,
    }
}

/// Patterned payload so that a record shifted or mixed with another differs.
fn payload(len: usize, tag: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31) ^ tag).collect()
}

/// Read until the end or the first error.
fn read_all(reader: &mut LogReader) -> (Vec<(Vec<u8>, u64)>, Option<Error>) {
    let mut out = Vec::new();
    loop {
        match reader.read_record() {
            Ok(Some(r)) => out.push(r),
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
}

fn error_offset(e: &Error) -> u64 {
    match e {
        Error::Corruption { offset, .. } | Error::ChecksumMismatch { offset, .. } => *offset,
        other => panic!("expected a corruption error, got {other}"),
    }
}

/// Sizes that land exactly on block boundaries, leave exactly a header's room,
/// or leave less than a header (forcing zero padding).
fn boundary_sizes() -> Vec<usize> {
    vec![
        MAX_FRAGMENT_PAYLOAD,
        MAX_FRAGMENT_PAYLOAD - HEADER_LEN,
        MAX_FRAGMENT_PAYLOAD - HEADER_LEN + 1,
        MAX_FRAGMENT_PAYLOAD - HEADER_LEN - 1,
        0,
        2 * MAX_FRAGMENT_PAYLOAD,
        2 * MAX_FRAGMENT_PAYLOAD + 1,
        BLOCK_SIZE,
        1,
    ]
}

#[test]
fn random_records_round_trip_across_blocks() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut payloads: Vec<Vec<u8>> = (0..80)
        .map(|i| payload(rng.random_range(0..200 * 1024), i as u8))
        .collect();
    payloads.extend(
        boundary_sizes()
            .into_iter()
            .enumerate()
            .map(|(i, n)| payload(n, 200 + i as u8)),
    );
    payloads.push(payload(3 * 1024 * 1024 + 7, 99));
    let log = write_log(42, &payloads);

    let mut reader = LogReader::from_bytes(log.bytes.clone(), 42, LOCATION.into());
    let (read, err) = read_all(&mut reader);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(read.len(), payloads.len());
    for ((got, offset), (want, start, _)) in read.iter().zip(&log.records) {
        assert_eq!(offset, start);
        assert!(got == want, "record at offset {start} differs");
    }
    assert_eq!(reader.torn_tail(), None);
    assert!(reader.read_record().unwrap().is_none());
}

#[test]
fn every_block_position_round_trips() {
    // Sizes sweeping across a block's payload room, so fragments start and
    // end at every position near the block boundaries.
    let mut payloads = Vec::new();
    for room in (BLOCK_SIZE - 40)..BLOCK_SIZE {
        payloads.push(payload(room - HEADER_LEN, room as u8));
        payloads.push(payload(40, 1));
    }
    let log = write_log(5, &payloads);
    let mut reader = LogReader::from_bytes(log.bytes, 5, LOCATION.into());
    let (read, err) = read_all(&mut reader);
    assert!(err.is_none(), "{err:?}");
    let got: Vec<_> = read.into_iter().map(|(p, _)| p).collect();
    assert!(got == payloads);
    assert_eq!(reader.torn_tail(), None);
}

#[test]
fn round_trip_through_the_local_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("000007.log");
    let payloads: Vec<Vec<u8>> = boundary_sizes()
        .into_iter()
        .enumerate()
        .map(|(i, n)| payload(n, i as u8))
        .collect();
    let fs = LocalFs::new();
    let mut writer = LogWriter::new(fs.create(&path).unwrap(), 7);
    for p in &payloads {
        writer.add_record(p).unwrap();
    }
    writer.sync().unwrap();
    drop(writer);
    let mut reader = LogReader::new(fs.open(&path).unwrap(), 7, path.display().to_string());
    let (read, err) = read_all(&mut reader);
    assert!(err.is_none(), "{err:?}");
    assert!(read.into_iter().map(|(p, _)| p).eq(payloads));
}

/// A small log with padding, a record spanning a block boundary and empty records.
fn small_spanning_log() -> WrittenLog {
    let payloads = vec![
        payload(0, 1),
        // Leaves 7 bytes of the first block: zero padding.
        payload(BLOCK_SIZE - 2 * HEADER_LEN - 7, 2),
        payload(100, 3),
        // Runs from the second block into the third.
        payload(BLOCK_SIZE - 100, 4),
        payload(3, 5),
        payload(0, 6),
    ];
    write_log(9, &payloads)
}

#[test]
fn every_truncation_point_gives_a_prefix_and_a_torn_tail() {
    let log = small_spanning_log();
    for cut in 0..=log.bytes.len() as u64 {
        let mut reader =
            LogReader::from_bytes(log.bytes[..cut as usize].to_vec(), 9, LOCATION.into());
        let (read, err) = read_all(&mut reader);
        assert!(err.is_none(), "cut at {cut}: {err:?}");
        let complete = log.records.iter().filter(|r| r.2 <= cut).count();
        assert_eq!(read.len(), complete, "cut at {cut}");
        for ((got, offset), (want, start, _)) in read.iter().zip(&log.records) {
            assert_eq!((got, offset), (want, start), "cut at {cut}");
        }
        // Clean exactly when the cut falls between two records (padding
        // included); otherwise the tail starts at the first dropped record.
        let next_start = log.records.get(complete).map(|r| r.1);
        match (reader.torn_tail(), next_start) {
            (None, None) => {}
            (None, Some(start)) => assert!(cut <= start, "cut at {cut} not reported torn"),
            (Some((at, reason)), Some(start)) => {
                assert!(cut > start, "cut at {cut} reported torn: {reason}");
                assert_eq!(at, start, "cut at {cut}: {reason}");
            }
            (Some(t), None) => panic!("cut at {cut} after the last record: {t:?}"),
        }
    }
}

#[test]
fn every_flipped_byte_is_detected_and_never_yields_wrong_data() {
    let log = small_spanning_log();
    let last_start = log.records.last().unwrap().1;
    let mut rng = StdRng::seed_from_u64(7);
    let mut errors = 0;
    for i in 0..log.bytes.len() {
        let mut bytes = log.bytes.clone();
        bytes[i] ^= rng.random_range(1..=255u8);
        let mut reader = LogReader::from_bytes(bytes, 9, LOCATION.into());
        let (read, err) = read_all(&mut reader);
        for (got, offset) in &read {
            let want = log.records.iter().find(|r| r.1 == *offset).unwrap();
            assert!(*got == want.0, "flip at {i}: record at {offset} differs");
        }
        assert!(read.len() < log.records.len(), "flip at {i} went unnoticed");
        assert!(
            read.iter()
                .map(|r| r.1)
                .eq(log.records.iter().map(|r| r.1).take(read.len()))
        );
        // The record (or padding after it) holding byte i.
        let holder = log.records.iter().rev().find(|r| r.1 <= i as u64).unwrap();
        match err {
            Some(e) => {
                errors += 1;
                assert!(e.is_corruption(), "flip at {i}: {e}");
                assert!(e.to_string().contains(LOCATION), "flip at {i}: {e}");
                let at = error_offset(&e);
                assert!(
                    holder.1 <= at && at <= i as u64,
                    "flip at {i}: error at {at}"
                );
            }
            None => {
                let (at, reason) = reader.torn_tail().unwrap();
                assert!(
                    i as u64 >= last_start,
                    "flip at {i} taken as torn tail: {reason}"
                );
                assert_eq!(at, last_start);
                assert_eq!(read.len(), log.records.len() - 1);
            }
        }
    }
    assert!(errors > log.bytes.len() / 2);
}

#[test]
fn mid_log_checksum_damage_names_the_fragment() {
    let log = write_log(3, &[payload(10, 1), payload(10, 2), payload(10, 3)]);
    let second = log.records[1].1 as usize;
    let mut bytes = log.bytes.clone();
    bytes[second + HEADER_LEN + 4] ^= 0x10;
    let mut reader = LogReader::from_bytes(bytes, 3, "/db/000003.log".into());
    assert_eq!(reader.read_record().unwrap().unwrap().1, 0);
    match reader.read_record() {
        Err(Error::ChecksumMismatch {
            location, offset, ..
        }) => {
            assert_eq!(location, "/db/000003.log");
            assert_eq!(offset, second as u64);
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    // The reader stays failed.
    assert!(reader.read_record().unwrap_err().is_corruption());
}

#[test]
fn damaged_padding_before_valid_data_is_corruption() {
    let log = small_spanning_log();
    let padding = log.records[1].2 as usize;
    assert_eq!(BLOCK_SIZE - padding, 7);
    let mut bytes = log.bytes.clone();
    bytes[padding + 3] = 1;
    let mut reader = LogReader::from_bytes(bytes, 9, LOCATION.into());
    let (read, err) = read_all(&mut reader);
    assert_eq!(read.len(), 2);
    let err = err.unwrap();
    assert!(matches!(err, Error::Corruption { offset, .. } if offset == padding as u64));
    assert!(err.to_string().contains("padding"), "{err}");
}

#[test]
fn zero_filled_tail_is_not_corruption() {
    let log = small_spanning_log();
    let mut bytes = log.bytes.clone();
    bytes.resize(bytes.len() + 3 * BLOCK_SIZE, 0);
    let mut reader = LogReader::from_bytes(bytes, 9, LOCATION.into());
    let (read, err) = read_all(&mut reader);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(read.len(), log.records.len());
    let (at, reason) = reader.torn_tail().unwrap();
    assert_eq!(at, log.bytes.len() as u64);
    assert!(reason.contains("zero"), "{reason}");
}

#[test]
fn a_log_of_another_number_shows_nothing() {
    let log = small_spanning_log();
    let mut reader = LogReader::from_bytes(log.bytes.clone(), 10, LOCATION.into());
    assert!(reader.read_record().unwrap().is_none());
    let (at, reason) = reader.torn_tail().unwrap();
    assert_eq!(at, 0);
    assert!(reason.contains("log 9"), "{reason}");
}

#[test]
fn stale_bytes_after_a_reused_prefix_end_the_log() {
    // A file of log 4 whose beginning was overwritten by log 5: the rest is
    // stale and must end log 5 cleanly, never validate as part of it.
    let old = write_log(4, &(0..40).map(|i| payload(3000, i)).collect::<Vec<_>>());
    let new = write_log(
        5,
        &(0..3).map(|i| payload(2000, 100 + i)).collect::<Vec<_>>(),
    );
    let mut bytes = old.bytes.clone();
    bytes[..new.bytes.len()].copy_from_slice(&new.bytes);
    let mut reader = LogReader::from_bytes(bytes, 5, LOCATION.into());
    let (read, err) = read_all(&mut reader);
    assert!(err.is_none(), "{err:?}");
    assert!(
        read.iter()
            .map(|r| &r.0)
            .eq(new.records.iter().map(|r| &r.0))
    );
    assert_eq!(reader.torn_tail().unwrap().0, new.bytes.len() as u64);
}

#[test]
fn nonsensical_fragment_sequences_are_corruption() {
    // One record filling block 0 with a FIRST fragment and ending in block 1.
    let log = write_log(2, &[payload(MAX_FRAGMENT_PAYLOAD + 10, 1)]);
    let (block0, block1) = log.bytes.split_at(BLOCK_SIZE);

    // A LAST fragment with no FIRST before it.
    let mut reader = LogReader::from_bytes(block1.to_vec(), 2, LOCATION.into());
    let err = reader.read_record().unwrap_err();
    assert!(matches!(err, Error::Corruption { offset: 0, .. }), "{err}");

    // FIRST twice.
    let doubled = [block0, block0, block1].concat();
    let mut reader = LogReader::from_bytes(doubled, 2, LOCATION.into());
    let err = reader.read_record().unwrap_err();
    assert!(
        matches!(err, Error::Corruption { offset, .. } if offset == BLOCK_SIZE as u64),
        "{err}"
    );
}

fn drain(reader: &mut LogReader) {
    let mut calls = 0;
    while let Ok(Some(_)) = reader.read_record() {
        calls += 1;
        assert!(calls <= 1 << 20, "reader does not terminate");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..3 * BLOCK_SIZE),
        log_number in 0u64..4,
    ) {
        let mut reader = LogReader::from_bytes(bytes, log_number, LOCATION.into());
        drain(&mut reader);
    }

    #[test]
    fn damaged_logs_only_return_written_records(
        sizes in prop::collection::vec(0usize..40_000, 1..6),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let payloads: Vec<Vec<u8>> =
            sizes.iter().enumerate().map(|(i, &n)| payload(n, i as u8)).collect();
        let log = write_log(11, &payloads);
        let mut bytes = log.bytes.clone();
        for (at, value) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *value;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        let mut reader = LogReader::from_bytes(bytes, 11, LOCATION.into());
        let (read, _) = read_all(&mut reader);
        for (got, offset) in &read {
            let want = log.records.iter().find(|r| r.1 == *offset);
            prop_assert!(want.is_some_and(|w| w.0 == *got), "wrong record at {}", offset);
        }
    }
}
