//! Flush offloading under process faults, agent side: an `o3-csa
//! scheduler` child and `o3-csa agent` children (one with throttled
//! storage writes, so a flush lasts seconds) run the flushes of a database
//! whose sealed memtables are on a memory node served in this process; the
//! agents read the images over the memory node's tcp data plane. The slow
//! agent is SIGKILLed while it runs a flush: the flush completes elsewhere
//! (the other agent, in the next epoch, or here), every acknowledged write
//! is readable afterwards and after a reopen, and the directory holds no
//! table the database does not list (the next epoch deletes what the killed
//! one left). A second run pauses the slow agent (SIGSTOP) instead and
//! lets it go on (SIGCONT) once its flush completed elsewhere: its late
//! report of the superseded epoch is fenced, and it deletes what it wrote.
//! Every wait is bounded.

mod common;
mod csa_child;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{WAIT, token};
use csa_child::CsaChild;
use o3_compute::{
    CompactionServiceOptions, Db, DbOptions, FlushPlacement, MemoryNodeChoice, OffloadOptions,
    PlacementPolicy,
};
use o3_csa::SchedulerClient;
use o3_memnode::local::{LocalMemoryNode, LocalMemoryNodeOptions};

fn key(i: u64) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

/// The scheduler's view, from a blocking test thread.
struct Scheduler {
    runtime: tokio::runtime::Runtime,
    client: SchedulerClient,
}

impl Scheduler {
    fn connect(addr: &str) -> Scheduler {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = runtime
            .block_on(SchedulerClient::connect(addr, token(), WAIT))
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

/// What happens to the agent running a flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// SIGKILL.
    Kill,
    /// SIGSTOP until the flush completed elsewhere, then SIGCONT.
    Pause,
}

#[test]
fn sigkill_of_an_agent_during_a_flush_loses_nothing_and_leaves_no_orphan() {
    agent_fault_during_a_flush(Fault::Kill);
}

#[test]
fn a_paused_agents_late_flush_report_is_fenced_and_its_table_deleted() {
    agent_fault_during_a_flush(Fault::Pause);
}

fn agent_fault_during_a_flush(fault: Fault) {
    let dir = tempfile::tempdir().unwrap();
    let (_scheduler, addr) = CsaChild::scheduler(dir.path(), &["--heartbeat-timeout-ms", "1000"]);
    // 20 KB/s of table writes: each flush lasts seconds.
    let mut slow = CsaChild::agent(
        dir.path(),
        &addr,
        "slow",
        &["--slots", "1", "--storage-write-mbps", "0.02"],
    );
    let node = LocalMemoryNode::start(LocalMemoryNodeOptions {
        pool_size: 256 << 20,
        lease_ttl: Duration::from_secs(30),
        token: token(),
        flush_executor: None,
        storage: None,
    })
    .unwrap();
    let db_dir = tempfile::tempdir().unwrap();
    let o = DbOptions {
        write_buffer_size: 8 << 10,
        max_unflushed_bytes: 64 << 20,
        wal_segment_size: 64 << 10,
        max_total_wal_size: 64 << 20,
        offload: Some(OffloadOptions {
            memory_node: MemoryNodeChoice::Config(node.store_config("agent-faults")),
            max_local_sealed_memtables: 0,
            min_memtables_to_merge: 4,
            ..OffloadOptions::default()
        }),
        compaction_service: Some(CompactionServiceOptions {
            // Compactions stay here: the agents run flushes only.
            policy: PlacementPolicy::Local,
            flush: FlushPlacement::Agent,
            max_queue_wait: Duration::from_secs(5),
            ..CompactionServiceOptions::new(&addr, token())
        }),
        ..DbOptions::default()
    };
    let db = Db::open(db_dir.path(), o.clone()).unwrap();
    let scheduler = Scheduler::connect(&addr);
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
        "the slow agent runs a flush",
        || {
            scheduler
                .stats()
                .agents
                .iter()
                .any(|a| a.name == "slow" && a.running > 0)
        },
        || write(&db, 200, &mut model),
    );
    let _fast = CsaChild::agent(dir.path(), &addr, "fast", &["--slots", "2"]);
    match fault {
        Fault::Kill => slow.kill(),
        Fault::Pause => slow.signal(libc::SIGSTOP),
    }
    write(&db, 2000, &mut model);
    // Waits for every flush, the one the killed agent was running included.
    db.flush().unwrap();
    for (k, v) in &model {
        assert_eq!(db.get(k).unwrap().as_ref(), Some(v), "after the kill");
    }
    assert_eq!(db.background_error(), None);
    let stats = scheduler.stats();
    assert!(
        stats.agents_removed >= 1 && stats.requeued_lost_agent >= 1,
        "the killed agent's flush was not requeued: {stats:?}"
    );
    assert!(stats.flushes_on_agent >= 1, "{stats:?}");
    if fault == Fault::Pause {
        slow.signal(libc::SIGCONT);
        // The superseded try is fenced one of two ways, both ending with
        // the agent deleting what it wrote: its report is refused
        // (`fenced_reports`), or, when a heartbeat of the agent's new
        // registration already carried the epoch's cancellation, the
        // agent deletes the finished try's files without reporting (a CI
        // log showed this order). Done when either happened: a fenced
        // report, or the re-registered agent heartbeating (rss_bytes comes
        // only from heartbeats) with nothing running any more.
        let limit = 3 * WAIT;
        let deadline = Instant::now() + limit;
        let settled = |s: &o3_transport::control::proto::csa::v1::StatsResponse| {
            s.fenced_reports >= 1
                || s.agents
                    .iter()
                    .any(|a| a.name == "slow" && a.rss_bytes > 0 && a.running == 0)
        };
        while !settled(&scheduler.stats()) {
            if Instant::now() >= deadline {
                let stats = scheduler.stats();
                panic!(
                    "the paused agent's superseded try was not fenced within {limit:?}: {stats:?}\nthe slow agent's log:\n{}",
                    slow.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // It deletes its table once fenced; the next reopen would remove a
        // table left behind, so look before.
        let deadline = Instant::now() + WAIT;
        let live = || db.stats().levels.iter().map(|l| l.files).sum::<usize>();
        while table_files(db_dir.path()) != live() {
            assert!(
                Instant::now() < deadline,
                "the fenced try's table was not deleted"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    db.close().unwrap();
    let tables = table_files(db_dir.path());
    let reopened = Db::open(
        db_dir.path(),
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
}
