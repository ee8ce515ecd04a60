//! Values larger than the write buffer (RocksDB accepts them): an entry that
//! does not fit a fresh memtable gets a memtable sized for it, sealed at
//! once. Checked against a `BTreeMap` model through get, scans in both
//! directions, WAL replay on reopen, flush, compaction and reopen again.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{full_scan, key, tiny_options};
use o3_compute::{Db, DbOptions, WriteBatch};
use o3_storage::env::FaultInjectingFs;

const DIR: &str = "/db";
const MIB: usize = 1 << 20;

fn opts(fs: &FaultInjectingFs) -> DbOptions {
    DbOptions {
        write_buffer_size: MIB,
        max_unflushed_bytes: 16 * MIB as u64,
        wal_segment_size: 4 * MIB as u64,
        max_total_wal_size: 64 * MIB as u64,
        ..tiny_options(Arc::new(fs.clone()), 4)
    }
}

/// A patterned value, so that a value cut short or mixed up differs.
fn big_value(len: usize, tag: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ tag).collect()
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn check(db: &Db, model: &Model, when: &str) {
    for k in model.keys() {
        let got = db.get(k).expect("get");
        assert!(
            got.as_ref() == model.get(k),
            "{when}: get {} differs",
            String::from_utf8_lossy(k)
        );
    }
    assert!(full_scan(db) == *model, "{when}: forward scan differs");
    let reverse: Vec<(Vec<u8>, Vec<u8>)> = db
        .scan::<std::ops::RangeFull>(.., true)
        .expect("reverse scan");
    assert!(
        reverse.into_iter().rev().eq(model.clone()),
        "{when}: reverse scan differs"
    );
}

#[test]
fn a_3_mib_value_with_a_1_mib_write_buffer_round_trips_everywhere() {
    let fs = FaultInjectingFs::new();
    let mut db = Db::open(DIR, opts(&fs)).expect("open");
    let mut model = Model::new();
    // Small neighbours before and after, in the same shard and others.
    for i in (0..common::KEY_SPACE).step_by(5) {
        let v = format!("small-{i}").into_bytes();
        db.put(&key(i), &v).expect("put small");
        model.insert(key(i), v);
    }
    let big = big_value(3 * MIB, 1);
    db.put(&key(42), &big).expect("put 3 MiB");
    model.insert(key(42), big);
    // Several large values in one batch, with small ones between.
    let mut batch = WriteBatch::new();
    for (i, tag) in [(7, 2u8), (99, 3), (150, 4)] {
        let v = big_value(MIB + 12_345 * tag as usize, tag);
        batch.put(&key(i), &v);
        model.insert(key(i), v);
        batch.put(&key(i + 1), b"between");
        model.insert(key(i + 1), b"between".to_vec());
    }
    db.write(batch).expect("batch of large values");
    check(&db, &model, "in memtables");

    // Reopen without a flush: the WAL replay meets the large entries.
    db.close().expect("close");
    db = Db::open(DIR, opts(&fs)).expect("reopen (WAL replay)");
    check(&db, &model, "after WAL replay");

    // Overwrite one large value, then flush and compact everything.
    let again = big_value(3 * MIB + 17, 9);
    db.put(&key(42), &again).expect("overwrite 3 MiB");
    model.insert(key(42), again);
    db.flush().expect("flush");
    check(&db, &model, "after flush");
    db.compact_range(None, None).expect("compact");
    check(&db, &model, "after compaction");
    db.close().expect("close");
    let db = Db::open(DIR, opts(&fs)).expect("reopen");
    check(&db, &model, "after reopen");
}
