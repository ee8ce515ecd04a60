//! The study's plot: one point per strategy, write amplification across,
//! space amplification up, so the trade-off between strategies is visible at
//! once. Each strategy has its own colour and a legend row naming it with its
//! read amplification (labels beside the points would overlap when two
//! strategies land close together).

use crate::report::chart::{Axis, Chart, Mark, Series};

use super::workload::StrategyResult;

/// `lo..hi` widened by a twentieth of its span each way, so no point sits on
/// the frame.
fn padded(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let lo = values.clone().fold(f64::INFINITY, f64::min);
    let hi = values.fold(f64::NEG_INFINITY, f64::max);
    let pad = (hi - lo) / 20.0;
    (lo - pad, hi + pad)
}

/// A standalone SVG document.
pub fn tradeoff(title: &str, results: &[StrategyResult]) -> String {
    let (x_lo, x_hi) = padded(results.iter().map(|r| r.write_amplification));
    let (y_lo, y_hi) = padded(results.iter().map(|r| r.space_amplification));
    Chart {
        title: title.to_string(),
        x: Axis::linear("write amplification", x_lo, x_hi),
        y: Axis::linear("space amplification", y_lo, y_hi),
        series: results
            .iter()
            .map(|r| Series {
                name: format!("{} (read amp {:.1})", r.strategy, r.read_amplification),
                points: vec![(r.write_amplification, r.space_amplification)],
                mark: Mark::Points,
            })
            .collect(),
        legend: true,
    }
    .to_svg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::chart_reader::{assert_distinct_colours, overlapping_texts, text_boxes};
    use crate::report::{BackgroundErrors, OpKind};
    use crate::study::tree_watch::DeletePersistence;

    fn result(strategy: &str, write: f64, space: f64) -> StrategyResult {
        StrategyResult {
            strategy: strategy.to_string(),
            seconds: 1.0,
            ops_per_sec: 1.0,
            write_amplification: write,
            space_amplification: space,
            sst_bytes: 0,
            logical_bytes: 0,
            read_amplification: 3.0,
            sorted_runs_at_end: 0,
            p99_us: vec![(OpKind::Read, 1.0)],
            stall_seconds: 0.0,
            delete_persistence: DeletePersistence::default(),
            tombstones_at_end: 0,
            compactions: 0,
            latency: vec![],
            db_stats: crate::test_support::empty_stats(),
            background_errors: BackgroundErrors::default(),
        }
    }

    /// Strategies that land on nearly the same point (as leveled variants
    /// do) still get their own colour and a legend row that overlaps no
    /// other text.
    #[test]
    fn close_strategies_get_distinct_colours_and_no_overlapping_labels() {
        let results = [
            result("leveled", 8.1, 1.12),
            result("leveled:size_ratio=10", 8.15, 1.121),
            result("tiered", 3.2, 1.9),
            result("lazy-leveled:runs=4", 5.0, 1.4),
        ];
        let svg = tradeoff("write vs space", &results);
        assert_eq!(svg.matches("<circle").count(), results.len());
        assert_distinct_colours(&svg, results.len());
        assert_eq!(overlapping_texts(&svg), None);
        let texts: Vec<String> = text_boxes(&svg).into_iter().map(|b| b.text).collect();
        assert!(
            texts.iter().any(|t| t == "tiered (read amp 3.0)"),
            "{texts:?}"
        );
        // One strategy alone still gets an axis around it.
        let one = tradeoff("one", &results[..1]);
        assert_eq!(overlapping_texts(&one), None);
        assert!(one.contains("<circle"));
    }
}
