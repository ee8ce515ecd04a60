//! Results and how they leave the tool: a table on stdout, a JSON document
//! (`--json FILE`) and SVG plots (`--plots DIR`).

pub mod background;
pub mod environment;
pub mod recorder;
pub mod svg;

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use o3_compute::DbStats;
use serde::Serialize;

use crate::error::{BenchError, Result};
pub use background::BackgroundErrors;
pub use environment::Environment;
pub use recorder::{OpKind, OpLatency, PhaseResult, ThreadRecorder};

/// One phase with the engine's statistics at its end.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    #[serde(flatten)]
    pub result: PhaseResult,
    /// Extra outcome, e.g. `(63212 of 100000 found)`.
    pub message: Option<String>,
    pub db_stats: DbStats,
    /// Failed background jobs by the end of the phase.
    pub background_errors: BackgroundErrors,
}

/// What a runner measured: its phases (it stops after the first one at whose
/// end background work had failed) and the failed background jobs just
/// before the database was closed.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub phases: Vec<PhaseReport>,
    pub background_errors: BackgroundErrors,
}

impl RunOutcome {
    /// Fail if background work failed: named after the first phase that saw
    /// it, else after the run as a whole.
    pub fn check(&self) -> Result<()> {
        for p in &self.phases {
            p.background_errors.check(&p.result.name)?;
        }
        self.background_errors.check("the run")
    }
}

/// Everything one invocation measured, with its exact configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub command_line: Vec<String>,
    pub environment: Environment,
    /// The effective configuration (defaults, config file and flags merged).
    pub configuration: serde_json::Value,
    pub phases: Vec<PhaseReport>,
    /// Failed background jobs at the end of the run; any fails the run.
    pub background_errors: BackgroundErrors,
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
                        &p.result.timeline,
                    ),
                ),
                (
                    dir.join(format!("{stem}-latency-cdf.svg")),
                    svg::latency_cdf(
                        &format!("{}: latency CDF", p.result.name),
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

/// Engine statistics for stdout, indented under a phase.
pub fn describe_db_stats(stats: &DbStats) -> String {
    let mut s = String::new();
    for line in stats.to_string().lines() {
        s.push_str("  ");
        s.push_str(line);
        s.push('\n');
    }
    let lookups = stats.block_cache_hits + stats.block_cache_misses;
    if lookups > 0 {
        s.push_str(&format!(
            "  block cache: {} hits, {} misses ({:.1}% hit rate; {} missed blocks not admitted), {} bytes used\n",
            stats.block_cache_hits,
            stats.block_cache_misses,
            100.0 * stats.block_cache_hits as f64 / lookups as f64,
            stats.block_cache_declined,
            stats.block_cache_usage
        ));
    }
    s
}
