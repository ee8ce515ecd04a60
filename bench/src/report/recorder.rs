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
    /// One flush of every memtable (db_bench's `flush`).
    Flush,
    /// Waiting until no flush or compaction is pending or running
    /// (db_bench's `waitforcompaction`).
    WaitForCompaction,
    /// Reading the engine's statistics (db_bench's `stats`, `levelstats`).
    Stats,
}

impl OpKind {
    pub const ALL: [OpKind; 13] = [
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
        OpKind::Flush,
        OpKind::WaitForCompaction,
        OpKind::Stats,
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
            OpKind::Flush => "FLUSH",
            OpKind::WaitForCompaction => "WAITFORCOMPACTION",
            OpKind::Stats => "STATS",
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
        self.record_batch_at(kind, began, now, ops)?;
        Ok(now)
    }

    /// [`Self::record_batch`] for a call that ended at `now` (tests give
    /// made-up times, so timelines can be checked without sleeping).
    fn record_batch_at(
        &mut self,
        kind: OpKind,
        began: Instant,
        now: Instant,
        ops: u64,
    ) -> Result<()> {
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
        Ok(())
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
    /// Operations finished in each second of the phase, up to its end: the
    /// last entry counts only the phase's last, partial, second, or that
    /// second and the one before when it is shorter than
    /// [`SHORTEST_LAST_SECOND`].
    pub timeline: Vec<u64>,
    /// `timeline` as rates: each count over its second's real length, so the
    /// last, partial, second shows no false drop.
    pub timeline_ops_per_sec: Vec<f64>,
}

/// One timeline entry as a rate over the time it covers, in seconds since
/// the phase start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateBucket {
    pub start: f64,
    pub end: f64,
    pub ops_per_sec: f64,
}

/// A phase's last, partial second shorter than this is counted with the
/// second before it: a rate over a few milliseconds (often a lone 0 when a
/// throttled phase ends just after a whole second) says nothing.
pub const SHORTEST_LAST_SECOND: f64 = 0.1;

/// Fold the count of a last, partial second shorter than
/// [`SHORTEST_LAST_SECOND`] into the second before, which then runs to the
/// phase's end at `seconds`.
fn fold_short_last_second(timeline: &mut Vec<u64>, seconds: f64) {
    let n = timeline.len();
    let partial = seconds - (n as f64 - 1.0);
    if n >= 2 && partial > 0.0 && partial < SHORTEST_LAST_SECOND {
        let last = timeline.pop().unwrap_or(0);
        if let Some(prev) = timeline.last_mut() {
            *prev += last;
        }
    }
}

/// The per-second `counts` of a phase that lasted `seconds` as rates. Every
/// entry covers one second but the last, which ends at `seconds` (when the
/// phase ended within it; a timeline that does not reach the phase's end
/// has no partial second).
pub fn timeline_rates(counts: &[u64], seconds: f64) -> Vec<RateBucket> {
    let last = counts.len().saturating_sub(1);
    counts
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let start = i as f64;
            let partial = seconds - start;
            let length = if i == last && partial > 0.0 && partial < 1.0 + SHORTEST_LAST_SECOND {
                partial
            } else {
                1.0
            };
            RateBucket {
                start,
                end: start + length,
                ops_per_sec: n as f64 / length,
            }
        })
        .collect()
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
        // Seconds at the end with no operation finished are zeros, not gaps.
        timeline.resize(timeline.len().max(seconds.ceil() as usize), 0);
        fold_short_last_second(&mut timeline, seconds);
        let timeline_ops_per_sec = timeline_rates(&timeline, seconds)
            .iter()
            .map(|b| b.ops_per_sec)
            .collect();
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
            timeline_ops_per_sec,
        })
    }

    /// The timeline as rates over each entry's real length.
    pub fn timeline_buckets(&self) -> Vec<RateBucket> {
        timeline_rates(&self.timeline, self.seconds)
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
        let buckets = self.timeline_buckets();
        let rates: Vec<String> = buckets
            .iter()
            .map(|b| format!("{:.0}", b.ops_per_sec))
            .collect();
        s.push_str(&format!("  ops per second: {}", rates.join(" ")));
        match buckets.last() {
            Some(b) if b.end - b.start < 1.0 => {
                s.push_str(&format!(" (the last over {:.2} s)\n", b.end - b.start))
            }
            _ => s.push('\n'),
        }
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

    /// A steady 1000 operations per second over 2.5 s: every second,
    /// the half one at the end included, reads 1000 ops/s in the buckets,
    /// the JSON field and the printed line.
    #[test]
    fn the_last_partial_second_is_a_rate_over_its_real_length() {
        let start = Instant::now();
        let mut a = ThreadRecorder::new(start, ProgressBar::hidden());
        // One operation every millisecond, ending at 1 ms ..= 2500 ms.
        for ms in 1..=2500u64 {
            let end = start + Duration::from_millis(ms) - Duration::from_nanos(1);
            a.record_batch_at(OpKind::Write, start, end, 1).unwrap();
        }
        let r = PhaseResult::merge("x", vec![a], Duration::from_millis(2500)).unwrap();
        assert_eq!(r.timeline, [1000, 1000, 500]);
        assert_eq!(r.timeline_ops_per_sec, [1000.0, 1000.0, 1000.0]);
        let b = r.timeline_buckets();
        assert_eq!(b.len(), 3);
        assert_eq!((b[2].start, b[2].end), (2.0, 2.5));
        assert!(
            b.iter().all(|b| (b.ops_per_sec - 1000.0).abs() < 1e-9),
            "{b:?}"
        );
        assert!(
            r.details()
                .contains("ops per second: 1000 1000 1000 (the last over 0.50 s)")
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["timeline_ops_per_sec"][2], 1000.0);
    }

    /// Seconds after the last operation are zeros up to the phase's end;
    /// a whole number of seconds has no partial one.
    #[test]
    fn the_timeline_reaches_the_phase_end() {
        let start = Instant::now();
        let mut a = ThreadRecorder::new(start, ProgressBar::hidden());
        a.record_batch_at(OpKind::Read, start, start + Duration::from_millis(300), 10)
            .unwrap();
        let r = PhaseResult::merge("x", vec![a], Duration::from_millis(2200)).unwrap();
        assert_eq!(r.timeline, [10, 0, 0]);
        assert!((r.timeline_ops_per_sec[2] - 0.0).abs() < 1e-12);
        assert_eq!(r.timeline_buckets()[2].end, 2.2);
        let whole = timeline_rates(&[4, 6], 2.0);
        assert_eq!(
            whole[1],
            RateBucket {
                start: 1.0,
                end: 2.0,
                ops_per_sec: 6.0
            }
        );
        assert!(timeline_rates(&[], 3.0).is_empty());
    }

    /// A throttled phase that ends just after its sixth second has no
    /// seventh entry of 0 ops over a millisecond: the sliver counts with
    /// the sixth second, whose rate is over its real 1.002 s.
    #[test]
    fn a_sliver_of_a_last_second_counts_with_the_one_before() {
        let start = Instant::now();
        let mut a = ThreadRecorder::new(start, ProgressBar::hidden());
        for s in 0..6 {
            let at = start + Duration::from_millis(s * 1000 + 500);
            a.record_batch_at(OpKind::Read, at, at, 1000).unwrap();
        }
        let at = start + Duration::from_millis(6001);
        a.record_batch_at(OpKind::Read, at, at, 2).unwrap();
        let r = PhaseResult::merge("x", vec![a], Duration::from_millis(6002)).unwrap();
        assert_eq!(r.timeline, [1000, 1000, 1000, 1000, 1000, 1002]);
        let last = r.timeline_buckets()[5];
        assert!((last.end - 6.002).abs() < 1e-9, "{last:?}");
        assert!((last.ops_per_sec - 1000.0).abs() < 1e-6, "{last:?}");
        assert_eq!(r.timeline.iter().sum::<u64>(), r.ops);
    }
}
