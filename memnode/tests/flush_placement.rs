//! Flush placement, metamorphic: the same random operations (writes,
//! deletes, range deletions, snapshots, gets, scans both ways, flushes,
//! reopens) give identical answers, each equal to a `BTreeMap` model, with
//! flushes placed on the compute node, on the memory node holding the
//! images (its flush executor), on a compaction agent (reading the images
//! from the memory node), and automatically — with one shard and with four
//! static shards. Every database offloads its sealed memtables to a memory
//! node of its own served from this process
//! ([`o3_memnode::local::LocalMemoryNode`], tcp data plane); all share one
//! in-process compaction service ([`o3_csa::LocalService`]). The stats
//! prove each placement actually ran flushes where it says.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use o3_compute::{
    ClusterToken, CompactionServiceOptions, Db, DbOptions, FlushPlacement, MemoryNodeChoice,
    OffloadOptions, PlacementReason,
};
use o3_csa::scheduler::SchedulerConfig;
use o3_csa::{LocalService, LocalServiceOptions, SchedulerClient};
use o3_memnode::local::{LocalMemoryNode, LocalMemoryNodeOptions};
use o3_storage::env::LocalFs;

const TOKEN: &str = "flush-placement-token";
const KEYS: u64 = 400;
/// Longest wait for the in-process services to come up.
const WAIT: Duration = Duration::from_secs(20);

fn token() -> ClusterToken {
    ClusterToken::new(TOKEN).unwrap()
}

fn key(i: u64) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

/// A database under test, its memory node, and how to reopen it.
struct Subject {
    placement: FlushPlacement,
    dir: tempfile::TempDir,
    options: DbOptions,
    db: Option<Db>,
    node: LocalMemoryNode,
    /// Flush counts of earlier incarnations: (memnode, agent).
    ran: (u64, u64),
}

impl Subject {
    fn open(placement: FlushPlacement, shards: usize, service: &LocalService) -> Subject {
        // Only a memory node that should run flushes executes them: a
        // flush placed on an agent must be read over the data plane.
        let executes = matches!(placement, FlushPlacement::Memnode | FlushPlacement::Auto);
        let node = LocalMemoryNode::start(LocalMemoryNodeOptions {
            pool_size: 128 << 20,
            lease_ttl: Duration::from_secs(30),
            token: token(),
            flush_executor: executes.then(|| (service.endpoint().to_owned(), 2)),
            storage: Some(Arc::new(LocalFs::new())),
        })
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let shard_splits = (1..shards as u64)
            .map(|i| key(i * KEYS / shards as u64))
            .collect();
        let options = DbOptions {
            write_buffer_size: 8 << 10,
            max_unflushed_bytes: 16 << 20,
            wal_segment_size: 64 << 10,
            max_total_wal_size: 64 << 20,
            shard_splits,
            offload: Some(OffloadOptions {
                memory_node: MemoryNodeChoice::Config(node.store_config("flush-placement")),
                max_local_sealed_memtables: 0,
                min_memtables_to_merge: 4,
                ..OffloadOptions::default()
            }),
            compaction_service: Some(CompactionServiceOptions {
                flush: placement,
                ..CompactionServiceOptions::new(service.endpoint(), token())
            }),
            ..DbOptions::default()
        };
        let db = Db::open(dir.path(), options.clone()).unwrap();
        let subject = Subject {
            placement,
            dir,
            options,
            db: Some(db),
            node,
            ran: (0, 0),
        };
        if executes {
            wait_for_memnode(service, subject.node.plane());
        }
        subject
    }

    fn db(&self) -> &Db {
        self.db.as_ref().unwrap()
    }

    /// Flushes run on the memory node and on agents, all incarnations.
    fn flushes_ran(&self) -> (u64, u64) {
        let stats = self.db().stats();
        let f = &stats.placement.flush;
        // Every flush that ran elsewhere was sent as a flush, not counted
        // among the compactions sent to the service.
        let sent: u64 = stats
            .placement
            .decisions
            .iter()
            .filter(|(r, _)| *r == PlacementReason::RemoteFlush)
            .map(|(_, n)| n)
            .sum();
        assert!(sent >= f.memnode + f.agent, "{:?}", stats.placement);
        (self.ran.0 + f.memnode, self.ran.1 + f.agent)
    }

    fn reopen(&mut self) {
        self.ran = self.flushes_ran();
        self.db.take().unwrap().close().unwrap();
        self.db = Some(Db::open(self.dir.path(), self.options.clone()).unwrap());
    }
}

/// Wait (bounded) until the scheduler lists the flush executor of the
/// memory node with data-plane node `plane`.
fn wait_for_memnode(service: &LocalService, plane: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    runtime.block_on(async {
        let client = SchedulerClient::connect(service.endpoint(), token(), WAIT)
            .await
            .unwrap();
        loop {
            let load = client.load().await.unwrap();
            if load
                .memnodes
                .iter()
                .any(|m| m.memnode.as_deref() == Some(plane))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "memory node {plane} never registered its flush executor"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// Scan `[lo, hi)` forwards or backwards, as ordered pairs.
fn scan(db: &Db, lo: u64, hi: u64, reverse: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
    let range = db.range(key(lo)..key(hi));
    let mut out: Vec<_> = if reverse {
        range.rev().map(|r| r.unwrap()).collect()
    } else {
        range.map(|r| r.unwrap()).collect()
    };
    if reverse {
        out.reverse();
    }
    out
}

fn model_scan(model: &BTreeMap<Vec<u8>, Vec<u8>>, lo: u64, hi: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    model
        .range(key(lo)..key(hi))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

const PLACEMENTS: [FlushPlacement; 4] = [
    FlushPlacement::Local,
    FlushPlacement::Memnode,
    FlushPlacement::Agent,
    FlushPlacement::Auto,
];

/// One random sequence over every placement with `shards` shards; returns
/// each placement's flushes run on the memory node and on agents.
fn run_sequence(
    seed: u64,
    ops: usize,
    shards: usize,
    service: &LocalService,
) -> Vec<(FlushPlacement, (u64, u64))> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut subjects: Vec<Subject> = PLACEMENTS
        .into_iter()
        .map(|p| Subject::open(p, shards, service))
        .collect();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    type Pinned = (Vec<o3_compute::Snapshot>, BTreeMap<Vec<u8>, Vec<u8>>);
    let mut snapshots: Vec<Pinned> = Vec::new();
    for step in 0..ops {
        let at = |s: &Subject| format!("seed {seed} step {step} shards {shards} {:?}", s.placement);
        match rng.random_range(0..100) {
            0..52 => {
                let k = rng.random_range(0..KEYS);
                // Large enough values that memtables fill and flush by
                // themselves, with their images offloaded first.
                let v =
                    format!("v{seed}-{step}-{}", "p".repeat(rng.random_range(0..400))).into_bytes();
                for s in &subjects {
                    s.db().put(&key(k), &v).unwrap();
                }
                model.insert(key(k), v);
            }
            52..60 => {
                let k = rng.random_range(0..KEYS);
                for s in &subjects {
                    s.db().delete(&key(k)).unwrap();
                }
                model.remove(&key(k));
            }
            60..62 => {
                let a = rng.random_range(0..KEYS);
                let b = a + rng.random_range(1..30);
                for s in &subjects {
                    s.db().delete_range(&key(a), &key(b)).unwrap();
                }
                let doomed: Vec<_> = model
                    .range(key(a)..key(b))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in doomed {
                    model.remove(&k);
                }
            }
            62..75 => {
                let k = rng.random_range(0..KEYS);
                for s in &subjects {
                    assert_eq!(
                        s.db().get(&key(k)).unwrap(),
                        model.get(&key(k)).cloned(),
                        "{}: get {k}",
                        at(s)
                    );
                }
            }
            75..85 => {
                let lo = rng.random_range(0..KEYS);
                let hi = lo + rng.random_range(1..120);
                let reverse = rng.random_bool(0.5);
                let expected = model_scan(&model, lo, hi);
                for s in &subjects {
                    assert_eq!(
                        scan(s.db(), lo, hi, reverse),
                        expected,
                        "{}: scan [{lo}, {hi}) reverse {reverse}",
                        at(s)
                    );
                }
            }
            85..88 => {
                let taken = subjects.iter().map(|s| s.db().snapshot()).collect();
                snapshots.push((taken, model.clone()));
            }
            88..94 => {
                if let Some((taken, pinned)) = snapshots.last() {
                    let k = rng.random_range(0..KEYS);
                    for (s, snap) in subjects.iter().zip(taken) {
                        assert_eq!(
                            s.db().get_at(&key(k), snap).unwrap(),
                            pinned.get(&key(k)).cloned(),
                            "{}: get {k} at a snapshot",
                            at(s)
                        );
                    }
                }
            }
            _ => match rng.random_range(0..100) {
                // Rarely: an explicit flush, which takes the active
                // memtable too (local: it runs here), or a reopen.
                0..8 => {
                    for s in &subjects {
                        s.db().flush().unwrap();
                    }
                }
                8..14 => {
                    snapshots.clear();
                    for s in &mut subjects {
                        s.reopen();
                    }
                }
                _ => {}
            },
        }
    }
    snapshots.clear();
    let expected = model_scan(&model, 0, KEYS);
    subjects
        .iter()
        .map(|s| {
            assert_eq!(
                scan(s.db(), 0, KEYS, false),
                expected,
                "final scan, shards {shards}, {:?}",
                s.placement
            );
            (s.placement, s.flushes_ran())
        })
        .collect()
}

#[test]
fn flushes_placed_locally_on_the_memnode_on_an_agent_or_automatically_give_the_same_answers() {
    let service = LocalService::start(LocalServiceOptions {
        agents: 2,
        slots_per_agent: 2,
        token: token(),
        storage: Arc::new(LocalFs::new()),
        scheduler: SchedulerConfig::default(),
    })
    .unwrap();
    let mut ran: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for shards in [1, 4] {
        for seed in 0..2 {
            for (placement, (memnode, agent)) in run_sequence(seed, 3000, shards, &service) {
                let total = ran.entry(format!("{placement:?}")).or_default();
                total.0 += memnode;
                total.1 += agent;
            }
        }
    }
    eprintln!("flushes run (memory node, agent) per placement: {ran:?}");
    // Each placement ran flushes where it says (else the comparison
    // would compare local flushes with local flushes).
    assert_eq!(ran["Local"], (0, 0), "{ran:?}");
    assert!(ran["Memnode"].0 >= 3 && ran["Memnode"].1 == 0, "{ran:?}");
    assert!(ran["Agent"].1 >= 3 && ran["Agent"].0 == 0, "{ran:?}");
    assert!(ran["Auto"].0 + ran["Auto"].1 >= 3, "{ran:?}");
    service.shutdown();
}
