//! `o3-bench shard-sweep`: the same fill with 1, 2, 4 and 8 key-range
//! shards, on uniform and on zipfian keys, all in one run.
//!
//! Each fill writes `--num` random puts on a fresh database with the
//! engine flags given (storage throttle included). With more than one
//! shard the engine learns the split keys itself (`adaptive_shards`): it
//! starts with one shard, splits once it has seen enough keys and moves
//! the boundaries when one shard takes far more than its share. Zipfian
//! keys are not scrambled: the most popular keys are the smallest, a hot
//! prefix of the key space, which is what uneven shards look like.
//!
//! Reported per fill: throughput, write-stall time, flushes and the most
//! that ran at once, level-0 files in all and the most a point lookup of
//! one shard has to probe (L0 files overlapping its range), re-splits and
//! the largest and smallest shard write share at the end.
//!
//! With `--pin` (the default, on two cores with `taskset` installed) the
//! process, the compute node and its only one, runs on core 0: a core of
//! its own, as in `flush-compare`, the second left to the machine's other
//! work; the report's emulated conditions say which.

use clap::Args;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::children::Pinning;
use crate::engine::{EngineConfig, parse_bool};
use crate::error::{BenchError, Result};
use crate::offload_compare::{FillShape, fill_with, measure_fill, stall_micros};
use crate::report::{BackgroundErrors, PhaseReport, RunOutcome};
use crate::ycsb::generator::Zipfian;

/// Shard counts swept unless `--shard_counts` says otherwise.
const DEFAULT_COUNTS: [usize; 4] = [1, 2, 4, 8];

/// `o3-bench shard-sweep` flags.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[command(rename_all = "snake_case")]
pub struct ShardSweepArgs {
    /// Puts per fill (default 1,000,000).
    #[arg(long)]
    pub num: Option<u64>,
    /// Key bytes (default 16).
    #[arg(long)]
    pub key_size: Option<usize>,
    /// Value bytes (default 100).
    #[arg(long)]
    pub value_size: Option<usize>,
    /// Comma-separated shard counts (default 1,2,4,8).
    #[arg(long, value_delimiter = ',')]
    pub shard_counts: Option<Vec<usize>>,
    /// Seed of the keys and values (the same in every fill).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Pin this process to core 0 (default true; nothing is pinned on one
    /// core or without taskset, and the report says so).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub pin: Option<bool>,
}

/// Resolved settings (reported verbatim).
#[derive(Debug, Clone, Serialize)]
pub struct ShardSweepConfig {
    pub num: u64,
    pub key_size: usize,
    pub value_size: usize,
    pub shard_counts: Vec<usize>,
    pub seed: u64,
    pub pinning: Pinning,
}

impl ShardSweepArgs {
    pub fn resolve(self) -> Result<ShardSweepConfig> {
        let c = ShardSweepConfig {
            num: self.num.unwrap_or(1_000_000),
            key_size: self.key_size.unwrap_or(16),
            value_size: self.value_size.unwrap_or(100),
            shard_counts: self.shard_counts.unwrap_or_else(|| DEFAULT_COUNTS.to_vec()),
            seed: self.seed.unwrap_or(0x5eed),
            pinning: Pinning::detect(
                self.pin.unwrap_or(true),
                "this process (the compute node) on core 0",
            ),
        };
        let bad = |m: String| Err(BenchError::InvalidArgument(m));
        if c.num == 0 {
            return bad("--num must be at least 1".into());
        }
        if c.key_size < 8 || c.key_size > 1 << 16 {
            return bad(format!(
                "--key_size {} must lie in [8, 65536] for shard-sweep",
                c.key_size
            ));
        }
        if c.value_size > 64 << 20 {
            return bad("--value_size must be at most 64 MiB".into());
        }
        if c.shard_counts.is_empty() {
            return bad("--shard_counts names no count".into());
        }
        if let Some(n) = c.shard_counts.iter().find(|&&n| n == 0 || n > 256) {
            return bad(format!("--shard_counts: {n} is outside [1, 256]"));
        }
        Ok(c)
    }
}

/// The key distributions swept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyDistribution {
    Uniform,
    Zipfian,
}

/// The figures of one fill.
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    pub distribution: KeyDistribution,
    pub shards: usize,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub stall_seconds: f64,
    pub flushes: u64,
    pub max_concurrent_flushes: u64,
    pub l0_files: usize,
    /// The most L0 files overlapping one shard's range: what a point
    /// lookup in that shard probes.
    pub max_l0_files_per_shard: usize,
    pub reshards: u64,
    pub max_write_share: f64,
    pub min_write_share: f64,
}

impl SweepPoint {
    fn of(distribution: KeyDistribution, shards: usize, p: &PhaseReport) -> SweepPoint {
        let s = &p.db_stats;
        let shares = s.shards.iter().map(|x| x.write_share);
        SweepPoint {
            distribution,
            shards,
            seconds: p.result.seconds,
            ops_per_sec: p.result.ops_per_sec,
            stall_seconds: stall_micros(s) as f64 / 1e6,
            flushes: s.flushes,
            max_concurrent_flushes: s.max_concurrent_flushes,
            l0_files: s.levels.first().map_or(0, |l| l.files),
            max_l0_files_per_shard: s.shards.iter().map(|x| x.l0_files).max().unwrap_or(0),
            reshards: s.reshards,
            max_write_share: shares.clone().fold(0.0, f64::max),
            min_write_share: shares.fold(1.0, f64::min),
        }
    }
}

/// Every fill and the table.
#[derive(Debug)]
pub struct Sweep {
    pub outcome: RunOutcome,
    pub points: Vec<SweepPoint>,
}

/// Run every fill (uniform, then zipfian; each shard count) and print the
/// table.
pub fn run(cfg: &ShardSweepConfig, engine: &EngineConfig, show_progress: bool) -> Result<Sweep> {
    println!(
        "shard-sweep: fills of {} random puts of {}+{} bytes, uniform and zipfian (unscrambled: a hot prefix), shard counts {:?} (adaptive split keys above 1)",
        cfg.num, cfg.key_size, cfg.value_size, cfg.shard_counts
    );
    println!("  cores: {}", cfg.pinning.description);
    cfg.pinning.pin_this_process(0)?;
    let mut phases = Vec::new();
    let mut points = Vec::new();
    let mut background_errors = BackgroundErrors::default();
    for distribution in [KeyDistribution::Uniform, KeyDistribution::Zipfian] {
        for &shards in &cfg.shard_counts {
            let name = format!(
                "fill-{}-{shards}",
                match distribution {
                    KeyDistribution::Uniform => "uniform",
                    KeyDistribution::Zipfian => "zipfian",
                }
            );
            let variant = EngineConfig {
                shards,
                adaptive_shards: shards > 1,
                shard_splits: Vec::new(),
                ..engine.clone()
            };
            let db = crate::fresh_db::open_empty(&engine.db.join(&name), variant.db_options())?;
            let failed = measure_fill(
                "shard-sweep",
                &name,
                db,
                &mut phases,
                &mut background_errors,
                |db| fill(&name, cfg, distribution, db, show_progress),
            )?;
            if let Some(report) = phases.last() {
                let point = SweepPoint::of(distribution, shards, report);
                println!("{}", describe_point(&point));
                points.push(point);
            }
            if failed {
                let outcome = RunOutcome {
                    phases,
                    background_errors,
                    cut_short: None,
                };
                outcome.check()?;
                return Err(BenchError::NotMeasured {
                    experiment: "shard-sweep",
                    message: format!("{name} failed"),
                });
            }
        }
    }
    print!("{}", describe(&points));
    Ok(Sweep {
        outcome: RunOutcome {
            phases,
            background_errors,
            cut_short: None,
        },
        points,
    })
}

fn describe_point(p: &SweepPoint) -> String {
    format!(
        "  {:<8} {:>6} {:>9.3} {:>10.0} {:>9.3} {:>8} {:>9} {:>8} {:>10} {:>9} {:>7.1}% {:>7.1}%",
        match p.distribution {
            KeyDistribution::Uniform => "uniform",
            KeyDistribution::Zipfian => "zipfian",
        },
        p.shards,
        p.seconds,
        p.ops_per_sec,
        p.stall_seconds,
        p.flushes,
        p.max_concurrent_flushes,
        p.l0_files,
        p.max_l0_files_per_shard,
        p.reshards,
        p.max_write_share * 100.0,
        p.min_write_share * 100.0
    )
}

/// The whole table, for stdout.
pub fn describe(points: &[SweepPoint]) -> String {
    let mut out = format!(
        "  {:<8} {:>6} {:>9} {:>10} {:>9} {:>8} {:>9} {:>8} {:>10} {:>9} {:>8} {:>8}\n",
        "keys",
        "shards",
        "fill(s)",
        "ops/sec",
        "stall(s)",
        "flushes",
        "at once",
        "L0 files",
        "L0/lookup",
        "re-splits",
        "max share",
        "min share"
    );
    for p in points {
        out.push_str(&describe_point(p));
        out.push('\n');
    }
    out
}

/// One fill of `cfg.num` puts with keys drawn from `distribution`.
fn fill(
    name: &str,
    cfg: &ShardSweepConfig,
    distribution: KeyDistribution,
    db: &o3_compute::Db,
    show_progress: bool,
) -> Result<PhaseReport> {
    let shape = FillShape {
        puts: cfg.num,
        key_size: cfg.key_size,
        value_size: cfg.value_size,
        seed: cfg.seed,
    };
    let mut zipfian = Zipfian::new(0, cfg.num - 1);
    fill_with(name, &shape, db, show_progress, |rng| match distribution {
        KeyDistribution::Uniform => rng.random_range(0..cfg.num),
        KeyDistribution::Zipfian => zipfian.next(rng),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_sweeps_are_refused_with_the_flag_named() {
        let e = ShardSweepArgs {
            shard_counts: Some(vec![1, 0]),
            ..Default::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(e.contains("--shard_counts: 0"), "{e}");
        let e = ShardSweepArgs {
            num: Some(0),
            ..Default::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(e.contains("--num"), "{e}");
        let c = ShardSweepArgs::default().resolve().unwrap();
        assert_eq!(c.shard_counts, DEFAULT_COUNTS.to_vec());
    }
}
