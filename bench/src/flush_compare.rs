//! `o3-bench flush-compare`: flush offloading against memtable offloading
//! with local flushes and against no offloading, all three in one run.
//!
//! The same fill (as `offload-compare`'s: `--burst_factor` × the local
//! memtable budget of random puts) runs three times on fresh databases:
//! 1. no offloading: every flush runs here and writes through this node's
//!    storage channel;
//! 2. memtable offloading to a memory node, flushes here: a flush of an
//!    offloaded image reads it back over the link first;
//! 3. memtable and flush offloading: the same memory node also runs a
//!    flush executor registered with a compaction scheduler, and flushes
//!    are placed by `--flush_placement` (default `memnode`: where the
//!    images are, so no image crosses the link again).
//!
//! The memory node, the compaction scheduler and its agents are child
//! processes (`o3-memnode`, `o3-csa scheduler`, `o3-csa agent`, found next
//! to this executable or given by `--memnode_bin` and `--csa_bin`); this
//! process is the compute node. With `--pin` (the default, when the machine
//! has two cores and `taskset` is installed) this process runs on core 0
//! and every child on core 1, so a flush on the memory node uses a core of
//! its own, as it would on another machine. The memory node serves a `tcp`
//! data plane on loopback, with the link model of `--link` on the compute
//! node's side. Each process has a storage channel of its own, throttled
//! alike (`--storage_*`; the memory node's and the agents' through their
//! `--storage-*` flags). Compactions stay on the compute node in every run,
//! so only the flush's place changes. The WAL is off by default (as in
//! `offload-compare`), so the throttle is the flushes' and compactions'.
//! The token file and the children's logs are written next to the
//! databases under `--db`; every child is stopped at the end of its run,
//! and receives SIGTERM if this process dies.
//!
//! The fill's key space is split into `--shards` shards (4 unless given),
//! so several flushes run at once in every run.
//!
//! Reported: each run's throughput, write stalls, put latency and flushes;
//! where run 3's flushes ran, their time and the bytes that crossed each
//! link; the ratios run 3 / run 2 (target ≥ 1.5x when this node's storage
//! bandwidth is the bottleneck) and run 3 / run 1. The benchmark reports;
//! it does not assert the target.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use o3_compute::{
    ClusterToken, CompactionServiceOptions, DbStats, FlushPlacement, FlushPlacementStats, LocalFs,
    MemoryNodeChoice, PlacementPolicy, RemoteConfig, Storage, StoreConfig,
};
use o3_csa::SchedulerClient;
use o3_storage::env::ThrottledStorage;
use serde::{Deserialize, Serialize};

use crate::children::{
    ChildProcess, Pinning, ServiceChildren, sibling_binary, spawn_announcing, write_token,
};
use crate::engine::{EngineConfig, parse_bool};
use crate::error::{BenchError, Result};
use crate::offload::{MemoryNodeSetting, OffloadConfig, bytes};
use crate::offload_compare::{FillFigures, OffloadCompareConfig, fill, measure_fill};
use crate::report::{BackgroundErrors, PhaseReport, RunOutcome};

/// The target of the experiment (reported next to the figures).
pub const TARGET_FLUSH_OFFLOAD_RATIO: f64 = 1.5;
/// How long the memory node's flush executor may take to register.
const REGISTER_WAIT: Duration = Duration::from_secs(20);
/// Flushes a memory node runs at once unless `--flush_slots` says
/// otherwise.
pub const DEFAULT_FLUSH_SLOTS: u32 = 2;
/// `max_offloaded_bytes` unless `--max_offloaded_bytes` says otherwise.
pub const DEFAULT_MAX_OFFLOADED_BYTES: u64 = 16 << 20;
/// Pool of the memory node unless `--memnode_pool_size` says otherwise.
const DEFAULT_POOL: u64 = 1 << 30;

/// `o3-bench flush-compare` flags beyond `offload-compare`'s.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[command(rename_all = "snake_case")]
pub struct FlushCompareArgs {
    /// Where run 3 places flushes: memnode, agent or auto (default memnode).
    #[arg(long, value_name = "PLACE")]
    pub flush_placement: Option<String>,
    /// Flushes the memory node runs at once (default 2).
    #[arg(long, value_name = "N")]
    pub flush_slots: Option<u32>,
    /// Pin this process (the compute node) to core 0 and the memory node,
    /// scheduler and agents to core 1 with taskset (default true; nothing
    /// is pinned on one core or without taskset, and the report says so).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub pin: Option<bool>,
    /// The o3-memnode binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    pub memnode_bin: Option<PathBuf>,
    /// The o3-csa binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    pub csa_bin: Option<PathBuf>,
}

impl FlushCompareArgs {
    /// Flags given on the command line win over the config file.
    pub fn over(self, base: FlushCompareArgs) -> FlushCompareArgs {
        FlushCompareArgs {
            flush_placement: self.flush_placement.or(base.flush_placement),
            flush_slots: self.flush_slots.or(base.flush_slots),
            pin: self.pin.or(base.pin),
            memnode_bin: self.memnode_bin.or(base.memnode_bin),
            csa_bin: self.csa_bin.or(base.csa_bin),
        }
    }

    pub fn resolve(self, offload: &OffloadConfig) -> Result<FlushCompareConfig> {
        let bad = |m: String| Err(BenchError::InvalidArgument(m));
        let placement = match self.flush_placement.as_deref() {
            None => FlushPlacement::Memnode,
            Some(p) => match parse_flush_placement(p)? {
                FlushPlacement::Local => {
                    return bad(
                        "--flush_placement local is run 2 of flush-compare; run 3 offloads flushes (memnode, agent or auto)"
                            .into(),
                    );
                }
                other => other,
            },
        };
        let flush_slots = self.flush_slots.unwrap_or(DEFAULT_FLUSH_SLOTS);
        if !(1..=64).contains(&flush_slots) {
            return bad(format!("--flush_slots {flush_slots} must lie in [1, 64]"));
        }
        let pool_size = match &offload.memory_node {
            MemoryNodeSetting::InProcess { pool_size } => (*pool_size).min(DEFAULT_POOL),
            MemoryNodeSetting::Remote { address, .. } => {
                return bad(format!(
                    "flush-compare starts its own memory node for each run; --memnode {address} is not used here"
                ));
            }
            MemoryNodeSetting::Served { pool_size, .. } => *pool_size,
        };
        let memnode_bin =
            sibling_binary(self.memnode_bin.as_deref(), "o3-memnode", "--memnode_bin")?;
        let csa_bin = sibling_binary(self.csa_bin.as_deref(), "o3-csa", "--csa_bin")?;
        Ok(FlushCompareConfig {
            placement,
            flush_slots,
            pool_size,
            pinning: Pinning::detect(self.pin.unwrap_or(true), PIN_LAYOUT),
            memnode_bin,
            csa_bin,
        })
    }
}

/// `--flush_placement`'s values.
pub fn parse_flush_placement(s: &str) -> Result<FlushPlacement> {
    match s {
        "local" => Ok(FlushPlacement::Local),
        "memnode" => Ok(FlushPlacement::Memnode),
        "agent" => Ok(FlushPlacement::Agent),
        "auto" => Ok(FlushPlacement::Auto),
        other => Err(BenchError::InvalidArgument(format!(
            "--flush_placement '{other}': expected local, memnode, agent or auto"
        ))),
    }
}

/// The name `--flush_placement` takes for `placement`.
pub fn flush_placement_flag(placement: FlushPlacement) -> &'static str {
    match placement {
        FlushPlacement::Local => "local",
        FlushPlacement::Memnode => "memnode",
        FlushPlacement::Agent => "agent",
        FlushPlacement::Auto => "auto",
    }
}

/// Resolved settings (reported verbatim).
#[derive(Debug, Clone, Serialize)]
pub struct FlushCompareConfig {
    #[serde(serialize_with = "crate::csa::flush_name")]
    pub placement: FlushPlacement,
    pub flush_slots: u32,
    /// The memory node's pool in runs 2 and 3.
    pub pool_size: u64,
    /// Which process ran on which core.
    pub pinning: Pinning,
    pub memnode_bin: PathBuf,
    pub csa_bin: PathBuf,
}

/// Where the processes run when pinned.
const PIN_LAYOUT: &str = "this process (the compute node) on core 0; the memory node, the scheduler and the agents on core 1";

/// Both settings of a run, for the report's configuration.
#[derive(Debug, Serialize)]
pub struct FlushCompareWorkload<'a> {
    #[serde(flatten)]
    pub compare: &'a OffloadCompareConfig,
    #[serde(flatten)]
    pub flush: &'a FlushCompareConfig,
}

/// Where run 3's flushes ran and what crossed the links.
#[derive(Debug, Clone, Serialize)]
pub struct FlushFigures {
    /// Flushes finished on the memory node, on agents, and here (every
    /// reason: an image still local, no executor, a given-back job).
    pub on_memnode: u64,
    pub on_agent: u64,
    pub here: u64,
    /// Why flushes ran here: an image was still in local memory, the
    /// service was unreachable or had no executor, the estimate said so,
    /// the service gave the job back.
    pub here_image_local: u64,
    pub here_unreachable: u64,
    pub here_estimate: u64,
    pub here_given_back: u64,
    /// Mean submit-to-result time of a flush that ran elsewhere, ms.
    pub remote_flush_ms: f64,
    /// Image bytes read back to the compute node (for flushes here).
    pub read_back_bytes: u64,
    pub memnode_to_agent_bytes: u64,
    /// Table bytes written by the memory node, by agents, and by this
    /// node's flushes.
    pub written_by_memnode: u64,
    pub written_by_agents: u64,
    pub written_here: u64,
}

impl FlushFigures {
    fn of(stats: &DbStats) -> FlushFigures {
        let f: &FlushPlacementStats = &stats.placement.flush;
        let remote = f.memnode + f.agent;
        FlushFigures {
            on_memnode: f.memnode,
            on_agent: f.agent,
            here: stats.flushes.saturating_sub(remote),
            here_image_local: f.local_images,
            here_unreachable: f.local_unreachable,
            here_estimate: f.local_estimate,
            here_given_back: f.fallback_failed,
            remote_flush_ms: if remote == 0 {
                0.0
            } else {
                f.remote_micros as f64 / remote as f64 / 1e3
            },
            read_back_bytes: stats.offload.read_back_bytes,
            memnode_to_agent_bytes: f.bytes_memnode_to_agent,
            written_by_memnode: f.bytes_written_memnode,
            written_by_agents: f.bytes_written_agent,
            written_here: stats
                .flush_bytes
                .saturating_sub(f.bytes_written_memnode + f.bytes_written_agent),
        }
    }
}

/// What the experiment concluded (the JSON report's `summary`).
#[derive(Debug, Clone, Serialize)]
pub struct FlushCompareSummary {
    pub puts: u64,
    pub burst_bytes: u64,
    pub local_budget_bytes: u64,
    pub storage_write_bytes_per_sec: u64,
    pub placement: &'static str,
    pub no_offload: FillFigures,
    pub local_flush: FillFigures,
    pub flush_offload: FillFigures,
    /// Where flushes ran in runs 2 and 3.
    pub local_flush_placement: FlushFigures,
    pub flush_offload_placement: FlushFigures,
    /// Run 3 / run 2 and run 3 / run 1 fill throughput.
    pub ratio_vs_local_flush: f64,
    pub ratio_vs_no_offload: f64,
    pub target_ratio_vs_local_flush: f64,
}

/// The three runs and their conclusion.
#[derive(Debug)]
pub struct FlushComparison {
    pub outcome: RunOutcome,
    pub summary: FlushCompareSummary,
}

impl FlushComparison {
    /// Fails when run 3 offloaded no flush: then the comparison compares
    /// local flushes with local flushes.
    pub fn check(&self) -> Result<()> {
        let p = &self.summary.flush_offload_placement;
        if p.on_memnode + p.on_agent == 0 {
            return Err(BenchError::NotMeasured {
                experiment: "flush-compare",
                message: "run 3 ran no flush on the memory node or an agent, so the comparison measures nothing (see its flush placement above)".into(),
            });
        }
        Ok(())
    }
}

/// Storage of another node: a channel of its own, throttled like this
/// node's.
pub(crate) fn node_storage(engine: &EngineConfig) -> Arc<dyn Storage> {
    let local: Arc<dyn Storage> = Arc::new(LocalFs::new());
    match engine.remote_storage() {
        Some(model) => Arc::new(ThrottledStorage::new(local, model)),
        None => local,
    }
}

/// Run the three fills and print the comparison. `engine` carries the
/// local budget as its `max_unflushed_bytes` and `offload`'s settings.
pub fn run(
    cfg: &OffloadCompareConfig,
    flush: &FlushCompareConfig,
    engine: &EngineConfig,
    offload: &OffloadConfig,
    show_progress: bool,
) -> Result<FlushComparison> {
    let entry = (cfg.key_size + cfg.value_size) as u64;
    let budget = cfg.local_budget_bytes;
    let puts = ((budget as f64 * cfg.burst_factor) as u64 / entry).max(1);
    // --shards splits the fill's key space (keys 0..puts) evenly, or lets
    // the engine learn the split keys (--adaptive_shards).
    let engine = &engine.clone().split_key_space(puts, cfg.key_size);
    let placement = flush.placement;
    // One agent when flushes may go to agents; none for the memory node.
    let agents = usize::from(matches!(
        placement,
        FlushPlacement::Agent | FlushPlacement::Auto
    ));
    let (token, token_file) = write_token(&engine.db, "flush")?;
    let storage = storage_flags(engine);
    let pinning = &flush.pinning;
    // From here on every thread of this process, and every thread it
    // starts, runs on core 0.
    pinning.pin_this_process(0)?;
    let service = ServiceChildren::start(
        &flush.csa_bin,
        pinning,
        &engine.db,
        "",
        &token_file,
        agents,
        flush.flush_slots,
        &storage,
    )?;
    println!(
        "flush-compare: a fill of {puts} random puts of {}+{} bytes ({}) = {} x the local memtable budget of {}",
        cfg.key_size,
        cfg.value_size,
        bytes(puts * entry),
        cfg.burst_factor,
        bytes(budget)
    );
    println!(
        "  emulated conditions: {}",
        emulated_conditions(engine, offload, flush)
    );
    println!(
        "  run 3 places flushes: {} (memory node flush slots {}, {agents} o3-csa agent process(es)); compactions stay on this node in every run",
        flush_placement_flag(placement),
        flush.flush_slots,
    );

    let mut phases: Vec<PhaseReport> = Vec::new();
    let mut background_errors = BackgroundErrors::default();
    for run in 0..3 {
        let name = ["fill-no-offload", "fill-local-flush", "fill-flush-offload"][run];
        // Runs 2 and 3 have a memory node of their own (a fresh pool);
        // only run 3's executes flushes.
        let executes = run == 2 && placement != FlushPlacement::Agent;
        let node = if run == 0 {
            None
        } else {
            Some(MemnodeChild::start(
                flush,
                &engine.db,
                name,
                &token_file,
                executes.then_some(service.address.as_str()),
                &storage,
            )?)
        };
        if executes && let Some(node) = &node {
            wait_for_flush_executor(&service.address, &token, &node.plane)?;
        }
        let mut options = EngineConfig {
            offload: None,
            ..engine.clone()
        }
        .db_options();
        if let Some(node) = &node {
            let mut o = offload.options();
            o.memory_node = MemoryNodeChoice::Config(StoreConfig::Remote(RemoteConfig {
                control: node.control.clone(),
                token: token.clone(),
                compute_node: format!("o3-bench-{}", std::process::id()),
                link: offload.link.map(|l| l.model),
                op_timeout: Duration::from_millis(crate::offload::DEFAULT_MEMNODE_TIMEOUT_MS),
            }));
            options.offload = Some(o);
        }
        if run == 2 {
            options.compaction_service = Some(CompactionServiceOptions {
                flush: placement,
                policy: PlacementPolicy::Local,
                ..CompactionServiceOptions::new(service.address.clone(), token.clone())
            });
        }
        let dir = engine.db.join(name);
        let db = crate::fresh_db::open_empty(&dir, options)?;
        let failed = measure_fill(
            "flush-compare",
            name,
            db,
            &mut phases,
            &mut background_errors,
            |db| fill(name, cfg, puts, db, show_progress),
        )?;
        drop(node);
        if failed {
            break;
        }
    }
    drop(service);
    let outcome = RunOutcome {
        phases,
        background_errors,
        cut_short: None,
    };
    let [none, local, remote] = match outcome.phases.as_slice() {
        [a, b, c] => [a, b, c],
        _ => {
            outcome.check()?;
            return Err(BenchError::NotMeasured {
                experiment: "flush-compare",
                message: "a run ended early".into(),
            });
        }
    };
    let (no_offload, local_flush, flush_offload) = (
        FillFigures::of(none),
        FillFigures::of(local),
        FillFigures::of(remote),
    );
    let summary = FlushCompareSummary {
        puts,
        burst_bytes: puts * entry,
        local_budget_bytes: budget,
        storage_write_bytes_per_sec: engine.storage_write_bytes_per_sec,
        placement: flush_placement_flag(placement),
        ratio_vs_local_flush: flush_offload.ops_per_sec / local_flush.ops_per_sec.max(1e-9),
        ratio_vs_no_offload: flush_offload.ops_per_sec / no_offload.ops_per_sec.max(1e-9),
        target_ratio_vs_local_flush: TARGET_FLUSH_OFFLOAD_RATIO,
        local_flush_placement: FlushFigures::of(&local.db_stats),
        flush_offload_placement: FlushFigures::of(&remote.db_stats),
        no_offload,
        local_flush,
        flush_offload,
    };
    print!("{}", describe(&summary));
    Ok(FlushComparison { outcome, summary })
}

/// Every condition the runs emulate, for the report's header and the
/// experiment's own lines.
pub fn emulated_conditions(
    engine: &EngineConfig,
    offload: &OffloadConfig,
    flush: &FlushCompareConfig,
) -> String {
    format!(
        "cores: {}; storage per process {} (this node, the memory node and each agent a channel of its own); WAL {}; memory node an o3-memnode process (tcp data plane on loopback, pool {}), {}; runs 2 and 3 keep {} sealed memtable(s) per shard local, offload cap {}",
        flush.pinning.description,
        engine
            .remote_storage()
            .map_or("not throttled".to_string(), |m| m.to_string()),
        if engine.disable_wal { "off" } else { "on" },
        bytes(flush.pool_size),
        offload.describe_link(),
        offload.max_local_sealed_memtables,
        bytes(offload.max_offloaded_bytes)
    )
}

/// The `--storage-*` flags of o3-memnode and o3-csa agent that throttle a
/// child's storage like this node's.
fn storage_flags(engine: &EngineConfig) -> Vec<String> {
    let mut flags = Vec::new();
    let mbps = |bytes: u64| bytes as f64 / 1e6;
    if engine.storage_read_bytes_per_sec > 0 {
        flags.push(format!(
            "--storage-read-mbps={}",
            mbps(engine.storage_read_bytes_per_sec)
        ));
    }
    if engine.storage_write_bytes_per_sec > 0 {
        flags.push(format!(
            "--storage-write-mbps={}",
            mbps(engine.storage_write_bytes_per_sec)
        ));
    }
    if engine.storage_latency_us > 0 {
        flags.push(format!(
            "--storage-latency-us={}",
            engine.storage_latency_us
        ));
    }
    flags
}

/// An o3-memnode child on core 1: its control plane address and the node
/// id of its data plane.
struct MemnodeChild {
    control: String,
    plane: String,
    _process: ChildProcess,
}

impl MemnodeChild {
    /// Start the memory node of run `run`, executing flushes for the
    /// scheduler at `scheduler` if given.
    fn start(
        flush: &FlushCompareConfig,
        dir: &Path,
        run: &str,
        token_file: &Path,
        scheduler: Option<&str>,
        storage: &[String],
    ) -> Result<MemnodeChild> {
        let mut command = flush.pinning.command(1, &flush.memnode_bin);
        command
            .args(["--listen", "127.0.0.1:0", "--transport", "tcp"])
            .arg(format!("--pool-size={}", flush.pool_size))
            .args(["--lease-ttl", "30s", "--token-file"])
            .arg(token_file);
        if let Some(scheduler) = scheduler {
            command
                .args(["--scheduler", scheduler])
                .arg(format!("--flush-slots={}", flush.flush_slots))
                .args(storage);
        }
        let name = format!("{run} o3-memnode");
        let (process, announced) = spawn_announcing(
            &name,
            command,
            &dir.join(format!("{run}-memnode.log")),
            &["listening on ", "data plane "],
        )?;
        let [control, plane] = announced.as_slice() else {
            return Err(BenchError::InvalidArgument(format!(
                "{name}: expected two announcement lines, read {announced:?}"
            )));
        };
        // "data plane KIND NODE"
        let Some(plane) = plane.split_whitespace().nth(1) else {
            return Err(BenchError::InvalidArgument(format!(
                "{name}: its data plane line {plane:?} names no node"
            )));
        };
        Ok(MemnodeChild {
            control: control.clone(),
            plane: plane.to_string(),
            _process: process,
        })
    }
}

/// Wait (bounded) until the scheduler lists the flush executor of the
/// memory node whose data plane is `plane`.
pub(crate) fn wait_for_flush_executor(
    endpoint: &str,
    token: &ClusterToken,
    plane: &str,
) -> Result<()> {
    let failed = |m: String| BenchError::InvalidArgument(format!("flush-compare: {m}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(format!("runtime: {e}")))?;
    runtime.block_on(async {
        let deadline = Instant::now() + REGISTER_WAIT;
        let client = SchedulerClient::connect(endpoint, token.clone(), REGISTER_WAIT)
            .await
            .map_err(|e| failed(format!("cannot reach the scheduler: {e}")))?;
        loop {
            let load = client
                .load()
                .await
                .map_err(|e| failed(format!("scheduler load: {e}")))?;
            if load
                .memnodes
                .iter()
                .any(|m| m.memnode.as_deref() == Some(plane))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(failed(format!(
                    "the memory node's flush executor did not register within {REGISTER_WAIT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// The comparison table, where flushes ran, and the ratios, for stdout.
pub fn describe(s: &FlushCompareSummary) -> String {
    let mut out = format!(
        "  {:<28} {:>9} {:>11} {:>8} {:>9} {:>11} {:>11} {:>8}\n",
        "run", "fill(s)", "ops/sec", "MB/s", "stall(s)", "p50 put(us)", "p99 put(us)", "flushes"
    );
    let runs = [
        ("1 no offloading", &s.no_offload),
        ("2 memtable offload, local", &s.local_flush),
        ("3 memtable + flush offload", &s.flush_offload),
    ];
    for (name, f) in runs {
        out.push_str(&format!(
            "  {:<28} {:>9.3} {:>11.0} {:>8.1} {:>9.3} {:>11.2} {:>11.2} {:>8}\n",
            name,
            f.seconds,
            f.ops_per_sec,
            f.mb_per_sec,
            f.stall_seconds,
            f.put_p50_us,
            f.put_p99_us,
            f.flushes
        ));
    }
    for (name, p) in [
        ("run 2", &s.local_flush_placement),
        ("run 3", &s.flush_offload_placement),
    ] {
        out.push_str(&format!(
            "  {name} flushes: {} on the memory node, {} on agents, {} here (placed here: {} image still local, {} no executor/unreachable, {} by estimate, {} given back); remote flush {:.1} ms on average; links: memory node -> this node {}, memory node -> agents {}; tables written by the memory node {}, agents {}, this node {}\n",
            p.on_memnode,
            p.on_agent,
            p.here,
            p.here_image_local,
            p.here_unreachable,
            p.here_estimate,
            p.here_given_back,
            p.remote_flush_ms,
            bytes(p.read_back_bytes),
            bytes(p.memnode_to_agent_bytes),
            bytes(p.written_by_memnode),
            bytes(p.written_by_agents),
            bytes(p.written_here)
        ));
    }
    out.push_str(&format!(
        "  fill throughput, flush offloading ({}) / local flush: {:.2}x (target >= {:.1}x); / no offloading: {:.2}x\n",
        s.placement, s.ratio_vs_local_flush, s.target_ratio_vs_local_flush, s.ratio_vs_no_offload
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placements_parse_and_print_alike() {
        for p in [
            FlushPlacement::Local,
            FlushPlacement::Memnode,
            FlushPlacement::Agent,
            FlushPlacement::Auto,
        ] {
            assert_eq!(parse_flush_placement(flush_placement_flag(p)).unwrap(), p);
        }
        let e = parse_flush_placement("remote").unwrap_err().to_string();
        assert!(e.contains("--flush_placement 'remote'"), "{e}");
    }
}
