//! Helpers shared by the compute integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use o3_compute::{Db, DbOptions};
use o3_storage::compaction::{CompactionOptions, LeveledOptions};
use o3_storage::env::Storage;
use o3_storage::options::TableOptions;

pub mod crash;
pub mod model;

/// The expected content of a database: key → value.
pub type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// [`tiny_options`] for offloading tests: no compactions, and neither the
/// WAL, local memory nor idleness flushes, so sealed memtables stay
/// unflushed (offloaded) until `Db::flush`.
pub fn held_back_options(shards: usize) -> DbOptions {
    let mut o = tiny_options(Arc::new(o3_storage::env::FaultInjectingFs::new()), shards);
    o.disable_auto_compactions = true;
    o.max_total_wal_size = 64 << 20;
    o.max_unflushed_bytes = 64 << 20;
    o.idle_compaction_after = Some(std::time::Duration::from_secs(3600));
    o
}

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
pub fn full_scan(db: &Db) -> Model {
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

/// Run the ignored test `child_test` of this test binary as a child process
/// with `env` set: wait until it prints a line ending in "ready", let it run
/// for `run_for`, kill it with SIGKILL, and return the largest `n` it
/// printed as "acked n" (`None` if it printed none). The child must print
/// "ready" after opening its database and "acked n" after each
/// acknowledged operation.
pub fn run_child_until_killed(
    child_test: &str,
    env: &[(&str, String)],
    run_for: std::time::Duration,
) -> Option<u64> {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.args([
        child_test,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest prints "test <name> ... " before the child's first
            // line, so match the ends of lines.
            if let Some((_, n)) = line.rsplit_once("acked ") {
                let _ = tx.send(Some(n.parse::<u64>().expect("acked count")));
            } else if line.ends_with("ready") {
                let _ = tx.send(None);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut acked = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(None) => break,
            Ok(Some(n)) => acked = Some(n),
            Err(_) => {}
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("child {child_test} did not report ready");
        }
    }
    std::thread::sleep(run_for);
    child.kill().expect("SIGKILL child");
    child.wait().expect("reap child");
    reader.join().expect("reader thread");
    while let Ok(m) = rx.try_recv() {
        if let Some(n) = m {
            acked = Some(n);
        }
    }
    acked
}

/// Crash-point enumeration on the fault-injecting backend. `workload` runs
/// once cleanly to count its mutating file operations; then, for every
/// `k`-th of them (`k` stepping by `O3_CRASH_POINT_STEP`, else
/// `default_step`), it runs again on a fresh file system where that
/// operation and every later one fail, the file system crashes (unsynced
/// data and directory entries are lost), and `check` gets a label naming
/// the crash point, what the clean run returned, what this run returned
/// and the crashed file system.
pub fn for_each_crash_point<T>(
    default_step: u64,
    workload: impl Fn(Arc<dyn Storage>) -> T,
    mut check: impl FnMut(&str, &T, T, &o3_storage::env::FaultInjectingFs),
) {
    use o3_storage::env::{FaultInjectingFs, FaultPlan};
    let clean_fs = FaultInjectingFs::new();
    let clean = workload(Arc::new(clean_fs.clone()));
    let total = clean_fs.mutations();
    assert!(total > 100, "workload too small: {total} mutations");
    let step = std::env::var("O3_CRASH_POINT_STEP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_step)
        .max(1);
    for k in (0..total).step_by(step as usize) {
        let fs = FaultInjectingFs::new();
        fs.set_plan(FaultPlan {
            fail_after_mutations: Some(k),
            ..FaultPlan::default()
        });
        let seen = workload(Arc::new(fs.clone()));
        fs.crash();
        check(&format!("crash point {k}/{total}"), &clean, seen, &fs);
    }
}

/// Wait (bounded by 20 s) until `done` holds for `db`'s stats; the
/// failure shows the offload stats.
pub fn wait_for(db: &o3_compute::Db, what: &str, done: impl Fn(&o3_compute::DbStats) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !done(&db.stats()) {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            db.stats().offload
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
