//! The compaction service as processes: an `o3-csa scheduler` child and
//! `o3-csa agent` children running real compaction jobs of real databases,
//! which the databases then install. Faults: an agent killed mid-job, an
//! agent that cannot see the files, a deleted input, a scheduler killed and
//! restarted. Every wait is bounded.

mod common;
mod csa_child;

use std::time::{Duration, Instant};

use common::{TestDb, WAIT, finished, token};
use csa_child::CsaChild;
use o3_csa::scheduler::epoch_slice;
use o3_csa::{CsaError, FailureKind, JobStatus, SchedulerClient};
use o3_storage::filename::table_path;

async fn client(addr: &str) -> SchedulerClient {
    SchedulerClient::connect(addr, token(), Duration::from_secs(5))
        .await
        .unwrap()
}

fn done(status: JobStatus) -> o3_csa::RemoteRun {
    match status {
        JobStatus::Done(run) => run,
        other => panic!("expected a finished job, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_on_both_agents_and_install_with_content_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (_scheduler, addr) = CsaChild::scheduler(dir.path(), &[]);
    // Throttled reads (about 0.1 s a job) keep the first job running when
    // the second arrives: an idle agent that already ran a job is the
    // faster one by measure and would otherwise get both.
    let slow = ["--slots", "1", "--storage-read-mbps", "2"];
    let _a1 = CsaChild::agent(dir.path(), &addr, "a1", &slow);
    let _a2 = CsaChild::agent(dir.path(), &addr, "a2", &slow);
    let client = client(&addr).await;
    let dbs = [TestDb::new(3, 400, 100), TestDb::new(3, 400, 100)];
    let mut prepared = Vec::new();
    for (i, db) in dbs.iter().enumerate() {
        let tenant = client
            .register_tenant(&format!("db{i}"), &db.root(), 0)
            .await
            .unwrap();
        prepared.push((tenant, db.scan(), db.claim()));
    }
    // Both submitted back to back.
    let mut tickets = Vec::new();
    for (tenant, before, job) in prepared {
        let ticket = client.submit(&tenant, &job, 1.0, 2).await.unwrap().ticket;
        tickets.push((tenant, ticket, before, job));
    }
    for ((tenant, ticket, before, job), db) in tickets.into_iter().zip(&dbs) {
        let run = done(finished(&client, &tenant, ticket).await);
        assert_eq!((run.epoch, run.tries), (0, 1));
        let slice = epoch_slice(job.file_numbers.clone(), 2, 0);
        assert!(run.result.outputs.iter().all(|o| slice.contains(&o.number)));
        db.db.install_compaction(run.result).unwrap();
        assert_eq!(
            db.scan(),
            before,
            "content changed by the remote compaction"
        );
    }
    let stats = client.stats().await.unwrap();
    let done_per_agent: Vec<u64> = stats.agents.iter().map(|a| a.jobs_done).collect();
    assert_eq!(done_per_agent, [1, 1], "{stats:?}");
    assert!(stats.tenants.iter().all(|t| t.done == 1 && t.l0_jobs == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agents_job_finishes_on_the_other_agent_in_epoch_1() {
    let dir = tempfile::tempdir().unwrap();
    let (_scheduler, addr) = CsaChild::scheduler(dir.path(), &["--heartbeat-timeout-ms", "1000"]);
    // About 1.5 MB of input at 0.2 MB/s: the job runs for seconds.
    let mut slow = CsaChild::agent(
        dir.path(),
        &addr,
        "slow",
        &["--slots", "1", "--storage-read-mbps", "0.2"],
    );
    let client = client(&addr).await;
    let db = TestDb::new(3, 3000, 160);
    let before = db.scan();
    let tenant = client.register_tenant("db", &db.root(), 0).await.unwrap();
    let job = db.claim();
    let ticket = client.submit(&tenant, &job, 1.0, 2).await.unwrap().ticket;
    let deadline = Instant::now() + WAIT;
    loop {
        match client
            .await_job(&tenant, ticket, Duration::ZERO)
            .await
            .unwrap()
        {
            JobStatus::Running { agent, epoch: 0 } if agent == "slow" => break,
            JobStatus::Queued | JobStatus::Running { .. } => {}
            other => panic!("the slow agent should be running the job: {other:?}"),
        }
        assert!(Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _fast = CsaChild::agent(dir.path(), &addr, "fast", &["--slots", "1"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    slow.kill();

    let run = done(finished(&client, &tenant, ticket).await);
    assert_eq!((run.agent.as_str(), run.epoch, run.tries), ("fast", 1, 2));
    let slice1 = epoch_slice(job.file_numbers.clone(), 2, 1);
    assert!(
        run.result
            .outputs
            .iter()
            .all(|o| slice1.contains(&o.number))
    );
    let stats = client.stats().await.unwrap();
    assert_eq!((stats.requeued_lost_agent, stats.agents_removed), (1, 1));
    db.db.install_compaction(run.result).unwrap();
    assert_eq!(db.scan(), before);
    // The killed agent could not clean up: the agent of epoch 1 deleted
    // what epoch 0 left in its slice before it started.
    let slice0 = epoch_slice(job.file_numbers.clone(), 2, 0);
    let left: Vec<u64> = slice0
        .filter(|n| table_path(&db.root(), *n).exists())
        .collect();
    assert!(left.is_empty(), "epoch 0 left tables {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_cannot_see_the_files_fails_every_try_then_the_job_is_given_back() {
    let dir = tempfile::tempdir().unwrap();
    let (_scheduler, addr) = CsaChild::scheduler(dir.path(), &["--max-tries", "2"]);
    let db = TestDb::new(2, 100, 32);
    let nowhere = dir.path().join("not-mounted");
    let map = format!("{}={}", db.root().display(), nowhere.display());
    let _blind = CsaChild::agent(dir.path(), &addr, "blind", &["--path-map", &map]);
    let client = client(&addr).await;
    let tenant = client.register_tenant("db", &db.root(), 0).await.unwrap();
    let ticket = client
        .submit(&tenant, &db.claim(), 1.0, 3)
        .await
        .unwrap()
        .ticket;
    match finished(&client, &tenant, ticket).await {
        JobStatus::Failed { kind, tries, error } => {
            assert_eq!((kind, tries), (FailureKind::InputUnreadable, 2), "{error}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let stats = client.stats().await.unwrap();
    assert_eq!((stats.retried, stats.gave_up), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_input_fails_at_once_as_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let (_scheduler, addr) = CsaChild::scheduler(dir.path(), &["--max-tries", "1"]);
    let _agent = CsaChild::agent(dir.path(), &addr, "a", &[]);
    let client = client(&addr).await;
    let db = TestDb::new(2, 100, 32);
    let tenant = client.register_tenant("db", &db.root(), 0).await.unwrap();
    let job = db.claim();
    let input = job.inputs[0].1[0].number;
    std::fs::remove_file(table_path(&db.root(), input)).unwrap();
    let started = Instant::now();
    let ticket = client.submit(&tenant, &job, 1.0, 1).await.unwrap().ticket;
    match finished(&client, &tenant, ticket).await {
        JobStatus::Failed { kind, error, .. } => {
            assert_eq!(kind, FailureKind::InputUnreadable, "{error}");
            assert!(error.contains(&format!("{input:06}.sst")), "{error}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_scheduler_loses_sessions_and_agents_come_back_by_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let (mut scheduler, addr) = CsaChild::scheduler(dir.path(), &[]);
    let mut agent = CsaChild::agent(dir.path(), &addr, "a", &[]);
    let client = client(&addr).await;
    let db = TestDb::new(2, 100, 32);
    let old = client.register_tenant("db", &db.root(), 0).await.unwrap();

    scheduler.kill();
    let error = client.load().await.unwrap_err();
    assert!(error.is_unavailable(), "{error}");

    let (_restarted, _) = CsaChild::scheduler_on(dir.path(), &addr, &[]);
    agent.next_line("agent a registered as ");
    let job = db.claim();
    let error = client.submit(&old, &job, 1.0, 1).await.unwrap_err();
    assert!(matches!(error, CsaError::SessionLost(_)), "{error}");
    let tenant = client.register_tenant("db", &db.root(), 0).await.unwrap();
    assert_ne!(tenant.instance, old.instance);
    let before = db.scan();
    let ticket = client.submit(&tenant, &job, 1.0, 1).await.unwrap().ticket;
    let run = done(finished(&client, &tenant, ticket).await);
    db.db.install_compaction(run.result).unwrap();
    assert_eq!(db.scan(), before);
}
