//! Measurement while a phase runs: each worker thread owns a
//! [`ThreadRecorder`] (latency histograms per operation type, a per-second
//! operation count), so recording takes no lock; [`PhaseResult::merge`] adds
//! the threads up when the phase ends.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use serde::Serialize;

use crate::error::{BenchError, Result};

/// Operation types with their own latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum OpKind {
    Read,
    Update,
    Insert,
    Scan,
    ReadModifyWrite,
    Write,
    Delete,
    Seek,
    /// One `multi_get` call: the latency of a whole batch of keys.
    MultiGet,
    /// One full manual compaction (db_bench's `compact`).
    Compact,
}

impl OpKind {
    pub const ALL: [OpKind; 10] = [
        OpKind::Read,
        OpKind::Update,
        OpKind::Insert,
        OpKind::Scan,
        OpKind::ReadModifyWrite,
        OpKind::Write,
        OpKind::Delete,
        OpKind::Seek,
        OpKind::MultiGet,
        OpKind::Compact,
    ];

    /// The name YCSB prints (`[READ]`, `[READ-MODIFY-WRITE]`, ...).
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Read => "READ",
            OpKind::Update => "UPDATE",
            OpKind::Insert => "INSERT",
            OpKind::Scan => "SCAN",
            OpKind::ReadModifyWrite => "READ-MODIFY-WRITE",
            OpKind::Write => "WRITE",
            OpKind::Delete => "DELETE",
            OpKind::Seek => "SEEK",
            OpKind::MultiGet => "MULTIGET",
            OpKind::Compact => "COMPACT",
        }
    }
}

/// Highest latency a histogram tracks (one hour, in nanoseconds); longer
/// operations are recorded as this value.
const MAX_TRACKED_NANOS: u64 = 3_600 * 1_000_000_000;

/// Progress is pushed to the shared bar every this many operations.
const PROGRESS_BATCH: u64 = 1024;

fn new_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_TRACKED_NANOS, 3)
        .map_err(|e| BenchError::InvalidArgument(format!("latency histogram: {e}")))
}

/// One worker thread's measurements.
#[derive(Debug)]
pub struct ThreadRecorder {
    start: Instant,
    histograms: Vec<Option<Histogram<u64>>>,
    /// Operations finished in each second since `start`.
    timeline: Vec<u64>,
    ops: u64,
    bytes: u64,
    progress: ProgressBar,
    unreported: u64,
}

impl ThreadRecorder {
    /// `start` is the phase start shared by every thread, so timelines line up.
    pub fn new(start: Instant, progress: ProgressBar) -> ThreadRecorder {
        ThreadRecorder {
            start,
            histograms: OpKind::ALL.iter().map(|_| None).collect(),
            timeline: Vec::new(),
            ops: 0,
            bytes: 0,
            progress,
            unreported: 0,
        }
    }

    /// Record one operation of `kind` that began at `began`; returns now,
    /// which the caller can use as the next operation's start.
    pub fn record(&mut self, kind: OpKind, began: Instant) -> Result<Instant> {
        self.record_batch(kind, began, 1)
    }

    /// Record one call of `kind` that began at `began` and did `ops`
    /// operations (e.g. a `multi_get` of `ops` keys): one latency sample for
    /// the call, `ops` operations for throughput, the timeline and the
    /// progress bar. Returns now.
    pub fn record_batch(&mut self, kind: OpKind, began: Instant, ops: u64) -> Result<Instant> {
        let now = Instant::now();
        let nanos = now
            .duration_since(began)
            .as_nanos()
            .min(MAX_TRACKED_NANOS as u128) as u64;
        let slot = &mut self.histograms[kind as usize];
        let h = match slot {
            Some(h) => h,
            None => slot.insert(new_histogram()?),
        };
        h.saturating_record(nanos.max(1));
        let second = now.duration_since(self.start).as_secs() as usize;
        if self.timeline.len() <= second {
            self.timeline.resize(second + 1, 0);
        }
        self.timeline[second] += ops;
        self.ops += ops;
        self.unreported += ops;
        if self.unreported >= PROGRESS_BATCH {
            self.progress.inc(self.unreported);
            self.unreported = 0;
        }
        Ok(now)
    }

    /// Count key and value bytes moved (for MB/s).
    pub fn add_bytes(&mut self, n: usize) {
        self.bytes += n as u64;
    }

    /// Operations recorded so far.
    pub fn ops(&self) -> u64 {
        self.ops
    }

    /// Time since the phase started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

impl Drop for ThreadRecorder {
    fn drop(&mut self) {
        self.progress.inc(self.unreported);
    }
}

/// Latency summary of one operation type, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct OpLatency {
    pub op: OpKind,
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// `(latency µs, fraction of operations at or below it)`, for CDF plots.
    pub cdf: Vec<(f64, f64)>,
}

impl OpLatency {
    fn from_histogram(op: OpKind, h: &Histogram<u64>) -> OpLatency {
        let us = |nanos: u64| nanos as f64 / 1000.0;
        let mut cdf = Vec::new();
        for v in h.iter_quantiles(4) {
            cdf.push((us(v.value_iterated_to()), v.quantile_iterated_to()));
        }
        OpLatency {
            op,
            count: h.len(),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.5)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            cdf,
        }
    }
}

/// What one phase (a db_bench benchmark, a YCSB load or run) measured.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    pub name: String,
    pub threads: usize,
    pub seconds: f64,
    pub ops: u64,
    pub ops_per_sec: f64,
    /// Key and value bytes moved per second, in MiB (db_bench's "MB/s").
    pub mb_per_sec: f64,
    pub latency: Vec<OpLatency>,
    /// Operations finished in each second of the phase.
    pub timeline: Vec<u64>,
}

impl PhaseResult {
    /// Add up the threads of a phase that took `elapsed`.
    pub fn merge(
        name: &str,
        threads: Vec<ThreadRecorder>,
        elapsed: Duration,
    ) -> Result<PhaseResult> {
        let thread_count = threads.len();
        let mut merged: Vec<Option<Histogram<u64>>> = OpKind::ALL.iter().map(|_| None).collect();
        let mut timeline: Vec<u64> = Vec::new();
        let (mut ops, mut bytes) = (0u64, 0u64);
        for t in &threads {
            ops += t.ops;
            bytes += t.bytes;
            if timeline.len() < t.timeline.len() {
                timeline.resize(t.timeline.len(), 0);
            }
            for (total, n) in timeline.iter_mut().zip(&t.timeline) {
                *total += n;
            }
            for (slot, h) in merged.iter_mut().zip(&t.histograms) {
                let Some(h) = h else { continue };
                match slot {
                    Some(m) => m.add(h).map_err(|e| {
                        BenchError::InvalidArgument(format!("merging histograms: {e}"))
                    })?,
                    None => *slot = Some(h.clone()),
                }
            }
        }
        let seconds = elapsed.as_secs_f64().max(1e-9);
        Ok(PhaseResult {
            name: name.to_string(),
            threads: thread_count,
            seconds,
            ops,
            ops_per_sec: ops as f64 / seconds,
            mb_per_sec: bytes as f64 / 1_048_576.0 / seconds,
            latency: OpKind::ALL
                .iter()
                .zip(&merged)
                .filter_map(|(&k, h)| h.as_ref().map(|h| OpLatency::from_histogram(k, h)))
                .collect(),
            timeline,
        })
    }

    /// Latency table and timeline, for stdout.
    pub fn details(&self) -> String {
        let mut s = format!(
            "  {:<18} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11}\n",
            "operation", "count", "mean(us)", "p50(us)", "p99(us)", "p99.9(us)", "max(us)"
        );
        for l in &self.latency {
            s.push_str(&format!(
                "  {:<18} {:>10} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>11.2}\n",
                l.op.name(),
                l.count,
                l.mean_us,
                l.p50_us,
                l.p99_us,
                l.p999_us,
                l.max_us
            ));
        }
        let timeline: Vec<String> = self.timeline.iter().map(|n| n.to_string()).collect();
        s.push_str(&format!("  ops per second: {}\n", timeline.join(" ")));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_threads_and_keeps_per_op_histograms() {
        let start = Instant::now();
        let mut a = ThreadRecorder::new(start, ProgressBar::hidden());
        let mut b = ThreadRecorder::new(start, ProgressBar::hidden());
        for _ in 0..10 {
            a.record(OpKind::Read, Instant::now()).unwrap();
        }
        for _ in 0..5 {
            b.record(OpKind::Update, Instant::now()).unwrap();
        }
        a.add_bytes(1_048_576);
        let r = PhaseResult::merge("x", vec![a, b], Duration::from_secs(1)).unwrap();
        assert_eq!(r.ops, 15);
        assert_eq!(r.threads, 2);
        assert_eq!(r.timeline.iter().sum::<u64>(), 15);
        assert!((r.mb_per_sec - 1.0).abs() < 1e-9);
        let kinds: Vec<OpKind> = r.latency.iter().map(|l| l.op).collect();
        assert_eq!(kinds, vec![OpKind::Read, OpKind::Update]);
        assert_eq!(r.latency[0].count, 10);
        let last = r.latency[0].cdf.last().unwrap();
        assert!((last.1 - 1.0).abs() < 1e-9);
        assert!(r.details().contains("READ"));
    }

    #[test]
    fn a_batch_is_one_latency_sample_and_many_operations() {
        let start = Instant::now();
        let mut a = ThreadRecorder::new(start, ProgressBar::hidden());
        for _ in 0..3 {
            a.record_batch(OpKind::MultiGet, Instant::now(), 16)
                .unwrap();
        }
        let r = PhaseResult::merge("x", vec![a], Duration::from_secs(1)).unwrap();
        assert_eq!(r.ops, 48);
        assert_eq!(r.timeline.iter().sum::<u64>(), 48);
        assert_eq!(r.latency.len(), 1);
        assert_eq!((r.latency[0].op, r.latency[0].count), (OpKind::MultiGet, 3));
    }
}
