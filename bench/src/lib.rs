//! `o3-bench` drives an o3 database with standard workloads and reports what
//! happened in a form that can be trusted, compared and plotted.
//!
//! - [`dbbench`]: db_bench's benchmarks, flag names and summary line;
//! - [`ycsb`]: YCSB's core workload, property files and generators;
//! - [`report`]: latency histograms per operation type, per-second
//!   timelines, engine statistics, the environment, JSON and SVG output;
//! - [`engine`]: the engine flags shared by both, and opening the database;
//! - [`cli`]: the command line and the TOML config file.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod cli;
pub mod dbbench;
pub mod engine;
pub mod error;
pub mod report;
pub mod study;
pub mod ycsb;

pub use error::{BenchError, Result};

#[cfg(test)]
pub(crate) mod test_support {
    use o3_compute::DbStats;

    /// Statistics of a database that did nothing.
    pub fn empty_stats() -> DbStats {
        DbStats {
            levels: Vec::new(),
            user_bytes: 0,
            writes: 0,
            wal_bytes: 0,
            flush_bytes: 0,
            flushes: 0,
            compaction_bytes_read: 0,
            compaction_bytes_written: 0,
            compactions: 0,
            trivial_moves: 0,
            background_errors: 0,
            write_amplification: 0.0,
            stall_micros: Vec::new(),
            block_cache_hits: 0,
            block_cache_misses: 0,
            block_cache_declined: 0,
            block_cache_usage: 0,
            last_sequence: 0,
            unflushed_memtables: 0,
            range_tombstones: 0,
        }
    }
}
