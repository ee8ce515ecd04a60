//! A background job that finds a live table missing cannot be retried into
//! success: the data is unreachable. The database must say so to its
//! callers (writes fail, `background_error` names the cause) instead of
//! staying writable while reads of the lost keys fail or come back empty.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{key, tiny_options};
use o3_compute::{Db, DbOptions, Error};
use o3_storage::env::{LocalFs, Storage};

fn options(auto: bool) -> DbOptions {
    let storage: Arc<dyn Storage> = Arc::new(LocalFs::new());
    let mut o = tiny_options(storage, 1);
    o.disable_auto_compactions = !auto;
    o.idle_compaction_after = None;
    o
}

fn remove_tables(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "sst") {
            std::fs::remove_file(&path).expect("remove");
            n += 1;
        }
    }
    n
}

fn fill_and_flush(db: &Db, round: u32) {
    for k in 0..30 {
        db.put(&key(k), format!("r{round}").as_bytes())
            .expect("put");
    }
    db.flush().expect("flush");
}

fn assert_stopped(db: &Db) {
    let cause = db
        .background_error()
        .expect("a background error is reported");
    assert!(cause.contains(".sst"), "cause names the table: {cause}");
    assert!(db.stats().background_errors >= 1);
    match db.put(b"after", b"x") {
        Err(Error::Poisoned(msg)) => assert!(msg.contains(".sst"), "{msg}"),
        other => panic!("write after lost data: {other:?}"),
    }
}

#[test]
fn an_automatic_compaction_that_loses_its_input_stops_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), options(true)).expect("open");
    fill_and_flush(&db, 0);
    assert!(remove_tables(dir.path()) > 0);
    // The second L0 table reaches the compaction trigger.
    fill_and_flush(&db, 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while db.background_error().is_none() {
        assert!(Instant::now() < deadline, "no background error reported");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_stopped(&db);
}

#[test]
fn compact_range_that_loses_its_input_fails_and_stops_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), options(false)).expect("open");
    fill_and_flush(&db, 0);
    fill_and_flush(&db, 1);
    assert!(remove_tables(dir.path()) > 0);
    let err = db.compact_range(None, None).expect_err("inputs are gone");
    assert!(err.to_string().contains(".sst"), "{err}");
    assert_stopped(&db);
}
