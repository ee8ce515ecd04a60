//! Latency histograms kept for `--histogram` and `--statistics`, and
//! db_bench's way of printing one:
//!
//! ```text
//! Microseconds per write:
//! Count: 100000 Average: 2.7153  StdDev: 9.12
//! Min: 1  Median: 1.9020  Max: 2047
//! Percentiles: P50: 1.90 P75: 2.41 P99: 8.31 P99.9: 30.05 P99.99: 161.02
//! ------------------------------------------------------
//! [       0,       1 ]      812   0.812%   0.812%
//! (       1,       2 ]    51234  51.234%  52.046% ##########
//! ```
//!
//! The bucket table has a row per non-empty bucket: its bounds in
//! microseconds, the count, its percentage, the cumulative percentage and a
//! `#` per 5%. Bucket bounds go 1, 2, ... 10, then in each decade
//! 1, 1.2, 1.4, 1.6, 1.8, 2, 2.5, 3, 3.5, 4, 4.5, 5, 6, 7, 8, 9 times its
//! power of ten.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::error::{BenchError, Result};
use crate::report::OpKind;

/// Latencies of one thread, a benchmark or a run, per operation type, in
/// nanoseconds.
#[derive(Debug, Clone)]
pub struct LatencyBook {
    histograms: Vec<Option<Histogram<u64>>>,
}

/// Longest latency tracked (one hour); longer ones count as this.
const MAX_NANOS: u64 = 3_600 * 1_000_000_000;

impl Default for LatencyBook {
    fn default() -> Self {
        LatencyBook {
            histograms: OpKind::ALL.iter().map(|_| None).collect(),
        }
    }
}

impl LatencyBook {
    pub fn record(&mut self, kind: OpKind, latency: Duration) -> Result<()> {
        let slot = &mut self.histograms[kind as usize];
        let h = match slot {
            Some(h) => h,
            None => slot.insert(
                Histogram::new_with_bounds(1, MAX_NANOS, 3)
                    .map_err(|e| BenchError::InvalidArgument(format!("latency histogram: {e}")))?,
            ),
        };
        let nanos = latency.as_nanos().min(MAX_NANOS as u128) as u64;
        h.saturating_record(nanos.max(1));
        Ok(())
    }

    /// Add `other`'s samples to these.
    pub fn merge(&mut self, other: &LatencyBook) -> Result<()> {
        for (mine, theirs) in self.histograms.iter_mut().zip(&other.histograms) {
            let Some(theirs) = theirs else { continue };
            match mine {
                Some(m) => m
                    .add(theirs)
                    .map_err(|e| BenchError::InvalidArgument(format!("merging histograms: {e}")))?,
                None => *mine = Some(theirs.clone()),
            }
        }
        Ok(())
    }

    /// The operation types with samples, in [`OpKind::ALL`] order.
    pub fn kinds(&self) -> impl Iterator<Item = (OpKind, &Histogram<u64>)> {
        OpKind::ALL
            .iter()
            .zip(&self.histograms)
            .filter_map(|(&k, h)| h.as_ref().map(|h| (k, h)))
    }

    /// db_bench's `--histogram` output: one block per operation type.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for (kind, h) in self.kinds() {
            s.push_str(&format!("Microseconds per {}:\n", op_name(kind)));
            s.push_str(&describe_histogram(h));
            s.push('\n');
        }
        s
    }
}

/// db_bench's name of an operation type in "Microseconds per ...".
pub fn op_name(kind: OpKind) -> &'static str {
    match kind {
        OpKind::Read => "read",
        OpKind::Write | OpKind::Insert => "write",
        OpKind::Update | OpKind::ReadModifyWrite => "update",
        OpKind::Delete => "delete",
        OpKind::Seek => "seek",
        OpKind::Scan => "scan",
        OpKind::MultiGet => "multiget",
        OpKind::Compact => "compact",
        OpKind::Flush => "flush",
        OpKind::WaitForCompaction => "waitforcompaction",
        OpKind::Stats => "stats",
    }
}

/// Microseconds at `q` of `h` (nanoseconds).
pub fn micros_at(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn describe_histogram(h: &Histogram<u64>) -> String {
    let us = |n: u64| n as f64 / 1000.0;
    let mut s = format!(
        "Count: {} Average: {:.4}  StdDev: {:.2}\n",
        h.len(),
        h.mean() / 1000.0,
        h.stdev() / 1000.0
    );
    s.push_str(&format!(
        "Min: {:.0}  Median: {:.4}  Max: {:.0}\n",
        us(h.min()),
        micros_at(h, 0.5),
        us(h.max())
    ));
    s.push_str(&format!(
        "Percentiles: P50: {:.2} P75: {:.2} P99: {:.2} P99.9: {:.2} P99.99: {:.2}\n",
        micros_at(h, 0.5),
        micros_at(h, 0.75),
        micros_at(h, 0.99),
        micros_at(h, 0.999),
        micros_at(h, 0.9999)
    ));
    s.push_str(&"-".repeat(54));
    s.push('\n');
    let total = h.len().max(1) as f64;
    let mut cumulative = 0u64;
    for (i, (lo, hi, count)) in buckets(h).into_iter().enumerate() {
        if count == 0 {
            continue;
        }
        cumulative += count;
        let pct = 100.0 * count as f64 / total;
        s.push_str(&format!(
            "{} {:>7}, {:>7} ] {:>8} {:>7.3}% {:>7.3}% {}\n",
            if i == 0 { '[' } else { '(' },
            lo,
            hi,
            count,
            pct,
            100.0 * cumulative as f64 / total,
            "#".repeat((pct / 5.0).round() as usize)
        ));
    }
    s
}

/// Upper bucket bounds in microseconds: 1..=10, then 16 steps per decade.
fn bucket_limits() -> Vec<u64> {
    const STEPS: [u64; 16] = [
        10, 12, 14, 16, 18, 20, 25, 30, 35, 40, 45, 50, 60, 70, 80, 90,
    ];
    let mut limits: Vec<u64> = (1..10).collect();
    let mut decade = 1u64;
    while decade <= MAX_NANOS / 1000 {
        limits.extend(STEPS.iter().map(|s| s * decade));
        decade *= 10;
    }
    limits
}

/// `(low, high, count)` per bucket, microseconds `(low, high]` (the first
/// `[0, 1]`), every sample in exactly one.
fn buckets(h: &Histogram<u64>) -> Vec<(u64, u64, u64)> {
    let limits = bucket_limits();
    let mut counts = vec![0u64; limits.len() + 1];
    for v in h.iter_recorded() {
        // A sample of n ns falls in the first bucket whose bound (µs) is at
        // least n / 1000 rounded up.
        let micros = h.lowest_equivalent(v.value_iterated_to()).div_ceil(1000);
        let i = limits.partition_point(|&l| l < micros);
        counts[i] += v.count_at_value();
    }
    let mut lo = 0;
    let mut out = Vec::with_capacity(counts.len());
    for (i, count) in counts.into_iter().enumerate() {
        let hi = limits.get(i).copied().unwrap_or(u64::MAX);
        out.push((lo, hi, count));
        lo = hi;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_has_db_bench_shape_and_buckets_hold_every_sample() {
        let mut book = LatencyBook::default();
        for us in [1u64, 2, 2, 3, 15, 120, 5000] {
            book.record(OpKind::Write, Duration::from_micros(us))
                .unwrap();
        }
        book.record(OpKind::Read, Duration::from_nanos(500))
            .unwrap();
        let text = book.describe();
        assert!(
            text.starts_with("Microseconds per read:\nCount: 1 Average: 0.5"),
            "{text}"
        );
        let write = text.split("Microseconds per write:\n").nth(1).unwrap();
        let lines: Vec<&str> = write.lines().collect();
        assert!(lines[0].starts_with("Count: 7 Average: "), "{write}");
        assert!(lines[1].starts_with("Min: 1  Median: "), "{write}");
        assert!(lines[2].starts_with("Percentiles: P50: "), "{write}");
        let rows: Vec<&str> = lines[4..]
            .iter()
            .take_while(|l| !l.is_empty())
            .copied()
            .collect();
        let counts: Vec<u64> = rows
            .iter()
            .map(|r| {
                r.split(']')
                    .nth(1)
                    .unwrap()
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        // 1 | 2 2 | 3 | 15 | 120 | 5000: six buckets, seven samples.
        assert_eq!(counts, vec![1, 2, 1, 1, 1, 1], "{write}");
        assert!(rows[0].starts_with("[       0,       1 ]"), "{}", rows[0]);
        assert!(rows.last().unwrap().contains("100.000%"), "{write}");

        let mut run = LatencyBook::default();
        run.merge(&book).unwrap();
        run.merge(&book).unwrap();
        let n: Vec<(OpKind, u64)> = run.kinds().map(|(k, h)| (k, h.len())).collect();
        assert_eq!(n, vec![(OpKind::Read, 2), (OpKind::Write, 14)]);
    }
}
