//! The `OPTIONS` file (`storage/docs/options_file.md`): options that shape
//! the tree on disk are recorded when a database is created and checked on
//! every open (a difference is an `InvalidArgument` naming the option, both
//! values and what to do); the others may change freely; databases without
//! the file still open and get one; invalid split keys are refused before
//! the directory is created.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{full_scan, key, tiny_options};
use o3_compute::{Db, DbOptions, Error, LocalFs, Preset};
use o3_storage::env::{FaultInjectingFs, Storage};

const DIR: &str = "/db";

fn opts(fs: &FaultInjectingFs, preset: Preset) -> DbOptions {
    let mut o = tiny_options(Arc::new(fs.clone()), 4);
    o.compaction.preset = preset;
    o
}

/// Create a database with `options`, fill it so every level kind is used,
/// close it; returns its content.
fn create(options: DbOptions) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    let db = Db::open(DIR, options).expect("create");
    for round in 0..4 {
        for i in 0..common::KEY_SPACE {
            db.put(&key(i), format!("r{round}-{i}").as_bytes())
                .expect("put");
        }
        db.flush().expect("flush");
    }
    db.compact_range(None, None).expect("compact");
    let content = full_scan(&db);
    db.close().expect("close");
    content
}

fn invalid_argument(result: Result<Db, Error>) -> String {
    match result {
        Ok(_) => panic!("the open must be refused"),
        Err(Error::InvalidArgument(msg)) => msg,
        Err(other) => panic!("expected InvalidArgument, got: {other}"),
    }
}

fn options_text(fs: &FaultInjectingFs) -> String {
    let bytes = fs
        .read_all(&Path::new(DIR).join("OPTIONS"))
        .expect("OPTIONS");
    String::from_utf8(bytes).expect("text")
}

#[test]
fn a_tiered_database_reopened_with_the_default_preset_is_refused_clearly() {
    let fs = FaultInjectingFs::new();
    let content = create(opts(&fs, Preset::Tiering));
    let msg = invalid_argument(Db::open(DIR, opts(&fs, Preset::OneLeveling)));
    for part in [
        "layouts",
        "tiering",
        "leveling",
        "/db/OPTIONS",
        "preset \"tiering\"",
    ] {
        assert!(msg.contains(part), "message lacks {part:?}: {msg}");
    }
    // Refusing changed nothing: the right options open it.
    let db = Db::open(DIR, opts(&fs, Preset::Tiering)).expect("reopen with tiering");
    assert_eq!(full_scan(&db), content);
}

#[test]
fn every_shape_change_is_refused_and_every_other_change_is_not() {
    let fs = FaultInjectingFs::new();
    let content = create(opts(&fs, Preset::LazyLeveling));
    let shape_changes: Vec<(&str, DbOptions)> = vec![
        ("runs_per_tier", {
            let mut o = opts(&fs, Preset::LazyLeveling);
            o.compaction.runs_per_tier = 3;
            o
        }),
        ("layouts", {
            let mut o = opts(&fs, Preset::LazyLeveling);
            o.compaction.levels.num_levels = 5;
            o
        }),
        ("shard_splits", {
            let mut o = opts(&fs, Preset::LazyLeveling);
            o.shard_splits = common::shard_splits(3);
            o
        }),
        ("shard_splits", {
            let mut o = opts(&fs, Preset::LazyLeveling);
            o.shard_splits.clear();
            o
        }),
    ];
    for (option, o) in shape_changes {
        let msg = invalid_argument(Db::open(DIR, o));
        assert!(msg.contains(option), "message lacks {option:?}: {msg}");
    }
    // Free: sizes, jobs, table options, sync, recovery mode, trigger
    // thresholds.
    let mut free = opts(&fs, Preset::LazyLeveling);
    free.write_buffer_size *= 4;
    free.max_unflushed_bytes *= 4;
    free.block_cache_size = 1 << 20;
    free.max_background_jobs = 3;
    free.table.bloom_bits_per_key = 4;
    free.table.block_size = 512;
    free.sync_writes = true;
    free.wal_recovery_mode = o3_compute::WalRecoveryMode::PointInTime;
    free.compaction.max_space_amplification = 3.0;
    let db = Db::open(DIR, free).expect("options that may change");
    assert_eq!(full_scan(&db), content);
    db.close().expect("close");
    // The file now records the latest open's informational options.
    let text = options_text(&fs);
    assert!(text.contains("max_background_jobs = \"3\""), "{text}");
    assert!(
        text.contains("wal_recovery_mode = \"point-in-time\""),
        "{text}"
    );
}

#[test]
fn a_database_without_an_options_file_opens_and_gets_one() {
    let fs = FaultInjectingFs::new();
    let content = create(opts(&fs, Preset::OneLeveling));
    let path = Path::new(DIR).join("OPTIONS");
    fs.delete(&path).expect("delete OPTIONS");
    // Its manifest still says which split keys it has.
    let mut other_splits = opts(&fs, Preset::OneLeveling);
    other_splits.shard_splits = common::shard_splits(2);
    let msg = invalid_argument(Db::open(DIR, other_splits));
    assert!(
        msg.contains("shard_splits") && msg.contains("manifest"),
        "{msg}"
    );
    assert!(!fs.exists(&path), "a refused open wrote the file");
    let db = Db::open(DIR, opts(&fs, Preset::OneLeveling)).expect("open without OPTIONS");
    assert_eq!(full_scan(&db), content);
    db.close().expect("close");
    assert!(options_text(&fs).contains("physical_levels = 4"));
    // From now on the file is checked.
    let msg = invalid_argument(Db::open(DIR, opts(&fs, Preset::Tiering)));
    assert!(msg.contains("layouts"), "{msg}");
}

#[test]
fn invalid_split_keys_are_refused_before_the_directory_is_created() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("unsorted", vec![b"m".to_vec(), b"c".to_vec()]),
        (
            "duplicate",
            vec![b"c".to_vec(), b"m".to_vec(), b"m".to_vec()],
        ),
        ("empty", vec![Vec::new(), b"m".to_vec()]),
    ];
    for (name, splits) in cases {
        let dir = tmp.path().join(name);
        let o = DbOptions {
            shard_splits: splits,
            ..tiny_options(Arc::new(LocalFs::new()), 1)
        };
        let msg = invalid_argument(Db::open(&dir, o));
        assert!(msg.contains("shard_splits"), "{name}: {msg}");
        assert!(
            !dir.exists(),
            "{name}: a refused open created {}",
            dir.display()
        );
    }
    // Nor does opening a missing database without create_if_missing.
    let dir = tmp.path().join("missing");
    let o = DbOptions {
        create_if_missing: false,
        ..tiny_options(Arc::new(LocalFs::new()), 1)
    };
    let msg = invalid_argument(Db::open(&dir, o));
    assert!(msg.contains("does not exist"), "{msg}");
    assert!(!dir.exists(), "a refused open created {}", dir.display());
}
