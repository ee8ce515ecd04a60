//! The whole compaction service as a user runs it: real databases (compute
//! nodes) configured with `DbOptions::compaction_service`, an
//! `o3-csa scheduler` child and `o3-csa agent` children. Writes are checked
//! against a model (`BTreeMap`) after every fault and after a reopen:
//! nothing acknowledged may be lost. Faults: an agent SIGKILLed mid-job, an
//! agent stopped mid-job whose late result must be fenced, the scheduler
//! SIGKILLed and restarted, an agent that fails every job. Two tenants
//! share a scheduler; a higher-priority tenant's level-0 jobs wait less.
//! Every wait is bounded.

mod common;
mod csa_child;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestDb, WAIT, finished, token};
use csa_child::CsaChild;
use o3_compute::{
    CompactionServiceOptions, Db, DbOptions, DbStats, PlacementPolicy, PlacementReason,
};
use o3_csa::{CsaError, JobStatus, SchedulerClient};
use o3_storage::compaction::{CompactionOptions, LeveledOptions};
use o3_storage::env::LocalFs;
use o3_storage::options::TableOptions;
use o3_transport::control::proto::csa::v1::StatsResponse;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Small memtables and tables so a few thousand writes make many
/// compactions; auto compactions on, idle compaction off (a test's quiet
/// moments must not start work behind its back).
fn options(service: Option<CompactionServiceOptions>) -> DbOptions {
    DbOptions {
        storage: Arc::new(LocalFs::new()),
        write_buffer_size: 32 * 1024,
        max_unflushed_bytes: 16 * 32 * 1024,
        table: TableOptions {
            block_size: 1024,
            ..TableOptions::default()
        },
        compaction: CompactionOptions {
            levels: LeveledOptions {
                num_levels: 4,
                l0_compaction_trigger: 2,
                max_bytes_for_level_base: 256 * 1024,
                max_bytes_for_level_multiplier: 4.0,
                target_file_size_base: 64 * 1024,
                max_compaction_bytes: 4 << 20,
                ..LeveledOptions::default()
            },
            ..CompactionOptions::default()
        },
        l0_slowdown_writes_trigger: 16,
        l0_stop_writes_trigger: 24,
        idle_compaction_after: None,
        compaction_service: service,
        ..DbOptions::default()
    }
}

fn service(addr: &str, tenant: &str, policy: PlacementPolicy) -> CompactionServiceOptions {
    CompactionServiceOptions {
        tenant: Some(tenant.to_string()),
        policy,
        ..CompactionServiceOptions::new(addr, token())
    }
}

/// A database and the model of everything acknowledged in it.
struct Tenant {
    dir: tempfile::TempDir,
    db: Option<Db>,
    model: Model,
    rng: SmallRng,
}

impl Tenant {
    fn open(service: CompactionServiceOptions, seed: u64) -> Tenant {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), options(Some(service))).unwrap();
        Tenant {
            dir,
            db: Some(db),
            model: Model::new(),
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    fn db(&self) -> &Db {
        self.db.as_ref().unwrap()
    }

    /// `n` random puts and deletes over 4000 keys, each checked into the
    /// model once acknowledged.
    fn write(&mut self, n: usize) {
        for _ in 0..n {
            let key = format!("key{:05}", self.rng.random_range(0..4000u32)).into_bytes();
            if self.rng.random_range(0..10) == 0 {
                self.db.as_ref().unwrap().delete(&key).unwrap();
                self.model.remove(&key);
            } else {
                let mut value = vec![0u8; 200];
                self.rng.fill(&mut value[..]);
                self.db.as_ref().unwrap().put(&key, &value).unwrap();
                self.model.insert(key, value);
            }
        }
    }

    /// Write until `done(stats)` holds (bounded by [`WAIT`]).
    fn write_until(&mut self, what: &str, done: impl Fn(&DbStats) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(&self.db().stats()) {
            assert!(
                Instant::now() < deadline,
                "{what}: not reached after {WAIT:?} of writes: {}",
                self.db().stats()
            );
            self.write(200);
        }
    }

    /// Connect, then write until an agent of the scheduler at `addr` holds
    /// a job (bounded by [`WAIT`]).
    fn write_until_an_agent_runs_a_job(&mut self, addr: &str) {
        self.write_until("service connected", |s| s.placement.service_connected);
        let deadline = Instant::now() + WAIT;
        while scheduler_stats(addr).agents.iter().all(|a| a.running == 0) {
            assert!(Instant::now() < deadline, "no job reached an agent");
            self.write(100);
        }
    }

    /// Everything acknowledged reads back: a full scan and point lookups.
    fn check(&self, when: &str) {
        let db = self.db();
        let scanned: Model = db
            .scan::<std::ops::RangeFull>(.., false)
            .unwrap()
            .into_iter()
            .collect();
        assert!(
            scanned == self.model,
            "{when}: a scan disagrees with the model"
        );
        for (k, v) in self.model.iter().step_by(97) {
            assert_eq!(db.get(k).unwrap().as_deref(), Some(&v[..]), "{when}");
        }
        assert_eq!(db.background_error(), None, "{when}");
    }

    /// Close (jobs in flight report first), check that the directory holds
    /// no table the reopened database does not list, reopen without the
    /// service and check the content again.
    fn close_and_verify(&mut self) {
        let db = self.db.take().unwrap();
        // Nothing left to replay: the reopen adds no table of its own.
        db.flush().unwrap();
        db.close().unwrap();
        let tables = table_files(self.dir.path());
        let db = Db::open(
            self.dir.path(),
            DbOptions {
                disable_auto_compactions: true,
                ..options(None)
            },
        )
        .unwrap();
        let live: usize = db.stats().levels.iter().map(|l| l.files).sum();
        assert_eq!(
            tables, live,
            "the directory held {tables} tables after close but the database lists {live}: orphans were left"
        );
        self.db = Some(db);
        self.check("after reopen");
    }
}

fn table_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".sst"))
        })
        .count()
}

fn count(stats: &DbStats, reason: PlacementReason) -> u64 {
    stats
        .placement
        .decisions
        .iter()
        .find(|(r, _)| *r == reason)
        .map_or(0, |(_, n)| *n)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn scheduler_stats(addr: &str) -> StatsResponse {
    runtime().block_on(async {
        let client = SchedulerClient::connect(addr, token(), Duration::from_secs(5))
            .await
            .unwrap();
        client.stats().await.unwrap()
    })
}

/// Poll the scheduler's stats until `done` holds (bounded by [`WAIT`]).
fn wait_for_scheduler(addr: &str, what: &str, done: impl Fn(&StatsResponse) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = scheduler_stats(addr);
        if done(&stats) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {stats:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_write_heavy_run_compacts_remotely_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_scheduler, addr) = CsaChild::scheduler(dir.path(), &[]);
    // More slots than the database runs compactions at once: the service
    // is never saturated, so once connected every compaction goes there.
    let _a1 = CsaChild::agent(dir.path(), &addr, "a1", &["--slots", "4"]);
    let _a2 = CsaChild::agent(dir.path(), &addr, "a2", &["--slots", "4"]);
    let mut t = Tenant::open(service(&addr, "heavy", PlacementPolicy::PreferRemote), 1);
    t.write_until("service connected", |s| s.placement.service_connected);
    let (remote_before, local_before) = t.db().stats().placement.remote_and_local();
    t.write_until("eight remote compactions", |s| s.placement.remote_done >= 8);
    t.check("after the run");
    let stats = t.db().stats();
    let (remote, local) = stats.placement.remote_and_local();
    assert!(
        remote - remote_before > local - local_before,
        "most compactions after connecting should run remotely: {}",
        stats.placement
    );
    assert!(stats.placement.remote_bytes_written > 0);
    let s = scheduler_stats(&addr);
    let done: u64 = s.agents.iter().map(|a| a.jobs_done).sum();
    assert!(done >= 8, "{s:?}");
    assert!(s.tenants.iter().any(|t| t.name == "heavy" && t.done >= 8));
    t.close_and_verify();
}

#[test]
fn an_agent_killed_mid_job_loses_nothing_and_the_job_finishes_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let (_scheduler, addr) = CsaChild::scheduler(dir.path(), &["--heartbeat-timeout-ms", "1000"]);
    // Reads at 0.3 MB/s: a compaction of a few hundred KB runs for a second
    // or more, long enough to be killed in.
    let mut slow = CsaChild::agent(
        dir.path(),
        &addr,
        "slow",
        &["--slots", "1", "--storage-read-mbps", "0.3"],
    );
    let mut t = Tenant::open(service(&addr, "victim", PlacementPolicy::PreferRemote), 2);
    // Write until the slow agent holds a job, then bring a healthy one.
    t.write_until_an_agent_runs_a_job(&addr);
    let _fast = CsaChild::agent(dir.path(), &addr, "fast", &["--slots", "2"]);
    slow.kill();
    wait_for_scheduler(&addr, "the killed agent's job requeued", |s| {
        s.requeued_lost_agent >= 1
    });
    t.write_until("the requeued job finished on the other agent", |s| {
        s.placement.remote_retries >= 1
    });
    t.write(2000);
    t.check("after the kill");
    let stats = t.db().stats();
    assert_eq!(stats.placement.remote_failed, 0, "{}", stats.placement);
    t.close_and_verify();
}

#[test]
fn a_job_left_queued_without_agents_is_withdrawn_and_run_here() {
    let dir = tempfile::tempdir().unwrap();
    let (_scheduler, addr) = CsaChild::scheduler(dir.path(), &["--heartbeat-timeout-ms", "1000"]);
    let mut only = CsaChild::agent(
        dir.path(),
        &addr,
        "only",
        &["--slots", "1", "--storage-read-mbps", "0.3"],
    );
    let mut t = Tenant::open(
        CompactionServiceOptions {
            max_queue_wait: Duration::from_millis(1500),
            ..service(&addr, "stranded", PlacementPolicy::PreferRemote)
        },
        8,
    );
    t.write_until_an_agent_runs_a_job(&addr);
    // The only agent dies: its job goes back to the queue, where nothing
    // will take it. The compute node withdraws it and runs it itself.
    only.kill();
    wait_for_scheduler(&addr, "the job withdrawn", |s| s.cancelled >= 1);
    t.write_until("the withdrawn job run here", |s| {
        count(s, PlacementReason::LocalAfterRemoteFailure) >= 1 && s.placement.remote_failed >= 1
    });
    t.write(2000);
    t.check("after the withdrawal");
    t.close_and_verify();
}

#[test]
fn a_late_result_of_a_stopped_agent_is_fenced_and_its_files_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (_scheduler, addr) = CsaChild::scheduler(dir.path(), &["--heartbeat-timeout-ms", "1000"]);
    let slow = CsaChild::agent(
        dir.path(),
        &addr,
        "slow",
        &["--slots", "1", "--storage-read-mbps", "0.3"],
    );
    let mut t = Tenant::open(service(&addr, "late", PlacementPolicy::PreferRemote), 3);
    t.write_until_an_agent_runs_a_job(&addr);
    // Frozen: it misses its heartbeats and its job moves on.
    slow.signal(libc::SIGSTOP);
    let _fast = CsaChild::agent(dir.path(), &addr, "fast", &["--slots", "2"]);
    wait_for_scheduler(&addr, "the stopped agent's job requeued", |s| {
        s.requeued_lost_agent >= 1
    });
    t.write_until("the job finished in its next epoch", |s| {
        s.placement.remote_retries >= 1
    });
    // Thawed, it finishes the old epoch and reports: fenced, and it
    // deletes what it wrote.
    slow.signal(libc::SIGCONT);
    wait_for_scheduler(&addr, "the late report fenced", |s| s.fenced_reports >= 1);
    t.check("after the late result");
    // The agent deletes its files right after the fenced report; wait for
    // the quiet that close gives and check that no orphan is left.
    std::thread::sleep(Duration::from_millis(300));
    t.close_and_verify();
}

#[test]
fn a_killed_scheduler_means_local_compactions_until_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (mut scheduler, addr) = CsaChild::scheduler(dir.path(), &[]);
    let mut a1 = CsaChild::agent(dir.path(), &addr, "a1", &["--slots", "2"]);
    let mut a2 = CsaChild::agent(dir.path(), &addr, "a2", &["--slots", "2"]);
    let mut t = Tenant::open(service(&addr, "orphan", PlacementPolicy::PreferRemote), 4);
    t.write_until("remote compactions", |s| s.placement.remote_done >= 2);
    scheduler.kill();
    let before = t.db().stats();
    t.write_until("local compactions while the scheduler is down", |s| {
        count(s, PlacementReason::LocalUnreachable)
            > count(&before, PlacementReason::LocalUnreachable)
            && s.compactions > before.compactions + 2
    });
    t.check("while the scheduler is down");
    assert!(!t.db().stats().placement.service_connected);
    // Back on the same address: agents and the compute node register again
    // by themselves, and compactions go remote again.
    let (_scheduler, again) = CsaChild::scheduler_on(dir.path(), &addr, &[]);
    assert_eq!(again, addr);
    wait_for_scheduler(&addr, "agents registered again", |s| s.agents.len() == 2);
    t.write_until("connected again", |s| s.placement.service_connected);
    let back = t.db().stats();
    t.write_until("remote compactions again", |s| {
        s.placement.remote_done > back.placement.remote_done
    });
    t.check("after the scheduler returned");
    // Jobs of the first scheduler that were still running when it died
    // report to the second one, which fences them: their agents delete
    // what they wrote. Stopping the agents lets them finish that.
    for agent in [&mut a1, &mut a2] {
        agent.signal(libc::SIGTERM);
        assert!(agent.wait_exit().success());
    }
    t.close_and_verify();
}

#[test]
fn jobs_an_agent_fails_every_time_come_back_and_run_locally() {
    let dir = tempfile::tempdir().unwrap();
    let (_scheduler, addr) = CsaChild::scheduler(dir.path(), &["--max-tries", "2"]);
    let mut t = Tenant::open(service(&addr, "blind", PlacementPolicy::PreferRemote), 5);
    // The agent looks for the tenant's files under a directory that does
    // not exist: every try fails with an unreadable input.
    let map = format!(
        "{}={}",
        t.dir.path().display(),
        dir.path().join("nowhere").display()
    );
    let _blind = CsaChild::agent(dir.path(), &addr, "blind", &["--path-map", &map]);
    t.write_until("jobs given back and run here", |s| {
        s.placement.remote_failed >= 2 && count(s, PlacementReason::LocalAfterRemoteFailure) >= 2
    });
    t.write(1000);
    t.check("after the failed tries");
    let s = scheduler_stats(&addr);
    assert!(s.gave_up >= 2 && s.retried >= 2, "{s:?}");
    assert_eq!(t.db().stats().placement.remote_done, 0);
    t.close_and_verify();
}

#[test]
fn two_tenants_share_a_scheduler_and_neither_reaches_the_others_files() {
    let dir = tempfile::tempdir().unwrap();
    let (_scheduler, addr) = CsaChild::scheduler(dir.path(), &[]);
    let _a1 = CsaChild::agent(dir.path(), &addr, "a1", &["--slots", "2"]);
    let _a2 = CsaChild::agent(dir.path(), &addr, "a2", &["--slots", "2"]);
    let mut a = Tenant::open(service(&addr, "tenant-a", PlacementPolicy::PreferRemote), 6);
    let mut b = Tenant::open(service(&addr, "tenant-b", PlacementPolicy::PreferRemote), 7);
    let deadline = Instant::now() + WAIT;
    while a.db().stats().placement.remote_done < 3 || b.db().stats().placement.remote_done < 3 {
        assert!(Instant::now() < deadline, "both tenants should progress");
        a.write(200);
        b.write(200);
    }
    a.check("tenant a");
    b.check("tenant b");
    let s = scheduler_stats(&addr);
    for name in ["tenant-a", "tenant-b"] {
        assert!(
            s.tenants.iter().any(|t| t.name == name && t.done >= 3),
            "{s:?}"
        );
    }
    // Tenant c registers and tries to compact b's files: refused.
    let c = TestDb::new(3, 200, 50);
    let job = {
        let other = TestDb::new(3, 200, 50);
        let mut job = other.claim();
        job.dir = b.dir.path().to_owned();
        job
    };
    runtime().block_on(async {
        let client = SchedulerClient::connect(&addr, token(), Duration::from_secs(5))
            .await
            .unwrap();
        let session = client
            .register_tenant("tenant-c", &c.root(), 0)
            .await
            .unwrap();
        let err = client.submit(&session, &job, 1.0, 1).await.unwrap_err();
        assert!(matches!(err, CsaError::PermissionDenied(_)), "{err}");
    });
    let s = scheduler_stats(&addr);
    let refused = s.tenants.iter().find(|t| t.name == "tenant-c").unwrap();
    assert_eq!(refused.refused, 1);
    a.close_and_verify();
    b.close_and_verify();
}

#[test]
fn a_higher_priority_tenants_level_0_jobs_wait_less() {
    let dir = tempfile::tempdir().unwrap();
    // One slot: jobs queue behind each other. No starvation rule within
    // the test's horizon, so priority alone orders the queue.
    let (_scheduler, addr) = CsaChild::scheduler(dir.path(), &["--starvation-ms", "600000"]);
    let _agent = CsaChild::agent(
        dir.path(),
        &addr,
        "only",
        &["--slots", "1", "--storage-read-mbps", "2"],
    );
    let (blocker, low, high) = (
        TestDb::new(3, 2000, 160),
        TestDb::new(3, 2000, 160),
        TestDb::new(3, 2000, 160),
    );
    runtime().block_on(async {
        let client = SchedulerClient::connect(&addr, token(), Duration::from_secs(5))
            .await
            .unwrap();
        let mut tickets = Vec::new();
        // The blocker takes the slot; the low-priority tenant queues first,
        // the high-priority one after it, with the same level and score.
        for (name, db, priority) in [
            ("blocker", &blocker, 0),
            ("low", &low, 0),
            ("high", &high, 5),
        ] {
            let session = client
                .register_tenant(name, &db.root(), priority)
                .await
                .unwrap();
            let job = db.claim();
            assert!(job.inputs.iter().any(|(level, _)| *level == 0));
            let ticket = client.submit(&session, &job, 1.0, 1).await.unwrap().ticket;
            tickets.push((session, ticket));
            if name == "blocker" {
                let deadline = Instant::now() + WAIT;
                while client.load().await.unwrap().slots_free > 0 {
                    assert!(Instant::now() < deadline, "the blocker never started");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        for (session, ticket) in &tickets {
            let status = finished(&client, session, *ticket).await;
            assert!(matches!(status, JobStatus::Done(_)), "{status:?}");
        }
    });
    let s = scheduler_stats(&addr);
    let wait = |name: &str| {
        let t = s.tenants.iter().find(|t| t.name == name).unwrap();
        assert_eq!(t.l0_jobs, 1, "{t:?}");
        t.l0_queue_wait_us_total
    };
    let (low_wait, high_wait) = (wait("low"), wait("high"));
    assert!(
        high_wait < low_wait,
        "the high-priority tenant waited {high_wait} µs, the low one {low_wait} µs"
    );
}
