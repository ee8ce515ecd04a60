//! `FaultInjectingFs` keeps exactly what a machine crash keeps (synced data
//! under synced directory entries), injects the faults its plan asks for, and
//! behaves like a file system otherwise.

use std::io::ErrorKind;
use std::path::Path;

use o3_storage::Error;
use o3_storage::env::{FaultInjectingFs, FaultPlan, Storage, WritableFile, write_file_atomically};
use o3_storage::wal::{LogReader, LogWriter};

const DIR: &str = "/db";

fn fs_with_dir() -> FaultInjectingFs {
    let fs = FaultInjectingFs::new();
    fs.create_dir_all(Path::new(DIR)).unwrap();
    fs
}

fn path(name: &str) -> std::path::PathBuf {
    Path::new(DIR).join(name)
}

/// Create `name` with `data`, sync it and its directory entry.
fn durable_file(fs: &FaultInjectingFs, name: &str, data: &[u8]) -> Box<dyn WritableFile> {
    let mut f = fs.create(&path(name)).unwrap();
    f.append(data).unwrap();
    f.sync().unwrap();
    fs.sync_dir(Path::new(DIR)).unwrap();
    f
}

fn assert_injected(err: Error, path_part: &str) {
    match &err {
        Error::Io { path, source } => {
            assert!(source.to_string().contains("injected"), "{err}");
            assert!(path.to_string_lossy().contains(path_part), "{err}");
        }
        other => panic!("expected an injected I/O error, got {other}"),
    }
}

#[test]
fn synced_data_under_a_synced_entry_survives() {
    let fs = fs_with_dir();
    durable_file(&fs, "a", b"hello");
    fs.crash();
    assert_eq!(fs.read_all(&path("a")).unwrap(), b"hello");
}

#[test]
fn unsynced_data_is_lost() {
    let fs = fs_with_dir();
    let mut f = durable_file(&fs, "a", b"kept");
    f.append(b" lost").unwrap();
    f.flush().unwrap();
    // Readers see the latest bytes before the crash.
    assert_eq!(fs.read_all(&path("a")).unwrap(), b"kept lost");
    fs.crash();
    assert_eq!(fs.read_all(&path("a")).unwrap(), b"kept");
}

#[test]
fn a_file_whose_entry_was_not_synced_vanishes() {
    let fs = fs_with_dir();
    let mut f = fs.create(&path("new")).unwrap();
    f.append(b"data").unwrap();
    f.sync().unwrap();
    assert_eq!(fs.list(Path::new(DIR)).unwrap(), vec!["new"]);
    fs.crash();
    assert!(!fs.exists(&path("new")));
    assert!(fs.list(Path::new(DIR)).unwrap().is_empty());
}

#[test]
fn a_rename_not_dir_synced_reverts() {
    let fs = fs_with_dir();
    durable_file(&fs, "old", b"content");
    fs.rename(&path("old"), &path("new")).unwrap();
    assert!(fs.exists(&path("new")) && !fs.exists(&path("old")));
    fs.crash();
    assert!(!fs.exists(&path("new")));
    assert_eq!(fs.read_all(&path("old")).unwrap(), b"content");
}

#[test]
fn a_delete_not_dir_synced_reappears_with_its_synced_content() {
    let fs = fs_with_dir();
    let mut f = durable_file(&fs, "f", b"synced");
    f.append(b" unsynced").unwrap();
    fs.delete(&path("f")).unwrap();
    assert!(!fs.exists(&path("f")));
    fs.crash();
    assert_eq!(fs.read_all(&path("f")).unwrap(), b"synced");
}

#[test]
fn atomic_replacement_survives_and_its_absence_reverts() {
    let fs = fs_with_dir();
    write_file_atomically(&fs, &path("CURRENT"), b"MANIFEST-000001\n").unwrap();
    write_file_atomically(&fs, &path("CURRENT"), b"MANIFEST-000002\n").unwrap();
    fs.crash();
    assert_eq!(fs.read_all(&path("CURRENT")).unwrap(), b"MANIFEST-000002\n");

    // The same steps without the final directory sync lose the rename.
    let mut tmp = fs.create(&path("CURRENT.tmp")).unwrap();
    tmp.append(b"MANIFEST-000003\n").unwrap();
    tmp.sync().unwrap();
    fs.rename(&path("CURRENT.tmp"), &path("CURRENT")).unwrap();
    fs.crash();
    assert_eq!(fs.read_all(&path("CURRENT")).unwrap(), b"MANIFEST-000002\n");
}

#[test]
fn crash_keeping_unsynced_keeps_a_seeded_prefix() {
    let full: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    let mut lengths = std::collections::BTreeSet::new();
    for seed in 0..40 {
        let run = |seed| {
            let fs = fs_with_dir();
            let mut f = durable_file(&fs, "wal", &full[..100]);
            f.append(&full[100..]).unwrap();
            fs.crash_keeping_unsynced(seed);
            fs.read_all(&path("wal")).unwrap()
        };
        let kept = run(seed);
        assert!(kept.len() >= 100, "seed {seed} lost synced data");
        assert_eq!(kept, full[..kept.len()], "seed {seed} kept a non-prefix");
        assert_eq!(run(seed), kept, "seed {seed} is not deterministic");
        lengths.insert(kept.len());
    }
    assert!(lengths.len() > 10, "lengths barely vary: {lengths:?}");
}

/// Seven mutations: create, append, flush, sync, rename, sync_dir, delete.
/// The file operations count as failed when the file could not be created.
fn seven_mutations(fs: &FaultInjectingFs) -> Vec<Result<(), Error>> {
    let mut results = Vec::new();
    match fs.create(&path("a")) {
        Ok(mut f) => {
            results.push(Ok(()));
            results.push(f.append(b"x"));
            results.push(f.flush());
            results.push(f.sync());
        }
        Err(e) => {
            results.push(Err(e));
            results.extend((0..3).map(|_| Err(Error::InvalidArgument("not created".into()))));
        }
    }
    results.push(fs.rename(&path("a"), &path("b")));
    results.push(fs.sync_dir(Path::new(DIR)));
    results.push(fs.delete(&path("b")));
    results
}

#[test]
fn fail_after_mutations_fails_exactly_the_next_one() {
    let baseline = fs_with_dir();
    assert!(seven_mutations(&baseline).iter().all(|r| r.is_ok()));
    assert_eq!(baseline.mutations(), 7);

    for n in 0..7u64 {
        let fs = fs_with_dir();
        fs.set_plan(FaultPlan {
            fail_after_mutations: Some(n),
            ..FaultPlan::default()
        });
        let results = seven_mutations(&fs);
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(()) => assert!((i as u64) < n, "n = {n}: mutation {} succeeded", i + 1),
                Err(e) if i as u64 == n => assert_injected(e, DIR),
                Err(e) => assert!((i as u64) > n, "n = {n}: mutation {} failed: {e}", i + 1),
            }
        }
        assert_eq!(fs.mutations(), n);
        // A crash clears the plan: the file system works again.
        fs.crash();
        fs.create(&path("after")).unwrap();
    }
}

#[test]
fn handles_from_before_a_crash_fail() {
    let fs = fs_with_dir();
    let mut w = durable_file(&fs, "f", b"abc");
    let r = fs.open(&path("f")).unwrap();
    fs.crash();
    let mut buf = [0u8; 3];
    let err = r.read_exact_at(0, &mut buf).unwrap_err();
    assert!(
        err.to_string().contains("before the simulated crash"),
        "{err}"
    );
    assert_injected(err, "f");
    assert_injected(w.append(b"d").unwrap_err(), "f");
    assert_injected(w.sync().unwrap_err(), "f");
    assert_eq!(fs.read_all(&path("f")).unwrap(), b"abc");
}

#[test]
fn random_faults_are_seeded_and_deterministic() {
    let outcomes = |seed| {
        let fs = fs_with_dir();
        let mut f = fs.create(&path("f")).unwrap();
        fs.set_plan(FaultPlan {
            fail_append_one_in: Some(3),
            fail_sync_one_in: Some(4),
            seed,
            ..FaultPlan::default()
        });
        let mut out = Vec::new();
        for _ in 0..40 {
            out.push(f.append(b"x").is_ok());
            out.push(f.sync().is_ok());
        }
        (out, fs.read_all(&path("f")).unwrap().len())
    };
    let (a, len) = outcomes(1);
    assert_eq!(outcomes(1), (a.clone(), len));
    assert!(a.iter().any(|ok| !ok) && a.iter().any(|ok| *ok));
    // A failed append appends nothing.
    assert_eq!(len, a.iter().step_by(2).filter(|ok| **ok).count());
    assert_ne!(outcomes(2).0, a);
}

#[test]
fn read_faults_are_injected() {
    let fs = fs_with_dir();
    durable_file(&fs, "f", b"abc");
    fs.set_plan(FaultPlan {
        fail_read_one_in: Some(1),
        ..FaultPlan::default()
    });
    assert_injected(fs.read_all(&path("f")).unwrap_err(), "f");
    fs.set_plan(FaultPlan::default());
    assert_eq!(fs.read_all(&path("f")).unwrap(), b"abc");
}

#[test]
fn locks_are_exclusive_until_dropped_or_crashed() {
    let fs = fs_with_dir();
    let lock = fs.lock(&path("LOCK")).unwrap();
    assert!(matches!(fs.lock(&path("LOCK")), Err(Error::Locked { .. })));
    // A clone shares the state, so it sees the lock too.
    assert!(matches!(
        fs.clone().lock(&path("LOCK")),
        Err(Error::Locked { .. })
    ));
    drop(lock);
    let stale = fs.lock(&path("LOCK")).unwrap();
    fs.crash();
    let fresh = fs.lock(&path("LOCK")).unwrap();
    // Dropping the guard from before the crash must not release the new one.
    drop(stale);
    assert!(matches!(fs.lock(&path("LOCK")), Err(Error::Locked { .. })));
    drop(fresh);
}

#[test]
fn behaves_like_a_file_system() {
    let fs = fs_with_dir();
    let err = fs.read_all(&path("missing")).unwrap_err();
    assert!(matches!(&err, Error::Io { source, .. } if source.kind() == ErrorKind::NotFound));
    assert!(fs.create(Path::new("/nodir/f")).is_err());
    fs.create_dir_all(&path("sub/deeper")).unwrap();
    for name in ["c", "a", "b"] {
        fs.create(&path(name))
            .unwrap()
            .append(name.as_bytes())
            .unwrap();
    }
    assert_eq!(fs.list(Path::new(DIR)).unwrap(), vec!["a", "b", "c", "sub"]);
    assert_eq!(fs.file_size(&path("b")).unwrap(), 1);
    // Creating an existing name truncates it.
    fs.create(&path("b")).unwrap();
    assert_eq!(fs.file_size(&path("b")).unwrap(), 0);
    // Renaming replaces the target.
    fs.rename(&path("a"), &path("c")).unwrap();
    assert_eq!(fs.read_all(&path("c")).unwrap(), b"a");
    assert!(fs.delete(&path("a")).is_err());
    // Directories are durable at once.
    fs.crash();
    assert!(fs.exists(&path("sub/deeper")));
}

#[test]
fn a_wal_keeps_every_record_up_to_its_last_sync() {
    for seed in 0..20 {
        let fs = fs_with_dir();
        let log = path("000001.log");
        let mut w = LogWriter::new(fs.create(&log).unwrap(), 1);
        fs.sync_dir(Path::new(DIR)).unwrap();
        let records: Vec<Vec<u8>> = (0..30).map(|i| vec![i as u8; 1000 + 997 * i]).collect();
        for (i, r) in records.iter().enumerate() {
            w.add_record(r).unwrap();
            if i == 19 {
                w.sync().unwrap();
            }
        }
        fs.crash_keeping_unsynced(seed);
        let mut reader = LogReader::new(fs.open(&log).unwrap(), 1, log.display().to_string());
        let mut read = Vec::new();
        while let Some((r, _)) = reader.read_record().unwrap() {
            read.push(r);
        }
        assert!(read.len() >= 20, "seed {seed}: synced records lost");
        assert_eq!(read, records[..read.len()], "seed {seed}");
    }
}

#[test]
fn a_read_fault_stops_the_log_reader_with_an_io_error() {
    let fs = fs_with_dir();
    let log = path("000002.log");
    let mut w = LogWriter::new(fs.create(&log).unwrap(), 2);
    w.add_record(b"batch").unwrap();
    let mut reader = LogReader::new(fs.open(&log).unwrap(), 2, log.display().to_string());
    fs.set_plan(FaultPlan {
        fail_read_one_in: Some(1),
        ..FaultPlan::default()
    });
    for _ in 0..2 {
        let err = reader.read_record().unwrap_err();
        assert!(
            matches!(err, Error::Io { .. }) && !err.is_corruption(),
            "{err}"
        );
        assert!(err.to_string().contains("injected"), "{err}");
    }
}
