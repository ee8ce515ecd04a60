//! Flush offloading under process faults: an `o3-memnode` child executes
//! flushes of the images it holds for an in-process compaction scheduler
//! (its storage writes throttled so a flush lasts seconds), and is
//! SIGKILLed while it runs one. The flush must still complete (the
//! scheduler requeues it; with the images gone every try fails fast as
//! unreadable and the compute node flushes itself, rebuilding the images
//! from its WAL), every acknowledged write must be readable afterwards and
//! after a reopen, and the directory must hold no table the database does
//! not list. Every wait is bounded.

// Only the child process helpers this file needs are used.
#[allow(dead_code)]
mod memnode_child;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use memnode_child::{MemnodeChild, TOKEN, WAIT};
use o3_compute::{
    ClusterToken, CompactionServiceOptions, Db, DbOptions, FlushPlacement, MemoryNodeChoice,
    OffloadOptions, StoreConfig,
};
use o3_csa::scheduler::SchedulerConfig;
use o3_csa::{LocalService, LocalServiceOptions, SchedulerClient};
use o3_storage::env::LocalFs;

fn token() -> ClusterToken {
    ClusterToken::new(TOKEN).unwrap()
}

fn key(i: u64) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

fn options(node: &MemnodeChild, service: &LocalService) -> DbOptions {
    DbOptions {
        write_buffer_size: 8 << 10,
        max_unflushed_bytes: 64 << 20,
        wal_segment_size: 64 << 10,
        max_total_wal_size: 64 << 20,
        offload: Some(OffloadOptions {
            memory_node: MemoryNodeChoice::Config(StoreConfig::Remote(
                node.remote_config("flush-faults", Duration::from_secs(1)),
            )),
            max_local_sealed_memtables: 0,
            min_memtables_to_merge: 4,
            read_wait: Duration::from_secs(20),
            ..OffloadOptions::default()
        }),
        compaction_service: Some(CompactionServiceOptions {
            flush: FlushPlacement::Auto,
            max_queue_wait: Duration::from_secs(2),
            ..CompactionServiceOptions::new(service.endpoint(), token())
        }),
        ..DbOptions::default()
    }
}

/// The scheduler's view, from a blocking test thread.
struct Scheduler {
    runtime: tokio::runtime::Runtime,
    client: SchedulerClient,
}

impl Scheduler {
    fn connect(service: &LocalService) -> Scheduler {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = runtime
            .block_on(SchedulerClient::connect(service.endpoint(), token(), WAIT))
            .unwrap();
        Scheduler { runtime, client }
    }

    fn stats(&self) -> o3_transport::control::proto::csa::v1::StatsResponse {
        self.runtime.block_on(self.client.stats()).unwrap()
    }
}

/// Wait (bounded) until `done` holds, calling `meanwhile` between looks.
fn wait_until(what: &str, mut done: impl FnMut() -> bool, mut meanwhile: impl FnMut()) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        meanwhile();
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn table_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sst")
        })
        .count()
}

#[test]
fn sigkill_of_the_memory_node_during_its_flush_loses_nothing_and_leaves_no_orphan() {
    let service = LocalService::start(LocalServiceOptions {
        agents: 1,
        slots_per_agent: 2,
        token: token(),
        storage: Arc::new(LocalFs::new()),
        scheduler: SchedulerConfig {
            heartbeat: Duration::from_millis(100),
            heartbeat_timeout: Duration::from_millis(1000),
            ..SchedulerConfig::default()
        },
    })
    .unwrap();
    // 20 KB/s of table writes: each flush of the memory node lasts seconds.
    let mut node = MemnodeChild::start(&[
        "--pool-size",
        "256MiB",
        "--scheduler",
        service.endpoint(),
        "--flush-slots",
        "1",
        "--storage-write-mbps",
        "0.02",
    ]);
    let scheduler = Scheduler::connect(&service);
    wait_until(
        "the memory node's flush executor registered",
        || !scheduler.stats().memnodes.is_empty(),
        || {},
    );
    let dir = tempfile::tempdir().unwrap();
    let o = options(&node, &service);
    let db = Db::open(dir.path(), o.clone()).unwrap();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut version = 0u64;
    let mut write = |db: &Db, n: u64, model: &mut BTreeMap<Vec<u8>, Vec<u8>>| {
        for _ in 0..n {
            version += 1;
            let (k, v) = (key(version % 500), format!("v{version:08}").repeat(4));
            db.put(&k, v.as_bytes()).unwrap();
            model.insert(k, v.into_bytes());
        }
    };
    wait_until(
        "the memory node runs a flush",
        || scheduler.stats().memnodes.iter().any(|m| m.running > 0),
        || write(&db, 200, &mut model),
    );
    node.kill();
    write(&db, 2000, &mut model);
    // Waits for every flush, the one the memory node was running included.
    db.flush().unwrap();
    for (k, v) in &model {
        assert_eq!(db.get(k).unwrap().as_ref(), Some(v), "after the kill");
    }
    assert_eq!(db.background_error(), None);
    let stats = scheduler.stats();
    assert!(
        stats.agents_removed >= 1 && stats.requeued_lost_agent + stats.gave_up >= 1,
        "the killed memory node's flush was not requeued: {stats:?}"
    );
    let placement = db.stats().placement.flush;
    assert!(placement.fallback_failed >= 1, "{placement:?}");
    db.close().unwrap();
    let tables = table_files(dir.path());
    let reopened = Db::open(
        dir.path(),
        DbOptions {
            offload: None,
            compaction_service: None,
            disable_auto_compactions: true,
            ..o
        },
    )
    .unwrap();
    let live: usize = reopened.stats().levels.iter().map(|l| l.files).sum();
    assert_eq!(
        tables, live,
        "the directory held {tables} tables after close but the database lists {live}"
    );
    for (k, v) in &model {
        assert_eq!(reopened.get(k).unwrap().as_ref(), Some(v), "after reopen");
    }
    reopened.close().unwrap();
    service.shutdown();
}
