//! The tail rules of the log reader (`docs/wal_format.md`, "Tail
//! tolerance"): for every byte flip and every truncation inside the *last*
//! record of a log, each [`TailTolerance`] (with and without a known synced
//! length) either returns the records before it and reports a torn tail, or
//! fails with an error naming the location and an offset inside that record —
//! exactly as the rules say, and never with a wrong record.

use std::path::Path;

use o3_storage::Error;
use o3_storage::env::{FaultInjectingFs, Storage};
use o3_storage::wal::{BLOCK_SIZE, HEADER_LEN, LogReader, LogWriter, TailTolerance};

const LOCATION: &str = "/db/000012.log";
const LOG: u64 = 12;

/// A log's bytes and, per record, `(payload, start, end)`.
struct WrittenLog {
    bytes: Vec<u8>,
    records: Vec<(Vec<u8>, u64, u64)>,
}

fn write_log(payloads: &[Vec<u8>]) -> WrittenLog {
    let fs = FaultInjectingFs::new();
    let path = Path::new("/wal.log");
    let mut writer = LogWriter::new(fs.create(path).expect("create"), LOG);
    let mut records = Vec::new();
    for p in payloads {
        let start = writer.add_record(p).expect("add");
        records.push((p.clone(), start, writer.len()));
    }
    writer.flush().expect("flush");
    WrittenLog {
        bytes: fs.read_all(path).expect("read"),
        records,
    }
}

fn payload(len: usize, tag: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(29) ^ tag).collect()
}

/// Logs whose last record is one small fragment, and one whose last record
/// spans a block boundary (FIRST in one block, LAST in the next).
fn logs() -> Vec<WrittenLog> {
    vec![
        write_log(&[payload(30, 1), payload(500, 2), payload(21, 3)]),
        write_log(&[
            payload(30, 1),
            payload(BLOCK_SIZE - 200, 2),
            payload(900, 3),
        ]),
    ]
}

/// What reading a damaged copy gave: the records read, then the error or
/// the torn tail that ended it.
struct Outcome {
    records: Vec<(Vec<u8>, u64)>,
    error: Option<Error>,
    torn: Option<(u64, String)>,
}

fn read(bytes: Vec<u8>, tail: TailTolerance, synced: Option<u64>) -> Outcome {
    let mut reader = LogReader::from_bytes(bytes, LOG, LOCATION.into());
    reader.set_tail_tolerance(tail);
    if let Some(len) = synced {
        reader.set_synced_length(len);
    }
    let mut records = Vec::new();
    loop {
        match reader.read_record() {
            Ok(Some(r)) => records.push(r),
            Ok(None) => {
                return Outcome {
                    records,
                    error: None,
                    torn: reader.torn_tail(),
                };
            }
            Err(e) => {
                return Outcome {
                    records,
                    error: Some(e),
                    torn: None,
                };
            }
        }
    }
}

fn error_offset(e: &Error) -> u64 {
    match e {
        Error::Corruption { offset, .. } | Error::ChecksumMismatch { offset, .. } => *offset,
        other => panic!("expected a corruption error, got {other}"),
    }
}

/// Every record before the last one, unchanged, and nothing else.
fn assert_prefix(log: &WrittenLog, out: &Outcome, what: &str) {
    let before = &log.records[..log.records.len() - 1];
    assert_eq!(out.records.len(), before.len(), "{what}");
    for ((got, at), (want, start, _)) in out.records.iter().zip(before) {
        assert!(got == want && at == start, "{what}: record at {at} differs");
    }
}

/// An error naming the log and an offset inside the last record.
fn assert_error_in_last_record(log: &WrittenLog, out: &Outcome, what: &str) {
    let e = out
        .error
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: no error (torn tail {:?})", out.torn));
    assert!(e.is_corruption(), "{what}: {e}");
    assert!(e.to_string().contains(LOCATION), "{what}: {e}");
    let (_, start, end) = log.records.last().expect("records");
    let at = error_offset(e);
    assert!(
        *start <= at && at <= *end,
        "{what}: error at {at}, last record is [{start}, {end})"
    );
    assert_prefix(log, out, what);
}

/// Dropped as a torn tail starting at the last record.
fn assert_torn(log: &WrittenLog, out: &Outcome, what: &str) {
    assert!(out.error.is_none(), "{what}: {:?}", out.error);
    let (at, _) = out
        .torn
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: no torn tail"));
    assert_eq!(*at, log.records.last().expect("records").1, "{what}");
    assert_prefix(log, out, what);
}

#[test]
fn truncating_the_last_record_is_torn_unless_no_tail_is_tolerated() {
    for log in logs() {
        let (_, start, end) = log.records.last().cloned().expect("records");
        for cut in start + 1..end {
            let bytes = log.bytes[..cut as usize].to_vec();
            for tail in [TailTolerance::AnyDamage, TailTolerance::InterruptedAppend] {
                let what = format!("cut at {cut} under {tail:?}");
                assert_torn(&log, &read(bytes.clone(), tail, None), &what);
            }
            let what = format!("cut at {cut} under Nothing");
            let out = read(bytes.clone(), TailTolerance::Nothing, None);
            assert_error_in_last_record(&log, &out, &what);
        }
        // Cut exactly before the last record: a clean end, indistinguishable
        // from a log that never had it, unless its synced length is known.
        let bytes = log.bytes[..start as usize].to_vec();
        for tail in [
            TailTolerance::AnyDamage,
            TailTolerance::InterruptedAppend,
            TailTolerance::Nothing,
        ] {
            let out = read(bytes.clone(), tail, None);
            assert!(out.error.is_none() && out.torn.is_none(), "{tail:?}");
            assert_prefix(&log, &out, "cut at the record boundary");
        }
    }
}

#[test]
fn flipping_a_byte_of_the_last_record_is_an_error_unless_any_damage_is_tolerated() {
    for log in logs() {
        let (_, start, end) = log.records.last().cloned().expect("records");
        for i in start..end {
            for flip in [0x01u8, 0x80] {
                let mut bytes = log.bytes.clone();
                bytes[i as usize] ^= flip;
                let lenient = read(bytes.clone(), TailTolerance::AnyDamage, None);
                let what = format!("flip {flip:#x} at {i} under AnyDamage");
                match &lenient.error {
                    None => assert_torn(&log, &lenient, &what),
                    Some(_) => assert_error_in_last_record(&log, &lenient, &what),
                }
                for tail in [TailTolerance::InterruptedAppend, TailTolerance::Nothing] {
                    let what = format!("flip {flip:#x} at {i} under {tail:?}");
                    let out = read(bytes.clone(), tail, None);
                    assert_error_in_last_record(&log, &out, &what);
                }
            }
        }
    }
}

#[test]
fn a_known_synced_length_makes_any_damage_before_it_an_error() {
    for log in logs() {
        let (_, start, end) = log.records.last().cloned().expect("records");
        for tail in [
            TailTolerance::AnyDamage,
            TailTolerance::InterruptedAppend,
            TailTolerance::Nothing,
        ] {
            for cut in start..end {
                let what = format!("cut at {cut} under {tail:?}, synced to {end}");
                let out = read(log.bytes[..cut as usize].to_vec(), tail, Some(end));
                assert_error_in_last_record(&log, &out, &what);
            }
            for i in start..end {
                let mut bytes = log.bytes.clone();
                bytes[i as usize] ^= 0x04;
                let what = format!("flip at {i} under {tail:?}, synced to {end}");
                assert_error_in_last_record(&log, &read(bytes, tail, Some(end)), &what);
            }
            // Intact, the whole log reads with no complaint.
            let out = read(log.bytes.clone(), tail, Some(end));
            assert!(out.error.is_none() && out.torn.is_none(), "{tail:?}");
            assert_eq!(out.records.len(), log.records.len());
        }
    }
}

#[test]
fn damage_after_the_synced_length_follows_the_tail_rules() {
    let log = &logs()[0];
    let (_, start, end) = log.records.last().cloned().expect("records");
    // Synced through the record before the last: the last one may be torn.
    let bytes = log.bytes[..(end - 3) as usize].to_vec();
    assert_torn(
        log,
        &read(bytes.clone(), TailTolerance::InterruptedAppend, Some(start)),
        "torn after the synced length",
    );
    let out = read(bytes, TailTolerance::Nothing, Some(start));
    assert_error_in_last_record(log, &out, "Nothing after the synced length");
    // Zero fill where a header should be is an interrupted append too.
    let mut zeroed = log.bytes[..start as usize].to_vec();
    zeroed.resize(zeroed.len() + 2 * HEADER_LEN, 0);
    let out = read(zeroed, TailTolerance::InterruptedAppend, None);
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.torn.map(|t| t.0), Some(start));
}
