//! A database on `ThrottledStorage` (emulated remote storage) behaves as on
//! the storage it wraps, and every byte it keeps crossed the throttled channel.
//! Time is virtual, so the test waits for nothing.

mod common;

use std::num::NonZeroU64;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;

use common::{KEY_SPACE, Model, full_scan, key, tiny_options};
use o3_compute::Db;
use o3_storage::env::{
    FaultInjectingFs, RemoteStorageModel, Storage, ThrottleClock, ThrottledStorage,
    VirtualThrottleClock,
};

#[derive(Debug, Clone)]
enum Op {
    Put(usize, usize),
    Delete(usize),
    Flush,
    Compact,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => (0..KEY_SPACE, 0..100usize).prop_map(|(k, v)| Op::Put(k, v)),
        5 => (0..KEY_SPACE).prop_map(Op::Delete),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

fn value(k: usize, v: usize) -> Vec<u8> {
    format!("value-{k}-{v}-{}", "y".repeat(v % 30)).into_bytes()
}

/// Bytes of every file under `dir` on `fs`.
fn stored_bytes(fs: &FaultInjectingFs, dir: &Path) -> u64 {
    fs.list(dir)
        .expect("list")
        .iter()
        .map(|name| fs.file_size(&dir.join(name)).expect("size"))
        .sum()
}

const WRITE_BYTES_PER_SEC: u64 = 1_000_000;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Writes, flushes, compactions and reopens on throttled storage give
    /// the model's answers, a checkpoint taken through it opens with the
    /// same content, and the channel's write bandwidth was paid for at least
    /// every byte the database and the checkpoint keep.
    #[test]
    fn a_database_on_throttled_storage_matches_the_model_and_pays_for_its_bytes(
        ops in prop::collection::vec(op(), 1..300),
    ) {
        let fs = FaultInjectingFs::new();
        let clock = Arc::new(VirtualThrottleClock::new());
        // Only writes cost time, so the clock measures the write bandwidth
        // paid and nothing else.
        let remote = RemoteStorageModel {
            write_bytes_per_sec: NonZeroU64::new(WRITE_BYTES_PER_SEC),
            ..RemoteStorageModel::UNLIMITED
        };
        let storage: Arc<dyn Storage> =
            Arc::new(ThrottledStorage::with_clock(Arc::new(fs.clone()), remote, clock.clone()));
        let options = || tiny_options(storage.clone(), 4);
        let mut db = Db::open("/db", options()).expect("open");
        let mut model = Model::new();
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    db.put(&key(k), &value(k, v)).expect("put");
                    model.insert(key(k), value(k, v));
                }
                Op::Delete(k) => {
                    db.delete(&key(k)).expect("delete");
                    model.remove(&key(k));
                }
                Op::Flush => db.flush().expect("flush"),
                Op::Compact => db.compact_range(None, None).expect("compact"),
                Op::Reopen => {
                    db.close().expect("close");
                    db = Db::open("/db", options()).expect("reopen");
                    prop_assert_eq!(&full_scan(&db), &model, "after reopen");
                }
            }
        }
        for k in 0..KEY_SPACE {
            prop_assert_eq!(db.get(&key(k)).expect("get"), model.get(&key(k)).cloned(), "key {}", k);
        }
        prop_assert_eq!(&full_scan(&db), &model);
        db.checkpoint("/cp").expect("checkpoint");
        db.close().expect("close");
        let copy = Db::open("/cp", options()).expect("open checkpoint");
        prop_assert_eq!(&full_scan(&copy), &model, "checkpoint");
        copy.close().expect("close checkpoint");

        // Every byte still stored was appended through the channel (a linked
        // checkpoint file counts twice but was written once, so only the
        // database's own files are summed).
        let kept = stored_bytes(&fs, Path::new("/db"));
        let at_least = RemoteStorageModel::transfer_time(remote.write_bytes_per_sec, kept);
        prop_assert!(clock.now() >= at_least, "{:?} of channel time for {} bytes", clock.now(), kept);
    }
}
