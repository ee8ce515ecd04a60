//! Failed background work. The engine retries a failed compaction and only
//! counts it; a failed flush stops the database from accepting writes. Either
//! way the measured numbers no longer describe the engine working normally
//! (and a failure may mean lost data), so a run with any failed background
//! job fails, after its report is written.

use o3_compute::{Db, DbStats};
use serde::Serialize;

use crate::error::{BenchError, Result};

/// Failed background jobs (flushes, compactions) seen at one point of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackgroundErrors {
    /// Jobs that failed so far, retried or not ([`DbStats::background_errors`]).
    pub count: u64,
    /// The error that stopped the database from accepting writes
    /// ([`Db::background_error`]), if any.
    pub message: Option<String>,
}

impl BackgroundErrors {
    /// The state of `db`, whose statistics are `stats`.
    pub fn of(db: &Db, stats: &DbStats) -> BackgroundErrors {
        BackgroundErrors {
            count: stats.background_errors,
            message: db.background_error(),
        }
    }

    /// Close `db`; returns its failed background jobs just before.
    pub fn before_closing(db: Db) -> Result<BackgroundErrors> {
        let errors = BackgroundErrors::of(&db, &db.stats());
        db.close()
            .map_err(BenchError::engine("closing the database"))?;
        Ok(errors)
    }

    /// True when any background job failed.
    pub fn failed(&self) -> bool {
        self.count > 0 || self.message.is_some()
    }

    /// Fail if any background job had failed by the end of `when` (a phase
    /// name, a strategy, "the run").
    pub fn check(&self, when: &str) -> Result<()> {
        if !self.failed() {
            return Ok(());
        }
        Err(BenchError::BackgroundJobs {
            when: when.to_string(),
            count: self.count,
            message: self.message.clone(),
        })
    }

    /// A line for stdout under a phase; empty when nothing failed.
    pub fn describe(&self) -> String {
        match (&self.message, self.failed()) {
            (Some(m), _) => format!(
                "  background errors: {} failed jobs; database stopped: {m}\n",
                self.count
            ),
            (None, true) => format!(
                "  background errors: {} failed jobs (retried)\n",
                self.count
            ),
            (None, false) => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_failed_passes_and_any_failure_fails() {
        let clean = BackgroundErrors::default();
        assert!(clean.check("fillrandom").is_ok());
        assert_eq!(clean.describe(), "");
        // A retried compaction: counted, the database still accepts writes.
        let retried = BackgroundErrors {
            count: 3,
            message: None,
        };
        let e = retried.check("fillrandom").unwrap_err().to_string();
        assert!(e.contains("fillrandom") && e.contains("3"), "{e}");
        assert!(retried.describe().contains("3 failed jobs"));
    }

    /// A flush that cannot create its table stops the database; the check
    /// sees the count and the message and fails with one line naming the
    /// phase.
    #[test]
    fn a_failed_flush_fails_the_check_with_count_and_message() {
        let db = crate::test_support::db_with_failed_flush();
        let seen = BackgroundErrors::of(&db, &db.stats());
        assert_eq!(seen.count, 1, "{seen:?}");
        let message = seen.message.clone().expect("the database stopped");
        let e = seen.check("fillrandom").unwrap_err().to_string();
        assert!(e.contains("fillrandom") && e.contains(&message), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(seen.describe().contains(&message));
    }

    #[test]
    fn a_healthy_database_passes_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), o3_compute::DbOptions::default()).unwrap();
        db.put(b"k", b"v").unwrap();
        db.flush().unwrap();
        let seen = BackgroundErrors::before_closing(db).unwrap();
        assert_eq!(seen, BackgroundErrors::default());
    }
}
