//! db_bench's meta operations: each runs once, in one thread, on the
//! database as the benchmark before left it, and is timed as one operation.
//! `stats` and `levelstats` also return the text they print.

use std::time::Instant;

use o3_compute::{Db, DbStats};

use super::options::Benchmark;
use crate::error::{BenchError, Result};
use crate::report::{OpKind, PhaseReport, PhaseResult, ThreadRecorder};

/// A meta operation's report and the text it prints (if any).
pub struct MetaOutcome {
    pub report: PhaseReport,
    pub text: Option<String>,
}

/// Run meta operation `b` on `db`.
pub fn run(b: Benchmark, db: &Db) -> Result<MetaOutcome> {
    let before = db.stats();
    let start = Instant::now();
    let mut rec = ThreadRecorder::new(start, indicatif::ProgressBar::hidden());
    let (message, text) = match b {
        Benchmark::Compact => {
            db.compact_range(None, None)
                .map_err(BenchError::engine("compact: compact_range"))?;
            let levels: Vec<String> = db
                .stats()
                .levels
                .iter()
                .map(|l| l.files.to_string())
                .collect();
            (
                Some(format!("(files per level after: {})", levels.join(" "))),
                None,
            )
        }
        Benchmark::Flush => {
            db.flush().map_err(BenchError::engine("flush: flush"))?;
            (None, None)
        }
        Benchmark::WaitForCompaction => {
            db.wait_for_compactions().map_err(BenchError::engine(
                "waitforcompaction: wait_for_compactions",
            ))?;
            (None, None)
        }
        Benchmark::Stats => (None, Some(crate::report::describe_db_stats(&db.stats()))),
        Benchmark::LevelStats => (None, Some(level_stats(&db.stats()))),
        _ => {
            return Err(BenchError::InvalidArgument(format!(
                "{} is not a meta operation",
                b.name()
            )));
        }
    };
    let kind = match b {
        Benchmark::Flush => OpKind::Flush,
        Benchmark::WaitForCompaction => OpKind::WaitForCompaction,
        Benchmark::Stats | Benchmark::LevelStats => OpKind::Stats,
        _ => OpKind::Compact,
    };
    rec.record(kind, start)?;
    Ok(MetaOutcome {
        report: PhaseReport::new(
            PhaseResult::merge(b.name(), vec![rec], start.elapsed())?,
            message,
            db,
            &before,
        ),
        text,
    })
}

/// Files and megabytes per level, in the shape of RocksDB's
/// `rocksdb.levelstats` property.
pub fn level_stats(stats: &DbStats) -> String {
    let mut s = String::from("Level Files Size(MB)\n--------------------\n");
    for (i, l) in stats.levels.iter().enumerate() {
        s.push_str(&format!(
            "{i:>5} {:>8} {:>8.0}\n",
            l.files,
            l.bytes as f64 / 1_048_576.0
        ));
    }
    s
}
