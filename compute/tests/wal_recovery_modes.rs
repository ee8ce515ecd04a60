//! WAL damage is never dropped silently (`storage/docs/wal_format.md`, "WAL
//! recovery"). For every byte flip and every truncation inside the last WAL
//! record, of a cleanly closed and of a crashed database, each
//! `WalRecoveryMode` does exactly what it promises:
//! - `TolerateCorruptedTailRecords` drops only a record cut off by a crash;
//!   a checksum failure, or any damage in a cleanly closed segment (even a
//!   truncation at a record boundary), fails the open naming file and offset;
//! - `AbsoluteConsistency` fails on any damage, even a torn tail;
//! - `PointInTime` opens with the writes before the damage.
//!
//! Damage in a segment followed by a later one is corruption too.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{files_of, fs_with_files, key, tiny_options};
use o3_compute::{Db, DbOptions, Error, WalRecoveryMode, WriteOptions};
use o3_storage::env::{FaultInjectingFs, FaultPlan};
use o3_storage::wal::LogReader;

const DIR: &str = "/db";
const MODES: [WalRecoveryMode; 3] = [
    WalRecoveryMode::TolerateCorruptedTailRecords,
    WalRecoveryMode::AbsoluteConsistency,
    WalRecoveryMode::PointInTime,
];

type Files = BTreeMap<String, Vec<u8>>;
type State = BTreeMap<Vec<u8>, Vec<u8>>;

fn opts(fs: &FaultInjectingFs, mode: WalRecoveryMode) -> DbOptions {
    DbOptions {
        max_background_jobs: 1,
        // Large memtables: every write stays in the WAL.
        write_buffer_size: 256 * 1024,
        max_unflushed_bytes: 1 << 20,
        wal_recovery_mode: mode,
        ..tiny_options(Arc::new(fs.clone()), 4)
    }
}

/// How the database that wrote the image ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ending {
    Closed,
    Crashed,
}

/// A database image after `writes` synced single-put batches, and the state
/// after each prefix of them (`prefixes[n]` = after the first n writes).
fn image(writes: usize, value_len: usize, ending: Ending) -> (Files, Vec<State>) {
    let fs = FaultInjectingFs::new();
    let db = Db::open(DIR, opts(&fs, WalRecoveryMode::default())).expect("open");
    let mut prefixes = vec![State::new()];
    for i in 0..writes {
        let v = format!("w{i}-{}", "x".repeat(value_len)).into_bytes();
        let k = key((i * 7) % common::KEY_SPACE);
        let mut b = o3_compute::WriteBatch::new();
        b.put(&k, &v);
        db.write_opt(b, WriteOptions { sync: Some(true) })
            .expect("write");
        let mut next = prefixes.last().expect("prefix").clone();
        next.insert(k, v);
        prefixes.push(next);
    }
    match ending {
        Ending::Closed => db.close().expect("close"),
        Ending::Crashed => {
            // Power lost with nothing unsynced: every write is in the WAL,
            // and the close that the drop attempts writes nothing.
            fs.set_plan(FaultPlan {
                fail_after_mutations: Some(0),
                ..FaultPlan::default()
            });
            drop(db);
            fs.set_plan(FaultPlan::default());
            fs.crash();
        }
    }
    (files_of(&fs, DIR), prefixes)
}

/// The WAL segments holding records, oldest first, with each record's
/// `[start, end)`.
fn wal_records(files: &Files) -> Vec<(String, Vec<(u64, u64)>)> {
    let mut out = Vec::new();
    for (name, bytes) in files.iter().filter(|(n, _)| n.ends_with(".log")) {
        let number: u64 = name.trim_end_matches(".log").parse().expect("WAL number");
        let mut reader = LogReader::from_bytes(bytes.clone(), number, name.clone());
        let mut starts = Vec::new();
        while let Some((_, start)) = reader.read_record().expect("intact WAL") {
            starts.push(start);
        }
        let ends = starts.iter().skip(1).copied().chain([bytes.len() as u64]);
        let records: Vec<(u64, u64)> = starts.iter().copied().zip(ends).collect();
        if !records.is_empty() {
            out.push((name.clone(), records));
        }
    }
    out
}

/// Open the (damaged) image under `mode` and read everything.
fn open_and_read(fs: &FaultInjectingFs, mode: WalRecoveryMode) -> Result<State, Error> {
    let db = Db::open(DIR, opts(fs, mode))?;
    let state: State = db
        .scan::<std::ops::RangeFull>(.., false)?
        .into_iter()
        .collect();
    db.close()?;
    Ok(state)
}

fn assert_names_file(result: Result<State, Error>, file: &str, what: &str) {
    match result {
        Ok(_) => panic!("{what}: opened, but the damage must fail the open"),
        Err(e) => {
            let msg = e.to_string();
            assert!(e.is_corruption(), "{what}: {msg}");
            assert!(
                msg.contains(file) && msg.contains("offset"),
                "{what}: the error does not name {file} and an offset: {msg}"
            );
        }
    }
}

fn assert_state(result: Result<State, Error>, want: &State, what: &str) {
    match result {
        Ok(state) => assert!(state == *want, "{what}: wrong state after open"),
        Err(e) => panic!("{what}: open failed: {e}"),
    }
}

/// Flip and truncate every byte of the last record of the last WAL segment
/// that holds records, checking each mode.
fn check_last_record(ending: Ending) {
    const WRITES: usize = 12;
    let (files, prefixes) = image(WRITES, 20, ending);
    let segments = wal_records(&files);
    let (wal, records) = segments.last().expect("a WAL with records");
    assert_eq!(records.len(), WRITES, "one record per write");
    let (start, end) = *records.last().expect("records");
    let (all, without_last) = (&prefixes[WRITES], &prefixes[WRITES - 1]);
    for mode in MODES {
        let intact = fs_with_files(DIR, &files, |_, _| {});
        assert_state(
            open_and_read(&intact, mode),
            all,
            &format!("{mode}, intact"),
        );
    }
    for i in start..end {
        for mode in MODES {
            let what = format!("{ending:?} database, {mode}, byte {i} flipped");
            let fs = fs_with_files(DIR, &files, |name, bytes| {
                if name == wal {
                    bytes[i as usize] ^= 0x20;
                }
            });
            let result = open_and_read(&fs, mode);
            match mode {
                WalRecoveryMode::PointInTime => assert_state(result, without_last, &what),
                _ => assert_names_file(result, wal, &what),
            }
        }
    }
    for cut in start..end {
        for mode in MODES {
            let what = format!("{ending:?} database, {mode}, cut at {cut}");
            let fs = fs_with_files(DIR, &files, |name, bytes| {
                if name == wal {
                    bytes.truncate(cut as usize);
                }
            });
            let result = open_and_read(&fs, mode);
            let torn = cut > start; // a cut at the record boundary leaves no trace
            match (mode, ending) {
                (WalRecoveryMode::PointInTime, _) => assert_state(result, without_last, &what),
                // A clean close recorded the synced length.
                (_, Ending::Closed) => assert_names_file(result, wal, &what),
                (WalRecoveryMode::AbsoluteConsistency, Ending::Crashed) if torn => {
                    assert_names_file(result, wal, &what)
                }
                (_, Ending::Crashed) => assert_state(result, without_last, &what),
            }
        }
    }
}

#[test]
fn damage_in_the_last_record_of_a_closed_database_is_never_dropped_silently() {
    check_last_record(Ending::Closed);
}

#[test]
fn only_a_torn_tail_of_a_crashed_database_is_dropped_by_default() {
    check_last_record(Ending::Crashed);
}

#[test]
fn damage_in_a_segment_followed_by_a_later_one_is_corruption() {
    // 8 KiB segments and ~600-byte records: several segments, no flush.
    const WRITES: usize = 40;
    let (files, prefixes) = image(WRITES, 600, Ending::Crashed);
    let segments = wal_records(&files);
    assert!(
        segments.len() >= 3,
        "expected several segments: {segments:?}"
    );
    // The records before the damaged one, counting earlier segments.
    let mut before = 0;
    for (wal, records) in &segments[..segments.len() - 1] {
        let (start, end) = *records.last().expect("records");
        for how in ["cut", "flip"] {
            let damage = |b: &mut Vec<u8>| match how {
                "cut" => b.truncate((start + 5) as usize),
                _ => b[(end - 1) as usize] ^= 1,
            };
            for mode in MODES {
                let what = format!("{mode}, {how} in the last record of {wal}");
                let fs = fs_with_files(DIR, &files, |name, bytes| {
                    if name == wal {
                        damage(bytes);
                    }
                });
                let result = open_and_read(&fs, mode);
                match mode {
                    WalRecoveryMode::PointInTime => {
                        assert_state(result, &prefixes[before + records.len() - 1], &what)
                    }
                    _ => assert_names_file(result, wal, &what),
                }
            }
        }
        before += records.len();
    }
}

#[test]
fn a_cleanly_closed_database_reopens_and_closes_again_cleanly() {
    let (files, prefixes) = image(12, 20, Ending::Closed);
    let fs = fs_with_files(DIR, &files, |_, _| {});
    for round in 0..3 {
        let state = open_and_read(&fs, WalRecoveryMode::AbsoluteConsistency)
            .unwrap_or_else(|e| panic!("reopen {round}: {e}"));
        assert_eq!(state, prefixes[12]);
    }
}

#[test]
fn recovery_interrupted_at_any_point_still_opens_and_leaves_one_segment() {
    // Several segments started after the manifest's last edit, the newest
    // one torn: recovery replays them, writes L0 files and starts a new
    // segment. A crash at any step of that must not turn the tolerated torn
    // tail into "damage followed by a later segment", nor let new files take
    // the numbers of segments the manifest never heard of.
    const WRITES: usize = 40;
    let (files, prefixes) = image(WRITES, 600, Ending::Crashed);
    let segments = wal_records(&files);
    let (wal, records) = segments.last().expect("segments");
    let (start, _) = *records.last().expect("records");
    let want = &prefixes[WRITES - 1];
    let torn = |name: &str, bytes: &mut Vec<u8>| {
        if name == wal {
            bytes.truncate(start as usize + 3);
        }
    };
    let clean = fs_with_files(DIR, &files, torn);
    let before = clean.mutations();
    assert_state(
        open_and_read(&clean, WalRecoveryMode::default()),
        want,
        "uninterrupted",
    );
    let total = clean.mutations() - before;
    for k in 0..total {
        let fs = fs_with_files(DIR, &files, torn);
        fs.set_plan(FaultPlan {
            fail_after_mutations: Some(k),
            ..FaultPlan::default()
        });
        let interrupted = Db::open(DIR, opts(&fs, WalRecoveryMode::default()));
        drop(interrupted);
        fs.set_plan(FaultPlan::default());
        fs.crash();
        let what = format!("recovery interrupted after {k} of {total} mutations");
        assert_state(open_and_read(&fs, WalRecoveryMode::default()), want, &what);
        let logs: Vec<String> = files_of(&fs, DIR)
            .into_keys()
            .filter(|n| n.ends_with(".log"))
            .collect();
        assert_eq!(logs.len(), 1, "{what}: WAL segments left: {logs:?}");
    }
}
