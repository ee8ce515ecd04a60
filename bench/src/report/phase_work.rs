//! What the engine did during one phase: the difference of its counters
//! between the phase's start and end. The engine's own statistics are
//! totals since the database was opened, so a read phase after a load would
//! otherwise show the load's writes and flushes as its own.

use o3_compute::DbStats;
use serde::Serialize;

/// The engine's work within one phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PhaseWork {
    /// Key + value bytes written by the phase.
    pub user_bytes: u64,
    pub writes: u64,
    pub wal_bytes: u64,
    pub flushes: u64,
    pub flush_bytes: u64,
    pub compactions: u64,
    pub trivial_moves: u64,
    pub compaction_bytes_read: u64,
    pub compaction_bytes_written: u64,
    /// (flush + compaction bytes written) / flush bytes within the phase,
    /// RocksDB's definition; `None` when the phase flushed nothing.
    pub write_amplification: Option<f64>,
    /// Microseconds writes were held back, all reasons together.
    pub stall_micros: u64,
    pub block_cache_hits: u64,
    pub block_cache_misses: u64,
    pub background_errors: u64,
}

impl PhaseWork {
    /// The work between the snapshots `before` and `after` of one database.
    /// A counter that went down (the phase reopened the database, which
    /// starts them at zero) counts from zero.
    pub fn between(before: &DbStats, after: &DbStats) -> PhaseWork {
        let d = |b: u64, a: u64| if a >= b { a - b } else { a };
        let stalls = |s: &DbStats| s.stall_micros.iter().map(|(_, m)| m).sum::<u64>();
        let flush_bytes = d(before.flush_bytes, after.flush_bytes);
        let compaction_bytes_written = d(
            before.compaction_bytes_written,
            after.compaction_bytes_written,
        );
        PhaseWork {
            user_bytes: d(before.user_bytes, after.user_bytes),
            writes: d(before.writes, after.writes),
            wal_bytes: d(before.wal_bytes, after.wal_bytes),
            flushes: d(before.flushes, after.flushes),
            flush_bytes,
            compactions: d(before.compactions, after.compactions),
            trivial_moves: d(before.trivial_moves, after.trivial_moves),
            compaction_bytes_read: d(before.compaction_bytes_read, after.compaction_bytes_read),
            compaction_bytes_written,
            write_amplification: (flush_bytes > 0)
                .then(|| (flush_bytes + compaction_bytes_written) as f64 / flush_bytes as f64),
            stall_micros: d(stalls(before), stalls(after)),
            block_cache_hits: d(before.block_cache_hits, after.block_cache_hits),
            block_cache_misses: d(before.block_cache_misses, after.block_cache_misses),
            background_errors: d(before.background_errors, after.background_errors),
        }
    }

    /// One line for stdout.
    pub fn describe(&self) -> String {
        let mb = |b: u64| b as f64 / (1 << 20) as f64;
        let wa = self
            .write_amplification
            .map_or("n/a (nothing flushed)".to_string(), |w| format!("{w:.2}"));
        let lookups = self.block_cache_hits + self.block_cache_misses;
        let cache = if lookups == 0 {
            String::new()
        } else {
            format!(
                ", block cache hit rate {:.1}%",
                100.0 * self.block_cache_hits as f64 / lookups as f64
            )
        };
        format!(
            "  this phase: {} writes ({:.1} MiB), {} flushes ({:.1} MiB), {} compactions (read {:.1} MiB, wrote {:.1} MiB, {} trivial moves), write amplification {wa}, stalls {:.1} ms{cache}\n",
            self.writes,
            mb(self.user_bytes),
            self.flushes,
            mb(self.flush_bytes),
            self.compactions,
            mb(self.compaction_bytes_read),
            mb(self.compaction_bytes_written),
            self.trivial_moves,
            self.stall_micros as f64 / 1000.0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(writes: u64, flush_bytes: u64, compacted: u64) -> DbStats {
        DbStats {
            writes,
            user_bytes: writes * 100,
            flush_bytes,
            flushes: flush_bytes / 1000,
            compaction_bytes_written: compacted,
            ..DbStats::default()
        }
    }

    #[test]
    fn a_phase_counts_only_its_own_work() {
        let load = stats(1000, 4000, 2000);
        let after_reads = stats(1000, 4000, 2000);
        let reads = PhaseWork::between(&load, &after_reads);
        assert_eq!(reads.writes, 0);
        assert_eq!(reads.flushes, 0);
        assert_eq!(reads.write_amplification, None);
        assert!(reads.describe().contains("n/a (nothing flushed)"));

        let more = stats(1500, 6000, 5000);
        let updates = PhaseWork::between(&after_reads, &more);
        assert_eq!(updates.writes, 500);
        assert_eq!(updates.user_bytes, 50_000);
        assert_eq!(updates.flush_bytes, 2000);
        assert_eq!(updates.write_amplification, Some(2.5));
    }

    #[test]
    fn a_reopened_database_counts_from_zero() {
        let old = stats(1000, 4000, 0);
        let reopened = stats(10, 0, 0);
        assert_eq!(PhaseWork::between(&old, &reopened).writes, 10);
    }
}
