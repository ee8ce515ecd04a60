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
//!   `fillrandom   :       5.545 micros/op 180347 ops/sec;   19.9 MB/s`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use o3_compute::{Db, ReadOptions};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::engine::EngineConfig;
use crate::error::{BenchError, Result};
use crate::report::{
    BackgroundErrors, OpKind, PhaseReport, PhaseResult, RunOutcome, ThreadRecorder,
};

mod options;

pub use options::{Benchmark, DbBenchArgs, DbBenchConfig};

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

/// What a thread reports besides timings.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    found: u64,
    attempted: u64,
}

/// When a thread stops: after `ops` operations, or after `--duration`.
struct Budget {
    ops: u64,
    duration: Option<Duration>,
}

impl Budget {
    fn done(&self, rec: &ThreadRecorder) -> bool {
        match self.duration {
            Some(d) => rec.elapsed() >= d,
            None => rec.ops() >= self.ops,
        }
    }

    /// Whether `n` more operations fit. As db_bench's `Duration::Done(n)`,
    /// a count budget takes only whole batches: it may end short, never over.
    fn has_room_for(&self, rec: &ThreadRecorder, n: u64) -> bool {
        match self.duration {
            Some(d) => rec.elapsed() < d,
            None => rec.ops() + n <= self.ops,
        }
    }
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
        let report = match run_one(b, cfg, &db, show_progress, next_seed) {
            Ok(r) => r,
            Err(e) => return RunOutcome::cut_short(db, phases, b.name(), e),
        };
        let writers = u64::from(b == Benchmark::ReadWhileWriting);
        next_seed = next_seed.wrapping_add(cfg.threads as u64 + writers);
        println!("{}", summary_line(&report));
        print!("{}", report.result.details());
        print!("{}", report.describe_engine());
        print!("{}", report.background_errors.describe());
        let failed = report.background_errors.failed();
        phases.push(report);
        if failed {
            break;
        }
    }
    RunOutcome::close(db, phases)
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
) -> Result<PhaseReport> {
    if b == Benchmark::Compact {
        return compact(db);
    }
    let per_thread = match b {
        Benchmark::FillSeq
        | Benchmark::FillRandom
        | Benchmark::Overwrite
        | Benchmark::DeleteRandom => cfg.num,
        Benchmark::DeleteRange => cfg.range_deletions_per_thread(),
        _ => cfg.reads,
    };
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
    let start = Instant::now();
    let (recorders, outcomes, writer_ops) = std::thread::scope(|s| {
        let writer = (b == Benchmark::ReadWhileWriting).then(|| {
            let running = &writer_running;
            s.spawn(move || {
                background_writer(db, cfg, running, seed.wrapping_add(cfg.threads as u64))
            })
        });
        let workers: Vec<_> = (0..cfg.threads)
            .map(|t| {
                let rec = ThreadRecorder::new(start, progress.clone());
                let budget = &budget;
                s.spawn(move || worker(b, cfg, db, seed.wrapping_add(t as u64), rec, budget))
            })
            .collect();
        let mut recorders = Vec::new();
        let mut outcomes = Vec::new();
        let mut first_err = None;
        for w in workers {
            match w.join() {
                Ok(Ok((rec, out))) => {
                    recorders.push(rec);
                    outcomes.push(out);
                }
                Ok(Err(e)) => first_err = first_err.or(Some(e)),
                Err(_) => {
                    first_err = first_err.or(Some(BenchError::InvalidArgument(
                        "a worker thread panicked".into(),
                    )))
                }
            }
        }
        writer_running.store(false, Ordering::Release);
        let writer_ops = match writer.map(|w| w.join()) {
            None => Ok(0),
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(BenchError::InvalidArgument(
                "the writer thread panicked".into(),
            )),
        };
        match first_err {
            Some(e) => Err(e),
            None => Ok((recorders, outcomes, writer_ops?)),
        }
    })?;
    let elapsed = start.elapsed();
    progress.finish_and_clear();
    let found: u64 = outcomes.iter().map(|o| o.found).sum();
    let attempted: u64 = outcomes.iter().map(|o| o.attempted).sum();
    let message = match b {
        Benchmark::ReadRandom | Benchmark::SeekRandom => {
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
        _ => None,
    };
    Ok(PhaseReport::new(
        PhaseResult::merge(b.name(), recorders, elapsed)?,
        message,
        db,
        &before,
    ))
}

/// db_bench's `compact`: one full manual compaction, timed as one
/// operation of one thread.
fn compact(db: &Db) -> Result<PhaseReport> {
    let before = db.stats();
    let start = Instant::now();
    let mut rec = ThreadRecorder::new(start, indicatif::ProgressBar::hidden());
    db.compact_range(None, None)
        .map_err(BenchError::engine("compact: compact_range"))?;
    rec.record(OpKind::Compact, start)?;
    let stats = db.stats();
    let levels: Vec<String> = stats.levels.iter().map(|l| l.files.to_string()).collect();
    Ok(PhaseReport::new(
        PhaseResult::merge(Benchmark::Compact.name(), vec![rec], start.elapsed())?,
        Some(format!("(files per level after: {})", levels.join(" "))),
        db,
        &before,
    ))
}

/// readwhilewriting's writer: random overwrites until the readers finish.
fn background_writer(db: &Db, cfg: &DbBenchConfig, running: &AtomicBool, seed: u64) -> Result<u64> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut values = ValueSource::new(cfg.value_size, &mut rng);
    let mut key = vec![0u8; cfg.key_size];
    let mut written = 0;
    while running.load(Ordering::Acquire) {
        make_key(&mut key, rng.random_range(0..cfg.num));
        db.put(&key, values.next())
            .map_err(BenchError::engine("readwhilewriting writer: put"))?;
        written += 1;
    }
    Ok(written)
}

fn worker(
    b: Benchmark,
    cfg: &DbBenchConfig,
    db: &Db,
    seed: u64,
    mut rec: ThreadRecorder,
    budget: &Budget,
) -> Result<(ThreadRecorder, Outcome)> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut values = ValueSource::new(cfg.value_size, &mut rng);
    let mut key = vec![0u8; cfg.key_size];
    let mut out = Outcome::default();
    let kv = cfg.key_size + cfg.value_size;
    let mut began = Instant::now();
    match b {
        Benchmark::FillSeq | Benchmark::FillRandom | Benchmark::Overwrite => {
            let mut i = 0u64;
            while !budget.done(&rec) {
                let k = if b == Benchmark::FillSeq {
                    i % cfg.num
                } else {
                    rng.random_range(0..cfg.num)
                };
                i += 1;
                make_key(&mut key, k);
                db.put(&key, values.next())
                    .map_err(BenchError::engine_op(b.name(), "put"))?;
                rec.add_bytes(kv);
                began = rec.record(OpKind::Write, began)?;
            }
        }
        Benchmark::DeleteRandom => {
            while !budget.done(&rec) {
                make_key(&mut key, rng.random_range(0..cfg.num));
                db.delete(&key)
                    .map_err(BenchError::engine("deleterandom: delete"))?;
                began = rec.record(OpKind::Delete, began)?;
            }
        }
        Benchmark::DeleteRange => {
            // Random starts over the key range, like deleterandom's keys;
            // a range may run past the last key.
            let mut end = vec![0u8; cfg.key_size];
            while !budget.done(&rec) {
                let first = rng.random_range(0..cfg.num);
                make_key(&mut key, first);
                make_key(&mut end, first.saturating_add(cfg.range_tombstone_width));
                db.delete_range(&key, &end)
                    .map_err(BenchError::engine("deleterange: delete_range"))?;
                out.attempted += 1;
                began = rec.record(OpKind::Delete, began)?;
            }
        }
        Benchmark::ReadRandom | Benchmark::ReadWhileWriting => {
            while !budget.done(&rec) {
                make_key(&mut key, rng.random_range(0..cfg.num));
                let v = db
                    .get(&key)
                    .map_err(BenchError::engine_op(b.name(), "get"))?;
                out.attempted += 1;
                if let Some(v) = v {
                    out.found += 1;
                    rec.add_bytes(key.len() + v.len());
                }
                began = rec.record(OpKind::Read, began)?;
            }
        }
        Benchmark::MultiReadRandom => {
            // Keys are drawn as readrandom draws them, a batch at a time.
            let mut batch = vec![0u8; cfg.batch_size as usize * cfg.key_size];
            while budget.has_room_for(&rec, cfg.batch_size) {
                for k in batch.chunks_exact_mut(cfg.key_size) {
                    make_key(k, rng.random_range(0..cfg.num));
                }
                let keys: Vec<&[u8]> = batch.chunks_exact(cfg.key_size).collect();
                let values = db
                    .multi_get(&keys)
                    .map_err(BenchError::engine_op(b.name(), "multi_get"))?;
                out.attempted += cfg.batch_size;
                for v in values.iter().flatten() {
                    out.found += 1;
                    rec.add_bytes(cfg.key_size + v.len());
                }
                began = rec.record_batch(OpKind::MultiGet, began, cfg.batch_size)?;
            }
        }
        Benchmark::ReadSeq => {
            let mut it = db
                .iter(ReadOptions::default())
                .map_err(BenchError::engine("readseq: iterator"))?;
            it.seek_to_first()
                .map_err(BenchError::engine("readseq: seek_to_first"))?;
            while it.valid() && !budget.done(&rec) {
                rec.add_bytes(it.key().len() + it.value().len());
                it.next().map_err(BenchError::engine("readseq: next"))?;
                began = rec.record(OpKind::Read, began)?;
            }
        }
        Benchmark::SeekRandom => {
            while !budget.done(&rec) {
                make_key(&mut key, rng.random_range(0..cfg.num));
                // A new iterator per seek, as db_bench does without a
                // tailing iterator, so each seek sees the latest data.
                let mut it = db
                    .iter(ReadOptions::default())
                    .map_err(BenchError::engine("seekrandom: iterator"))?;
                it.seek(&key)
                    .map_err(BenchError::engine("seekrandom: seek"))?;
                out.attempted += 1;
                if it.valid() {
                    // db_bench counts a seek as found only on an exact match.
                    if it.key() == key.as_slice() {
                        out.found += 1;
                    }
                    rec.add_bytes(it.key().len() + it.value().len());
                }
                for _ in 0..cfg.seek_nexts {
                    if !it.valid() {
                        break;
                    }
                    it.next().map_err(BenchError::engine("seekrandom: next"))?;
                    if it.valid() {
                        rec.add_bytes(it.key().len() + it.value().len());
                    }
                }
                began = rec.record(OpKind::Seek, began)?;
            }
        }
        // run_one runs it in one thread of its own (see `compact`).
        Benchmark::Compact => {
            return Err(BenchError::InvalidArgument(
                "compact is not a worker benchmark".into(),
            ));
        }
    }
    Ok((rec, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_big_endian_then_zero_padded() {
        let mut k = [0u8; 16];
        make_key(&mut k, 0x0102_0304_0506_0708);
        assert_eq!(&k[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&k[8..], b"00000000");
        let mut short = [0u8; 4];
        make_key(&mut short, 0x0102_0304_0506_0708);
        assert_eq!(short, [5, 6, 7, 8]);
        // Numeric order is key order.
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        make_key(&mut a, 255);
        make_key(&mut b, 256);
        assert!(a < b);
    }

    #[test]
    fn summary_line_has_db_bench_layout() {
        let result = PhaseResult {
            name: "fillrandom".into(),
            threads: 1,
            seconds: 2.0,
            ops: 400_000,
            ops_per_sec: 200_000.0,
            mb_per_sec: 19.9,
            latency: vec![],
            timeline: vec![],
            timeline_ops_per_sec: vec![],
        };
        let r = PhaseReport {
            result,
            message: Some("(1 of 2 found)".into()),
            work: Default::default(),
            db_stats: crate::test_support::empty_stats(),
            offload_rates: crate::report::OffloadRates::default(),
            service: None,
            background_errors: BackgroundErrors::default(),
        };
        assert_eq!(
            summary_line(&r),
            "fillrandom   :       5.000 micros/op 200000 ops/sec;   19.9 MB/s (1 of 2 found)"
        );
    }

    /// As in db_bench: a process whose first benchmark is readrandom replays
    /// the key sequence of a fillrandom process with the same seed (every
    /// read finds its key), while a later benchmark draws new keys (a random
    /// fill of `num` draws holds ~63% of the key range).
    #[test]
    fn seeds_follow_db_bench_across_processes() {
        let dir = tempfile::tempdir().unwrap();
        let engine = crate::engine::EngineArgs {
            db: Some(dir.path().join("db")),
            ..Default::default()
        }
        .resolve("unused")
        .unwrap();
        let args = |benchmarks: &str, existing: bool| {
            DbBenchArgs {
                benchmarks: Some(benchmarks.into()),
                num: Some(5000),
                use_existing_db: Some(existing),
                ..Default::default()
            }
            .resolve()
            .unwrap()
        };
        run(&args("fillrandom", false), &engine, false).unwrap();
        let reports = run(&args("readrandom,seekrandom", true), &engine, false)
            .unwrap()
            .phases;
        assert_eq!(reports[0].message.as_deref(), Some("(5000 of 5000 found)"));
        let seek = reports[1].message.as_deref().unwrap();
        let found: u64 = seek[1..].split(' ').next().unwrap().parse().unwrap();
        assert!((2800..3500).contains(&found), "{seek}");
    }

    /// compact is one operation in one thread that leaves one sorted run
    /// with every key still readable.
    #[test]
    fn compact_leaves_one_sorted_run_in_one_operation() {
        let dir = tempfile::tempdir().unwrap();
        let engine = crate::engine::small_test_engine(dir.path());
        let args = DbBenchArgs {
            benchmarks: Some("fillseq,compact,readrandom".into()),
            num: Some(3000),
            threads: Some(2),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let reports = run(&args, &engine, false).unwrap().phases;
        let compact = &reports[1];
        assert_eq!(compact.result.name, "compact");
        assert_eq!((compact.result.ops, compact.result.threads), (1, 1));
        // Everything in one sorted run below level 0 (the strategy's last
        // level in use).
        let levels = &compact.db_stats.levels;
        assert_eq!(levels[0].files, 0, "{levels:?}");
        assert_eq!(
            levels.iter().filter(|l| l.files > 0).count(),
            1,
            "{levels:?}"
        );
        let files = compact.message.as_deref().unwrap();
        assert!(files.starts_with("(files per level after: 0 "), "{files}");
        assert_eq!(reports[2].message.as_deref(), Some("(6000 of 6000 found)"));
    }

    /// deleterange issues --num / --range_tombstone_width deletions per
    /// thread by default (or --max_num_range_tombstones), and the reads
    /// after it see the keys gone.
    #[test]
    fn deleterange_deletes_ranges_that_later_reads_miss() {
        let dir = tempfile::tempdir().unwrap();
        let engine = crate::engine::small_test_engine(dir.path());
        let args = |benchmarks: &str, max: Option<u64>| {
            DbBenchArgs {
                benchmarks: Some(benchmarks.into()),
                num: Some(3000),
                range_tombstone_width: Some(30),
                max_num_range_tombstones: max,
                ..Default::default()
            }
            .resolve()
            .unwrap()
        };
        let reports = run(
            &args("fillseq,deleterange,readrandom", None),
            &engine,
            false,
        )
        .unwrap()
        .phases;
        assert_eq!(reports[1].result.ops, 100, "3000 keys / 30 per range");
        assert_eq!(
            reports[1].message.as_deref(),
            Some("(100 ranges of 30 keys)")
        );
        assert!(reports[1].db_stats.range_tombstones > 0);
        let found = reports[2].message.as_deref().unwrap();
        let found: u64 = found[1..].split(' ').next().unwrap().parse().unwrap();
        // ~63% of the keys are deleted; far from all and far from none.
        assert!((600..1800).contains(&found), "{found} of 3000 found");

        let reports = run(&args("fillseq,deleterange", Some(7)), &engine, false)
            .unwrap()
            .phases;
        assert_eq!(reports[1].result.ops, 7);
    }

    #[test]
    fn each_benchmark_runs_on_a_small_database() {
        let dir = tempfile::tempdir().unwrap();
        let engine = crate::engine::small_test_engine(dir.path());
        let cfg = DbBenchArgs {
            benchmarks: Some(
                "fillseq,readseq,fillrandom,overwrite,readrandom,seekrandom,readwhilewriting,deleterandom".into(),
            ),
            num: Some(2000),
            threads: Some(2),
            seek_nexts: Some(3),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let outcome = run(&cfg, &engine, false).unwrap();
        outcome.check().unwrap();
        let reports = outcome.phases;
        assert_eq!(reports.len(), 8);
        // fillseq writes every key once per thread; readseq then sees all.
        assert_eq!(reports[0].result.ops, 4000);
        assert_eq!(
            reports[1].result.ops, 4000,
            "readseq: 2 threads x 2000 keys"
        );
        let read = &reports[4];
        assert_eq!(read.result.ops, 4000);
        let found = read.message.as_deref().unwrap();
        assert!(found.ends_with("of 4000 found)"), "{found}");
        assert!(
            !found.starts_with("(0 "),
            "a filled database has keys: {found}"
        );
        assert!(reports[0].db_stats.user_bytes > 0);
    }

    /// `(found, attempted)` from a `(F of A found...)` message.
    fn found_of(r: &PhaseReport) -> (u64, u64) {
        let m = r.message.as_deref().unwrap();
        let (found, rest) = m.trim_start_matches('(').split_once(" of ").unwrap();
        let attempted = rest.split(' ').next().unwrap();
        (found.parse().unwrap(), attempted.parse().unwrap())
    }

    /// multireadrandom draws the keys readrandom draws with the same seed, so
    /// point gets are its oracle: it must find exactly as many. A random fill
    /// holds ~63% of the key range, so the batches mix hits and misses; with
    /// the fill's own seed every key looked up exists and all are found.
    #[test]
    fn multireadrandom_finds_exactly_the_keys_that_exist() {
        let dir = tempfile::tempdir().unwrap();
        let engine = crate::engine::small_test_engine(dir.path());
        let args = |benchmarks: &str, reads: i64, batch_size: u64, seed: u64| {
            DbBenchArgs {
                benchmarks: Some(benchmarks.into()),
                num: Some(5000),
                reads: Some(reads),
                batch_size: Some(batch_size),
                use_existing_db: Some(benchmarks != "fillrandom"),
                seed: Some(seed),
                ..Default::default()
            }
            .resolve()
            .unwrap()
        };
        let only = |cfg: &DbBenchConfig| {
            let outcome = run(cfg, &engine, false).unwrap();
            outcome.check().unwrap();
            outcome.phases.into_iter().next().unwrap()
        };
        only(&args("fillrandom", -1, 1, 5));
        let point = only(&args("readrandom", 3003, 1, 77));
        let multi = only(&args("multireadrandom", 3003, 7, 77));
        let (found, attempted) = found_of(&multi);
        assert_eq!((found, attempted), found_of(&point));
        assert_eq!(attempted, 3003);
        assert!((1500..2500).contains(&found), "{:?}", multi.message);
        // Throughput counts keys; latency is per multi_get call.
        assert_eq!(multi.result.ops, 3003);
        let calls: Vec<(OpKind, u64)> = multi
            .result
            .latency
            .iter()
            .map(|l| (l.op, l.count))
            .collect();
        assert_eq!(calls, vec![(OpKind::MultiGet, 429)]);
        // Only whole batches, as db_bench: 3005 reads in batches of 7 are 3003.
        let short = only(&args("multireadrandom", 3005, 7, 77));
        assert_eq!(found_of(&short), (found, 3003));
        // The fill's seed replays its keys: every one exists.
        let replay = only(&args("multireadrandom", 5000, 10, 5));
        assert_eq!(found_of(&replay), (5000, 5000));
    }
}
