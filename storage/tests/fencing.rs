//! Fencing, storage half: the database id and incarnation recorded in the
//! manifest, durable file-number reservations (across crashes and failed
//! manifest writes), and job tokens in the job encoding.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use o3_storage::env::{FaultInjectingFs, FaultPlan, Storage, write_file_atomically};
use o3_storage::filename::{current_path, manifest_path};
use o3_storage::job::{FlushJob, JobError, JobResult, JobStats, JobToken};
use o3_storage::options::TableOptions;
use o3_storage::version::{DbId, VersionEdit, VersionSet};
use o3_storage::wal::{LogReader, LogWriter};
use proptest::prelude::*;

const LEVELS: usize = 4;

fn dir() -> &'static Path {
    Path::new("/db")
}

fn new_fs() -> (FaultInjectingFs, Arc<dyn Storage>) {
    let fs = FaultInjectingFs::new();
    let storage: Arc<dyn Storage> = Arc::new(fs.clone());
    storage.create_dir_all(dir()).unwrap();
    (fs, storage)
}

fn create(storage: &Arc<dyn Storage>) -> VersionSet {
    VersionSet::create(storage.clone(), dir(), LEVELS, Vec::new()).unwrap()
}

fn recover(storage: &Arc<dyn Storage>) -> VersionSet {
    VersionSet::recover(storage.clone(), dir(), LEVELS)
        .unwrap()
        .0
}

/// The edits of the live manifest, in order.
fn manifest_edits(storage: &Arc<dyn Storage>, vs: &VersionSet) -> Vec<VersionEdit> {
    let n = vs.manifest_number();
    let path = manifest_path(dir(), n);
    let location = path.display().to_string();
    let mut reader = LogReader::new(storage.open(&path).unwrap(), n, location.clone());
    let mut edits = Vec::new();
    while let Some((record, offset)) = reader.read_record().unwrap() {
        edits.push(VersionEdit::decode(&record, &location, offset).unwrap());
    }
    edits
}

/// Write a manifest holding `edits` as manifest 1 and point `CURRENT` at it.
fn write_manifest(storage: &Arc<dyn Storage>, edits: &[VersionEdit]) {
    let mut w = LogWriter::new(storage.create(&manifest_path(dir(), 1)).unwrap(), 1);
    for e in edits {
        w.add_record(&e.encode()).unwrap();
    }
    w.sync().unwrap();
    storage.sync_dir(dir()).unwrap();
    write_file_atomically(storage.as_ref(), &current_path(dir()), b"MANIFEST-000001\n").unwrap();
}

/// The snapshot a database written before ids existed starts with.
fn snapshot_without_id() -> VersionEdit {
    VersionEdit {
        shard_splits: Some(Vec::new()),
        log_number: Some(0),
        next_file_number: Some(2),
        last_sequence: Some(0),
        shard_flushed: vec![(0, 0)],
        ..VersionEdit::default()
    }
}

#[test]
fn create_is_incarnation_1_and_every_recovery_bumps_it_keeping_the_id() {
    let (_fs, storage) = new_fs();
    let vs = create(&storage);
    assert_eq!(vs.incarnation(), 1);
    let id = vs.db_id();
    drop(vs);
    for expected in 2..=4 {
        let vs = recover(&storage);
        assert_eq!(vs.incarnation(), expected);
        assert_eq!(vs.db_id(), id);
    }
}

/// The bump is durable when `recover` returns: a crash right after it (no
/// other edit) does not hand the same incarnation out twice.
#[test]
fn the_incarnation_bump_survives_a_crash_right_after_recovery() {
    let (fs, storage) = new_fs();
    drop(create(&storage));
    let vs = recover(&storage);
    assert_eq!(vs.incarnation(), 2);
    drop(vs);
    fs.crash();
    assert_eq!(recover(&storage).incarnation(), 3);
}

#[test]
fn two_databases_get_different_ids() {
    let (_fs, a) = new_fs();
    let (_fs, b) = new_fs();
    assert_ne!(create(&a).db_id(), create(&b).db_id());
}

#[test]
fn a_manifest_without_an_id_recovers_with_a_fresh_id_at_incarnation_1() {
    let (_fs, storage) = new_fs();
    write_manifest(&storage, &[snapshot_without_id()]);
    let vs = recover(&storage);
    assert_eq!(vs.incarnation(), 1);
    let id = vs.db_id();
    drop(vs);
    // The fresh id is recorded: it is kept from then on.
    let vs = recover(&storage);
    assert_eq!((vs.db_id(), vs.incarnation()), (id, 2));
}

#[test]
fn a_second_id_record_is_corruption_naming_the_manifest_and_offset() {
    let (_fs, storage) = new_fs();
    let first = VersionEdit {
        db_id: Some(DbId::from_bytes([1; DbId::LEN])),
        incarnation: Some(1),
        ..snapshot_without_id()
    };
    let second = VersionEdit {
        db_id: Some(DbId::from_bytes([2; DbId::LEN])),
        ..VersionEdit::default()
    };
    // The second record starts where a manifest of the first alone ends.
    write_manifest(&storage, std::slice::from_ref(&first));
    let offset = storage.file_size(&manifest_path(dir(), 1)).unwrap();
    write_manifest(&storage, &[first, second]);
    let err = VersionSet::recover(storage.clone(), dir(), LEVELS).unwrap_err();
    let msg = err.to_string();
    assert!(err.is_corruption(), "{msg}");
    assert!(msg.contains("MANIFEST-000001"), "{msg}");
    assert!(msg.contains(&format!("offset {offset}")), "{msg}");
    assert!(msg.contains("second database id"), "{msg}");
}

#[test]
fn a_checkpoint_edit_is_a_new_database() {
    let (_fs, storage) = new_fs();
    let vs = create(&storage);
    let snap = vs.snapshot_edit();
    let checkpoint = vs.checkpoint_edit();
    assert_eq!(snap.db_id, Some(vs.db_id()));
    assert_ne!(checkpoint.db_id, snap.db_id);
    assert_eq!(checkpoint.incarnation, Some(1));
    assert_eq!(
        VersionEdit {
            db_id: None,
            incarnation: None,
            ..checkpoint
        },
        VersionEdit {
            db_id: None,
            incarnation: None,
            ..snap
        }
    );
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

#[test]
fn numbers_reserved_before_a_crash_are_never_handed_out_again() {
    let (fs, storage) = new_fs();
    let mut vs = create(&storage);
    let first = vs.reserve_file_numbers(10).unwrap();
    // Within the headroom the first reservation bought: no manifest write.
    let second = vs.reserve_file_numbers(20).unwrap();
    assert!(vs.durable_file_number_limit() >= second.end);
    drop(vs);
    fs.crash();
    let mut vs = recover(&storage);
    let n = vs.new_file_number();
    let next = vs.reserve_file_numbers(5).unwrap();
    for earlier in [&first, &second] {
        assert!(n >= earlier.end, "{n} reused from {earlier:?}");
        assert!(next.start >= earlier.end, "{next:?} overlaps {earlier:?}");
    }
}

#[test]
fn many_small_reservations_write_few_manifest_records() {
    let (_fs, storage) = new_fs();
    let mut vs = create(&storage);
    let before = manifest_edits(&storage, &vs).len();
    let mut last_end = 0;
    for i in 0..10_000u64 {
        let r = vs.reserve_file_numbers(1 + i % 3).unwrap();
        assert!(r.start >= last_end);
        last_end = r.end;
    }
    let edits = manifest_edits(&storage, &vs);
    let written = edits.len() - before;
    // About 20,000 numbers: one record per 1,000 reservations is plenty.
    assert!(
        written <= 10,
        "{written} manifest records for 10,000 reservations"
    );
    assert!(written >= 1);
    // Each is a next-file-number record only, and none lowers the mark.
    let mut mark = 0;
    for e in &edits[before..] {
        assert_eq!(
            VersionEdit {
                next_file_number: None,
                ..e.clone()
            },
            VersionEdit::default()
        );
        let n = e.next_file_number.unwrap();
        assert!(n > mark);
        mark = n;
    }
    assert_eq!(mark, vs.durable_file_number_limit());
    assert!(mark >= last_end);
}

#[test]
fn other_edits_never_record_less_than_the_reserved_mark() {
    let (_fs, storage) = new_fs();
    let mut vs = create(&storage);
    let r = vs.reserve_file_numbers(3).unwrap();
    let mark = vs.durable_file_number_limit();
    assert!(mark > r.end, "the mark is raised with headroom");
    vs.log_and_apply(VersionEdit::default()).unwrap();
    let edits = manifest_edits(&storage, &vs);
    assert_eq!(edits.last().unwrap().next_file_number, Some(mark));
    assert_eq!(vs.snapshot_edit().next_file_number, Some(mark));
}

/// One step of a reservation history.
#[derive(Debug, Clone)]
enum Step {
    Reserve(u64),
    NewFileNumber,
    Edit,
    /// Close without a crash and recover.
    Reopen,
    /// Crash (keeping a random part of unsynced data when `Some`) and recover.
    Crash(Option<u64>),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => prop_oneof![1..8u64, 1000..6000u64].prop_map(Step::Reserve),
        2 => Just(Step::NewFileNumber),
        1 => Just(Step::Edit),
        1 => Just(Step::Reopen),
        2 => prop::option::of(any::<u64>()).prop_map(Step::Crash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Model: every range ever reserved. A reservation never overlaps an
    /// earlier one (of any incarnation) and is durable when returned; a
    /// WAL/manifest number never falls in any reservation.
    #[test]
    fn reservations_never_repeat_across_crashes(steps in prop::collection::vec(step(), 1..60)) {
        let (fs, storage) = new_fs();
        let mut vs = create(&storage);
        let mut reserved: Vec<Range<u64>> = Vec::new();
        let mut incarnation = 1;
        for s in steps {
            match s {
                Step::Reserve(count) => {
                    let r = vs.reserve_file_numbers(count).unwrap();
                    prop_assert_eq!(r.end - r.start, count);
                    prop_assert!(vs.durable_file_number_limit() >= r.end);
                    for earlier in &reserved {
                        prop_assert!(!overlaps(&r, earlier), "{:?} overlaps {:?}", r, earlier);
                    }
                    reserved.push(r);
                }
                Step::NewFileNumber => {
                    let n = vs.new_file_number();
                    prop_assert!(!reserved.iter().any(|r| r.contains(&n)), "{} is reserved", n);
                }
                Step::Edit => {
                    vs.log_and_apply(VersionEdit::default()).unwrap();
                }
                Step::Reopen | Step::Crash(_) => {
                    drop(vs);
                    match s {
                        Step::Crash(Some(seed)) => fs.crash_keeping_unsynced(seed),
                        Step::Crash(None) => fs.crash(),
                        _ => {}
                    }
                    vs = recover(&storage);
                    incarnation += 1;
                    prop_assert_eq!(vs.incarnation(), incarnation);
                }
            }
        }
    }
}

/// Reservations while manifest syncs fail at random: a failed reservation
/// returns the error, and after a crash and recovery from what is durable no
/// reservation overlaps one that was returned successfully.
#[test]
fn a_failed_manifest_sync_never_leads_to_a_repeated_reservation() {
    for seed in 0..32u64 {
        let (fs, storage) = new_fs();
        let mut vs = create(&storage);
        let mut reserved: Vec<Range<u64>> = Vec::new();
        let mut failures = 0;
        for round in 0..8u64 {
            fs.set_plan(FaultPlan {
                fail_sync_one_in: Some(3),
                seed: seed * 100 + round,
                ..FaultPlan::default()
            });
            for i in 0..40u64 {
                // Large enough that most reservations raise the mark.
                let count = if i % 2 == 0 { 3000 } else { 7 };
                let limit = vs.durable_file_number_limit();
                match vs.reserve_file_numbers(count) {
                    Ok(r) => {
                        for earlier in &reserved {
                            assert!(
                                !overlaps(&r, earlier),
                                "seed {seed}: {r:?} overlaps {earlier:?}"
                            );
                        }
                        reserved.push(r);
                    }
                    Err(e) => {
                        assert!(matches!(e, o3_storage::Error::Io { .. }), "{e}");
                        assert_eq!(vs.durable_file_number_limit(), limit, "seed {seed}");
                        failures += 1;
                        // The database is poisoned: nothing more is done.
                        break;
                    }
                }
            }
            drop(vs);
            if round % 2 == 0 {
                fs.crash();
            } else {
                fs.crash_keeping_unsynced(seed + round);
            }
            vs = recover(&storage);
        }
        assert!(failures > 0, "seed {seed}: no sync failed");
    }
}

fn token() -> JobToken {
    JobToken {
        db_id: DbId::from_bytes([
            0x1a, 0x2b, 0x3c, 0x4d, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
        ]),
        incarnation: 3,
        job_id: 17,
        attempt: 2,
    }
}

fn flush_job() -> FlushJob {
    FlushJob {
        token: token(),
        dir: "/db".into(),
        shard: 1,
        images: vec![(10, 99)],
        table_options: TableOptions::default(),
        target_file_size: 1 << 20,
        smallest_snapshot: 12,
        file_numbers: 4096..4100,
    }
}

#[test]
fn tokens_round_trip_through_job_and_result_bytes() {
    let job = flush_job();
    assert_eq!(FlushJob::from_bytes(&job.to_bytes().unwrap()).unwrap(), job);
    let result = JobResult {
        token: token(),
        outputs: Vec::new(),
        stats: JobStats::default(),
    };
    assert_eq!(
        JobResult::from_bytes(&result.to_bytes().unwrap()).unwrap(),
        result
    );
}

#[test]
fn a_token_displays_for_a_log_line() {
    assert_eq!(token().to_string(), "db 1a2b3c4d/inc 3/job 17/attempt 2");
}

#[test]
fn a_job_encoded_by_the_previous_version_is_refused_naming_its_tag() {
    let mut bytes = flush_job().to_bytes().unwrap();
    assert_eq!(&bytes[..4], b"O3J4");
    bytes[..4].copy_from_slice(b"O3J3");
    let err = FlushJob::from_bytes(&bytes).unwrap_err();
    let msg = err.to_string();
    assert!(err.is_corruption(), "{msg}");
    assert!(msg.contains("O3J3") && msg.contains("O3J4"), "{msg}");
}

#[test]
fn job_rejections_name_the_token() {
    let t = token();
    let rejections = [
        JobError::StaleToken {
            token: t,
            db_id: t.db_id,
            incarnation: 4,
        },
        JobError::UnknownJob { token: t },
        JobError::SupersededAttempt {
            token: t,
            current_attempt: 3,
        },
        JobError::NotReserved {
            token: t,
            file: 9,
            reserved: 10..20,
        },
        JobError::InputsGone { token: t, file: 5 },
        JobError::LeaseExpired {
            token: t,
            lease_ms: 30_000,
        },
    ];
    for r in rejections {
        let e = o3_storage::Error::from(r.clone());
        assert!(e.to_string().contains(&t.to_string()), "{e}");
        assert!(matches!(e, o3_storage::Error::Job(ref inner) if *inner == r));
    }
}
