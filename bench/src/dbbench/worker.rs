//! The threads of a benchmark: each worker performs its operations on the
//! shared database and measures them; readwhilewriting adds one writer.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use o3_compute::{Db, ReadOptions, WriteBatch, WriteOptions};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::histogram::LatencyBook;
use super::mixgraph::{MixGraph, MixOp};
use super::options::{Benchmark, DbBenchConfig};
use super::rate_limit::{RateLimiter, SineLimiter};
use super::{ValueSource, make_key};
use crate::error::{BenchError, Result};
use crate::report::{OpKind, ThreadRecorder};

/// What a thread reports besides timings.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    pub found: u64,
    pub attempted: u64,
    /// mixgraph's operations by type.
    pub gets: u64,
    pub puts: u64,
    pub seeks: u64,
}

/// When a thread stops: after `ops` operations, or after `--duration`.
pub struct Budget {
    pub ops: u64,
    pub duration: Option<Duration>,
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

/// What the threads of one benchmark share besides the database.
pub struct Shared<'a> {
    pub budget: &'a Budget,
    /// The write rate limit (`--benchmark_write_rate_limit`).
    pub limiter: Option<&'a RateLimiter>,
    /// mixgraph's operation rate (`--sine_mix_rate`).
    pub op_limiter: Option<&'a SineLimiter>,
    /// Operations finished, for reports during the benchmark (`None`: no
    /// one reads it, so the threads do not contend on it).
    pub done: Option<&'a AtomicU64>,
    /// Keep latency histograms (`--histogram`, `--statistics`).
    pub histograms: bool,
}

/// One worker's measurements: the recorder every benchmark reports, and
/// what the optional flags add.
pub struct Meter<'a> {
    pub rec: ThreadRecorder,
    pub latencies: Option<LatencyBook>,
    shared: &'a Shared<'a>,
}

impl<'a> Meter<'a> {
    pub fn new(rec: ThreadRecorder, shared: &'a Shared<'a>) -> Meter<'a> {
        Meter {
            rec,
            latencies: shared.histograms.then(LatencyBook::default),
            shared,
        }
    }

    /// Record one operation of `kind` begun at `began`; returns now.
    fn record(&mut self, kind: OpKind, began: Instant) -> Result<Instant> {
        self.record_batch(kind, began, 1)
    }

    fn record_batch(&mut self, kind: OpKind, began: Instant, ops: u64) -> Result<Instant> {
        let now = self.rec.record_batch(kind, began, ops)?;
        if let Some(book) = &mut self.latencies {
            book.record(kind, now.duration_since(began))?;
        }
        if let Some(done) = self.shared.done {
            done.fetch_add(ops, Ordering::Relaxed);
        }
        Ok(now)
    }

    /// Wait until `bytes` may be written under the rate limit; returns the
    /// instant the write's latency counts from (the wait is not latency).
    fn throttle(&self, bytes: usize, began: Instant) -> Instant {
        match self.shared.limiter {
            Some(l) => {
                l.request(bytes as u64);
                Instant::now()
            }
            None => began,
        }
    }
}

/// readwhilewriting's writer: random overwrites until the readers finish.
pub fn background_writer(
    db: &Db,
    cfg: &DbBenchConfig,
    running: &AtomicBool,
    limiter: Option<&RateLimiter>,
    seed: u64,
) -> Result<u64> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut values = ValueSource::new(cfg.value_size, &mut rng);
    let mut key = vec![0u8; cfg.key_size];
    let mut written = 0;
    while running.load(Ordering::Acquire) {
        make_key(&mut key, rng.random_range(0..cfg.num));
        if let Some(l) = limiter {
            l.request((cfg.key_size + cfg.value_size) as u64);
        }
        db.put(&key, values.next())
            .map_err(BenchError::engine("readwhilewriting writer: put"))?;
        written += 1;
    }
    Ok(written)
}

/// One worker thread of benchmark `b`.
pub fn worker<'a>(
    b: Benchmark,
    cfg: &DbBenchConfig,
    db: &Db,
    seed: u64,
    mut m: Meter<'a>,
) -> Result<(Meter<'a>, Outcome)> {
    let mut rng = SmallRng::seed_from_u64(seed);
    // Drawn first whatever the benchmark, so the keys that follow replay
    // across benchmarks and processes with the same seed.
    let mut values = ValueSource::new(cfg.value_size, &mut rng);
    let budget = m.shared.budget;
    let mut key = vec![0u8; cfg.key_size];
    let mut out = Outcome::default();
    let kv = cfg.key_size + cfg.value_size;
    let mut began = Instant::now();
    match b {
        Benchmark::FillSeq | Benchmark::FillRandom | Benchmark::Overwrite | Benchmark::FillSync => {
            let sync = WriteOptions { sync: Some(true) };
            let mut i = 0u64;
            while !budget.done(&m.rec) {
                let k = if b == Benchmark::FillSeq {
                    i % cfg.num
                } else {
                    rng.random_range(0..cfg.num)
                };
                i += 1;
                make_key(&mut key, k);
                began = m.throttle(kv, began);
                if b == Benchmark::FillSync {
                    let mut batch = WriteBatch::new();
                    batch.put(&key, values.next());
                    db.write_opt(batch, sync)
                } else {
                    db.put(&key, values.next())
                }
                .map_err(BenchError::engine_op(b.name(), "put"))?;
                m.rec.add_bytes(kv);
                began = m.record(OpKind::Write, began)?;
            }
        }
        Benchmark::UpdateRandom => {
            while !budget.done(&m.rec) {
                make_key(&mut key, rng.random_range(0..cfg.num));
                let v = db
                    .get(&key)
                    .map_err(BenchError::engine("updaterandom: get"))?;
                out.attempted += 1;
                if let Some(v) = v {
                    out.found += 1;
                    m.rec.add_bytes(key.len() + v.len());
                }
                began = m.throttle(kv, began);
                db.put(&key, values.next())
                    .map_err(BenchError::engine("updaterandom: put"))?;
                m.rec.add_bytes(kv);
                began = m.record(OpKind::ReadModifyWrite, began)?;
            }
        }
        Benchmark::DeleteRandom => {
            while !budget.done(&m.rec) {
                make_key(&mut key, rng.random_range(0..cfg.num));
                db.delete(&key)
                    .map_err(BenchError::engine("deleterandom: delete"))?;
                began = m.record(OpKind::Delete, began)?;
            }
        }
        Benchmark::DeleteRange => {
            // Random starts over the key range, like deleterandom's keys;
            // a range may run past the last key.
            let mut end = vec![0u8; cfg.key_size];
            while !budget.done(&m.rec) {
                let first = rng.random_range(0..cfg.num);
                make_key(&mut key, first);
                make_key(&mut end, first.saturating_add(cfg.range_tombstone_width));
                db.delete_range(&key, &end)
                    .map_err(BenchError::engine("deleterange: delete_range"))?;
                out.attempted += 1;
                began = m.record(OpKind::Delete, began)?;
            }
        }
        Benchmark::ReadRandom | Benchmark::ReadWhileWriting | Benchmark::ReadMissing => {
            // readmissing's keys are one byte longer than every key
            // written (db_bench's `++key_size`), so none exists.
            if b == Benchmark::ReadMissing {
                key.push(0);
            }
            while !budget.done(&m.rec) {
                make_key(&mut key, rng.random_range(0..cfg.num));
                let v = db
                    .get(&key)
                    .map_err(BenchError::engine_op(b.name(), "get"))?;
                out.attempted += 1;
                if let Some(v) = v {
                    out.found += 1;
                    m.rec.add_bytes(key.len() + v.len());
                }
                began = m.record(OpKind::Read, began)?;
            }
        }
        Benchmark::MultiReadRandom => {
            // Keys are drawn as readrandom draws them, a batch at a time.
            let mut batch = vec![0u8; cfg.batch_size as usize * cfg.key_size];
            while budget.has_room_for(&m.rec, cfg.batch_size) {
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
                    m.rec.add_bytes(cfg.key_size + v.len());
                }
                began = m.record_batch(OpKind::MultiGet, began, cfg.batch_size)?;
            }
        }
        Benchmark::ReadSeq | Benchmark::ReadReverse => {
            let reverse = b == Benchmark::ReadReverse;
            let mut it = db
                .iter(ReadOptions::default())
                .map_err(BenchError::engine_op(b.name(), "iterator"))?;
            if reverse {
                it.seek_to_last()
            } else {
                it.seek_to_first()
            }
            .map_err(BenchError::engine_op(b.name(), "seek"))?;
            while it.valid() && !budget.done(&m.rec) {
                m.rec.add_bytes(it.key().len() + it.value().len());
                if reverse { it.prev() } else { it.next() }
                    .map_err(BenchError::engine_op(b.name(), "step"))?;
                began = m.record(OpKind::Read, began)?;
            }
        }
        Benchmark::SeekRandom => {
            while !budget.done(&m.rec) {
                make_key(&mut key, rng.random_range(0..cfg.num));
                seek_and_scan(db, &key, cfg.seek_nexts, &mut m, &mut out)?;
                began = m.record(OpKind::Seek, began)?;
            }
        }
        Benchmark::MixGraph => mix_graph(cfg, db, &mut rng, &mut m, &mut out)?,
        _ => {
            return Err(BenchError::InvalidArgument(format!(
                "{} is not a worker benchmark",
                b.name()
            )));
        }
    }
    Ok((m, out))
}

/// Seek to `key` with a new iterator (as db_bench without a tailing
/// iterator, so each seek sees the latest data), count an exact match as
/// found, then step `nexts` times.
fn seek_and_scan(
    db: &Db,
    key: &[u8],
    nexts: u64,
    m: &mut Meter<'_>,
    out: &mut Outcome,
) -> Result<()> {
    let mut it = db
        .iter(ReadOptions::default())
        .map_err(BenchError::engine("seek: iterator"))?;
    it.seek(key).map_err(BenchError::engine("seek: seek"))?;
    out.attempted += 1;
    if it.valid() {
        if it.key() == key {
            out.found += 1;
        }
        m.rec.add_bytes(it.key().len() + it.value().len());
    }
    for _ in 0..nexts {
        if !it.valid() {
            break;
        }
        it.next().map_err(BenchError::engine("seek: next"))?;
        if it.valid() {
            m.rec.add_bytes(it.key().len() + it.value().len());
        }
    }
    Ok(())
}

/// mixgraph's loop: each operation a get, put or seek by the ratios, on a
/// key of the configured distribution.
fn mix_graph(
    cfg: &DbBenchConfig,
    db: &Db,
    rng: &mut SmallRng,
    m: &mut Meter<'_>,
    out: &mut Outcome,
) -> Result<()> {
    let g = MixGraph::new(&cfg.mixgraph, cfg.num);
    let mut values = ValueSource::new(cfg.mixgraph.max_value_size as usize, rng);
    let mut key = vec![0u8; cfg.key_size];
    let budget = m.shared.budget;
    let mut began = Instant::now();
    while !budget.done(&m.rec) {
        if let Some(l) = m.shared.op_limiter {
            // The wait for the rate is not the operation's latency.
            l.request();
            began = Instant::now();
        }
        let op = g.op(rng);
        make_key(&mut key, g.key(rng));
        match op {
            MixOp::Get => {
                out.gets += 1;
                let v = db.get(&key).map_err(BenchError::engine("mixgraph: get"))?;
                out.attempted += 1;
                if let Some(v) = v {
                    out.found += 1;
                    m.rec.add_bytes(key.len() + v.len());
                }
                began = m.record(OpKind::Read, began)?;
            }
            MixOp::Put => {
                out.puts += 1;
                let size = g.value_size(rng);
                began = m.throttle(key.len() + size, began);
                db.put(&key, &values.next()[..size])
                    .map_err(BenchError::engine("mixgraph: put"))?;
                m.rec.add_bytes(key.len() + size);
                began = m.record(OpKind::Write, began)?;
            }
            MixOp::Seek => {
                out.seeks += 1;
                let scan = g.scan_len(rng);
                seek_and_scan(db, &key, scan, m, out)?;
                began = m.record(OpKind::Seek, began)?;
            }
        }
    }
    Ok(())
}
