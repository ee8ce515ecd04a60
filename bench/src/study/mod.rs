//! The compaction study (`o3-bench study`): one workload run on a fresh
//! database under each of a list of compaction strategies, with a table of
//! the trade-offs (throughput, write, space and read amplification, p99
//! latencies, stalls, delete persistence), JSON and an SVG plot; and
//! `--simulate`, which replays one flush stream in the simulator and in the
//! engine and compares their write amplification.

pub mod plot;
pub mod simulate;
pub mod strategy;
pub mod tree_watch;
pub mod workload;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Args;
use o3_compute::DbOptions;
use o3_storage::compaction::LeveledOptions;
use serde::Serialize;

use crate::error::{BenchError, Result};
use crate::report::{Environment, OpKind, progress_bar};
use simulate::{Agreement, StreamShape};
use strategy::StrategySpec;
use workload::{Mix, StrategyResult};

/// Flags of `o3-bench study`.
#[derive(Debug, Clone, Args)]
#[command(rename_all = "snake_case")]
pub struct StudyArgs {
    /// Strategies: preset names separated by commas, or, when any has
    /// overrides, specs separated by `;`: `preset:key=value,key=value`
    /// (keys: picker, trigger (a+b), granularity, layouts (a+b),
    /// runs_per_tier, max_file_age_ms, max_space_amplification,
    /// tombstone_ttl_ms).
    #[arg(long, default_value = "leveling,tiering,one-leveling")]
    pub strategies: String,
    /// Replay one flush stream in the simulator and in the engine and
    /// compare write amplification instead of running the workload.
    #[arg(long)]
    pub simulate: bool,
    /// Parent directory of the per-strategy databases (default: the system
    /// temporary directory). Each database is removed after its run.
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Operations of the workload.
    #[arg(long, default_value_t = 200_000)]
    pub num: u64,
    /// Weights of the operation mix.
    #[arg(long, default_value_t = 0.4)]
    pub insert: f64,
    #[arg(long, default_value_t = 0.3)]
    pub update: f64,
    #[arg(long, default_value_t = 0.1)]
    pub delete: f64,
    #[arg(long, default_value_t = 0.15)]
    pub read: f64,
    #[arg(long, default_value_t = 0.05)]
    pub scan: f64,
    /// Entries a scan reads after its seek.
    #[arg(long, default_value_t = 10)]
    pub scan_length: usize,
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Memtable size (the tree is kept small so a short run has depth).
    #[arg(long, default_value_t = 1 << 20)]
    pub write_buffer_size: usize,
    /// Output file size.
    #[arg(long, default_value_t = 1 << 20)]
    pub target_file_size: u64,
    /// Target size of L1.
    #[arg(long, default_value_t = 4 << 20)]
    pub level_base: u64,
    #[arg(long, default_value_t = 10.0)]
    pub level_multiplier: f64,
    #[arg(long, default_value_t = 4)]
    pub l0_trigger: usize,
    /// --simulate: flushes in the stream.
    #[arg(long, default_value_t = 100)]
    pub flushes: usize,
    /// --simulate: writes per flush.
    #[arg(long, default_value_t = 10_000)]
    pub entries_per_flush: usize,
    /// --simulate: fraction of writes that overwrite an existing key.
    #[arg(long, default_value_t = 0.5)]
    pub overwrite_ratio: f64,
    /// --simulate: fraction of writes that delete an existing key.
    #[arg(long, default_value_t = 0.1)]
    pub delete_ratio: f64,
}

impl StudyArgs {
    fn levels(&self) -> LeveledOptions {
        LeveledOptions {
            l0_compaction_trigger: self.l0_trigger,
            max_bytes_for_level_base: self.level_base,
            max_bytes_for_level_multiplier: self.level_multiplier,
            target_file_size_base: self.target_file_size,
            max_compaction_bytes: 25 * self.target_file_size,
            ..LeveledOptions::default()
        }
    }

    fn db_options(&self) -> DbOptions {
        let mut o = DbOptions {
            write_buffer_size: self.write_buffer_size,
            ..DbOptions::default()
        };
        o.max_unflushed_bytes = o.max_unflushed_bytes.max(2 * self.write_buffer_size as u64);
        o
    }

    fn mix(&self) -> Mix {
        Mix {
            ops: self.num,
            insert: self.insert,
            update: self.update,
            delete: self.delete,
            read: self.read,
            scan: self.scan,
            scan_length: self.scan_length,
            key_size: self.key_size,
            value_size: self.value_size,
            seed: self.seed,
        }
    }
}

/// The JSON document of a study.
#[derive(Debug, Serialize)]
struct StudyReport<'a> {
    command_line: Vec<String>,
    environment: &'a Environment,
    workload: Option<&'a Mix>,
    stream: Option<&'a StreamShape>,
    results: &'a [StrategyResult],
    agreement: &'a [Agreement],
}

/// A fresh database directory for run `i` of `label` under `parent`.
fn fresh_dir(parent: &Path, i: usize, label: &str) -> Result<PathBuf> {
    let name: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(60)
        .collect();
    let dir = parent.join(format!("o3-study-{}-{i}-{name}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| BenchError::io(&dir, e))?;
    }
    Ok(dir)
}

/// Run `o3-bench study`.
/// A simulated stream needs a flush of at least one write: with none, the
/// write amplifications it compares are 0 / 0.
fn check_stream(args: &StudyArgs) -> Result<()> {
    for (flag, value) in [
        ("--flushes", args.flushes),
        ("--entries_per_flush", args.entries_per_flush),
    ] {
        if value == 0 {
            return Err(BenchError::InvalidArgument(format!(
                "{flag} 0: --simulate compares the write amplification of a stream of flushes, so it needs at least one flush of one write"
            )));
        }
    }
    Ok(())
}

pub fn run(args: StudyArgs, json: Option<&Path>, plots: Option<&Path>) -> Result<()> {
    let specs = StrategySpec::parse_list(&args.strategies, &args.levels())?;
    let base = args.db_options();
    for s in &specs {
        DbOptions {
            compaction: s.options.clone(),
            ..base.clone()
        }
        .validate()
        .map_err(|e| BenchError::InvalidArgument(format!("strategy {:?}: {e}", s.label)))?;
    }
    if args.simulate {
        check_stream(&args)?;
    }
    let parent = args.db.clone().unwrap_or_else(std::env::temp_dir);
    let environment = Environment::detect();
    print!("{}", environment.describe());
    let mix = args.mix();
    let mut results = Vec::new();
    let mut agreement = Vec::new();
    let shape = StreamShape {
        flushes: args.flushes,
        entries_per_flush: args.entries_per_flush,
        overwrite_ratio: args.overwrite_ratio,
        delete_ratio: args.delete_ratio,
        value_size: args.value_size,
        seed: args.seed,
    };
    for (i, spec) in specs.iter().enumerate() {
        let dir = fresh_dir(&parent, i, &spec.label)?;
        let outcome = if args.simulate {
            simulate::compare(spec, &shape, &base, &dir).map(|a| agreement.push(a))
        } else {
            mix.validate()?;
            let bar = progress_bar(std::io::stdout().is_terminal(), Some(mix.ops), &spec.label);
            let r = workload::run_strategy(spec, &mix, &base, &dir, bar.clone());
            bar.finish_and_clear();
            r.map(|r| results.push(r))
        };
        let _ = std::fs::remove_dir_all(&dir);
        outcome?;
    }
    if args.simulate {
        print!("{}", agreement_table(&shape, &agreement));
    } else {
        print!("{}", results_table(&mix, &results));
    }
    let report = StudyReport {
        command_line: std::env::args().collect(),
        environment: &environment,
        workload: (!args.simulate).then_some(&mix),
        stream: args.simulate.then_some(&shape),
        results: &results,
        agreement: &agreement,
    };
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| BenchError::InvalidArgument(format!("encoding the JSON report: {e}")))?;
        std::fs::write(path, text + "\n").map_err(|e| BenchError::io(path, e))?;
        println!("report written to {}", path.display());
    }
    if let Some(dir) = plots.filter(|_| !results.is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
        let path = dir.join("study-tradeoff.svg");
        let svg = plot::tradeoff(
            "compaction strategies: write vs space amplification",
            &results,
        );
        std::fs::write(&path, svg).map_err(|e| BenchError::io(&path, e))?;
        println!("plot written to {}", path.display());
    }
    // Failed background work fails the study, after the report records it.
    for r in &results {
        r.background_errors
            .check(&format!("strategy {}", r.strategy))?;
    }
    Ok(())
}

fn p99(r: &StrategyResult, op: OpKind) -> String {
    r.p99_us
        .iter()
        .find(|(k, _)| *k == op)
        .map_or("-".to_string(), |(_, v)| format!("{v:.0}"))
}

/// The study table, with a header saying how each column is measured.
pub fn results_table(mix: &Mix, results: &[StrategyResult]) -> String {
    let mut s = format!(
        "workload: {} ops, weights insert {} update {} delete {} read {} scan {} (length {}), key {} B, value {} B, seed {}\n",
        mix.ops,
        mix.insert,
        mix.update,
        mix.delete,
        mix.read,
        mix.scan,
        mix.scan_length,
        mix.key_size,
        mix.value_size,
        mix.seed
    );
    s.push_str(
        "columns: kops/s over all operations; WA = (flush + compaction bytes written) / user bytes; \
SA = SST bytes after flush and settling / live keys' key+value bytes; \
RA = sorted runs (L0 files + non-empty levels) at each point lookup, averaged (the engine does not count SSTs probed); \
p99 in us; stall = seconds writes were held back; \
delete persistence = seconds from a delete until no SST could still hold its tombstone \
(from manifest snapshots every 20 ms; an upper bound; deletes still held at the end count until the end), p50/p99, and the fraction persisted\n",
    );
    s.push_str(&format!(
        "{:<44} {:>7} {:>6} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8} {:>7} {:>15} {:>6}\n",
        "strategy",
        "kops/s",
        "WA",
        "SA",
        "RA",
        "p99 put",
        "p99 del",
        "p99 get",
        "p99 scan",
        "stall",
        "del p50/p99 s",
        "pers."
    ));
    for r in results {
        let d = &r.delete_persistence;
        s.push_str(&format!(
            "{:<44} {:>7.1} {:>6.2} {:>6.2} {:>6.2} {:>8} {:>8} {:>8} {:>8} {:>7.2} {:>15} {:>5.0}%\n",
            r.strategy,
            r.ops_per_sec / 1000.0,
            r.write_amplification,
            r.space_amplification,
            r.read_amplification,
            p99(r, OpKind::Insert),
            p99(r, OpKind::Delete),
            p99(r, OpKind::Read),
            p99(r, OpKind::Scan),
            r.stall_seconds,
            format!("{:.2}/{:.2}", d.p50_seconds, d.p99_seconds),
            100.0 * d.persisted as f64 / d.deletes.max(1) as f64
        ));
    }
    s
}

/// The simulator-versus-engine table.
pub fn agreement_table(shape: &StreamShape, rows: &[Agreement]) -> String {
    let mut s = format!(
        "flush stream: {} flushes x {} writes, overwrite {}, delete {}, 8 B keys, {} B values, seed {}\n",
        shape.flushes,
        shape.entries_per_flush,
        shape.overwrite_ratio,
        shape.delete_ratio,
        shape.value_size,
        shape.seed
    );
    s.push_str("WA = (flush + compaction bytes written) / flush bytes on both sides\n");
    s.push_str(&format!(
        "{:<40} {:>9} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "strategy",
        "sim WA",
        "engine WA",
        "ratio",
        "sim comp",
        "eng comp",
        "eng moves",
        "sim SA",
        "overhead"
    ));
    for a in rows {
        s.push_str(&format!(
            "{:<40} {:>9.3} {:>9.3} {:>7.3} {:>9} {:>9} {:>9} {:>9.2} {:>9}\n",
            a.strategy,
            a.simulated_write_amplification,
            a.engine_write_amplification,
            a.ratio,
            a.simulated_compactions,
            a.engine_compactions,
            a.engine_trivial_moves,
            a.simulated_space_amplification,
            a.entry_overhead
        ));
    }
    s
}
