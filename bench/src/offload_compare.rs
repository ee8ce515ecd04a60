//! `o3-bench offload-compare`: the write-burst experiment of memtable
//! offloading, both sides in one run.
//!
//! A fill of `--burst_factor` × the local memtable budget runs twice on
//! fresh databases, offloading off and then on, with everything else equal.
//!
//! The local memtable budget is the engine's `max_unflushed_bytes`, the same
//! in both runs: the bytes of sealed memtables held in local memory (an
//! offloaded one holds none) at which writes stop; the active memtable
//! comes on top. `--max_unflushed_bytes` sets it; by default it is
//! `write_buffer_size × (max_local_sealed_memtables + 2)`: room for the
//! sealed memtables offloading keeps local, for the one a flush is writing
//! (a memtable claimed by a flush stays local until its flush is installed,
//! and is never shipped) and for the one being shipped. With one memtable
//! less (`× (max_local_sealed_memtables + 1)`) the memtable under flush and
//! the ones kept local fill the limit by themselves, so the writer stops
//! before anything can be shipped and offloading cannot help at all.
//!
//! Without offloading the writer stalls whenever the budget is full, until a
//! flush makes room; with offloading the sealed memtables beyond the local
//! ones go to the memory node (their bytes are capped by
//! `max_offloaded_bytes`, not by the local budget), and the writer stalls
//! only if shipping falls behind. Storage writes are throttled below the
//! fill's write rate, so flushes are the bottleneck; the WAL is off by
//! default (as in the papers), so the throttle only slows flushes.
//!
//! Reported: fill throughput, write-stall time (the sum of
//! `DbStats::stall_micros`), the stall reduction and throughput ratio with
//! their targets (≥ 50% and ≥ 1.5x), and the second run's offload stats.
//! The benchmark reports; it does not assert the targets.

use std::time::Instant;

use clap::Args;
use o3_compute::{Db, DbStats};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::dbbench::{ValueSource, make_key};
use crate::engine::{EngineArgs, EngineConfig};
use crate::error::{BenchError, Result};
use crate::offload::{OffloadConfig, bytes};
use crate::report::{
    BackgroundErrors, OpKind, PhaseReport, PhaseResult, RunOutcome, ThreadRecorder, progress_bar,
};

/// Memtable size unless `--write_buffer_size` says otherwise: small, so a
/// burst of a few times the budget takes seconds.
pub const DEFAULT_WRITE_BUFFER_SIZE: usize = 4 << 20;
/// Storage write bandwidth unless `--storage_write_bytes_per_sec` says
/// otherwise: well below what one thread fills memtables at.
pub const DEFAULT_STORAGE_WRITE_BYTES_PER_SEC: u64 = 8_000_000;
/// The targets of the experiment (reported next to the figures).
pub const TARGET_STALL_REDUCTION_PERCENT: f64 = 50.0;
pub const TARGET_THROUGHPUT_RATIO: f64 = 1.5;

/// `o3-bench offload-compare` flags (all optional so a config file can
/// supply them).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[command(rename_all = "snake_case")]
pub struct OffloadCompareArgs {
    /// The fill writes this many times the local memtable budget in key
    /// and value bytes (default 4).
    #[arg(long)]
    pub burst_factor: Option<f64>,
    /// Key bytes (default 16).
    #[arg(long)]
    pub key_size: Option<usize>,
    /// Value bytes (default 100).
    #[arg(long)]
    pub value_size: Option<usize>,
    /// Seed of the fill's keys and values (the same in both runs).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl OffloadCompareArgs {
    /// Flags given on the command line win over the config file.
    pub fn over(self, base: OffloadCompareArgs) -> OffloadCompareArgs {
        OffloadCompareArgs {
            burst_factor: self.burst_factor.or(base.burst_factor),
            key_size: self.key_size.or(base.key_size),
            value_size: self.value_size.or(base.value_size),
            seed: self.seed.or(base.seed),
        }
    }

    /// The settings for a database as `engine` says that offloads as
    /// `offload` says (the local budget depends on both).
    pub fn resolve(
        self,
        engine: &EngineConfig,
        offload: &OffloadConfig,
    ) -> Result<OffloadCompareConfig> {
        let (local_budget_bytes, local_budget_source) = match engine.max_unflushed_bytes {
            Some(b) => (b, "--max_unflushed_bytes".to_string()),
            None => (
                (engine.write_buffer_size as u64)
                    .saturating_mul(offload.max_local_sealed_memtables as u64 + 2),
                format!(
                    "write_buffer_size {} x (max_local_sealed_memtables {} + 2)",
                    engine.write_buffer_size, offload.max_local_sealed_memtables
                ),
            ),
        };
        let c = OffloadCompareConfig {
            local_budget_bytes,
            local_budget_source,
            burst_factor: self.burst_factor.unwrap_or(4.0),
            key_size: self.key_size.unwrap_or(16),
            value_size: self.value_size.unwrap_or(100),
            seed: self.seed.unwrap_or(0x5eed),
        };
        let bad = |m: &str| Err(BenchError::InvalidArgument(m.to_string()));
        if !(c.burst_factor.is_finite() && c.burst_factor > 0.0 && c.burst_factor <= 1e6) {
            return bad("--burst_factor must lie in (0, 1000000]");
        }
        if c.key_size < 8 || c.key_size > 1 << 16 {
            return bad("--key_size must lie in [8, 65536] for offload-compare");
        }
        if c.value_size > 64 << 20 {
            return bad("--value_size must be at most 64 MiB");
        }
        Ok(c)
    }
}

/// The engine flags' defaults for this experiment where the command line
/// and config file leave them unset: small memtables, throttled storage
/// writes, no WAL.
pub fn engine_defaults(args: EngineArgs) -> EngineArgs {
    EngineArgs {
        write_buffer_size: args.write_buffer_size.or(Some(DEFAULT_WRITE_BUFFER_SIZE)),
        storage_write_bytes_per_sec: args
            .storage_write_bytes_per_sec
            .or(Some(DEFAULT_STORAGE_WRITE_BYTES_PER_SEC)),
        disable_wal: args.disable_wal.or(Some(true)),
        ..args
    }
}

/// Resolved settings (reported verbatim).
#[derive(Debug, Clone, Serialize)]
pub struct OffloadCompareConfig {
    /// `max_unflushed_bytes` of both runs (see the module documentation),
    /// and where it came from.
    pub local_budget_bytes: u64,
    pub local_budget_source: String,
    pub burst_factor: f64,
    pub key_size: usize,
    pub value_size: usize,
    pub seed: u64,
}

/// The figures of one fill.
#[derive(Debug, Clone, Serialize)]
pub struct FillFigures {
    pub seconds: f64,
    pub ops_per_sec: f64,
    /// Key and value bytes per second, in MiB.
    pub mb_per_sec: f64,
    /// Sum of `DbStats::stall_micros` at the end of the fill, in seconds.
    pub stall_seconds: f64,
    pub put_p50_us: f64,
    pub put_p99_us: f64,
    pub flushes: u64,
}

impl FillFigures {
    pub(crate) fn of(p: &PhaseReport) -> FillFigures {
        let put = p.result.latency.iter().find(|l| l.op == OpKind::Write);
        FillFigures {
            seconds: p.result.seconds,
            ops_per_sec: p.result.ops_per_sec,
            mb_per_sec: p.result.mb_per_sec,
            stall_seconds: stall_micros(&p.db_stats) as f64 / 1e6,
            put_p50_us: put.map_or(0.0, |l| l.p50_us),
            put_p99_us: put.map_or(0.0, |l| l.p99_us),
            flushes: p.db_stats.flushes,
        }
    }
}

/// Microseconds writes were held back, over every reason.
pub fn stall_micros(stats: &DbStats) -> u64 {
    stats.stall_micros.iter().map(|(_, us)| us).sum()
}

/// What the experiment concluded (the JSON report's `summary`).
#[derive(Debug, Clone, Serialize)]
pub struct CompareSummary {
    /// `max_unflushed_bytes` in both runs: bytes of sealed memtables held
    /// in local memory at which writes stop.
    pub local_budget_bytes: u64,
    pub write_buffer_size: usize,
    pub max_local_sealed_memtables: usize,
    /// Puts of the fill and their key and value bytes.
    pub puts: u64,
    pub burst_bytes: u64,
    pub wal: bool,
    pub storage_write_bytes_per_sec: u64,
    pub without_offload: FillFigures,
    pub with_offload: FillFigures,
    /// `(stall without - stall with) / stall without`, in percent; `None`
    /// when the run without offloading did not stall at all.
    pub stall_reduction_percent: Option<f64>,
    /// Fill throughput with offloading / without.
    pub throughput_ratio: f64,
    pub target_stall_reduction_percent: f64,
    pub target_throughput_ratio: f64,
    /// Images the second run shipped to the memory node.
    pub images_shipped: u64,
}

/// Both runs and their conclusion.
#[derive(Debug)]
pub struct Comparison {
    pub outcome: RunOutcome,
    pub summary: CompareSummary,
}

impl Comparison {
    /// Fails when the run with offloading shipped nothing (offloading did
    /// not happen, so the comparison says nothing about it).
    pub fn check(&self) -> Result<()> {
        if self.summary.images_shipped == 0 {
            return Err(BenchError::NotMeasured {
                experiment: "offload-compare",
                message: "the run with offloading shipped no image to the memory node, so the comparison measures nothing (see the offload stats above)".into(),
            });
        }
        Ok(())
    }
}

/// Run the fill without and then with offloading, print the comparison.
/// `engine` carries the offloading of the second run and the local budget
/// as its `max_unflushed_bytes` (`cfg.local_budget_bytes`).
pub fn run(
    cfg: &OffloadCompareConfig,
    engine: &EngineConfig,
    offload: &OffloadConfig,
    show_progress: bool,
) -> Result<Comparison> {
    let budget = cfg.local_budget_bytes;
    let entry = (cfg.key_size + cfg.value_size) as u64;
    let burst_bytes = (budget as f64 * cfg.burst_factor) as u64;
    let puts = (burst_bytes / entry).max(1);
    // --shards splits the fill's key space (keys 0..puts) evenly, or lets
    // the engine learn the split keys (--adaptive_shards).
    let engine = &engine.clone().split_key_space(puts, cfg.key_size);
    println!(
        "offload-compare: a fill of {puts} random puts of {}+{} bytes ({}) = {} x the local memtable budget",
        cfg.key_size,
        cfg.value_size,
        bytes(puts * entry),
        cfg.burst_factor
    );
    println!(
        "  local memtable budget: max_unflushed_bytes = {} of sealed memtables in local memory in both runs ({}), plus the active memtable of {} bytes",
        bytes(budget),
        cfg.local_budget_source,
        engine.write_buffer_size
    );
    println!(
        "  storage: {}; WAL {}",
        engine
            .remote_storage()
            .map_or("local file system, not throttled".to_string(), |m| format!(
                "remote storage ({m})"
            )),
        if engine.disable_wal {
            "off"
        } else {
            "on (its appends share the throttled storage)"
        }
    );
    println!(
        "  second run offloads to the {}, {}",
        offload.describe_memory_node(),
        offload.describe_link()
    );

    let without = EngineConfig {
        offload: None,
        ..engine.clone()
    };
    let mut phases = Vec::new();
    let mut background_errors = BackgroundErrors::default();
    for (name, dir, variant) in [
        ("fill-offload-off", "offload-off", &without),
        ("fill-offload-on", "offload-on", engine),
    ] {
        let db = crate::fresh_db::open_empty(&engine.db.join(dir), variant.db_options())?;
        let failed = measure_fill(
            "offload-compare",
            name,
            db,
            &mut phases,
            &mut background_errors,
            |db| fill(name, cfg, puts, db, show_progress),
        )?;
        if failed {
            break;
        }
    }
    let outcome = RunOutcome {
        phases,
        background_errors,
        cut_short: None,
    };
    let [off, on] = match outcome.phases.as_slice() {
        [off, on] => [off, on],
        _ => {
            // A run stopped by failed background work: the check reports it.
            outcome.check()?;
            return Err(BenchError::NotMeasured {
                experiment: "offload-compare",
                message: "a run ended early".into(),
            });
        }
    };
    let (without_offload, with_offload) = (FillFigures::of(off), FillFigures::of(on));
    let summary = CompareSummary {
        local_budget_bytes: budget,
        write_buffer_size: engine.write_buffer_size,
        max_local_sealed_memtables: offload.max_local_sealed_memtables,
        puts,
        burst_bytes: puts * entry,
        wal: !engine.disable_wal,
        storage_write_bytes_per_sec: engine.storage_write_bytes_per_sec,
        stall_reduction_percent: (without_offload.stall_seconds > 0.0).then(|| {
            100.0 * (without_offload.stall_seconds - with_offload.stall_seconds)
                / without_offload.stall_seconds
        }),
        throughput_ratio: with_offload.ops_per_sec / without_offload.ops_per_sec.max(1e-9),
        target_stall_reduction_percent: TARGET_STALL_REDUCTION_PERCENT,
        target_throughput_ratio: TARGET_THROUGHPUT_RATIO,
        images_shipped: on.db_stats.offload.images_shipped,
        without_offload,
        with_offload,
    };
    print!("{}", describe(&summary));
    println!("offload stats of the run with offloading (at the end of its fill):");
    println!("  {}", on.db_stats.offload);
    Ok(Comparison { outcome, summary })
}

/// The comparison table and the ratios, for stdout.
pub fn describe(s: &CompareSummary) -> String {
    let mut out = format!(
        "  {:<12} {:>9} {:>11} {:>8} {:>9} {:>11} {:>11} {:>8}\n",
        "offloading",
        "fill(s)",
        "ops/sec",
        "MB/s",
        "stall(s)",
        "p50 put(us)",
        "p99 put(us)",
        "flushes"
    );
    for (name, f) in [("off", &s.without_offload), ("on", &s.with_offload)] {
        out.push_str(&format!(
            "  {:<12} {:>9.3} {:>11.0} {:>8.1} {:>9.3} {:>11.2} {:>11.2} {:>8}\n",
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
    let stall = match s.stall_reduction_percent {
        Some(p) => format!(
            "{p:.1}% (target >= {:.0}%)",
            s.target_stall_reduction_percent
        ),
        None => "n/a: the run without offloading did not stall (throttle storage more, or raise --burst_factor)".to_string(),
    };
    out.push_str(&format!("  write-stall reduction: {stall}\n"));
    out.push_str(&format!(
        "  fill throughput ratio (on/off): {:.2}x (target >= {:.1}x)\n",
        s.throughput_ratio, s.target_throughput_ratio
    ));
    let fill_rate = s.with_offload.mb_per_sec * 1_048_576.0;
    if s.storage_write_bytes_per_sec == 0 || fill_rate <= s.storage_write_bytes_per_sec as f64 {
        out.push_str(&format!(
            "  WARNING: storage writes ({}) are not throttled below the fill's write rate ({:.1} MB/s with offloading); lower --storage_write_bytes_per_sec\n",
            if s.storage_write_bytes_per_sec == 0 {
                "unlimited".to_string()
            } else {
                format!("{:.1} MB/s", s.storage_write_bytes_per_sec as f64 / 1e6)
            },
            fill_rate / 1e6
        ));
    }
    out
}

/// Run `fill` on `db` and close it: its phase goes to `phases`, what
/// closing reported to `errors`. Returns whether background work failed
/// (the experiment stops there). Every fill of an experiment is needed: a
/// fill stopped by failed background work fails it with that failure.
pub(crate) fn measure_fill(
    experiment: &'static str,
    name: &str,
    db: Db,
    phases: &mut Vec<PhaseReport>,
    errors: &mut BackgroundErrors,
    fill: impl FnOnce(&Db) -> Result<PhaseReport>,
) -> Result<bool> {
    let report = match fill(&db) {
        Ok(r) => r,
        Err(e) => {
            RunOutcome::cut_short(db, std::mem::take(phases), name, e)?.check()?;
            return Err(BenchError::NotMeasured {
                experiment,
                message: format!("{name} ended early"),
            });
        }
    };
    let closing = BackgroundErrors::before_closing(db)?;
    let failed = report.background_errors.failed() || closing.failed();
    errors.count += closing.count;
    errors.message = errors.message.take().or(closing.message);
    phases.push(report);
    Ok(failed)
}

/// One fill of `puts` random keys, as db_bench's fillrandom.
pub(crate) fn fill(
    name: &str,
    cfg: &OffloadCompareConfig,
    puts: u64,
    db: &Db,
    show_progress: bool,
) -> Result<PhaseReport> {
    let shape = FillShape {
        puts,
        key_size: cfg.key_size,
        value_size: cfg.value_size,
        seed: cfg.seed,
    };
    fill_with(name, &shape, db, show_progress, |rng| {
        rng.random_range(0..puts)
    })
}

/// How many puts of what sizes a fill writes, and its seed.
pub(crate) struct FillShape {
    pub puts: u64,
    pub key_size: usize,
    pub value_size: usize,
    pub seed: u64,
}

/// One fill of `shape.puts` puts, each under the dbbench key of the number
/// `next_key` draws, timed and reported as a phase.
pub(crate) fn fill_with(
    name: &str,
    shape: &FillShape,
    db: &Db,
    show_progress: bool,
    mut next_key: impl FnMut(&mut SmallRng) -> u64,
) -> Result<PhaseReport> {
    let progress = progress_bar(show_progress, Some(shape.puts), name);
    let mut rng = SmallRng::seed_from_u64(shape.seed);
    let mut values = ValueSource::new(shape.value_size, &mut rng);
    let mut key = vec![0u8; shape.key_size];
    let before = db.stats();
    let start = Instant::now();
    let mut rec = ThreadRecorder::new(start, progress.clone());
    let mut began = start;
    for _ in 0..shape.puts {
        make_key(&mut key, next_key(&mut rng));
        db.put(&key, values.next())
            .map_err(BenchError::engine(format!("{name}: put")))?;
        rec.add_bytes(shape.key_size + shape.value_size);
        began = rec.record(OpKind::Write, began)?;
    }
    let elapsed = start.elapsed();
    progress.finish_and_clear();
    let result = PhaseResult::merge(name, vec![rec], elapsed)?;
    Ok(PhaseReport::new(result, None, db, &before))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::OffloadArgs;

    fn offload(local: usize) -> OffloadConfig {
        OffloadArgs {
            max_local_sealed_memtables: Some(local),
            ..Default::default()
        }
        .resolve_implied("offload-compare")
        .unwrap()
    }

    fn engine(max_unflushed_bytes: Option<u64>) -> EngineConfig {
        engine_defaults(EngineArgs {
            max_unflushed_bytes,
            ..Default::default()
        })
        .resolve("unused")
        .unwrap()
    }

    #[test]
    fn the_budget_leaves_room_for_a_flush_and_a_shipment_unless_set() {
        let c = OffloadCompareArgs::default()
            .resolve(&engine(None), &offload(2))
            .unwrap();
        assert_eq!(c.local_budget_bytes, 4 * DEFAULT_WRITE_BUFFER_SIZE as u64);
        assert_eq!(
            c.local_budget_source,
            "write_buffer_size 4194304 x (max_local_sealed_memtables 2 + 2)"
        );
        let c = OffloadCompareArgs::default()
            .resolve(&engine(Some(10 << 20)), &offload(2))
            .unwrap();
        assert_eq!(c.local_budget_bytes, 10 << 20);
        assert_eq!(c.local_budget_source, "--max_unflushed_bytes");
    }

    #[test]
    fn the_experiment_defaults_throttle_storage_and_turn_the_wal_off() {
        let e = engine(None);
        assert_eq!(e.write_buffer_size, DEFAULT_WRITE_BUFFER_SIZE);
        assert_eq!(
            e.storage_write_bytes_per_sec,
            DEFAULT_STORAGE_WRITE_BYTES_PER_SEC
        );
        assert!(e.disable_wal);
        let wal_on = engine_defaults(EngineArgs {
            disable_wal: Some(false),
            ..Default::default()
        })
        .resolve("unused")
        .unwrap();
        assert!(!wal_on.disable_wal);
    }

    fn figures(ops_per_sec: f64, mb_per_sec: f64, stall_seconds: f64) -> FillFigures {
        FillFigures {
            seconds: 1.0,
            ops_per_sec,
            mb_per_sec,
            stall_seconds,
            put_p50_us: 1.0,
            put_p99_us: 2.0,
            flushes: 3,
        }
    }

    fn summary(without: FillFigures, with: FillFigures, throttle: u64) -> CompareSummary {
        CompareSummary {
            local_budget_bytes: 3 << 20,
            write_buffer_size: 1 << 20,
            max_local_sealed_memtables: 1,
            puts: 1000,
            burst_bytes: 116_000,
            wal: false,
            storage_write_bytes_per_sec: throttle,
            stall_reduction_percent: None,
            throughput_ratio: with.ops_per_sec / without.ops_per_sec,
            target_stall_reduction_percent: TARGET_STALL_REDUCTION_PERCENT,
            target_throughput_ratio: TARGET_THROUGHPUT_RATIO,
            images_shipped: 1,
            without_offload: without,
            with_offload: with,
        }
    }

    #[test]
    fn the_table_reports_ratios_and_warns_about_a_loose_throttle() {
        let mut s = summary(
            figures(1000.0, 10.0, 2.0),
            figures(3000.0, 30.0, 0.1),
            8_000_000,
        );
        s.stall_reduction_percent = Some(95.0);
        let text = describe(&s);
        assert!(
            text.contains("write-stall reduction: 95.0% (target >= 50%)"),
            "{text}"
        );
        assert!(
            text.contains("fill throughput ratio (on/off): 3.00x (target >= 1.5x)"),
            "{text}"
        );
        assert!(!text.contains("WARNING"), "{text}");
        // No stall without offloading: no reduction to report, and a fill
        // slower than the throttle means the throttle was not binding.
        let s = summary(
            figures(1000.0, 5.0, 0.0),
            figures(1000.0, 5.0, 0.0),
            8_000_000,
        );
        let text = describe(&s);
        assert!(text.contains("write-stall reduction: n/a"), "{text}");
        assert!(
            text.contains("WARNING: storage writes (8.0 MB/s)"),
            "{text}"
        );
    }
}
