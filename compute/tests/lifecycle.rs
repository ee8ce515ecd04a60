//! Opening, locking, options validation, orphan removal, WAL retention and
//! statistics.

mod common;

use std::sync::Arc;

use common::{full_scan, key, tiny_options};
use o3_compute::{Db, DbOptions, Error};
use o3_storage::env::LocalFs;

fn opts() -> DbOptions {
    tiny_options(Arc::new(LocalFs::new()), 4)
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_clearly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts()).expect("open");
    let err = Db::open(tmp.path(), opts()).expect_err("second open must fail");
    assert!(
        matches!(err, Error::Locked { .. }),
        "unexpected error: {err}"
    );
    assert!(
        err.to_string().contains("locked by another process"),
        "{err}"
    );
    db.close().expect("close");
    // Released on close.
    Db::open(tmp.path(), opts())
        .expect("open after close")
        .close()
        .expect("close");
}

#[test]
fn bad_options_are_rejected_naming_the_field() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cases: Vec<(DbOptions, &str)> = vec![
        (
            DbOptions {
                write_buffer_size: 10,
                ..opts()
            },
            "write_buffer_size",
        ),
        (
            DbOptions {
                l0_slowdown_writes_trigger: 50,
                l0_stop_writes_trigger: 40,
                ..opts()
            },
            "l0_slowdown_writes_trigger",
        ),
        (
            DbOptions {
                max_background_jobs: 0,
                ..opts()
            },
            "max_background_jobs",
        ),
        (
            DbOptions {
                shard_splits: vec![b"b".to_vec(), b"a".to_vec()],
                ..opts()
            },
            "split keys",
        ),
    ];
    for (o, field) in cases {
        let err = Db::open(tmp.path().join(field.replace(' ', "_")), o).expect_err(field);
        assert!(matches!(err, Error::InvalidArgument(_)), "{field}: {err}");
        assert!(
            err.to_string().contains(field),
            "error does not name {field}: {err}"
        );
    }
    let missing = DbOptions {
        create_if_missing: false,
        ..opts()
    };
    let err = Db::open(tmp.path().join("absent"), missing).expect_err("missing database");
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[test]
fn entries_larger_than_the_write_buffer_are_accepted() {
    // Once refused above half the write buffer; now such an entry gets a
    // memtable of its own (compute/tests/large_values.rs tests it in depth).
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts()).expect("open");
    let big = vec![7u8; 8192];
    db.put(b"k", &big)
        .expect("entry larger than the write buffer");
    assert_eq!(db.get(b"k").expect("get"), Some(big));
    db.put(b"k", b"small").expect("later writes still work");
    assert_eq!(db.get(b"k").expect("get"), Some(b"small".to_vec()));
}

#[test]
fn unreferenced_files_are_removed_on_open() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts()).expect("open");
    for i in 0..100 {
        db.put(&key(i), b"v").expect("put");
    }
    db.flush().expect("flush");
    let before = full_scan(&db);
    db.close().expect("close");
    // Leftovers of an interrupted job and an interrupted CURRENT switch.
    for name in ["999999.sst", "999998.log", "CURRENT.tmp", "MANIFEST-999997"] {
        std::fs::write(tmp.path().join(name), b"leftover").expect("write leftover");
    }
    std::fs::write(tmp.path().join("notes.txt"), b"not ours").expect("write");
    let db = Db::open(tmp.path(), opts()).expect("reopen");
    for name in ["999999.sst", "999998.log", "CURRENT.tmp", "MANIFEST-999997"] {
        assert!(!tmp.path().join(name).exists(), "{name} was not removed");
    }
    assert!(
        tmp.path().join("notes.txt").exists(),
        "a file the engine does not own was removed"
    );
    assert_eq!(full_scan(&db), before);
}

#[test]
fn wal_segments_are_released_once_every_shard_has_flushed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts()).expect("open");
    // Enough data to roll the (8 KiB) WAL segment many times.
    for i in 0..2000 {
        db.put(
            &key(i % common::KEY_SPACE),
            format!("value-{i:08}").as_bytes(),
        )
        .expect("put");
    }
    let logs = || {
        std::fs::read_dir(tmp.path())
            .expect("read dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".log"))
            })
            .count()
    };
    db.flush().expect("flush");
    // After a full flush only the live segment (and at most one being
    // rolled) may remain.
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        logs() <= 2,
        "{} WAL segments remain after flushing everything: {names:?}",
        logs()
    );
    // A cold shard alone cannot pin old segments forever: write only to one
    // shard and check the total stays bounded by max_total_wal_size.
    db.put(&key(0), b"cold").expect("put");
    for i in 0..4000 {
        db.put(&key(150 + i % 40), format!("hot-{i:08}").as_bytes())
            .expect("put");
    }
    let total: u64 = std::fs::read_dir(tmp.path())
        .expect("read dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    assert!(
        total <= 2 * 64 * 1024,
        "WAL holds {total} bytes with a 64 KiB limit"
    );
    assert_eq!(db.get(&key(0)).expect("get"), Some(b"cold".to_vec()));
}

#[test]
fn stats_report_shape_work_and_amplification() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts()).expect("open");
    for round in 0..5 {
        for i in 0..common::KEY_SPACE {
            db.put(&key(i), format!("r{round}-{i}").as_bytes())
                .expect("put");
        }
    }
    db.compact_range(None, None).expect("compact");
    let s = db.stats();
    assert!(s.user_bytes > 0 && s.writes == 5 * common::KEY_SPACE as u64);
    assert!(s.flushes > 0 && s.flush_bytes > 0, "{s}");
    assert!(s.compactions > 0, "{s}");
    // RocksDB's definition: everything flushed counts once, each compaction
    // rewrite once more, so compactions that wrote bytes push it above 1.
    assert!(s.compaction_bytes_written > 0, "{s}");
    let expected = (s.flush_bytes + s.compaction_bytes_written) as f64 / s.flush_bytes as f64;
    assert!((s.write_amplification - expected).abs() < 1e-9, "{s}");
    assert!(s.write_amplification > 1.0, "{s}");
    assert_eq!(s.levels[0].files, 0, "compact_range left L0 files: {s}");
    assert!(s.levels.iter().skip(1).any(|l| l.files > 0), "{s}");
    let text = s.to_string();
    assert!(text.contains("write amplification"), "{text}");
}

/// Level-0 file count of the database.
fn l0_files(db: &Db) -> usize {
    db.stats().levels.first().map_or(0, |l| l.files)
}

#[test]
fn an_idle_database_compacts_level_0_into_the_level_below() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut o = opts();
    o.idle_compaction_after = Some(std::time::Duration::from_millis(50));
    let db = Db::open(tmp.path(), o).expect("open");
    // One L0 file per shard over a populated level: below the L0 trigger
    // (2 files), so only idleness can start the merge.
    for i in 0..common::KEY_SPACE {
        db.put(&key(i), b"first").expect("put");
    }
    db.compact_range(None, None).expect("compact");
    for i in (0..common::KEY_SPACE).step_by(3) {
        db.put(&key(i), b"second").expect("put");
    }
    db.flush().expect("flush");
    assert!(l0_files(&db) > 0, "{}", db.stats());
    let expected = full_scan(&db);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while l0_files(&db) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "level 0 still holds files after 20 s idle: {}",
            db.stats()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let s = db.stats();
    assert!(s.levels.iter().skip(1).any(|l| l.files > 0), "{s}");
    assert_eq!(full_scan(&db), expected, "idle compaction changed the data");
    // With nothing left in level 0, idleness starts no further work.
    let done = s.compactions;
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert_eq!(db.stats().compactions, done, "compacted again while idle");
}

#[test]
fn idle_compaction_can_be_turned_off() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut o = opts();
    o.idle_compaction_after = None;
    let db = Db::open(tmp.path(), o).expect("open");
    for i in 0..100 {
        db.put(&key(i), b"v").expect("put");
    }
    db.flush().expect("flush");
    let before = l0_files(&db);
    assert!(before > 0, "{}", db.stats());
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert_eq!(l0_files(&db), before, "{}", db.stats());
}
