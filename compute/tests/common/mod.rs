//! Helpers shared by the compute integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use o3_compute::{Db, DbOptions};
use o3_storage::compaction::{CompactionOptions, LeveledOptions};
use o3_storage::env::Storage;
use o3_storage::options::TableOptions;

/// Options that make every mechanism (memtable rotation, flush, L0→L1 and
/// deeper compactions, WAL rotation) run many times on a few hundred writes.
pub fn tiny_options(storage: Arc<dyn Storage>, shards: usize) -> DbOptions {
    DbOptions {
        storage,
        shard_splits: shard_splits(shards),
        write_buffer_size: 4096,
        max_unflushed_bytes: 64 * 4096,
        wal_segment_size: 8192,
        max_total_wal_size: 64 * 1024,
        table: TableOptions {
            block_size: 256,
            restart_interval: 4,
            ..TableOptions::default()
        },
        compaction: CompactionOptions {
            levels: LeveledOptions {
                num_levels: 4,
                l0_compaction_trigger: 2,
                max_bytes_for_level_base: 16 * 1024,
                max_bytes_for_level_multiplier: 4.0,
                target_file_size_base: 4096,
                max_compaction_bytes: 64 * 1024,
                ..LeveledOptions::default()
            },
            ..CompactionOptions::default()
        },
        l0_slowdown_writes_trigger: 8,
        l0_stop_writes_trigger: 12,
        block_cache_size: 64 * 1024,
        ..DbOptions::default()
    }
}

/// Split keys that divide the `key(i)` space into `shards` ranges.
pub fn shard_splits(shards: usize) -> Vec<Vec<u8>> {
    (1..shards).map(|i| key(i * KEY_SPACE / shards)).collect()
}

/// Keys used by the tests: `k0000` .. `k0199`.
pub const KEY_SPACE: usize = 200;

pub fn key(i: usize) -> Vec<u8> {
    format!("k{i:04}").into_bytes()
}

/// Every `(key, value)` of the database, ascending.
pub fn full_scan(db: &Db) -> BTreeMap<Vec<u8>, Vec<u8>> {
    db.scan::<std::ops::RangeFull>(.., false)
        .expect("scan")
        .into_iter()
        .collect()
}

/// Every file of `dir` on `fs` (but the lock file), by name.
pub fn files_of(fs: &o3_storage::env::FaultInjectingFs, dir: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = std::path::Path::new(dir);
    fs.list(dir)
        .expect("list")
        .into_iter()
        .filter(|n| n != "LOCK")
        .map(|n| {
            let bytes = fs.read_all(&dir.join(&n)).expect("read");
            (n, bytes)
        })
        .collect()
}

/// A fresh file system holding `files` in `dir`, each passed through
/// `edit` first, all durable.
pub fn fs_with_files(
    dir: &str,
    files: &BTreeMap<String, Vec<u8>>,
    edit: impl Fn(&str, &mut Vec<u8>),
) -> o3_storage::env::FaultInjectingFs {
    let fs = o3_storage::env::FaultInjectingFs::new();
    let dir = std::path::Path::new(dir);
    fs.create_dir_all(dir).expect("mkdir");
    for (name, bytes) in files {
        let mut bytes = bytes.clone();
        edit(name, &mut bytes);
        let mut f = fs.create(&dir.join(name)).expect("create");
        f.append(&bytes).expect("append");
        f.sync().expect("sync");
    }
    fs.sync_dir(dir).expect("sync dir");
    fs
}
