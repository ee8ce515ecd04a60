//! Results and how they leave the tool: a table on stdout, a JSON document
//! (`--json FILE`) and SVG plots (`--plots DIR`).

pub mod background;
pub mod chart;
pub(crate) mod chart_reader;
pub mod csa;
pub mod environment;
pub mod live;
pub mod offload;
pub mod phase_work;
pub mod recorder;
pub mod repeat;
pub mod svg;
pub mod ticks;

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use o3_compute::{Db, DbStats};
use serde::Serialize;

use crate::error::{BenchError, Result};
pub use background::BackgroundErrors;
pub use csa::ServiceSummary;
pub use environment::Environment;
pub use live::RunStatus;
pub use offload::OffloadRates;
pub use phase_work::PhaseWork;
pub use recorder::{OpKind, OpLatency, PhaseResult, ThreadRecorder};

/// One phase with the engine's statistics at its end.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    #[serde(flatten)]
    pub result: PhaseResult,
    /// Extra outcome, e.g. `(63212 of 100000 found)`.
    pub message: Option<String>,
    /// What the engine did during the phase.
    pub work: PhaseWork,
    /// The engine's statistics at the phase's end: totals since the
    /// database was opened.
    pub db_stats: DbStats,
    /// Rates derived from `db_stats.offload`.
    pub offload_rates: OffloadRates,
    /// Figures derived from `db_stats.placement`; `None` without a
    /// compaction service.
    pub service: Option<ServiceSummary>,
    /// Failed background jobs by the end of the phase.
    pub background_errors: BackgroundErrors,
}

impl PhaseReport {
    /// A phase's report with the engine's statistics `db_stats` of `db` at
    /// its end.
    /// A phase of `db` that ended now, whose engine statistics at its start
    /// were `before`. The phase joins the run's report ([`live`]) here.
    pub fn new(result: PhaseResult, message: Option<String>, db: &Db, before: &DbStats) -> Self {
        let db_stats = db.stats();
        let report = PhaseReport {
            work: PhaseWork::between(before, &db_stats),
            result,
            message,
            background_errors: BackgroundErrors::of(db, &db_stats),
            offload_rates: OffloadRates::of(&db_stats.offload),
            service: ServiceSummary::of(&db_stats.placement),
            db_stats,
        };
        live::phase_finished(&report);
        report
    }
}

/// What a runner measured: its phases (it stops after the first one at whose
/// end background work had failed) and the failed background jobs just
/// before the database was closed.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub phases: Vec<PhaseReport>,
    pub background_errors: BackgroundErrors,
    /// A phase that failed because background work had stopped the
    /// database (its measurements are lost; it is not in `phases`).
    pub cut_short: Option<String>,
}

impl RunOutcome {
    /// The run ended after `phases`: close `db`, recording its failed
    /// background jobs just before.
    pub fn close(db: Db, phases: Vec<PhaseReport>) -> Result<RunOutcome> {
        Ok(RunOutcome {
            phases,
            background_errors: BackgroundErrors::before_closing(db)?,
            cut_short: None,
        })
    }

    /// Phase `phase` failed with `error`. When background work had failed
    /// too (a failed flush stops the database, so the phase's writes fail),
    /// the run ends as that failure, with the phases before; otherwise
    /// `error` stands.
    pub fn cut_short(
        db: Db,
        phases: Vec<PhaseReport>,
        phase: &str,
        error: BenchError,
    ) -> Result<RunOutcome> {
        let background_errors = BackgroundErrors::of(&db, &db.stats());
        if !background_errors.failed() {
            return Err(error);
        }
        tracing::error!("{phase} failed: {error}");
        if let Err(e) = db.close() {
            tracing::error!("closing the database: {e}");
        }
        Ok(RunOutcome {
            phases,
            background_errors,
            cut_short: Some(phase.to_string()),
        })
    }

    /// Fail if background work failed: named after the first phase that saw
    /// it, else the phase it cut short, else the run as a whole.
    pub fn check(&self) -> Result<()> {
        for p in &self.phases {
            p.background_errors.check(&p.result.name)?;
        }
        let when = self.cut_short.as_deref().unwrap_or("the run");
        self.background_errors.check(when)
    }
}

/// Everything one invocation measured, with its exact configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub command_line: Vec<String>,
    pub environment: Environment,
    /// The effective configuration (defaults, config file and flags merged).
    pub configuration: serde_json::Value,
    /// Whether every phase ran; the file is rewritten as phases end.
    pub status: RunStatus,
    /// What stopped a failed run.
    pub error: Option<String>,
    pub phases: Vec<PhaseReport>,
    /// Failed background jobs at the end of the run; any fails the run.
    pub background_errors: BackgroundErrors,
    /// The phase that failed because background work had stopped the
    /// database, if one did.
    pub cut_short: Option<String>,
    /// What a comparing subcommand concluded from its phases
    /// (`offload-compare`'s ratios, `offload-lookup`'s table); null for the
    /// others.
    pub summary: serde_json::Value,
    /// With `--repeat N`: each phase's spread over the N runs.
    pub repeats: Vec<RepeatSummary>,
}

/// The lowest, middle and highest of one figure over repeated runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none. The median of
    /// an even count is the mean of the two middle values.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => v[n / 2],
            _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Some(Spread {
            min: v[0],
            median,
            max: v[n - 1],
        })
    }
}

/// One phase run `--repeat` times.
#[derive(Debug, Clone, Serialize)]
pub struct RepeatSummary {
    pub phase: String,
    pub runs: usize,
    pub ops_per_sec: Spread,
    /// Per operation type: the spread of its 99th percentile latency (us).
    pub p99_us: Vec<(OpKind, Spread)>,
}

impl Report {
    /// Write the JSON document.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| BenchError::InvalidArgument(format!("encoding the JSON report: {e}")))?;
        std::fs::write(path, text + "\n").map_err(|e| BenchError::io(path, e))
    }

    /// Write `<phase>-timeline.svg` and `<phase>-latency-cdf.svg` per phase
    /// into `dir` (created if missing); returns the files written.
    pub fn write_plots(&self, dir: &Path) -> Result<Vec<std::path::PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
        let mut written = Vec::new();
        for (i, p) in self.phases.iter().enumerate() {
            let stem: String = p
                .result
                .name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            let stem = format!("{i:02}-{stem}");
            let files = [
                (
                    dir.join(format!("{stem}-timeline.svg")),
                    svg::timeline(
                        &format!("{}: throughput", p.result.name),
                        &p.result.timeline_buckets(),
                    ),
                ),
                (
                    dir.join(format!("{stem}-latency-cdf.svg")),
                    svg::latency_percentiles(
                        &format!("{}: latency percentiles", p.result.name),
                        &p.result.latency,
                    ),
                ),
            ];
            for (path, text) in files {
                std::fs::write(&path, text).map_err(|e| BenchError::io(&path, e))?;
                written.push(path);
            }
        }
        Ok(written)
    }
}

/// A progress bar for a phase of `total` operations (a spinner when the
/// phase runs for a duration), or a hidden one when `show` is false (stdout
/// is not a terminal).
pub fn progress_bar(show: bool, total: Option<u64>, name: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let (bar, template) = match total {
        Some(n) => (
            ProgressBar::new(n),
            "{msg:<12} {bar:40} {pos}/{len} ({per_sec}, eta {eta})",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{msg:<12} {spinner} {pos} ({per_sec})",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.with_message(name.to_string())
}

impl PhaseReport {
    /// The engine's part of a phase's report on stdout: its work in the
    /// phase, then its totals since the database was opened.
    pub fn describe_engine(&self) -> String {
        format!(
            "{}  engine totals since the database was opened:\n{}",
            self.work.describe(),
            describe_db_stats(&self.db_stats)
        )
    }
}

/// Engine statistics for stdout, indented under a phase's "engine totals"
/// heading (the offload line among them when offloading did anything).
pub fn describe_db_stats(stats: &DbStats) -> String {
    let mut s = String::new();
    for line in stats.to_string().lines() {
        s.push_str("    ");
        s.push_str(line);
        s.push('\n');
    }
    let lookups = stats.block_cache_hits + stats.block_cache_misses;
    if lookups > 0 {
        s.push_str(&format!(
            "    block cache: {} hits, {} misses ({:.1}% hit rate; {} missed blocks not admitted), {} bytes used\n",
            stats.block_cache_hits,
            stats.block_cache_misses,
            100.0 * stats.block_cache_hits as f64 / lookups as f64,
            stats.block_cache_declined,
            stats.block_cache_usage
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(name: &str, background_errors: BackgroundErrors) -> PhaseReport {
        PhaseReport {
            result: PhaseResult {
                name: name.into(),
                threads: 1,
                seconds: 1.0,
                ops: 1,
                ops_per_sec: 1.0,
                mb_per_sec: 0.0,
                latency: vec![],
                timeline: vec![],
                timeline_ops_per_sec: vec![],
            },
            message: None,
            work: Default::default(),
            db_stats: crate::test_support::empty_stats(),
            offload_rates: OffloadRates::default(),
            service: None,
            background_errors,
        }
    }

    /// The run fails naming the first phase that saw failed background
    /// work, or the run when only its end did; the JSON report records the
    /// count and the message per phase and for the run.
    #[test]
    fn spread_is_min_median_max_whatever_the_order() {
        assert_eq!(Spread::of(&[]), None);
        let odd = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((odd.min, odd.median, odd.max), (1.0, 2.0, 3.0));
        let even = Spread::of(&[10.0, 4.0, 1.0, 6.0]).unwrap();
        assert_eq!((even.min, even.median, even.max), (1.0, 5.0, 10.0));
    }

    #[test]
    fn failed_background_work_fails_the_run_and_is_reported() {
        let retried = BackgroundErrors {
            count: 2,
            message: None,
        };
        let stopped = BackgroundErrors {
            count: 3,
            message: Some("flush failed: disk full".into()),
        };
        let clean = RunOutcome {
            phases: vec![phase("fillrandom", BackgroundErrors::default())],
            background_errors: BackgroundErrors::default(),
            cut_short: None,
        };
        assert!(clean.check().is_ok());
        let at_phase = RunOutcome {
            phases: vec![
                phase("fillrandom", BackgroundErrors::default()),
                phase("overwrite", retried.clone()),
            ],
            background_errors: stopped.clone(),
            cut_short: None,
        };
        let e = at_phase.check().unwrap_err().to_string();
        assert!(e.contains("overwrite") && e.contains('2'), "{e}");
        let at_end = RunOutcome {
            phases: vec![phase("fillrandom", BackgroundErrors::default())],
            background_errors: stopped.clone(),
            cut_short: None,
        };
        let e = at_end.check().unwrap_err().to_string();
        assert!(e.contains("the run") && e.contains("disk full"), "{e}");
        let cut = RunOutcome {
            cut_short: Some("overwrite".into()),
            ..at_end
        };
        let e = cut.check().unwrap_err().to_string();
        assert!(e.contains("overwrite") && e.contains("disk full"), "{e}");

        let report = Report {
            command_line: vec![],
            environment: Environment::detect(),
            configuration: serde_json::Value::Null,
            status: RunStatus::Complete,
            error: None,
            phases: at_phase.phases,
            background_errors: stopped,
            cut_short: None,
            summary: serde_json::Value::Null,
            repeats: Vec::new(),
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["background_errors"]["count"], 3);
        assert_eq!(
            json["background_errors"]["message"],
            "flush failed: disk full"
        );
        assert_eq!(json["phases"][1]["background_errors"]["count"], 2);
        assert!(json["phases"][1]["background_errors"]["message"].is_null());
    }

    /// A phase that fails while background work has stopped the database
    /// ends the run as that failure, so the report is still written; any
    /// other phase error stands as it is.
    #[test]
    fn a_phase_failing_after_a_failed_flush_is_reported_as_that_failure() {
        let before = vec![phase("fillseq", BackgroundErrors::default())];
        let put_error = || BenchError::InvalidArgument("fillrandom: put: poisoned".into());
        let db = crate::test_support::db_with_failed_flush();
        let outcome = RunOutcome::cut_short(db, before.clone(), "fillrandom", put_error()).unwrap();
        assert_eq!(outcome.phases.len(), 1);
        assert_eq!(outcome.cut_short.as_deref(), Some("fillrandom"));
        assert_eq!(outcome.background_errors.count, 1);
        let e = outcome.check().unwrap_err().to_string();
        assert!(e.contains("fillrandom") && e.contains("background"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let healthy = Db::open(dir.path(), o3_compute::DbOptions::default()).unwrap();
        let e = RunOutcome::cut_short(healthy, before, "fillrandom", put_error()).unwrap_err();
        assert_eq!(e.to_string(), put_error().to_string());
    }
}
