//! `o3-bench read-compare`: the cache-enhanced read path against
//! delegation only and against no offloading, on YCSB workloads whose data
//! sits in offloaded memtable images, over each data plane in one run.
//!
//! For each transport (`tcp` with an RDMA-like link model, and `shm`) one
//! `o3-memnode` process is started on core 1 (this process, the compute
//! node, runs on core 0). For each workload (YCSB B and C with
//! `requestdistribution` zipfian and latest, and E for scans) and each
//! variant a fresh database loads `--records` records with flushes held
//! back ([`crate::sst_gate`]), so every sealed memtable beyond the ones kept
//! local is an image on the memory node, runs `--warmup_operations`
//! unmeasured operations of the workload (caches and pulled-back images
//! reach their steady state), writes filler records outside the workload's
//! keys that fill the memtables kept local (`--offload_recent`, default
//! true: the workload's newest records then sit in offloaded images, as
//! the experiment asks), then `--operations` measured ones:
//!
//! - `adaptive`: the key→offset cache, one-sided reads of cached entries,
//!   hot images pulled back, adaptive scans (`ReadPolicy::Adaptive`);
//! - `cache`: the key→offset cache and one-sided reads only
//!   (`ReadPolicy::Cache`);
//! - `delegate`: every lookup and scan delegated (`ReadPolicy::Delegate`),
//!   the same sealed memtables kept local;
//! - `delegate+mem`: delegation with the adaptive variant's cache and
//!   pull-back budget given as more sealed memtables kept local (the same
//!   local memory for reads);
//! - `none`: no offloading: sealed memtables are flushed to tables, and
//!   the block cache gets the cache and pull-back budget.
//!
//! Reported per transport and workload: throughput, read (or scan) p50 and
//! p99, the cache hit rate, one-sided reads, delegated lookups and scans
//! with their mean latencies, images pulled back, and the ratio of
//! `adaptive` to `delegate` with its target (≥ 1.8x on B and C, ≥ 1.5x on
//! E), and to `delegate+mem`. The benchmark reports; it does not assert the
//! targets.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use o3_compute::{MemoryNodeChoice, OffloadStats, ReadPolicy, RemoteConfig, StoreConfig};
use o3_transport::control::ClusterToken;
use o3_transport::link::LinkModel;
use serde::{Deserialize, Serialize};

use crate::children::{ChildProcess, Pinning, sibling_binary, spawn_announcing, write_token};
use crate::engine::{EngineArgs, EngineConfig, parse_bool};
use crate::error::{BenchError, Result};
use crate::offload::{DEFAULT_MEMNODE_TIMEOUT_MS, OffloadConfig, bytes};
use crate::report::{BackgroundErrors, OpKind, PhaseReport, RunOutcome};
use crate::sst_gate::{GatedStorage, SstGate};
use crate::ycsb::YcsbConfig;
use crate::ycsb::properties::Properties;

/// Targets of the experiment (reported next to the figures).
pub const TARGET_POINT_RATIO: f64 = 1.8;
pub const TARGET_SCAN_RATIO: f64 = 1.5;
/// Memtable size unless `--write_buffer_size` says otherwise.
pub const DEFAULT_WRITE_BUFFER_SIZE: usize = 2 << 20;
const DEFAULT_RECORDS: u64 = 300_000;
const DEFAULT_OPERATIONS: u64 = 100_000;
const DEFAULT_SCAN_OPERATIONS: u64 = 20_000;
/// The adaptive variant's local read memory in this experiment unless the
/// offload flags say otherwise: 12 MiB, small next to the loaded data
/// (about 45 MiB of images with the defaults), as a key→offset cache and
/// key indexes of images (about 7.5 MiB index all of them); nothing is left
/// for pulled-back copies. Over `tcp` the cache's entries hold values, and
/// where no scan needs the indexes (B, C) the cache borrows their room.
const DEFAULT_OFFSET_CACHE_BYTES: u64 = 4 << 20;
const DEFAULT_PULL_BACK_BYTES: u64 = 0;
const DEFAULT_INDEX_BYTES: u64 = 8 << 20;
const DEFAULT_MEMNODE_POLL_SPIN_US: u64 = 1000;
const PIN_LAYOUT: &str = "this process (the compute node) on core 0; the memory node on core 1";

/// `o3-bench read-compare` flags (all optional so a config file can
/// supply them).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[command(rename_all = "snake_case")]
pub struct ReadCompareArgs {
    /// Records loaded before each run (default 300000).
    #[arg(long)]
    pub records: Option<u64>,
    /// Operations of each point-lookup run (B, C; default 100000).
    #[arg(long)]
    pub operations: Option<u64>,
    /// Operations of each scan run (E; default 20000).
    #[arg(long)]
    pub scan_operations: Option<u64>,
    /// Operations of the same workload run before each measured run and
    /// not measured, so caches and pulled-back images reach their steady
    /// state (default: as many as measured; 0 = none).
    #[arg(long)]
    pub warmup_operations: Option<u64>,
    /// Workloads, comma-separated: b-zipfian, b-latest, c-zipfian,
    /// c-latest, e (default all).
    #[arg(long)]
    pub workloads: Option<String>,
    /// Data planes, comma-separated: tcp, shm (default both).
    #[arg(long)]
    pub transports: Option<String>,
    /// Variants, comma-separated: adaptive, cache, delegate, delegate+mem,
    /// none (default all).
    #[arg(long)]
    pub variants: Option<String>,
    /// The emulated link over tcp (a --link preset; default rdma-fabric).
    /// The shm data plane is used as it is.
    #[arg(long)]
    pub tcp_link: Option<String>,
    /// Client threads of the run phase (default 1).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Rounds of every variant per workload, in rotated order; the report
    /// shows per variant the round with the median throughput and the
    /// median of the rounds' ratios (default 1).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Seed of the generators.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Pin this process to core 0 and the memory node to core 1 (default
    /// true; needs 2 cores and taskset).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub pin: Option<bool>,
    /// The o3-memnode binary (default: next to this executable).
    #[arg(long)]
    pub memnode_bin: Option<PathBuf>,
    /// How long the memory node's data plane busy-polls for the next
    /// request before sleeping, in µs (its --poll-spin-us; default 1000:
    /// the node has a core of its own and polls like an RDMA server).
    #[arg(long)]
    pub memnode_poll_spin_us: Option<u64>,
    /// After the warm-up, write filler records (keys outside the
    /// workload's, sorted before them in each shard) to fill every
    /// memtable kept local, so the workload's newest records sit in
    /// offloaded images when the measured run starts (default true; false
    /// leaves them in the local memtables).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub offload_recent: Option<bool>,
}

/// A workload of the experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Workload {
    BZipfian,
    BLatest,
    CZipfian,
    CLatest,
    E,
}

impl Workload {
    const ALL: [Workload; 5] = [
        Workload::BZipfian,
        Workload::BLatest,
        Workload::CZipfian,
        Workload::CLatest,
        Workload::E,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::BZipfian => "b-zipfian",
            Workload::BLatest => "b-latest",
            Workload::CZipfian => "c-zipfian",
            Workload::CLatest => "c-latest",
            Workload::E => "e",
        }
    }

    fn file(self) -> (&'static str, &'static str) {
        match self {
            Workload::BZipfian | Workload::BLatest => {
                ("workloadb", include_str!("../workloads/workloadb"))
            }
            Workload::CZipfian | Workload::CLatest => {
                ("workloadc", include_str!("../workloads/workloadc"))
            }
            Workload::E => ("workloade", include_str!("../workloads/workloade")),
        }
    }

    fn distribution(self) -> &'static str {
        match self {
            Workload::BLatest | Workload::CLatest => "latest",
            _ => "zipfian",
        }
    }

    pub fn scans(self) -> bool {
        self == Workload::E
    }

    fn target(self) -> f64 {
        if self.scans() {
            TARGET_SCAN_RATIO
        } else {
            TARGET_POINT_RATIO
        }
    }
}

/// A variant of each run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Variant {
    Adaptive,
    Cache,
    Delegate,
    DelegateEqualMemory,
    NoOffload,
}

impl Variant {
    const ALL: [Variant; 5] = [
        Variant::Adaptive,
        Variant::Cache,
        Variant::Delegate,
        Variant::DelegateEqualMemory,
        Variant::NoOffload,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Adaptive => "adaptive",
            Variant::Cache => "cache",
            Variant::Delegate => "delegate",
            Variant::DelegateEqualMemory => "delegate+mem",
            Variant::NoOffload => "none",
        }
    }
}

/// A data plane of the experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Transport {
    Tcp,
    Shm,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Shm => "shm",
        }
    }
}

fn parse_list<T: Copy>(
    flag: &str,
    given: Option<&str>,
    all: &[T],
    name: impl Fn(T) -> &'static str,
) -> Result<Vec<T>> {
    let Some(given) = given else {
        return Ok(all.to_vec());
    };
    let mut out = Vec::new();
    for item in given.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match all.iter().find(|&&t| name(t) == item) {
            Some(&t) if !out.iter().any(|&o| name(o) == item) => out.push(t),
            Some(_) => {}
            None => {
                let names: Vec<&str> = all.iter().map(|&t| name(t)).collect();
                return Err(BenchError::InvalidArgument(format!(
                    "{flag} '{item}': expected one of {}",
                    names.join(", ")
                )));
            }
        }
    }
    if out.is_empty() {
        return Err(BenchError::InvalidArgument(format!("{flag} names nothing")));
    }
    Ok(out)
}

impl ReadCompareArgs {
    /// Flags given on the command line win over the config file.
    pub fn over(self, base: ReadCompareArgs) -> ReadCompareArgs {
        ReadCompareArgs {
            records: self.records.or(base.records),
            operations: self.operations.or(base.operations),
            scan_operations: self.scan_operations.or(base.scan_operations),
            warmup_operations: self.warmup_operations.or(base.warmup_operations),
            workloads: self.workloads.or(base.workloads),
            transports: self.transports.or(base.transports),
            variants: self.variants.or(base.variants),
            tcp_link: self.tcp_link.or(base.tcp_link),
            threads: self.threads.or(base.threads),
            rounds: self.rounds.or(base.rounds),
            seed: self.seed.or(base.seed),
            pin: self.pin.or(base.pin),
            memnode_bin: self.memnode_bin.or(base.memnode_bin),
            memnode_poll_spin_us: self.memnode_poll_spin_us.or(base.memnode_poll_spin_us),
            offload_recent: self.offload_recent.or(base.offload_recent),
        }
    }

    /// Check the flags; `offload` supplies the policy's memory budgets.
    pub fn resolve(self, offload: &OffloadConfig) -> Result<ReadCompareConfig> {
        let bad = |m: String| Err(BenchError::InvalidArgument(m));
        if let crate::offload::MemoryNodeSetting::Remote { address, .. } = &offload.memory_node {
            return bad(format!(
                "read-compare starts its own memory node for each data plane; --memnode {address} is not used here"
            ));
        }
        if offload.link.is_some() {
            return bad(
                "read-compare sets the link per data plane: use --tcp_link PRESET (shm runs without one)"
                    .into(),
            );
        }
        if offload.read_policy != ReadPolicy::Adaptive {
            return bad(format!(
                "read-compare runs the adaptive, delegate and no-offload variants itself; --read_policy {} is not used here (see --variants)",
                offload.read_policy
            ));
        }
        let records = self.records.unwrap_or(DEFAULT_RECORDS);
        let operations = self.operations.unwrap_or(DEFAULT_OPERATIONS);
        let scan_operations = self.scan_operations.unwrap_or(DEFAULT_SCAN_OPERATIONS);
        for (flag, n) in [
            ("--records", records),
            ("--operations", operations),
            ("--scan_operations", scan_operations),
        ] {
            if n == 0 {
                return bad(format!("{flag} must be at least 1"));
            }
        }
        let threads = self.threads.unwrap_or(1);
        if threads == 0 {
            return bad("--threads must be at least 1".into());
        }
        let rounds = self.rounds.unwrap_or(1);
        if rounds == 0 {
            return bad("--rounds must be at least 1".into());
        }
        let tcp_link_name = self.tcp_link.unwrap_or_else(|| "rdma-fabric".into());
        let Some(tcp_link) = LinkModel::preset(&tcp_link_name) else {
            return bad(format!(
                "--tcp_link '{tcp_link_name}': expected one of {}",
                crate::offload::LINK_PRESETS.join(", ")
            ));
        };
        Ok(ReadCompareConfig {
            records,
            operations,
            scan_operations,
            warmup_operations: self.warmup_operations,
            workloads: parse_list(
                "--workloads",
                self.workloads.as_deref(),
                &Workload::ALL,
                Workload::name,
            )?,
            transports: parse_list(
                "--transports",
                self.transports.as_deref(),
                &[Transport::Tcp, Transport::Shm],
                Transport::name,
            )?,
            variants: parse_list(
                "--variants",
                self.variants.as_deref(),
                &Variant::ALL,
                Variant::name,
            )?,
            tcp_link_name,
            tcp_link,
            threads,
            rounds,
            seed: self.seed.unwrap_or(0x5eed),
            memnode_bin: sibling_binary(
                self.memnode_bin.as_deref(),
                "o3-memnode",
                "--memnode_bin",
            )?,
            pinning: Pinning::detect(self.pin.unwrap_or(true), PIN_LAYOUT),
            memnode_poll_spin_us: self
                .memnode_poll_spin_us
                .unwrap_or(DEFAULT_MEMNODE_POLL_SPIN_US),
            offload_recent: self.offload_recent.unwrap_or(true),
        })
    }
}

/// The offloading flags' defaults for this experiment where the command
/// line and config file leave them unset: a small cache and pull-back
/// budget.
pub fn offload_defaults(args: crate::offload::OffloadArgs) -> crate::offload::OffloadArgs {
    crate::offload::OffloadArgs {
        offset_cache_bytes: args.offset_cache_bytes.or(Some(DEFAULT_OFFSET_CACHE_BYTES)),
        pull_back_bytes: args.pull_back_bytes.or(Some(DEFAULT_PULL_BACK_BYTES)),
        index_bytes: args.index_bytes.or(Some(DEFAULT_INDEX_BYTES)),
        ..args
    }
}

/// The engine flags' defaults for this experiment: small memtables.
pub fn engine_defaults(args: EngineArgs) -> EngineArgs {
    EngineArgs {
        write_buffer_size: args.write_buffer_size.or(Some(DEFAULT_WRITE_BUFFER_SIZE)),
        ..args
    }
}

/// Resolved settings (reported verbatim).
#[derive(Debug, Clone, Serialize)]
pub struct ReadCompareConfig {
    pub records: u64,
    pub operations: u64,
    pub scan_operations: u64,
    /// `None`: as many as measured.
    pub warmup_operations: Option<u64>,
    pub workloads: Vec<Workload>,
    pub transports: Vec<Transport>,
    pub variants: Vec<Variant>,
    pub tcp_link_name: String,
    #[serde(skip)]
    pub tcp_link: LinkModel,
    pub threads: usize,
    pub rounds: usize,
    pub seed: u64,
    pub memnode_bin: PathBuf,
    #[serde(skip)]
    pub pinning: Pinning,
    pub memnode_poll_spin_us: u64,
    /// Filler records push the newest records out of the local memtables
    /// before each measured run.
    pub offload_recent: bool,
}

/// One run's row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct ReadRow {
    pub transport: &'static str,
    pub workload: &'static str,
    pub variant: &'static str,
    pub ops_per_sec: f64,
    /// Of reads (B, C) or scans (E).
    pub p50_us: f64,
    pub p99_us: f64,
    pub found: String,
    /// The run phase's read-path counters (differences over the phase).
    pub cache_hit_rate: Option<f64>,
    pub cache_hits: u64,
    /// Cache hits answered by a held key and value (no remote read).
    pub cache_value_hits: u64,
    pub one_sided_reads: u64,
    pub one_sided_mean_us: Option<f64>,
    pub delegated_gets: u64,
    pub delegated_get_mean_us: Option<f64>,
    pub delegated_scans: u64,
    pub delegated_scan_mean_us: Option<f64>,
    pub images_pulled_back: u64,
    pub pulled_back_gets: u64,
    pub scans_read_whole: u64,
    pub scans_on_pulled_back: u64,
    /// Lookups answered through images' key indexes, and scan batches
    /// merged from them (values read one-sidedly) with their mean time.
    pub indexed_gets: u64,
    pub indexed_scans: u64,
    pub indexed_scan_mean_us: Option<f64>,
    /// Bytes of key indexes held when the run ended, and of the index
    /// room lent to the cache then (no scan needed it).
    pub index_bytes: u64,
    pub index_room_lent: u64,
    /// Images on the memory node when the run started.
    pub images_offloaded: u64,
    pub bytes_offloaded: u64,
}

/// One transport and workload: the variants and the ratio.
#[derive(Debug, Clone, Serialize)]
pub struct ReadComparisonRow {
    pub transport: &'static str,
    pub workload: &'static str,
    /// adaptive / delegate throughput (when both ran): the median of the
    /// rounds' ratios.
    pub ratio: Option<f64>,
    /// Each round's adaptive / delegate ratio.
    pub round_ratios: Vec<f64>,
    /// adaptive / delegate+mem throughput, the median of the rounds'.
    pub ratio_equal_memory: Option<f64>,
    pub target: f64,
    /// Per variant, the round with the median throughput.
    pub rows: Vec<ReadRow>,
}

/// What the experiment concluded (the JSON report's `summary`).
#[derive(Debug, Clone, Serialize)]
pub struct ReadCompareSummary {
    pub local_read_memory: String,
    pub comparisons: Vec<ReadComparisonRow>,
}

#[derive(Debug)]
pub struct ReadComparison {
    pub outcome: RunOutcome,
    pub summary: ReadCompareSummary,
}

impl ReadComparison {
    /// Fails when an offloading variant did not read through the memory
    /// node: its numbers would describe local memtables.
    pub fn check(&self) -> Result<()> {
        for c in &self.summary.comparisons {
            for r in c.rows.iter().filter(|r| r.variant != "none") {
                if r.images_offloaded == 0 {
                    return Err(BenchError::NotMeasured {
                        experiment: "read-compare",
                        message: format!(
                            "{} {} {}: nothing was offloaded when the run started",
                            r.transport, r.workload, r.variant
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Every condition the runs emulate, for the report's header.
pub fn emulated_conditions(
    engine: &EngineConfig,
    offload: &OffloadConfig,
    cfg: &ReadCompareConfig,
) -> String {
    format!(
        "cores: {}; memory node an o3-memnode process per data plane (tcp on loopback with link {} ({}); shm without a link model), polling its data plane {} µs before sleeping; local memory for reads in every variant: {} sealed memtable(s) per shard + {}; {}; {}",
        cfg.pinning.description,
        cfg.tcp_link_name,
        cfg.tcp_link,
        cfg.memnode_poll_spin_us,
        offload.max_local_sealed_memtables,
        local_read_memory(offload),
        if cfg.offload_recent {
            format!(
                "before each measured run, {} of filler records per shard (keys outside the workload's) fill the local memtables, so the newest records are in offloaded images",
                bytes(filler_bytes(engine, offload))
            )
        } else {
            "the newest records stay in the local memtables".to_string()
        },
        match engine.remote_storage() {
            Some(model) => format!("remote storage ({model})"),
            None => "storage not throttled".to_string(),
        }
    )
}

fn local_read_memory(offload: &OffloadConfig) -> String {
    format!(
        "{} (adaptive: key→offset cache {} + pull-back {} + key indexes {}; delegate: as more sealed memtables kept local; none: as more block cache)",
        bytes(local_read_bytes(offload)),
        bytes(offload.offset_cache_bytes),
        bytes(offload.pull_back_bytes),
        bytes(offload.index_bytes)
    )
}

/// Bytes of filler records per shard that fill the memtables a shard keeps
/// local (the active one and `max_local_sealed_memtables` sealed ones).
fn filler_bytes(engine: &EngineConfig, offload: &OffloadConfig) -> u64 {
    offload.local_memtable_bytes(engine.write_buffer_size)
}

/// Bytes of a filler record's value.
const FILLER_VALUE_BYTES: usize = 1000;

/// Write `bytes` of filler records into every shard of `db`: keys made of
/// the shard's lower bound, a zero byte and `filler` with a count (before
/// every key of the workload in that shard, never one of them), values of
/// [`FILLER_VALUE_BYTES`]. Memtables count their entries' overhead too, so
/// this fills at least `bytes` of memtable.
fn push_recent_out(db: &o3_compute::Db, bytes: u64) -> Result<()> {
    let value = vec![b'f'; FILLER_VALUE_BYTES];
    let records = bytes / FILLER_VALUE_BYTES as u64 + 1;
    let lowers = std::iter::once(Vec::new()).chain(db.shard_splits());
    for lower in lowers {
        for n in 0..records {
            let mut key = lower.clone();
            key.push(0);
            key.extend_from_slice(format!("filler{n:010}").as_bytes());
            db.put(&key, &value)
                .map_err(BenchError::engine_op("filler records", "put"))?;
        }
    }
    Ok(())
}

/// The local memory the adaptive variant reads with beyond its memtables,
/// which every other variant gets in its own way.
fn local_read_bytes(offload: &OffloadConfig) -> u64 {
    offload.offset_cache_bytes + offload.pull_back_bytes + offload.index_bytes
}

/// The operations measured in a run of `workload`.
fn measured_operations(cfg: &ReadCompareConfig, workload: Workload) -> u64 {
    if workload.scans() {
        cfg.scan_operations
    } else {
        cfg.operations
    }
}

/// The YCSB settings of `workload` for this experiment, `operations`
/// operations in the run phase.
fn ycsb_config(cfg: &ReadCompareConfig, workload: Workload, operations: u64) -> Result<YcsbConfig> {
    let (file, text) = workload.file();
    let mut props = Properties::default();
    props.parse(text, file)?;
    for p in [
        format!("recordcount={}", cfg.records),
        format!("operationcount={operations}"),
        format!("requestdistribution={}", workload.distribution()),
        format!("threadcount={}", cfg.threads),
        "fieldcount=1".to_string(),
        "fieldlength=100".to_string(),
    ] {
        props.add_override(&p)?;
    }
    Ok(YcsbConfig {
        spec: props.to_spec(file)?,
        load: true,
        run: true,
        seed: cfg.seed,
    })
}

/// Run every transport, workload and variant and print the comparison.
pub fn run(
    cfg: &ReadCompareConfig,
    engine: &EngineConfig,
    offload: &OffloadConfig,
    show_progress: bool,
) -> Result<ReadComparison> {
    let (token, token_file) = write_token(&engine.db, "read")?;
    cfg.pinning.pin_this_process(0)?;
    println!(
        "read-compare: {} records of {} bytes loaded with flushes held back, then {} operations of each of B and C, {} of E, each after {}; memtables of {}",
        cfg.records,
        100,
        cfg.operations,
        cfg.scan_operations,
        match cfg.warmup_operations {
            None => "as many unmeasured operations of the same workload".to_string(),
            Some(0) => "no warm-up".to_string(),
            Some(n) => format!("{n} unmeasured operations of the same workload"),
        },
        bytes(engine.write_buffer_size as u64)
    );
    println!("  local memory for reads: {}", local_read_memory(offload));
    let mut phases = Vec::new();
    let mut background_errors = BackgroundErrors::default();
    let mut comparisons = Vec::new();
    for &transport in &cfg.transports {
        let node = MemnodeChild::start(cfg, transport, &engine.db, &token_file)?;
        for &workload in &cfg.workloads {
            let measured = measured_operations(cfg, workload);
            let ycsb = ycsb_config(cfg, workload, measured)?;
            let warmup = match cfg.warmup_operations.unwrap_or(measured) {
                0 => None,
                n => Some(ycsb_config(cfg, workload, n)?),
            };
            // Each round runs every variant, the order rotated from round
            // to round so no variant always runs first or last.
            let mut rounds: Vec<Vec<ReadRow>> = Vec::new();
            for round in 0..cfg.rounds {
                let mut order = cfg.variants.clone();
                let turn = round % order.len();
                order.rotate_left(turn);
                let mut rows = Vec::new();
                for variant in order {
                    let mut name = format!(
                        "{}-{}-{}",
                        transport.name(),
                        workload.name(),
                        variant.name()
                    );
                    if cfg.rounds > 1 {
                        name.push_str(&format!("-r{}", round + 1));
                    }
                    let (report, row, closing) = run_variant(
                        &name,
                        cfg,
                        (&ycsb, warmup.as_ref()),
                        engine,
                        offload,
                        &node,
                        &token,
                        (transport, workload, variant),
                        show_progress,
                    )?;
                    println!(
                        "  {name}: {:.0} ops/s, {} p50 {:.1} us p99 {:.1} us",
                        row.ops_per_sec,
                        if workload.scans() { "scan" } else { "read" },
                        row.p50_us,
                        row.p99_us
                    );
                    background_errors.count += closing.count;
                    background_errors.message = background_errors.message.or(closing.message);
                    phases.push(report);
                    rows.push(row);
                }
                rounds.push(rows);
            }
            comparisons.push(compare_rounds(transport, workload, &cfg.variants, rounds));
        }
        drop(node);
    }
    let summary = ReadCompareSummary {
        local_read_memory: local_read_memory(offload),
        comparisons,
    };
    print!("{}", describe(&summary));
    Ok(ReadComparison {
        outcome: RunOutcome {
            phases,
            background_errors,
            cut_short: None,
        },
        summary,
    })
}

/// The median of `values` (the upper one of an even count); `None` when
/// empty.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// A workload's comparison from its rounds: per variant the row of the
/// round with the median throughput; the ratios are the medians of each
/// round's ratio.
fn compare_rounds(
    transport: Transport,
    workload: Workload,
    variants: &[Variant],
    rounds: Vec<Vec<ReadRow>>,
) -> ReadComparisonRow {
    let ops =
        |rows: &[ReadRow], v: &str| rows.iter().find(|r| r.variant == v).map(|r| r.ops_per_sec);
    let ratios = |base: &str| -> Vec<f64> {
        rounds
            .iter()
            .filter_map(|rows| match (ops(rows, "adaptive"), ops(rows, base)) {
                (Some(a), Some(d)) if d > 0.0 => Some(a / d),
                _ => None,
            })
            .collect()
    };
    let round_ratios = ratios("delegate");
    let rows = variants
        .iter()
        .filter_map(|v| {
            let mut runs: Vec<&ReadRow> = rounds
                .iter()
                .filter_map(|rows| rows.iter().find(|r| r.variant == v.name()))
                .collect();
            runs.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
            runs.get(runs.len() / 2).map(|r| (*r).clone())
        })
        .collect();
    ReadComparisonRow {
        transport: transport.name(),
        workload: workload.name(),
        ratio: median(round_ratios.clone()),
        ratio_equal_memory: median(ratios("delegate+mem")),
        round_ratios,
        target: workload.target(),
        rows,
    }
}

/// One database: load with flushes held back (offloading variants), let
/// offloading settle, run the workload, let the flushes go and close.
#[allow(clippy::too_many_arguments)]
fn run_variant(
    name: &str,
    cfg: &ReadCompareConfig,
    (ycsb, warmup): (&YcsbConfig, Option<&YcsbConfig>),
    engine: &EngineConfig,
    offload: &OffloadConfig,
    node: &MemnodeChild,
    token: &ClusterToken,
    (transport, workload, variant): (Transport, Workload, Variant),
    show_progress: bool,
) -> Result<(PhaseReport, ReadRow, BackgroundErrors)> {
    let gate = SstGate::new();
    let mut options = EngineConfig {
        offload: None,
        ..engine.clone()
    }
    .db_options();
    let extra = local_read_bytes(offload);
    let shards = options.shard_splits.len() as u64 + 1;
    let memtable = engine.write_buffer_size as u64;
    let extra_memtables = extra.div_ceil(memtable * shards) as usize;
    let kept = offload.max_local_sealed_memtables + extra_memtables;
    if variant == Variant::NoOffload {
        options.block_cache_size += extra;
    } else {
        options.storage = Arc::new(GatedStorage {
            inner: options.storage,
            gate: Arc::clone(&gate),
        });
        // Every sealed memtable stays unflushed, and the flush due when
        // local memtables pass half this never comes before shipping.
        let data = cfg.records * 200;
        options.max_unflushed_bytes = options
            .max_unflushed_bytes
            .max(4 * data)
            .max(4 * (kept as u64 + 3) * memtable * shards);
        let mut o = offload.options();
        o.memory_node = MemoryNodeChoice::Config(StoreConfig::Remote(RemoteConfig {
            control: node.control.clone(),
            token: token.clone(),
            compute_node: format!("o3-bench-{}", std::process::id()),
            link: (transport == Transport::Tcp).then_some(cfg.tcp_link),
            op_timeout: Duration::from_millis(DEFAULT_MEMNODE_TIMEOUT_MS),
        }));
        o.min_memtables_to_merge = usize::MAX / 2;
        match variant {
            Variant::Adaptive => o.read_policy = ReadPolicy::Adaptive,
            Variant::Cache => o.read_policy = ReadPolicy::Cache,
            Variant::Delegate => o.read_policy = ReadPolicy::Delegate,
            Variant::DelegateEqualMemory | Variant::NoOffload => {
                o.read_policy = ReadPolicy::Delegate;
                o.max_local_sealed_memtables = kept;
            }
        }
        options.offload = Some(o);
    }
    options.idle_compaction_after = Some(Duration::from_secs(24 * 3600));
    let dir = engine.db.join(name);
    let db = crate::fresh_db::open_empty(&dir, options)?;
    // Declared after the database, so an early return opens the gate
    // before the database is dropped (which waits for its flushes).
    let held = (variant != Variant::NoOffload).then(|| gate.close());
    crate::ycsb::workload::load(ycsb, &db, show_progress)?;
    if variant != Variant::NoOffload {
        crate::offload_lookup::settle(&db)?;
    }
    if let Some(warmup) = warmup {
        crate::ycsb::workload::transactions(warmup, &db, show_progress)?;
        // The warm-up's writes (B, E) may have sealed a memtable; the run
        // starts once it is shipped, so every variant starts from the same
        // split between local memtables and images.
        if variant != Variant::NoOffload {
            crate::offload_lookup::settle(&db)?;
        }
    }
    if cfg.offload_recent {
        push_recent_out(&db, filler_bytes(engine, offload))?;
        if variant != Variant::NoOffload {
            crate::offload_lookup::settle(&db)?;
        }
    }
    let before = db.stats().offload;
    let mut report = crate::ycsb::workload::transactions(ycsb, &db, show_progress)?;
    report.result.name = name.to_string();
    let after = &report.db_stats.offload;
    let d = |f: fn(&OffloadStats) -> u64| f(after).saturating_sub(f(&before));
    let mean = |micros: u64, n: u64| (n > 0).then(|| micros as f64 / n as f64);
    let op = if workload.scans() {
        OpKind::Scan
    } else {
        OpKind::Read
    };
    let latency = report.result.latency.iter().find(|l| l.op == op);
    let (hits, misses) = (d(|s| s.cache_hits), d(|s| s.cache_misses));
    let row = ReadRow {
        transport: transport.name(),
        workload: workload.name(),
        variant: variant.name(),
        ops_per_sec: report.result.ops_per_sec,
        p50_us: latency.map_or(0.0, |l| l.p50_us),
        p99_us: latency.map_or(0.0, |l| l.p99_us),
        found: report.message.clone().unwrap_or_default(),
        cache_hit_rate: mean(hits, hits + misses),
        cache_hits: hits,
        cache_value_hits: d(|s| s.cache_value_hits),
        one_sided_reads: d(|s| s.one_sided_reads),
        one_sided_mean_us: mean(d(|s| s.one_sided_read_micros), d(|s| s.one_sided_reads)),
        delegated_gets: d(|s| s.delegated_gets),
        delegated_get_mean_us: mean(d(|s| s.delegated_get_micros), d(|s| s.delegated_gets)),
        delegated_scans: d(|s| s.delegated_scans),
        delegated_scan_mean_us: mean(d(|s| s.delegated_scan_micros), d(|s| s.delegated_scans)),
        images_pulled_back: d(|s| s.images_pulled_back),
        pulled_back_gets: d(|s| s.pulled_back_gets),
        scans_read_whole: d(|s| s.scans_read_whole),
        scans_on_pulled_back: d(|s| s.scans_on_pulled_back),
        indexed_gets: d(|s| s.indexed_gets),
        indexed_scans: d(|s| s.indexed_scans),
        indexed_scan_mean_us: mean(d(|s| s.indexed_scan_micros), d(|s| s.indexed_scans)),
        index_bytes: after.index_bytes,
        index_room_lent: after.index_room_lent,
        images_offloaded: before.images_offloaded,
        bytes_offloaded: before.bytes_offloaded,
    };
    drop(held);
    let closing = BackgroundErrors::before_closing(db)?;
    Ok((report, row, closing))
}

/// The table, for stdout.
pub fn describe(s: &ReadCompareSummary) -> String {
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    let mut out = String::new();
    for c in &s.comparisons {
        let ratio = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.2}x"));
        let rounds = if c.round_ratios.len() > 1 {
            let each: Vec<String> = c.round_ratios.iter().map(|r| format!("{r:.2}")).collect();
            format!(", median of rounds {}", each.join(" "))
        } else {
            String::new()
        };
        out.push_str(&format!(
            "\n{} {}: adaptive/delegate {} (target {:.1}x{rounds}), adaptive/delegate+mem {}\n",
            c.transport,
            c.workload,
            ratio(c.ratio),
            c.target,
            ratio(c.ratio_equal_memory)
        ));
        out.push_str(
            "  variant          ops/s   p50 us   p99 us  cache hit  value hits  1-sided (mean us)  delegated (mean us)  scans (mean us)  pulled back (gets)  whole-image scans  indexed gets  indexed scans (mean us)\n",
        );
        for r in &c.rows {
            out.push_str(&format!(
                "  {:<12} {:>9.0} {:>8.1} {:>8.1} {:>9} {:>11} {:>9} ({:>5}) {:>10} ({:>6}) {:>7} ({:>6}) {:>6} ({:>9}) {:>18} {:>13} {:>8} ({:>6})\n",
                r.variant,
                r.ops_per_sec,
                r.p50_us,
                r.p99_us,
                r.cache_hit_rate
                    .map_or("-".into(), |h| format!("{:.1}%", 100.0 * h)),
                r.cache_value_hits,
                r.one_sided_reads,
                opt(r.one_sided_mean_us),
                r.delegated_gets,
                opt(r.delegated_get_mean_us),
                r.delegated_scans,
                opt(r.delegated_scan_mean_us),
                r.images_pulled_back,
                r.pulled_back_gets,
                r.scans_read_whole + r.scans_on_pulled_back,
                r.indexed_gets,
                r.indexed_scans,
                opt(r.indexed_scan_mean_us),
            ));
        }
    }
    out
}

/// An o3-memnode child on core 1 serving `transport`.
struct MemnodeChild {
    control: String,
    _process: ChildProcess,
}

impl MemnodeChild {
    fn start(
        cfg: &ReadCompareConfig,
        transport: Transport,
        dir: &Path,
        token_file: &Path,
    ) -> Result<MemnodeChild> {
        let mut command = cfg.pinning.command(1, &cfg.memnode_bin);
        command
            .args(["--listen", "127.0.0.1:0", "--transport", transport.name()])
            .arg(format!("--pool-size={}", 2u64 << 30))
            .arg(format!("--poll-spin-us={}", cfg.memnode_poll_spin_us))
            .args(["--lease-ttl", "30s", "--token-file"])
            .arg(token_file);
        let name = format!("{} o3-memnode", transport.name());
        let (process, announced) = spawn_announcing(
            &name,
            command,
            &dir.join(format!("{}-memnode.log", transport.name())),
            &["listening on ", "data plane "],
        )?;
        let Some(control) = announced.first() else {
            return Err(BenchError::InvalidArgument(format!(
                "{name}: it announced no address"
            )));
        };
        Ok(MemnodeChild {
            control: control.clone(),
            _process: process,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filler_records_fill_every_shard_before_the_workloads_keys() {
        let dir = tempfile::tempdir().unwrap();
        let options = o3_compute::DbOptions {
            write_buffer_size: 64 << 10,
            shard_splits: vec![b"user5".to_vec()],
            ..o3_compute::DbOptions::default()
        };
        let db = o3_compute::Db::open(dir.path().join("db"), options).unwrap();
        db.put(b"user1", b"w").unwrap();
        db.put(b"user7", b"w").unwrap();
        push_recent_out(&db, 100_000).unwrap();
        let all = db.scan(Vec::new().., false).unwrap();
        let filler: Vec<&Vec<u8>> = all
            .iter()
            .map(|(k, _)| k)
            .filter(|k| !k.starts_with(b"user") || k.len() > 5)
            .collect();
        let per_shard = 100_000 / FILLER_VALUE_BYTES + 1;
        assert_eq!(filler.len(), 2 * per_shard, "{} records", all.len());
        // Shard 0's filler comes before every workload key, shard 1's
        // right after its split key, before the workload's keys there.
        let keys: Vec<&[u8]> = all.iter().map(|(k, _)| k.as_slice()).collect();
        assert!(keys[..per_shard].iter().all(|k| k.starts_with(b"\0filler")));
        assert_eq!(keys[per_shard], b"user1");
        assert!(
            keys[per_shard + 1..]
                .iter()
                .take(per_shard)
                .all(|k| k.starts_with(b"user5\0filler"))
        );
        assert_eq!(*keys.last().unwrap(), b"user7");
        db.close().unwrap();
    }

    fn row(variant: &'static str, ops_per_sec: f64) -> ReadRow {
        ReadRow {
            transport: "tcp",
            workload: "c-zipfian",
            variant,
            ops_per_sec,
            p50_us: 0.0,
            p99_us: 0.0,
            found: String::new(),
            cache_hit_rate: None,
            cache_hits: 0,
            cache_value_hits: 0,
            one_sided_reads: 0,
            one_sided_mean_us: None,
            delegated_gets: 0,
            delegated_get_mean_us: None,
            delegated_scans: 0,
            delegated_scan_mean_us: None,
            images_pulled_back: 0,
            pulled_back_gets: 0,
            scans_read_whole: 0,
            scans_on_pulled_back: 0,
            indexed_gets: 0,
            indexed_scans: 0,
            indexed_scan_mean_us: None,
            index_bytes: 0,
            index_room_lent: 0,
            images_offloaded: 1,
            bytes_offloaded: 1,
        }
    }

    #[test]
    fn rounds_report_median_rows_and_the_median_ratio() {
        let rounds = vec![
            vec![row("adaptive", 200.0), row("delegate", 100.0)],
            vec![row("delegate", 50.0), row("adaptive", 150.0)],
            vec![row("adaptive", 120.0), row("delegate", 100.0)],
        ];
        let c = compare_rounds(
            Transport::Tcp,
            Workload::CZipfian,
            &[Variant::Adaptive, Variant::Delegate],
            rounds,
        );
        assert_eq!(c.round_ratios, vec![2.0, 3.0, 1.2]);
        assert_eq!(c.ratio, Some(2.0));
        assert_eq!(c.ratio_equal_memory, None);
        assert_eq!(c.rows[0].ops_per_sec, 150.0);
        assert_eq!(c.rows[1].ops_per_sec, 100.0);
        assert_eq!(c.target, TARGET_POINT_RATIO);
    }

    #[test]
    fn lists_parse_and_name_what_is_wrong() {
        let all = &Workload::ALL;
        assert_eq!(
            parse_list("--workloads", None, all, Workload::name).unwrap(),
            all.to_vec()
        );
        assert_eq!(
            parse_list("--workloads", Some("e, c-latest,e"), all, Workload::name).unwrap(),
            vec![Workload::E, Workload::CLatest]
        );
        let e = parse_list("--workloads", Some("x"), all, Workload::name)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--workloads 'x': expected one of b-zipfian"),
            "{e}"
        );
        assert!(parse_list("--workloads", Some(","), all, Workload::name).is_err());
    }

    #[test]
    fn each_workload_resolves_to_its_ycsb_spec() {
        let cfg = ReadCompareConfig {
            records: 1000,
            operations: 500,
            scan_operations: 50,
            warmup_operations: None,
            workloads: Workload::ALL.to_vec(),
            transports: vec![Transport::Tcp],
            variants: vec![Variant::Adaptive],
            tcp_link_name: "rdma-fabric".into(),
            tcp_link: LinkModel::RDMA_FABRIC,
            threads: 2,
            rounds: 1,
            seed: 1,
            memnode_bin: PathBuf::new(),
            pinning: Pinning::detect(false, ""),
            memnode_poll_spin_us: 50,
            offload_recent: true,
        };
        for w in Workload::ALL {
            let y = ycsb_config(&cfg, w, measured_operations(&cfg, w)).unwrap();
            assert_eq!(y.spec.recordcount, 1000);
            assert_eq!(y.spec.threadcount, 2);
            assert_eq!(
                y.spec.operationcount,
                if w.scans() { 50 } else { 500 },
                "{w:?}"
            );
            assert_eq!(
                format!("{:?}", y.spec.requestdistribution).to_lowercase(),
                w.distribution(),
                "{w:?}"
            );
        }
    }
}
