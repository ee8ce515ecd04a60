//! The command line and the TOML config file. Precedence, lowest first:
//! built-in defaults, `--config FILE`, flags. The config file has one table
//! per flag group, with the flag names as keys:
//!
//! ```toml
//! [engine]
//! db = "/tmp/o3-bench-db"
//! cache_size = 8388608
//! [dbbench]
//! benchmarks = "fillrandom,readrandom"
//! num = 100000
//! [ycsb]
//! workload = "bench/workloads/workloada"
//! properties = ["recordcount=100000"]
//! [offload]
//! offload = true
//! max_local_sealed_memtables = 1
//! link = "rdma-fabric"
//! [offload_compare]
//! burst_factor = 4.0
//! [offload_lookup]
//! num = 200000
//! [csa]
//! csa_agents = 2
//! csa_policy = "auto"
//! ```
//!
//! `csa-compare` takes flags only: its runs are child processes whose
//! command lines it prints.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};

use crate::csa::CsaArgs;
use crate::csa_compare::CsaCompareArgs;
use crate::dbbench::{self, DbBenchArgs};
use crate::engine::EngineArgs;
use crate::error::{BenchError, Result};
use crate::flush_compare::FlushCompareArgs;
use crate::offload::OffloadArgs;
use crate::offload_compare::OffloadCompareArgs;
use crate::offload_lookup::OffloadLookupArgs;
use crate::report::{Environment, PhaseReport, Report, RunStatus, live, repeat};
use crate::ycsb::{self, YcsbArgs};

/// o3-bench: YCSB and db_bench-style workloads against o3.
#[derive(Debug, Parser)]
#[command(name = "o3-bench", version, rename_all = "snake_case")]
#[command(args_override_self = true)] // gflags: a repeated flag takes its last value
pub struct Cli {
    /// TOML file with engine, offload, csa, dbbench, ycsb, offload_compare
    /// and offload_lookup tables; flags override it.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Write the full report as JSON to this file.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// Write SVG plots (timeline, latency CDF) per phase into this directory.
    #[arg(long, global = true)]
    pub plots: Option<PathBuf>,
    /// dbbench and ycsb: run the benchmarks this many times and report each
    /// phase's min, median and max throughput and p99 latency (default 1).
    #[arg(long, global = true)]
    pub repeat: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// db_bench-style benchmarks (db_bench's flag names).
    Dbbench {
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        offload: OffloadArgs,
        #[command(flatten)]
        csa: CsaArgs,
        // Boxed: db_bench's many flags would make every variant as large.
        #[command(flatten)]
        bench: Box<DbBenchArgs>,
    },
    /// YCSB core workload from a property file.
    Ycsb {
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        offload: OffloadArgs,
        #[command(flatten)]
        csa: CsaArgs,
        #[command(flatten)]
        workload: YcsbArgs,
    },
    /// Write burst of a few times the local memtable budget onto throttled
    /// storage, without and then with memtable offloading.
    OffloadCompare {
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        offload: OffloadArgs,
        #[command(flatten)]
        compare: OffloadCompareArgs,
    },
    /// The same write burst without offloading, with memtable offloading
    /// and local flushes, and with flushes offloaded to the memory node
    /// (or an agent): all three in one run.
    #[command(name = "flush-compare")]
    FlushCompare {
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        offload: OffloadArgs,
        #[command(flatten)]
        compare: OffloadCompareArgs,
        #[command(flatten)]
        flush: FlushCompareArgs,
    },
    /// The same fill with 1, 2, 4 and 8 key-range shards (adaptive split
    /// keys), on uniform and on zipfian keys.
    #[command(name = "shard-sweep")]
    ShardSweep {
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        sweep: crate::shard_sweep::ShardSweepArgs,
    },
    /// Point lookups that hit offloaded memtable images, next to the same
    /// lookups in local memtables.
    OffloadLookup {
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        offload: OffloadArgs,
        #[command(flatten)]
        lookup: OffloadLookupArgs,
    },
    /// fillrandom with compactions all local, then on an o3-csa scheduler
    /// and agents pinned to another core, then with one agent killed
    /// mid-run (each run a child o3-bench process).
    #[command(name = "csa-compare")]
    CsaCompare(CsaCompareArgs),
    /// Compaction study: one workload under several strategies.
    Study(crate::study::StudyArgs),
    /// Shipping a sealed memtable to a memory node, next to the raw
    /// transport's one-sided write throughput.
    #[command(name = "offload-ship")]
    OffloadShip(crate::offload_ship::OffloadShipArgs),
    /// YCSB B, C (zipfian, latest) and E on data in offloaded images: the
    /// cache-enhanced adaptive read path against delegation only and no
    /// offloading, over tcp (RDMA-like link) and shm memory nodes.
    #[command(name = "read-compare")]
    ReadCompare {
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        offload: OffloadArgs,
        #[command(flatten)]
        compare: crate::read_compare::ReadCompareArgs,
    },
}

/// The config file's layout.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigFile {
    pub engine: EngineArgs,
    pub offload: OffloadArgs,
    pub csa: CsaArgs,
    pub dbbench: DbBenchArgs,
    pub ycsb: YcsbArgs,
    pub offload_compare: OffloadCompareArgs,
    pub offload_lookup: OffloadLookupArgs,
    pub flush_compare: FlushCompareArgs,
    pub read_compare: crate::read_compare::ReadCompareArgs,
}

impl ConfigFile {
    /// Read and parse `path`; errors name the file and the line.
    pub fn read(path: &Path) -> Result<ConfigFile> {
        let text = std::fs::read_to_string(path).map_err(|e| BenchError::io(path, e))?;
        toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            BenchError::Config {
                path: path.to_path_buf(),
                message: match line {
                    Some(l) => format!("line {l}: {}", e.message().trim()),
                    None => e.message().trim().to_string(),
                },
            }
        })
    }
}

/// The effective configuration, as reported.
#[derive(Debug, Serialize)]
struct Effective<'a, T: Serialize> {
    engine: &'a crate::engine::EngineConfig,
    #[serde(flatten)]
    workload: &'a T,
}

/// Run what the command line asks for. The outputs are checked first; a
/// run that fails after phases finished leaves them in the JSON report,
/// marked failed.
pub fn run(cli: Cli) -> Result<()> {
    live::check_outputs(cli.json.as_deref(), cli.plots.as_deref())?;
    let result = run_command(cli);
    if let Err(e) = &result {
        live::failed(e);
    }
    live::finish();
    result
}

fn run_command(cli: Cli) -> Result<()> {
    let config = match &cli.config {
        Some(p) => ConfigFile::read(p)?,
        None => ConfigFile::default(),
    };
    let show_progress = std::io::stdout().is_terminal();
    let mut environment = Environment::detect();
    // What a comparing subcommand concluded, and its own check (run after
    // the report is written, like the background-work check).
    let mut summary = serde_json::Value::Null;
    let mut summary_check = Ok(());
    // --repeat's spreads (dbbench and ycsb only).
    let times = cli.repeat.unwrap_or(1);
    let mut repeats = Vec::new();
    // ycsb's stdout is YCSB's: o3's own lines there start with "# ".
    let mut ycsb_output = false;
    if times != 1 && !matches!(cli.command, Command::Dbbench { .. } | Command::Ycsb { .. }) {
        return Err(BenchError::InvalidArgument(
            "--repeat applies to dbbench and ycsb; the comparing subcommands set their own rounds"
                .into(),
        ));
    }
    // An in-process compaction service lives until the run's database is
    // closed, and stops when this is dropped.
    let mut _service = None;
    let (configuration, outcome) = match cli.command {
        Command::Dbbench {
            engine,
            offload,
            csa,
            bench,
        } => {
            let (engine, service) = resolve_engine(
                engine.over(config.engine),
                offload.over(config.offload),
                csa.over(config.csa),
                "o3-dbbench",
            )?;
            _service = service;
            environment.emulated_conditions = engine.emulated_conditions();
            let bench = bench.over(config.dbbench).resolve()?;
            let engine = engine.split_key_space(bench.num, bench.key_size);
            let configuration = to_json(&Effective {
                engine: &engine,
                workload: &bench,
            })?;
            print_header(&environment, &configuration, cli.json.as_deref());
            let (outcome, spreads) =
                repeat::repeat(times, || dbbench::run(&bench, &engine, show_progress))?;
            repeats = spreads;
            (configuration, outcome)
        }
        Command::Study(args) => {
            return crate::study::run(args, cli.json.as_deref(), cli.plots.as_deref());
        }
        Command::OffloadShip(args) => return crate::offload_ship::run(&args),
        Command::CsaCompare(args) => {
            if let Some(path) = &cli.config {
                return Err(BenchError::InvalidArgument(format!(
                    "csa-compare takes flags only, not --config {}",
                    path.display()
                )));
            }
            return crate::csa_compare::run(&args, cli.json.as_deref());
        }
        Command::Ycsb {
            engine,
            offload,
            csa,
            workload,
        } => {
            let (engine, service) = resolve_engine(
                engine.over(config.engine),
                offload.over(config.offload),
                csa.over(config.csa),
                "o3-ycsb",
            )?;
            _service = service;
            environment.emulated_conditions = engine.emulated_conditions();
            let workload = workload.over(config.ycsb).resolve()?;
            if engine.shards > 1 && !engine.adaptive_shards {
                return Err(BenchError::InvalidArgument(
                    "--shards without --adaptive_shards splits dbbench's key space evenly; for ycsb add --adaptive_shards (the engine learns the split keys)".into(),
                ));
            }
            let configuration = to_json(&Effective {
                engine: &engine,
                workload: &workload,
            })?;
            print_commented(&format!(
                "{}configuration: {configuration}\n",
                environment.describe()
            ));
            live::begin(&environment, &configuration, cli.json.as_deref());
            let mut measurements = Vec::new();
            let (outcome, spreads) = repeat::repeat(times, || {
                let run = ycsb::workload::run(&workload, &engine, show_progress)?;
                measurements.extend(run.measurements);
                Ok(run.outcome)
            })?;
            repeats = spreads;
            ycsb_output = true;
            for (p, m) in outcome.phases.iter().zip(&measurements) {
                print_ycsb_phase(p, m);
            }
            (configuration, outcome)
        }
        Command::OffloadCompare {
            engine,
            offload,
            compare,
        } => {
            let offload = offload
                .over(config.offload)
                .resolve_implied("offload-compare")?;
            let engine = crate::offload_compare::engine_defaults(engine.over(config.engine))
                .resolve("o3-offload-compare")?;
            let compare = compare
                .over(config.offload_compare)
                .resolve(&engine, &offload)?;
            // Both runs enforce the local budget as max_unflushed_bytes.
            let engine = crate::engine::EngineConfig {
                max_unflushed_bytes: Some(compare.local_budget_bytes),
                ..engine
            }
            .with_offload(Some(offload.clone()))?;
            environment.emulated_conditions = engine.emulated_conditions();
            let configuration = to_json(&Effective {
                engine: &engine,
                workload: &compare,
            })?;
            print_header(&environment, &configuration, cli.json.as_deref());
            let comparison =
                crate::offload_compare::run(&compare, &engine, &offload, show_progress)?;
            summary = to_json(&comparison.summary)?;
            summary_check = comparison.check();
            (configuration, comparison.outcome)
        }
        Command::FlushCompare {
            engine,
            offload,
            compare,
            flush,
        } => {
            // Defaults of this experiment: every sealed memtable is
            // offloaded (a local one keeps its flush here), and the pool cap
            // is small, so the fill outruns the memory node too and the
            // flushes' speed decides the throughput.
            let offload = offload.over(config.offload);
            let offload = crate::offload::OffloadArgs {
                max_local_sealed_memtables: offload.max_local_sealed_memtables.or(Some(0)),
                max_offloaded_bytes: offload
                    .max_offloaded_bytes
                    .or(Some(crate::flush_compare::DEFAULT_MAX_OFFLOADED_BYTES)),
                ..offload
            }
            .resolve_implied("flush-compare")?;
            let compare = crate::offload_compare::OffloadCompareArgs {
                burst_factor: compare.burst_factor.or(Some(16.0)),
                ..compare
            };
            // Four shards unless --shards says otherwise: their flushes run
            // at once, here as on the memory node's flush slots.
            let engine = engine.over(config.engine);
            let engine = crate::engine::EngineArgs {
                shards: engine.shards.or(Some(4)),
                ..engine
            };
            let engine =
                crate::offload_compare::engine_defaults(engine).resolve("o3-flush-compare")?;
            let compare = compare
                .over(config.offload_compare)
                .resolve(&engine, &offload)?;
            let flush = flush.over(config.flush_compare).resolve(&offload)?;
            let engine = crate::engine::EngineConfig {
                max_unflushed_bytes: Some(compare.local_budget_bytes),
                ..engine
            }
            .with_offload(Some(offload.clone()))?;
            environment.emulated_conditions =
                crate::flush_compare::emulated_conditions(&engine, &offload, &flush);
            let configuration = to_json(&Effective {
                engine: &engine,
                workload: &crate::flush_compare::FlushCompareWorkload {
                    compare: &compare,
                    flush: &flush,
                },
            })?;
            print_header(&environment, &configuration, cli.json.as_deref());
            let comparison =
                crate::flush_compare::run(&compare, &flush, &engine, &offload, show_progress)?;
            summary = to_json(&comparison.summary)?;
            summary_check = comparison.check();
            (configuration, comparison.outcome)
        }
        Command::ShardSweep { engine, sweep } => {
            let engine = engine.over(config.engine).resolve("o3-shard-sweep")?;
            if engine.shards > 1 || engine.adaptive_shards {
                return Err(BenchError::InvalidArgument(
                    "shard-sweep sets the shards itself: use --shard_counts, not --shards or --adaptive_shards".into(),
                ));
            }
            let sweep = sweep.resolve()?;
            environment.emulated_conditions = format!(
                "{}; cores: {}",
                engine.emulated_conditions(),
                sweep.pinning.description
            );
            let configuration = to_json(&Effective {
                engine: &engine,
                workload: &sweep,
            })?;
            print_header(&environment, &configuration, cli.json.as_deref());
            let result = crate::shard_sweep::run(&sweep, &engine, show_progress)?;
            summary = to_json(&result.points)?;
            (configuration, result.outcome)
        }
        Command::ReadCompare {
            engine,
            offload,
            compare,
        } => {
            let offload = crate::read_compare::offload_defaults(offload.over(config.offload))
                .resolve_implied("read-compare")?;
            let engine = crate::read_compare::engine_defaults(engine.over(config.engine))
                .resolve("o3-read-compare")?;
            let compare = compare.over(config.read_compare).resolve(&offload)?;
            environment.emulated_conditions =
                crate::read_compare::emulated_conditions(&engine, &offload, &compare);
            let configuration = to_json(&Effective {
                engine: &engine,
                workload: &compare,
            })?;
            print_header(&environment, &configuration, cli.json.as_deref());
            let comparison = crate::read_compare::run(&compare, &engine, &offload, show_progress)?;
            summary = to_json(&comparison.summary)?;
            summary_check = comparison.check();
            (configuration, comparison.outcome)
        }
        Command::OffloadLookup {
            engine,
            offload,
            lookup,
        } => {
            let offload = offload
                .over(config.offload)
                .resolve_implied("offload-lookup")?;
            let engine = crate::offload_lookup::engine_defaults(engine.over(config.engine))
                .resolve("o3-offload-lookup")?
                .with_offload(Some(offload.clone()))?;
            environment.emulated_conditions = engine.emulated_conditions();
            let lookup = lookup.over(config.offload_lookup).resolve()?;
            let configuration = to_json(&Effective {
                engine: &engine,
                workload: &lookup,
            })?;
            print_header(&environment, &configuration, cli.json.as_deref());
            let comparison = crate::offload_lookup::run(&lookup, &engine, &offload, show_progress)?;
            summary = to_json(&comparison.summary)?;
            summary_check = comparison.check();
            (configuration, comparison.outcome)
        }
    };
    // Failed background work fails the run, after the report that records
    // it is written.
    let background_check = outcome.check();
    // This report replaces the one recorded while the phases ran.
    live::finish();
    let error = match (&background_check, &summary_check) {
        (Err(e), _) | (_, Err(e)) => Some(e.to_string()),
        _ => None,
    };
    let report = Report {
        command_line: std::env::args().collect(),
        environment,
        configuration,
        status: if error.is_some() {
            RunStatus::Failed
        } else {
            RunStatus::Complete
        },
        error,
        phases: outcome.phases,
        background_errors: outcome.background_errors,
        cut_short: outcome.cut_short,
        summary,
        repeats,
    };
    let mut trailer = String::new();
    if !report.repeats.is_empty() {
        trailer.push_str(&repeat::describe(&report.repeats));
    }
    if let Some(path) = &cli.json {
        report.write_json(path)?;
        trailer.push_str(&format!("report written to {}\n", path.display()));
    }
    if let Some(dir) = &cli.plots {
        for f in report.write_plots(dir)? {
            trailer.push_str(&format!("plot written to {}\n", f.display()));
        }
    }
    if ycsb_output {
        print_commented(&trailer);
    } else {
        print!("{trailer}");
    }
    background_check?;
    summary_check
}

/// The engine's settings with offloading and the compaction service; an
/// in-process service is started here and runs until the returned handle
/// is dropped.
fn resolve_engine(
    engine: EngineArgs,
    offload: OffloadArgs,
    csa: CsaArgs,
    default_dir: &str,
) -> Result<(crate::engine::EngineConfig, Option<Services>)> {
    let (offload, token_file) = csa.take_token_file(offload);
    let csa = csa.resolve(token_file)?;
    let mut engine = engine
        .resolve(default_dir)?
        .with_offload(offload.resolve()?)?;
    let Some(mut csa) = csa else {
        return Ok((engine, None));
    };
    let service = csa.start(&engine)?;
    let memory_node = csa.serve_memory_node(&mut engine)?;
    Ok((
        engine.with_csa(Some(csa))?,
        Some(Services {
            _memory_node: memory_node,
            _service: service,
        }),
    ))
}

/// What a run started in this process for its database: stopped when
/// dropped (the memory node first, while its scheduler still answers).
#[derive(Debug)]
struct Services {
    _memory_node: Option<o3_memnode::local::LocalMemoryNode>,
    _service: Option<o3_csa::LocalService>,
}

fn to_json<T: Serialize>(v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v)
        .map_err(|e| BenchError::InvalidArgument(format!("encoding the configuration: {e}")))
}

/// Print the conditions and configuration, and start recording the run's
/// phases (into `json` as they end).
fn print_header(env: &Environment, configuration: &serde_json::Value, json: Option<&Path>) {
    print!("{}", env.describe());
    println!("configuration: {configuration}");
    live::begin(env, configuration, json);
}

/// A YCSB phase as YCSB's client prints it, then o3's own details.
///
/// YCSB's part: `[OVERALL], RunTime(ms), n`, `[OVERALL],
/// Throughput(ops/sec), x` and each operation's measurements
/// ([`ycsb::measurements::Measurements::export`]). Every other line (the
/// phase header, the latency table, engine statistics) starts with `# `,
/// which a parser of YCSB's output skips.
fn print_ycsb_phase(p: &PhaseReport, m: &ycsb::measurements::Measurements) {
    let r = &p.result;
    let message = p.message.as_deref().unwrap_or("");
    println!("# == {} phase {message}", r.name);
    println!(
        "[OVERALL], RunTime(ms), {}",
        (r.seconds * 1000.0).round() as u64
    );
    println!("[OVERALL], Throughput(ops/sec), {:?}", r.ops_per_sec);
    print!("{}", m.export());
    print_commented(&r.details());
    print_commented(&p.describe_engine());
    print_commented(&p.background_errors.describe());
}

/// Print `text` with `# ` before each line: o3's own lines in YCSB's output,
/// where a script written for YCSB expects only `[SECTION], metric, value`.
fn print_commented(text: &str) {
    for line in text.lines() {
        println!("# {line}");
    }
}
