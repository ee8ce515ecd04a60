//! Write stalls hold writers back only while something will relieve them,
//! and level 0 counts sorted runs: one table per flush and shard.

mod common;

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use common::{key, tiny_options};
use o3_compute::Db;
use o3_storage::env::{LocalFs, Storage};

/// With automatic compactions off nothing lowers the L0 count, so the L0
/// stop trigger must not apply (RocksDB does the same): writes that pass it
/// several times over finish instead of waiting forever.
#[test]
fn writes_never_hang_on_level_0_without_auto_compactions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage: Arc<dyn Storage> = Arc::new(LocalFs::new());
    let mut o = tiny_options(storage, 1);
    o.disable_auto_compactions = true;
    o.idle_compaction_after = None;
    let stop = o.l0_stop_writes_trigger;
    let db = Arc::new(Db::open(dir.path(), o).expect("open"));
    let flushes = 3 * stop;
    let (tx, rx) = mpsc::channel();
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            for round in 0..flushes {
                for k in 0..20 {
                    db.put(&key(k), format!("r{round}").as_bytes())
                        .expect("put");
                }
                db.flush().expect("flush");
            }
            tx.send(()).expect("report");
        })
    };
    rx.recv_timeout(Duration::from_secs(60))
        .expect("writes hung with automatic compactions off");
    writer.join().expect("writer");
    let l0 = db.stats().levels[0].files;
    assert_eq!(l0, flushes, "one L0 table per flush");
    assert!(l0 > stop);
    let last = format!("r{}", flushes - 1).into_bytes();
    assert_eq!(db.get(&key(3)).expect("get"), Some(last));
}

/// A flush is not cut at the target file size: a memtable many times the
/// target becomes one table per shard.
#[test]
fn a_flush_writes_one_table_per_shard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage: Arc<dyn Storage> = Arc::new(LocalFs::new());
    let mut o = tiny_options(storage, 3);
    o.write_buffer_size = 256 << 10;
    o.max_unflushed_bytes = 4 << 20;
    o.disable_auto_compactions = true;
    o.idle_compaction_after = None;
    let target = o.compaction.levels.target_file_size_base;
    let db = Db::open(dir.path(), o).expect("open");
    for k in 0..common::KEY_SPACE {
        db.put(&key(k), &vec![b'x'; 300]).expect("put");
    }
    db.flush().expect("flush");
    let l0 = &db.stats().levels[0];
    assert_eq!(l0.files, 3, "one table for each of the 3 shards");
    assert!(
        l0.bytes > 3 * target,
        "the tables are larger than the target size"
    );
}
