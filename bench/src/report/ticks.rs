//! Axis ticks on round values, for every plot: linear axes step by 1, 2 or
//! 5 × 10^k (0, 5k, 10k, 15k; 0, 10, 20, 30 s), logarithmic axes by whole
//! decades. An axis spans its first to its last tick, so the ticks always
//! bracket the data.

/// Fewest and most ticks a linear axis gets.
pub const MIN_TICKS: usize = 3;
pub const MAX_TICKS: usize = 10;

/// Ticks chosen for a linear axis: `values` run from `values[0]` to the last
/// in equal steps of `step`, a 1, 2 or 5 × 10^k.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearTicks {
    pub step: f64,
    pub values: Vec<f64>,
}

/// `lo..hi` with non-finite ends replaced and an empty span widened, so
/// every caller gets an axis to draw: `0..0` becomes `0..1`, a single other
/// value `v` becomes `v..v + |v|/10`.
fn usable_range(lo: f64, hi: f64) -> (f64, f64) {
    let lo = if lo.is_finite() { lo } else { 0.0 };
    let hi = if hi.is_finite() { hi } else { lo };
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    if hi - lo > 1e-9 * hi.abs().max(lo.abs()) {
        (lo, hi)
    } else if lo == 0.0 {
        (0.0, 1.0)
    } else {
        (lo, lo + lo.abs() * 0.1)
    }
}

/// The candidate steps 1, 2, 5 × 10^k in increasing order, from well below
/// `span / MAX_TICKS`.
fn candidate_steps(span: f64) -> impl Iterator<Item = f64> {
    let first_decade = (span / MAX_TICKS as f64).log10().floor() as i32 - 1;
    (first_decade..first_decade + 6).flat_map(|k| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k)))
}

/// Tick values `lo/step` rounded down to `hi/step` rounded up (a quotient
/// a rounding error away from a whole number counts as that number, so
/// 0.3 / 0.1 gives no extra tick).
fn ticks_with_step(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    const SLACK: f64 = 1e-9;
    let first = (lo / step + SLACK).floor() as i64;
    let last = (hi / step - SLACK).ceil() as i64;
    // Integer multiples keep values such as 0.3 exact in their label.
    (first..=last).map(|i| i as f64 * step).collect()
}

/// Ticks for a linear axis over the data range `lo..=hi`: the smallest
/// 1/2/5 × 10^k step that needs no more than [`MAX_TICKS`] ticks. Taking the
/// smallest such step gives at least [`MIN_TICKS`]: the next smaller step
/// (at most 2.5 times smaller) needed more than `MAX_TICKS`.
pub fn linear(lo: f64, hi: f64) -> LinearTicks {
    let (lo, hi) = usable_range(lo, hi);
    let span = hi - lo;
    for step in candidate_steps(span) {
        let values = ticks_with_step(lo, hi, step);
        if values.len() <= MAX_TICKS {
            return LinearTicks { step, values };
        }
    }
    // Unreachable for finite ranges (the candidates reach 10^5 × span /
    // MAX_TICKS); an axis with its two ends still beats no axis.
    LinearTicks {
        step: span,
        values: vec![lo, hi],
    }
}

/// Decade ticks 10^a ..= 10^b covering `lo..=hi` (both made positive), at
/// least one decade apart; when there are more than [`MAX_TICKS`] decades,
/// every second (or third, ...) decade.
pub fn log10(lo: f64, hi: f64) -> Vec<f64> {
    let tiny = 1e-12;
    let lo = if lo.is_finite() && lo > tiny { lo } else { 1.0 };
    let hi = if hi.is_finite() && hi > lo { hi } else { lo };
    let first = lo.log10().floor() as i32;
    let last = (hi.log10().ceil() as i32).max(first + 1);
    let decades = (last - first) as usize;
    let stride = decades.div_ceil(MAX_TICKS - 1).max(1) as i32;
    let last = first + (last - first + stride - 1) / stride * stride;
    (first..=last)
        .step_by(stride as usize)
        .map(|k| 10f64.powi(k))
        .collect()
}

/// Label of a linear tick `v` on an axis stepping by `step`: thousands as
/// `k`, millions as `M`, with just the decimals the step needs
/// (0, 2.5k, 5k; 0, 0.5, 1; 1.2M).
pub fn label(v: f64, step: f64) -> String {
    let largest = v.abs().max(step.abs());
    let (unit, suffix) = if largest >= 1e6 {
        (1e6, "M")
    } else if largest >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let decimals = (-(step / unit).log10().floor()).max(0.0) as usize;
    let text = format!("{:.*}", decimals, v / unit);
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    let text = if text == "-0" { "0".to_string() } else { text };
    if text == "0" {
        text
    } else {
        format!("{text}{suffix}")
    }
}

/// A latency given in microseconds as a short duration label: 100ns, 1µs,
/// 10ms, 1s (decade ticks need no decimals).
pub fn duration_label(us: f64) -> String {
    let (value, unit) = if us >= 1e6 {
        (us / 1e6, "s")
    } else if us >= 1e3 {
        (us / 1e3, "ms")
    } else if us >= 1.0 {
        (us, "µs")
    } else {
        (us * 1e3, "ns")
    };
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `v` is a whole multiple of `step` (up to rounding).
    fn is_multiple(v: f64, step: f64) -> bool {
        let m = v / step;
        (m - m.round()).abs() < 1e-6
    }

    /// `step` is 1, 2 or 5 × 10^k.
    fn is_125_step(step: f64) -> bool {
        let k = step.log10().floor();
        let mantissa = step / 10f64.powf(k);
        [1.0, 2.0, 5.0, 10.0]
            .iter()
            .any(|m| (mantissa - m).abs() < 1e-9)
    }

    const RANGES: [(f64, f64); 14] = [
        (0.0, 18_800.0),
        (0.0, 39.0),
        (0.0, 52.3),
        (0.0, 1.0),
        (0.0, 0.0034),
        (1.02, 1.31),
        (0.0, 1_234_567.0),
        (3.0, 3.0),
        (0.0, 0.0),
        (-7.5, 12.0),
        (99.0, 101.0),
        (0.0, 9.999),
        (1e-9, 3e-9),
        (12_345.0, 98_765.0),
    ];

    #[test]
    fn linear_ticks_are_round_cover_the_data_and_are_few() {
        for (lo, hi) in RANGES {
            let t = linear(lo, hi);
            let why = format!("{lo}..{hi}: {t:?}");
            assert!(is_125_step(t.step), "{why}");
            assert!(t.values.iter().all(|&v| is_multiple(v, t.step)), "{why}");
            assert!(t.values.len() >= MIN_TICKS, "{why}");
            assert!(t.values.len() <= MAX_TICKS, "{why}");
            let (first, last) = (t.values[0], t.values[t.values.len() - 1]);
            let slack = t.step * 1e-6;
            assert!(first <= lo + slack && last >= hi - slack, "{why}");
            for w in t.values.windows(2) {
                assert!((w[1] - w[0] - t.step).abs() < t.step * 1e-9, "{why}");
            }
        }
    }

    #[test]
    fn the_issues_odd_ticks_become_round_ones() {
        let t = linear(0.0, 18_800.0);
        let labels: Vec<String> = t.values.iter().map(|&v| label(v, t.step)).collect();
        assert_eq!(labels, ["0", "5k", "10k", "15k", "20k"]);
        let t = linear(0.0, 39.0);
        let labels: Vec<String> = t.values.iter().map(|&v| label(v, t.step)).collect();
        assert_eq!(labels, ["0", "5", "10", "15", "20", "25", "30", "35", "40"]);
        let t = linear(1.02, 1.31);
        assert_eq!(label(t.values[1], t.step), "1.05");
        assert_eq!(label(1_500_000.0, 500_000.0), "1.5M");
        assert_eq!(label(2_500.0, 500.0), "2.5k");
    }

    #[test]
    fn log_ticks_are_decades_covering_the_data() {
        let ranges = [
            (3.2, 870.0),
            (1.0, 10.0),
            (5.0, 6.0),
            (0.05, 2e6),
            (1e-3, 1e12),
            (0.0, 0.0),
            (f64::NAN, 5.0),
        ];
        for (lo, hi) in ranges {
            let t = log10(lo, hi);
            let why = format!("{lo}..{hi}: {t:?}");
            assert!(t.len() >= 2 && t.len() <= MAX_TICKS, "{why}");
            for v in &t {
                let k = v.log10();
                assert!((k - k.round()).abs() < 1e-9, "{why}");
            }
            if lo.is_finite() && lo > 0.0 {
                assert!(t[0] <= lo && t[t.len() - 1] >= hi, "{why}");
            }
        }
        assert_eq!(log10(3.2, 870.0), [1.0, 10.0, 100.0, 1000.0]);
    }

    #[test]
    fn durations_read_as_time() {
        assert_eq!(duration_label(0.1), "100ns");
        assert_eq!(duration_label(1.0), "1µs");
        assert_eq!(duration_label(100.0), "100µs");
        assert_eq!(duration_label(10_000.0), "10ms");
        assert_eq!(duration_label(1e6), "1s");
    }
}
