//! What a benchmark reports while it runs: `--report_interval_seconds`
//! appends `secs_elapsed,interval_qps` to `--report_file` (db_bench's CSV:
//! seconds since the benchmark started, operations per second over the
//! interval just ended; each benchmark rewrites the file), and
//! `--stats_interval_seconds` prints the operations done so far and the
//! engine's statistics. One thread does both, watching the operation count
//! the worker threads add to.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use o3_compute::Db;

use super::options::DbBenchConfig;
use crate::error::{BenchError, Result};

/// How often the reporter looks at the clock and the stop flag.
const TICK: Duration = Duration::from_millis(20);

/// Whether `cfg` asks for reports during a benchmark.
pub fn wanted(cfg: &DbBenchConfig) -> bool {
    cfg.report_interval_seconds > 0 || cfg.stats_interval_seconds > 0
}

/// The CSV file of one benchmark.
struct ReportFile {
    file: std::fs::File,
    path: std::path::PathBuf,
}

impl ReportFile {
    fn create(path: &Path) -> Result<ReportFile> {
        let mut file = std::fs::File::create(path).map_err(|e| BenchError::io(path, e))?;
        writeln!(file, "secs_elapsed,interval_qps").map_err(|e| BenchError::io(path, e))?;
        Ok(ReportFile {
            file,
            path: path.to_path_buf(),
        })
    }

    fn line(&mut self, secs: u64, qps: u64) -> Result<()> {
        writeln!(self.file, "{secs},{qps}").map_err(|e| BenchError::io(&self.path, e))
    }
}

/// A periodic schedule: due every `every` since the start.
struct Every {
    every: Duration,
    next: Duration,
    last_ops: u64,
    last_at: Duration,
}

impl Every {
    fn new(secs: u64) -> Option<Every> {
        (secs > 0).then(|| Every {
            every: Duration::from_secs(secs),
            next: Duration::from_secs(secs),
            last_ops: 0,
            last_at: Duration::ZERO,
        })
    }

    /// If due at `now` with `ops` done: the operations and the seconds
    /// since the last time it was due.
    fn due(&mut self, now: Duration, ops: u64) -> Option<(u64, f64)> {
        if now < self.next {
            return None;
        }
        let interval = (ops - self.last_ops, (now - self.last_at).as_secs_f64());
        self.next += self.every;
        self.last_ops = ops;
        self.last_at = now;
        Some(interval)
    }
}

/// Report on benchmark `name` until `stop` is set: `done` counts the
/// operations finished since `start`.
pub fn run(
    name: &str,
    cfg: &DbBenchConfig,
    db: &Db,
    start: Instant,
    done: &AtomicU64,
    stop: &AtomicBool,
) -> Result<()> {
    let mut csv = match cfg.report_interval_seconds {
        0 => None,
        _ => Some(ReportFile::create(&cfg.report_file)?),
    };
    let mut report = Every::new(cfg.report_interval_seconds);
    let mut stats = Every::new(cfg.stats_interval_seconds);
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(TICK);
        let now = start.elapsed();
        let ops = done.load(Ordering::Relaxed);
        if let (Some(every), Some(csv)) = (report.as_mut(), csv.as_mut())
            && let Some((n, secs)) = every.due(now, ops)
        {
            csv.line(now.as_secs(), (n as f64 / secs.max(1e-9)).round() as u64)?;
        }
        if let Some((n, secs)) = stats.as_mut().and_then(|e| e.due(now, ops)) {
            let total = now.as_secs_f64().max(1e-9);
            println!(
                "{name} : ({n},{ops}) ops and ({:.1},{:.1}) ops/second in ({secs:.6},{total:.6}) seconds",
                n as f64 / secs.max(1e-9),
                ops as f64 / total
            );
            print!("{}", crate::report::describe_db_stats(&db.stats()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_is_due_once_per_interval_with_the_interval_ops() {
        let mut e = Every::new(2).unwrap();
        assert_eq!(e.due(Duration::from_millis(1999), 100), None);
        assert_eq!(e.due(Duration::from_secs(2), 400), Some((400, 2.0)));
        assert_eq!(e.due(Duration::from_secs(3), 500), None);
        assert_eq!(e.due(Duration::from_secs(4), 1000), Some((600, 2.0)));
        assert!(Every::new(0).is_none());
    }
}
