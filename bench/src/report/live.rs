//! The report of a run in progress. Each phase joins it as it ends and, with
//! `--json`, the file is rewritten then, so a run stopped by Ctrl-C, SIGTERM
//! or an error keeps every phase that finished. The file's `status` says
//! which: `running`, `complete`, `interrupted` or `failed`.
//!
//! One run per process: [`begin`] installs it, phases are added from
//! [`super::PhaseReport::new`], and [`finish`] ends it.
//! Without [`begin`] (library use, tests) nothing is recorded.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use super::{BackgroundErrors, Environment, PhaseReport, Report};
use crate::error::{BenchError, Result};

/// How far a run got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Phases are still running; the report holds the finished ones.
    Running,
    Complete,
    /// Stopped by a signal; the phase it cut is not in the report.
    Interrupted,
    /// Stopped by an error (in the report's `error`).
    Failed,
}

struct Live {
    report: Report,
    json: Option<PathBuf>,
}

static LIVE: Mutex<Option<Live>> = Mutex::new(None);

fn with_live<T>(f: impl FnOnce(&mut Option<Live>) -> T) -> T {
    let mut guard = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut guard)
}

/// Check, before anything runs, that the report and plots can be written
/// where asked: a run must not end by losing its results to a typo. The
/// JSON file's directory must exist and take the file (an existing file is
/// left as it is until the report replaces it); the plot directory is
/// created if missing and must take a file.
pub fn check_outputs(json: Option<&Path>, plots: Option<&Path>) -> Result<()> {
    if let Some(path) = json {
        let existed = path.exists();
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| BenchError::io(path, e))?;
        if !existed {
            std::fs::remove_file(path).map_err(|e| BenchError::io(path, e))?;
        }
    }
    if let Some(dir) = plots {
        std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
        let probe = dir.join(".o3-bench-write-check");
        std::fs::write(&probe, b"").map_err(|e| BenchError::io(dir, e))?;
        std::fs::remove_file(&probe).map_err(|e| BenchError::io(&probe, e))?;
    }
    Ok(())
}

/// Start recording a run described by `environment` and `configuration`,
/// rewriting `json` as phases end. Also makes Ctrl-C and SIGTERM save and
/// print the finished phases before the process exits (status 130).
pub fn begin(environment: &Environment, configuration: &serde_json::Value, json: Option<&Path>) {
    let report = Report {
        command_line: std::env::args().collect(),
        environment: environment.clone(),
        configuration: configuration.clone(),
        status: RunStatus::Running,
        error: None,
        phases: Vec::new(),
        background_errors: BackgroundErrors::default(),
        cut_short: None,
        summary: serde_json::Value::Null,
        repeats: Vec::new(),
    };
    with_live(|live| {
        *live = Some(Live {
            report,
            json: json.map(Path::to_path_buf),
        })
    });
    // A second run in one process keeps the handler the first installed.
    if let Err(e) = ctrlc::set_handler(interrupted)
        && !matches!(e, ctrlc::Error::MultipleHandlers)
    {
        tracing::warn!("cannot catch Ctrl-C; an interrupted run loses its report: {e}");
    }
}

/// A phase ended: add it and rewrite the JSON file.
pub(crate) fn phase_finished(phase: &PhaseReport) {
    with_live(|live| {
        if let Some(live) = live {
            live.report.phases.push(phase.clone());
            save(live);
        }
    });
}

/// The run stopped with `error`: record it with the phases that finished.
pub fn failed(error: &BenchError) {
    with_live(|live| {
        if let Some(live) = live.as_mut() {
            live.report.status = RunStatus::Failed;
            live.report.error = Some(error.to_string());
            save(live);
        }
    });
}

/// Stop recording (the run's final report replaces the recorded one).
pub fn finish() {
    with_live(|live| *live = None);
}

/// The signal handler: print what finished, save it, exit 130.
fn interrupted() {
    let lines = with_live(|live| {
        let Some(live) = live.as_mut() else {
            return vec!["interrupted before any phase began".to_string()];
        };
        live.report.status = RunStatus::Interrupted;
        let mut lines = vec![format!(
            "interrupted: {} phase(s) finished; the phase running is not reported",
            live.report.phases.len()
        )];
        lines.extend(live.report.phases.iter().map(|p| {
            let r = &p.result;
            format!(
                "  {}: {} ops in {:.1} s, {:.0} ops/s",
                r.name, r.ops, r.seconds, r.ops_per_sec
            )
        }));
        if let Some(path) = save(live) {
            lines.push(format!(
                "report of the finished phases written to {}",
                path.display()
            ));
        }
        lines
    });
    for l in lines {
        println!("{l}");
    }
    std::process::exit(130);
}

/// Rewrite the JSON file, if one was asked for; its path when written.
fn save(live: &Live) -> Option<&Path> {
    let path = live.json.as_deref()?;
    match live.report.write_json(path) {
        Ok(()) => Some(path),
        Err(e) => {
            tracing::error!("saving the report so far: {e}");
            None
        }
    }
}
