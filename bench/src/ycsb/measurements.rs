//! YCSB's own measurements and their text form, so that scripts written for
//! YCSB's output read o3-bench's.
//!
//! As in YCSB's `DBWrapper` with `measurementtype=hdrhistogram`: latencies
//! are whole microseconds from an operation's actual start (not its
//! scheduled start under `-target`) to its end; an operation that returned
//! OK is measured under its name (`READ`), a failed one under `READ-FAILED`;
//! return codes are counted under the operation's name (`[READ],
//! Return=OK, n`, `[READ], Return=NOT_FOUND, n`). The exported lines are
//! YCSB's `TextMeasurementsExporter` lines, `[NAME], metric, value`, with
//! YCSB's default percentiles (95 and 99) as integers.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::error::{BenchError, Result};
use crate::report::OpKind;

/// Highest latency tracked, in microseconds (one hour); longer ones are
/// recorded as this.
const MAX_TRACKED_MICROS: u64 = 3_600_000_000;

/// The YCSB operations, in the order their sections are printed.
const OPS: [OpKind; 5] = [
    OpKind::Insert,
    OpKind::Read,
    OpKind::Update,
    OpKind::Scan,
    OpKind::ReadModifyWrite,
];

/// What an operation returned (YCSB's `Status` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// A read of a key the database does not hold.
    NotFound,
}

impl Outcome {
    const ALL: [Outcome; 2] = [Outcome::Ok, Outcome::NotFound];

    fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "OK",
            Outcome::NotFound => "NOT_FOUND",
        }
    }
}

/// One operation's histograms (OK and failed) and return-code counts.
#[derive(Debug, Clone, Default)]
struct OpMeasurement {
    ok: Option<Histogram<u64>>,
    failed: Option<Histogram<u64>>,
    returns: [u64; Outcome::ALL.len()],
}

/// Measurements of one thread, one status interval or one whole phase.
#[derive(Debug, Clone)]
pub struct Measurements {
    ops: Vec<OpMeasurement>,
}

impl Default for Measurements {
    fn default() -> Self {
        Measurements {
            ops: OPS.iter().map(|_| OpMeasurement::default()).collect(),
        }
    }
}

fn new_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_TRACKED_MICROS, 3)
        .map_err(|e| BenchError::InvalidArgument(format!("latency histogram: {e}")))
}

fn slot(op: OpKind) -> usize {
    OPS.iter().position(|&o| o == op).unwrap_or(0)
}

impl Measurements {
    /// Record one operation that took `latency` and returned `outcome`.
    pub fn measure(&mut self, op: OpKind, outcome: Outcome, latency: Duration) -> Result<()> {
        let m = &mut self.ops[slot(op)];
        let h = if outcome == Outcome::Ok {
            &mut m.ok
        } else {
            &mut m.failed
        };
        let h = match h {
            Some(h) => h,
            None => h.insert(new_histogram()?),
        };
        h.saturating_record((latency.as_micros() as u64).min(MAX_TRACKED_MICROS));
        m.returns[outcome as usize] += 1;
        Ok(())
    }

    /// Add `other` into these measurements.
    pub fn add(&mut self, other: &Measurements) -> Result<()> {
        for (m, o) in self.ops.iter_mut().zip(&other.ops) {
            for (mine, theirs) in [(&mut m.ok, &o.ok), (&mut m.failed, &o.failed)] {
                let Some(theirs) = theirs else { continue };
                match mine {
                    Some(h) => h.add(theirs).map_err(|e| {
                        BenchError::InvalidArgument(format!("merging histograms: {e}"))
                    })?,
                    None => *mine = Some(theirs.clone()),
                }
            }
            for (r, t) in m.returns.iter_mut().zip(&o.returns) {
                *r += t;
            }
        }
        Ok(())
    }

    /// Operations measured, OK or not.
    pub fn operations(&self) -> u64 {
        self.ops.iter().map(|m| m.returns.iter().sum::<u64>()).sum()
    }

    /// Measured histograms with YCSB's names (`READ`, `READ-FAILED`), in
    /// print order.
    fn named(&self) -> impl Iterator<Item = (String, &Histogram<u64>)> {
        OPS.iter().zip(&self.ops).flat_map(|(op, m)| {
            let ok = m.ok.as_ref().map(|h| (op.name().to_string(), h));
            let failed = m
                .failed
                .as_ref()
                .map(|h| (format!("{}-FAILED", op.name()), h));
            ok.into_iter().chain(failed)
        })
    }

    /// YCSB's per-operation export lines: for each measured name
    /// `Operations`, `AverageLatency(us)`, `MinLatency(us)`,
    /// `MaxLatency(us)`, `95thPercentileLatency(us)`,
    /// `99thPercentileLatency(us)`, then the operation's `Return=` counts.
    pub fn export(&self) -> String {
        let mut out = String::new();
        for (op, m) in OPS.iter().zip(&self.ops) {
            let name = op.name();
            if m.returns.iter().all(|&n| n == 0) {
                continue;
            }
            // Only failures: YCSB still prints the name's section, with no
            // OK operations, and the return codes.
            match &m.ok {
                Some(h) => export_histogram(&mut out, name, h),
                None => {
                    let _ = writeln!(out, "[{name}], Operations, 0");
                }
            }
            for o in Outcome::ALL {
                let n = m.returns[o as usize];
                if n > 0 {
                    let _ = writeln!(out, "[{name}], Return={}, {n}", o.name());
                }
            }
            if let Some(h) = &m.failed {
                export_histogram(&mut out, &format!("{name}-FAILED"), h);
            }
        }
        out
    }

    /// YCSB's status-line summary of an interval:
    /// `[READ: Count=.., Max=.., Min=.., Avg=.., 90=.., 99=.., 99.9=.., 99.99=..] `
    /// per measured name.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for (name, h) in self.named() {
            let q = |p: f64| h.value_at_quantile(p / 100.0);
            let _ = write!(
                out,
                "[{name}: Count={}, Max={}, Min={}, Avg={}, 90={}, 99={}, 99.9={}, 99.99={}] ",
                h.len(),
                h.max(),
                h.min(),
                two_decimals(h.mean()),
                q(90.0),
                q(99.0),
                q(99.9),
                q(99.99)
            );
        }
        out
    }
}

/// One histogram's lines under `[section]`.
fn export_histogram(out: &mut String, section: &str, h: &Histogram<u64>) {
    let _ = writeln!(out, "[{section}], Operations, {}", h.len());
    let _ = writeln!(out, "[{section}], AverageLatency(us), {:?}", h.mean());
    let _ = writeln!(out, "[{section}], MinLatency(us), {}", h.min());
    let _ = writeln!(out, "[{section}], MaxLatency(us), {}", h.max());
    for p in [95, 99] {
        let v = h.value_at_quantile(f64::from(p) / 100.0);
        let _ = writeln!(out, "[{section}], {p}thPercentileLatency(us), {v}");
    }
}

/// Java's `DecimalFormat("#.##")`: at most two decimals, no trailing zeros.
pub fn two_decimals(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn ok_and_failed_reads_get_their_sections_and_return_codes() {
        let mut m = Measurements::default();
        for l in [10, 20, 30] {
            m.measure(OpKind::Read, Outcome::Ok, us(l)).unwrap();
        }
        m.measure(OpKind::Read, Outcome::NotFound, us(5)).unwrap();
        m.measure(OpKind::Update, Outcome::Ok, us(7)).unwrap();
        let text = m.export();
        for line in [
            "[READ], Operations, 3",
            "[READ], AverageLatency(us), 20.0",
            "[READ], MinLatency(us), 10",
            "[READ], MaxLatency(us), 30",
            "[READ], Return=OK, 3",
            "[READ], Return=NOT_FOUND, 1",
            "[READ-FAILED], Operations, 1",
            "[UPDATE], Operations, 1",
            "[UPDATE], 95thPercentileLatency(us), 7",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        assert_eq!(m.operations(), 5);
        let mut only_failed = Measurements::default();
        only_failed
            .measure(OpKind::Read, Outcome::NotFound, us(5))
            .unwrap();
        let text = only_failed.export();
        assert!(
            text.starts_with(
                "[READ], Operations, 0\n[READ], Return=NOT_FOUND, 1\n[READ-FAILED], Operations, 1\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn added_measurements_sum_and_the_summary_names_each_section() {
        let mut a = Measurements::default();
        let mut b = Measurements::default();
        a.measure(OpKind::Read, Outcome::Ok, us(100)).unwrap();
        b.measure(OpKind::Read, Outcome::Ok, us(300)).unwrap();
        b.measure(OpKind::Insert, Outcome::Ok, us(3)).unwrap();
        a.add(&b).unwrap();
        assert_eq!(a.operations(), 3);
        let s = a.summary();
        assert!(
            s.starts_with("[INSERT: Count=1, Max=3, Min=3, Avg=3, 90=3"),
            "{s}"
        );
        assert!(
            s.contains("[READ: Count=2, Max=300, Min=100, Avg=200, "),
            "{s}"
        );
        assert_eq!(Measurements::default().summary(), "");
    }

    #[test]
    fn two_decimals_matches_java_decimal_format() {
        assert_eq!(two_decimals(12.0), "12");
        assert_eq!(two_decimals(12.5), "12.5");
        assert_eq!(two_decimals(12.345_6), "12.35");
        assert_eq!(two_decimals(0.0), "0");
    }
}
