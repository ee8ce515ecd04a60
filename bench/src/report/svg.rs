//! The two plots of a phase, as standalone SVG documents drawn by
//! [`super::chart`]: a throughput timeline (operations per second over the
//! phase, each second as a step of its real length) and latency percentiles
//! (latency on a logarithmic axis against percentiles on a "nines" axis,
//! p50 to p99.99, one line per operation type), the form latency papers use
//! because a linear CDF hides the tail.

use super::chart::{Axis, Chart, Mark, Series, Tick};
use super::recorder::{OpLatency, RateBucket};
use super::ticks;

/// Operations per second over the phase, from [`RateBucket`]s (see
/// `PhaseResult::timeline_buckets`): a step per bucket across its real
/// length, so a short last second is drawn short, at its true rate.
pub fn timeline(title: &str, buckets: &[RateBucket]) -> String {
    let end = buckets.last().map_or(0.0, |b| b.end);
    let top = buckets.iter().map(|b| b.ops_per_sec).fold(0.0, f64::max);
    let points = buckets
        .iter()
        .flat_map(|b| [(b.start, b.ops_per_sec), (b.end, b.ops_per_sec)])
        .collect();
    Chart {
        title: title.to_string(),
        x: Axis::linear("elapsed seconds", 0.0, end),
        y: Axis::linear("operations per second", 0.0, top),
        series: vec![Series {
            name: "all operations".to_string(),
            points,
            mark: Mark::Line,
        }],
        legend: false,
    }
    .to_svg()
}

/// How far quantile `q` is into the tail, in nines: -log10(1 - q), so p90
/// is 1, p99 is 2, p99.9 is 3.
fn nines(q: f64) -> f64 {
    -(1.0 - q).log10()
}

/// The percentile `k` nines deep: p90, p99, p99.9, ...
fn nines_label(k: usize) -> String {
    match k {
        1 => "p90".to_string(),
        _ => format!("p99{}{}", if k > 2 { "." } else { "" }, "9".repeat(k - 2)),
    }
}

/// Deepest percentile `count` samples support: the largest of them sits at
/// 1 - 1/count, log10(count) nines (never less than p50).
fn deepest_nines(count: u64) -> f64 {
    (count as f64).log10().max(nines(0.5))
}

/// Percentile ticks p50, p90, p99, ... up to `top` nines.
fn percentile_ticks(top: f64) -> Vec<Tick> {
    let mut t = vec![Tick {
        at: nines(0.5),
        label: "p50".to_string(),
    }];
    t.extend(
        (1..=9)
            .take_while(|&k| k as f64 <= top + 1e-9)
            .map(|k| Tick {
                at: k as f64,
                label: nines_label(k),
            }),
    );
    t
}

/// One operation type's latency distribution as (µs, nines) points; the
/// quantile is held below 1 so the largest sample sits at its count's
/// deepest percentile rather than at infinity.
fn percentile_points(op: &OpLatency) -> Vec<(f64, f64)> {
    let deepest = 1.0 - 1.0 / op.count.max(1) as f64;
    op.cdf
        .iter()
        .map(|&(us, q)| (us, nines(q.min(deepest))))
        .collect()
}

/// Latency per percentile, one line per operation type.
pub fn latency_percentiles(title: &str, ops: &[OpLatency]) -> String {
    let latencies = ops.iter().flat_map(|o| o.cdf.iter().map(|p| p.0));
    let lo = latencies.clone().fold(f64::INFINITY, f64::min);
    let hi = latencies.fold(0.0, f64::max);
    let top = ops
        .iter()
        .map(|o| deepest_nines(o.count))
        .fold(nines(0.5), f64::max);
    Chart {
        title: title.to_string(),
        x: Axis::log10("latency (log scale)", lo, hi, ticks::duration_label),
        y: Axis::custom("percentile", 0.0, top, percentile_ticks(top)),
        series: ops
            .iter()
            .map(|o| Series {
                name: o.op.name().to_string(),
                points: percentile_points(o),
                mark: Mark::Line,
            })
            .collect(),
        legend: true,
    }
    .to_svg()
}

#[cfg(test)]
mod tests {
    use super::super::chart_reader::*;
    use super::super::recorder::{OpKind, timeline_rates};
    use super::*;

    fn texts(svg: &str) -> Vec<String> {
        text_boxes(svg).into_iter().map(|b| b.text).collect()
    }

    /// A latency summary with `count` samples spread as `cdf`.
    fn op(kind: OpKind, count: u64, cdf: Vec<(f64, f64)>) -> OpLatency {
        OpLatency {
            op: kind,
            count,
            mean_us: 0.0,
            p50_us: 0.0,
            p99_us: 0.0,
            p999_us: 0.0,
            max_us: 0.0,
            cdf,
        }
    }

    #[test]
    fn the_timeline_has_round_ticks_and_a_short_last_step() {
        let buckets = timeline_rates(&[18_000, 18_800, 9_000], 2.5);
        let svg = timeline("fill <random>", &buckets);
        assert!(svg.contains("fill &lt;random&gt;"));
        let t = texts(&svg);
        for label in ["0", "5k", "10k", "15k", "20k", "0.5", "2.5"] {
            assert!(t.iter().any(|x| x == label), "{label} in {t:?}");
        }
        assert!(!t.iter().any(|x| x == "18.8k"), "{t:?}");
        // The last step ends where the phase ended, at the same height as
        // the 18000 ops/s of the first second: two points at y of 18k.
        let line = elements(&svg, "polyline");
        assert_eq!(line.len(), 1);
        let points: Vec<&str> = line[0]
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split(' ')
            .collect();
        assert_eq!(points.len(), 6);
        let y = |p: &str| {
            p.split(',')
                .nth(1)
                .unwrap()
                .trim_end_matches("\"/>")
                .to_string()
        };
        assert_eq!(y(points[0]), y(points[5]));
        assert_eq!(overlapping_texts(&svg), None);
        assert!(timeline("t", &[]).contains("</svg>"));
    }

    #[test]
    fn latency_has_a_nines_axis_a_legend_and_distinct_colours() {
        let cdf = vec![
            (3.0, 0.5),
            (9.0, 0.9),
            (40.0, 0.99),
            (300.0, 0.999),
            (2e3, 1.0),
        ];
        let ops = [
            op(OpKind::Read, 10_000, cdf.clone()),
            op(
                OpKind::Update,
                10_000,
                cdf.iter().map(|&(us, q)| (us * 2.0, q)).collect(),
            ),
            op(OpKind::Scan, 100, cdf),
        ];
        let svg = latency_percentiles("latency", &ops);
        let t = texts(&svg);
        for label in [
            "p50", "p90", "p99", "p99.9", "p99.99", "1µs", "10µs", "1ms", "10ms",
        ] {
            assert!(t.iter().any(|x| x == label), "{label} in {t:?}");
        }
        // 10000 samples support p99.99 and no deeper.
        assert!(!t.iter().any(|x| x == "p99.999"), "{t:?}");
        for name in ["READ", "UPDATE", "SCAN"] {
            assert!(t.iter().any(|x| x == name), "legend names {name}");
        }
        assert_distinct_colours(&svg, 3);
        assert_eq!(overlapping_texts(&svg), None);
        assert!(latency_percentiles("c", &[]).contains("</svg>"));
    }

    #[test]
    fn few_samples_stop_the_axis_early_and_the_largest_sits_on_top() {
        assert_eq!(nines_label(1), "p90");
        assert_eq!(nines_label(2), "p99");
        assert_eq!(nines_label(4), "p99.99");
        let ticks: Vec<String> = percentile_ticks(deepest_nines(200))
            .into_iter()
            .map(|t| t.label)
            .collect();
        assert_eq!(ticks, ["p50", "p90", "p99"]);
        let points = percentile_points(&op(OpKind::Read, 100, vec![(1.0, 0.5), (5.0, 1.0)]));
        assert!((points[1].1 - 2.0).abs() < 1e-9, "{points:?}");
        assert!((points[0].1 - nines(0.5)).abs() < 1e-9);
    }
}
