//! db_bench-style benchmarks with db_bench's flag names and meanings, so a
//! command line (and a script parsing the output) carries over from RocksDB's
//! `db_bench`:
//!
//! - keys are `key_size` bytes: the key number big-endian in the first
//!   `min(8, key_size)` bytes, then ASCII `'0'` padding (db_bench's
//!   `GenerateKeyFromInt` layout), so both tools write the same keys;
//! - every thread performs the full `--num` (or `--reads`) operations, as in
//!   db_bench, and random keys are uniform over `[0, num)`;
//! - one summary line per benchmark in db_bench's format:
//!   `fillrandom   :       5.545 micros/op 180347 ops/sec;   19.9 MB/s`;
//! - db_bench's meta operations (`compact`, `flush`, `waitforcompaction`,
//!   `stats`, `levelstats`: module `meta`), its `--histogram` and
//!   `--statistics` output (modules `histogram`, `statistics`), its
//!   reports during a benchmark (`interval`) and its write rate limit
//!   (`rate_limit`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use o3_compute::Db;
use rand::Rng;
use rand::rngs::SmallRng;

use crate::engine::EngineConfig;
use crate::error::{BenchError, Result};
use crate::report::{BackgroundErrors, PhaseReport, PhaseResult, RunOutcome, ThreadRecorder};

mod histogram;
mod interval;
mod meta;
mod mixgraph;
mod options;
mod rate_limit;
mod statistics;
#[cfg(test)]
mod tests;
mod worker;

pub use histogram::LatencyBook;
pub use mixgraph::MixGraphConfig;
pub use options::{Benchmark, DbBenchArgs, DbBenchConfig};
use worker::{Budget, Meter, Outcome, Shared};

/// Write db_bench's key for number `v` into `key` (all of it).
pub fn make_key(key: &mut [u8], v: u64) {
    let n = key.len().min(8);
    for (i, b) in key[..n].iter_mut().enumerate() {
        *b = (v >> (8 * (n - 1 - i))) as u8;
    }
    key[n..].fill(b'0');
}

/// Value bytes: a buffer of which each value is a slice, half random and
/// half repeated like db_bench's default `--compression_ratio=0.5`.
pub(crate) struct ValueSource {
    data: Vec<u8>,
    pos: usize,
    size: usize,
}

impl ValueSource {
    pub(crate) fn new(size: usize, rng: &mut SmallRng) -> ValueSource {
        let len = (1 << 20).max(2 * size);
        let mut data = Vec::with_capacity(len + 100);
        while data.len() < len {
            let piece: Vec<u8> = (0..50).map(|_| rng.random_range(b' '..=b'~')).collect();
            data.extend_from_slice(&piece);
            data.extend_from_slice(&piece);
        }
        ValueSource { data, pos: 0, size }
    }

    pub(crate) fn next(&mut self) -> &[u8] {
        if self.pos + self.size > self.data.len() {
            self.pos = 0;
        }
        let v = &self.data[self.pos..self.pos + self.size];
        self.pos += self.size;
        v
    }
}

/// What one benchmark produced besides its report.
struct BenchOutput {
    report: PhaseReport,
    /// Its latencies (with `--histogram` or `--statistics`).
    latencies: Option<LatencyBook>,
    /// Text a meta operation prints (stats, levelstats).
    text: Option<String>,
}

/// Run the benchmarks in order; prints each one's summary as it finishes.
/// Stops after a benchmark at whose end background work had failed: later
/// numbers would not describe the engine working normally.
pub fn run(cfg: &DbBenchConfig, engine: &EngineConfig, show_progress: bool) -> Result<RunOutcome> {
    let mut db = if cfg.use_existing_db {
        engine.open()?
    } else {
        engine.open_empty()?
    };
    let mut phases = Vec::new();
    let mut run_latencies = LatencyBook::default();
    // Like db_bench, every thread of the invocation gets the next seed, so
    // the first benchmark of a process (e.g. readrandom after a separate
    // fillrandom process) replays the key sequence of the fill, and later
    // benchmarks draw fresh ones.
    let mut next_seed = cfg.seed.wrapping_add(1);
    for (i, &b) in cfg.benchmarks.iter().enumerate() {
        if b.fresh_db() && !cfg.use_existing_db && i > 0 {
            // What failed in the replaced database must not be lost with it.
            let background_errors = BackgroundErrors::before_closing(db)?;
            if background_errors.failed() {
                return Ok(RunOutcome {
                    phases,
                    background_errors,
                    cut_short: None,
                });
            }
            db = engine.open_empty()?;
        }
        tracing::info!(benchmark = b.name(), "starting");
        let out = match run_one(b, cfg, &db, show_progress, next_seed) {
            Ok(r) => r,
            Err(e) => return RunOutcome::cut_short(db, phases, b.name(), e),
        };
        // db_bench starts threads (so seeds) for the benchmarks and
        // compact; its other meta operations run on the main thread.
        if !b.is_meta() || b == Benchmark::Compact {
            let writers = u64::from(b == Benchmark::ReadWhileWriting);
            next_seed = next_seed.wrapping_add(cfg.threads as u64 + writers);
        }
        print_benchmark(cfg, &out);
        if let Some(l) = &out.latencies {
            run_latencies.merge(l)?;
        }
        let failed = out.report.background_errors.failed();
        phases.push(out.report);
        if failed {
            break;
        }
    }
    if cfg.statistics {
        print!("{}", statistics::dump(&db.stats(), &run_latencies));
    }
    RunOutcome::close(db, phases)
}

/// A benchmark's output on stdout: db_bench's summary line, then its
/// histogram (`--histogram`) or a meta operation's text, then o3's latency
/// table and engine statistics.
fn print_benchmark(cfg: &DbBenchConfig, out: &BenchOutput) {
    let report = &out.report;
    println!("{}", summary_line(report));
    if let Some(text) = &out.text {
        print!("{text}");
    } else {
        if cfg.histogram
            && let Some(l) = &out.latencies
        {
            print!("{}", l.describe());
        }
        print!("{}", report.result.details());
        print!("{}", report.describe_engine());
    }
    print!("{}", report.background_errors.describe());
}

/// db_bench's summary line for one benchmark.
pub fn summary_line(r: &PhaseReport) -> String {
    let res = &r.result;
    let micros_per_op = if res.ops == 0 {
        0.0
    } else {
        res.seconds * res.threads as f64 * 1e6 / res.ops as f64
    };
    let mut extra = String::new();
    if res.mb_per_sec > 0.0 {
        extra.push_str(&format!("{:6.1} MB/s", res.mb_per_sec));
    }
    if let Some(m) = &r.message {
        if !extra.is_empty() {
            extra.push(' ');
        }
        extra.push_str(m);
    }
    format!(
        "{:<12} : {:>11.3} micros/op {} ops/sec;{}{}",
        res.name,
        micros_per_op,
        res.ops_per_sec as u64,
        if extra.is_empty() { "" } else { " " },
        extra
    )
}

/// Thread `t` seeds its generator with `seed + t`; the readwhilewriting
/// writer with `seed + threads`.
fn run_one(
    b: Benchmark,
    cfg: &DbBenchConfig,
    db: &Db,
    show_progress: bool,
    seed: u64,
) -> Result<BenchOutput> {
    if b.is_meta() {
        let m = meta::run(b, db)?;
        return Ok(BenchOutput {
            report: m.report,
            latencies: None,
            text: m.text,
        });
    }
    let per_thread = cfg.ops_per_thread(b);
    let budget = Budget {
        ops: per_thread,
        duration: (cfg.duration > 0).then(|| Duration::from_secs(cfg.duration)),
    };
    let total = budget
        .duration
        .is_none()
        .then_some(per_thread * cfg.threads as u64);
    let progress = crate::report::progress_bar(show_progress, total, b.name());
    let writer_running = AtomicBool::new(b == Benchmark::ReadWhileWriting);
    let before = db.stats();
    let stop_reporting = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let start = Instant::now();
    let limiter = rate_limit::RateLimiter::new(cfg.benchmark_write_rate_limit, start);
    let op_limiter = (b == Benchmark::MixGraph)
        .then_some(cfg.mixgraph.sine)
        .flatten()
        .map(|sine| rate_limit::SineLimiter::new(sine, start));
    let shared = Shared {
        budget: &budget,
        limiter: limiter.as_ref(),
        op_limiter: op_limiter.as_ref(),
        done: interval::wanted(cfg).then_some(&done),
        histograms: cfg.histogram || cfg.statistics,
    };
    let (meters, outcomes, writer_ops) = std::thread::scope(|s| {
        let reporter = interval::wanted(cfg)
            .then(|| s.spawn(|| interval::run(b.name(), cfg, db, start, &done, &stop_reporting)));
        let writer = (b == Benchmark::ReadWhileWriting).then(|| {
            let (running, limiter) = (&writer_running, limiter.as_ref());
            let seed = seed.wrapping_add(cfg.threads as u64);
            s.spawn(move || worker::background_writer(db, cfg, running, limiter, seed))
        });
        let workers: Vec<_> = (0..cfg.threads)
            .map(|t| {
                let m = Meter::new(ThreadRecorder::new(start, progress.clone()), &shared);
                s.spawn(move || worker::worker(b, cfg, db, seed.wrapping_add(t as u64), m))
            })
            .collect();
        let joined = crate::threads::join_all(workers);
        writer_running.store(false, Ordering::Release);
        stop_reporting.store(true, Ordering::Release);
        let writer_ops = join_helper(writer, "the writer thread").map(|n| n.unwrap_or(0));
        join_helper(reporter, "the reporting thread")?;
        let (meters, outcomes): (Vec<_>, Vec<_>) = joined?.into_iter().unzip();
        Ok::<_, BenchError>((meters, outcomes, writer_ops?))
    })?;
    let elapsed = start.elapsed();
    progress.finish_and_clear();
    let mut latencies = shared.histograms.then(LatencyBook::default);
    let mut recorders = Vec::with_capacity(meters.len());
    for m in meters {
        if let (Some(all), Some(mine)) = (latencies.as_mut(), m.latencies.as_ref()) {
            all.merge(mine)?;
        }
        recorders.push(m.rec);
    }
    let message = message(b, cfg, &outcomes, writer_ops);
    Ok(BenchOutput {
        report: PhaseReport::new(
            PhaseResult::merge(b.name(), recorders, elapsed)?,
            message,
            db,
            &before,
        ),
        latencies,
        text: None,
    })
}

/// Join an optional helper thread named `what`.
fn join_helper<T>(
    h: Option<std::thread::ScopedJoinHandle<'_, Result<T>>>,
    what: &str,
) -> Result<Option<T>> {
    match h.map(|h| h.join()) {
        None => Ok(None),
        Some(Ok(r)) => r.map(Some),
        Some(Err(_)) => Err(BenchError::InvalidArgument(format!("{what} panicked"))),
    }
}

/// The text after db_bench's summary line, in db_bench's words.
fn message(
    b: Benchmark,
    cfg: &DbBenchConfig,
    outcomes: &[Outcome],
    writer_ops: u64,
) -> Option<String> {
    let sum = |f: fn(&Outcome) -> u64| outcomes.iter().map(f).sum::<u64>();
    let (found, attempted) = (sum(|o| o.found), sum(|o| o.attempted));
    match b {
        Benchmark::ReadRandom | Benchmark::SeekRandom | Benchmark::ReadMissing => {
            Some(format!("({found} of {attempted} found)"))
        }
        Benchmark::MultiReadRandom => Some(format!(
            "({found} of {attempted} found; ops are keys, {} per multi_get)",
            cfg.batch_size
        )),
        Benchmark::ReadWhileWriting => Some(format!(
            "({found} of {attempted} found; writer wrote {writer_ops})"
        )),
        Benchmark::DeleteRange => Some(format!(
            "({attempted} ranges of {} keys)",
            cfg.range_tombstone_width
        )),
        Benchmark::UpdateRandom => Some(format!("( updates:{attempted} found:{found})")),
        Benchmark::MixGraph => Some(format!(
            "( Gets:{} Puts:{} Seek:{} of {found} in {attempted} found)",
            sum(|o| o.gets),
            sum(|o| o.puts),
            sum(|o| o.seeks)
        )),
        _ => None,
    }
}
