//! Flipping any single byte of a database's manifest, SSTs or WAL yields a
//! clear error naming the file and an offset or, for a WAL tail, the
//! documented truncation (the state is then a prefix of the writes) — never a
//! wrong value.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::{key, tiny_options};
use o3_compute::{Db, DbOptions, Error};
use o3_storage::env::{FaultInjectingFs, Storage};

const DIR: &str = "/db";

fn opts(fs: &FaultInjectingFs) -> DbOptions {
    DbOptions {
        max_background_jobs: 1,
        ..tiny_options(Arc::new(fs.clone()), 4)
    }
}

/// File name → content.
type Files = BTreeMap<String, Vec<u8>>;

/// Copy every file of `from` into a fresh file system, with `edit` applied.
fn clone_fs(
    files: &BTreeMap<String, Vec<u8>>,
    edit: impl Fn(&str, &mut Vec<u8>),
) -> FaultInjectingFs {
    let fs = FaultInjectingFs::new();
    fs.create_dir_all(Path::new(DIR)).expect("mkdir");
    for (name, bytes) in files {
        let mut bytes = bytes.clone();
        edit(name, &mut bytes);
        let mut f = fs.create(&Path::new(DIR).join(name)).expect("create");
        f.append(&bytes).expect("append");
        f.sync().expect("sync");
    }
    fs.sync_dir(Path::new(DIR)).expect("sync dir");
    fs
}

fn snapshot_files(fs: &FaultInjectingFs) -> BTreeMap<String, Vec<u8>> {
    fs.list(Path::new(DIR))
        .expect("list")
        .into_iter()
        .filter(|n| n != "LOCK")
        .map(|n| {
            let bytes = fs.read_all(&Path::new(DIR).join(&n)).expect("read");
            (n, bytes)
        })
        .collect()
}

/// Open and read everything: the full scan and a point get of every key.
fn read_all(fs: &FaultInjectingFs) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, Error> {
    let db = Db::open(DIR, opts(fs))?;
    let state: BTreeMap<_, _> = db
        .scan::<std::ops::RangeFull>(.., false)?
        .into_iter()
        .collect();
    for i in 0..common::KEY_SPACE {
        let got = db.get(&key(i))?;
        assert_eq!(
            got.as_ref(),
            state.get(&key(i)),
            "get and scan disagree on key {i}"
        );
    }
    Ok(state)
}

fn assert_names_file(e: &Error, name: &str) {
    let msg = e.to_string();
    assert!(
        msg.contains(name) && msg.contains("offset"),
        "error does not name {name} and an offset: {msg}"
    );
}

/// A closed database whose data is in SSTs at several levels, plus the
/// expected content.
fn build_flushed() -> (Files, BTreeMap<Vec<u8>, Vec<u8>>) {
    let fs = FaultInjectingFs::new();
    let db = Db::open(DIR, opts(&fs)).expect("open");
    let mut model = BTreeMap::new();
    for round in 0..3 {
        for i in (0..common::KEY_SPACE).step_by(3) {
            let v = format!("r{round}-{i}").into_bytes();
            db.put(&key(i), &v).expect("put");
            model.insert(key(i), v);
        }
        db.flush().expect("flush");
        if round == 1 {
            db.compact_range(None, None).expect("compact");
        }
    }
    db.close().expect("close");
    (snapshot_files(&fs), model)
}

#[test]
fn every_manifest_byte_flip_is_reported() {
    let (files, model) = build_flushed();
    assert_eq!(
        read_all(&clone_fs(&files, |_, _| {})).expect("clean open"),
        model
    );
    let manifest = files
        .keys()
        .find(|n| n.starts_with("MANIFEST-"))
        .expect("manifest")
        .clone();
    for i in 0..files[&manifest].len() {
        let fs = clone_fs(&files, |name, bytes| {
            if name == manifest {
                bytes[i] ^= 0x5a;
            }
        });
        match read_all(&fs) {
            Ok(state) => assert_eq!(state, model, "flip at manifest byte {i} changed the data"),
            Err(e) => assert_names_file(&e, &manifest),
        }
    }
}

#[test]
fn every_sst_byte_flip_is_reported() {
    let (files, model) = build_flushed();
    let tables: Vec<String> = files
        .keys()
        .filter(|n| n.ends_with(".sst"))
        .cloned()
        .collect();
    assert!(tables.len() >= 2, "expected several tables, got {tables:?}");
    for table in &tables {
        for i in 0..files[table].len() {
            let fs = clone_fs(&files, |name, bytes| {
                if name == table {
                    bytes[i] ^= 0x01;
                }
            });
            match read_all(&fs) {
                Ok(state) => assert_eq!(state, model, "flip at {table} byte {i} changed the data"),
                Err(e) => assert_names_file(&e, table),
            }
        }
    }
}

#[test]
fn every_wal_byte_flip_is_an_error_or_a_prefix() {
    // Data only in the WAL: small enough that no memtable fills.
    let fs = FaultInjectingFs::new();
    let db = Db::open(DIR, opts(&fs)).expect("open");
    let mut prefixes = vec![BTreeMap::new()];
    for i in 0..12 {
        let v = format!("w{i}").into_bytes();
        db.put(&key(i * 7), &v).expect("put");
        let mut next = prefixes.last().expect("prefix").clone();
        next.insert(key(i * 7), v);
        prefixes.push(next);
    }
    // Simulate a crash without losing anything: stop all writes, then drop.
    fs.set_plan(o3_storage::env::FaultPlan {
        fail_after_mutations: Some(0),
        ..Default::default()
    });
    drop(db);
    fs.set_plan(o3_storage::env::FaultPlan::default());
    let files = snapshot_files(&fs);
    let wal = files
        .iter()
        .filter(|(n, b)| n.ends_with(".log") && !b.is_empty())
        .map(|(n, _)| n.clone())
        .next()
        .expect("a non-empty WAL");
    assert_eq!(
        read_all(&clone_fs(&files, |_, _| {})).expect("clean open"),
        prefixes[12]
    );
    for i in 0..files[&wal].len() {
        let fs = clone_fs(&files, |name, bytes| {
            if *name == *wal {
                bytes[i] ^= 0x10;
            }
        });
        match read_all(&fs) {
            Ok(state) => assert!(
                prefixes.contains(&state),
                "flip at {wal} byte {i} gave a state that is not a prefix of the writes"
            ),
            Err(e) => assert_names_file(&e, &wal),
        }
    }
}
