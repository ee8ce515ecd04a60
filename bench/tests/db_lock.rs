//! A load or fill on a `--db` that another process has open must fail with
//! one line naming the lock, and must leave that process's database intact
//! (it used to delete the directory's contents first).

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use o3_bench::dbbench::make_key;
use o3_compute::{Db, DbOptions};
use support::{ChildGuard, assert_one_line_error, drain, o3_bench_command, o3_bench_within};

/// Keys the holder writes with `fillseq` before it starts reading.
const HELD_KEYS: u64 = 3000;

/// Every wait of this test is bounded by this (a debug build on a busy
/// 2-core machine is slow, but not this slow).
const LIMIT: Duration = Duration::from_secs(120);

/// Start an `o3-bench` that fills `db` with `fillseq` and then keeps it open
/// reading; returns once the fill's summary line is out (the database is
/// open and holds its keys).
fn start_holder(db: &Path) -> (ChildGuard, std::thread::JoinHandle<Vec<u8>>) {
    let num = format!("--num={HELD_KEYS}");
    let args = [
        "dbbench",
        "--db",
        db.to_str().unwrap(),
        "--benchmarks=fillseq,readrandom",
        &num,
        "--reads=1000000000",
        // Small memtables: the holder has SSTs and compactions at work.
        "--write_buffer_size=65536",
    ];
    let mut child = ChildGuard(o3_bench_command(&args).spawn().expect("start the holder"));
    let stderr = drain(child.0.stderr.take().expect("piped stderr"));
    let stdout = child.0.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    // Reads to the end, even when nobody listens any more: a closed pipe
    // would make the holder fail on its next line.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with("fillseq") => return (child, stderr),
            Ok(_) => {}
            Err(e) => panic!("the holder printed no fillseq line within {LIMIT:?}: {e}"),
        }
    }
}

#[test]
fn a_fill_on_a_database_open_elsewhere_fails_and_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let db_arg = db.to_str().unwrap();
    let (mut holder, holder_stderr) = start_holder(&db);

    let out = o3_bench_within(
        &[
            "dbbench",
            "--db",
            db_arg,
            "--benchmarks=fillrandom",
            "--num=100",
        ],
        LIMIT,
    );
    assert_one_line_error(&out, &["locked by another process", db_arg]);
    let workload = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/workloada");
    let out = o3_bench_within(
        &[
            "ycsb",
            "--workload",
            workload.to_str().unwrap(),
            "--db",
            db_arg,
            "--load",
            "-p",
            "recordcount=10",
        ],
        LIMIT,
    );
    assert_one_line_error(&out, &["locked by another process", db_arg]);

    // The holder is still running, and nothing failed under it.
    assert!(
        holder.0.try_wait().unwrap().is_none(),
        "the holder exited while its database was being filled elsewhere"
    );
    holder.0.kill().unwrap();
    holder.0.wait().unwrap();
    let stderr = String::from_utf8_lossy(&holder_stderr.join().unwrap()).into_owned();
    assert!(!stderr.contains("failed"), "holder stderr: {stderr}");

    // Its data is intact: every key of its fill is there (recovered from its
    // SSTs and WAL after the kill), and nothing else.
    let reopened = Db::open(&db, DbOptions::default()).unwrap();
    let mut key = [0u8; 16];
    for i in 0..HELD_KEYS {
        make_key(&mut key, i);
        assert!(reopened.get(&key).unwrap().is_some(), "key {i} lost");
    }
    let all = reopened.scan::<std::ops::RangeFull>(.., false).unwrap();
    assert_eq!(all.len() as u64, HELD_KEYS);
    assert_eq!(reopened.background_error(), None);
}
