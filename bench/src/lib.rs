//! `o3-bench` drives an o3 database with standard workloads and reports what
//! happened in a form that can be trusted, compared and plotted.
//!
//! - [`dbbench`]: db_bench's benchmarks, flag names and summary line;
//! - [`ycsb`]: YCSB's core workload, property files and generators;
//! - [`report`]: latency histograms per operation type, per-second
//!   timelines, engine statistics, the environment, JSON and SVG output;
//! - [`engine`]: the engine flags shared by both, and opening the database;
//! - [`offload`]: the memtable offloading flags (memory node, link model,
//!   local budget) shared by every workload;
//! - [`csa`]: the compaction service flags (scheduler or in-process agents,
//!   placement policy) shared by every workload;
//! - [`csa_compare`]: the compaction service experiment (all-local against
//!   a scheduler and agents on another core, and an agent killed mid-run);
//! - [`flush_compare`]: flush offloading against local flushes and no
//!   offloading, with the memory node and the service as child processes;
//!   [`shard_sweep`]: fills over 1, 2, 4, 8 shards;
//! - [`children`]: starting, pinning and stopping those child processes;
//! - [`read_compare`]: the cache-enhanced read path against delegation
//!   only and no offloading, on YCSB workloads;
//! - [`offload_compare`], [`offload_lookup`]: the offloading experiments
//!   (a write burst with and without offloading; lookups in offloaded
//!   images next to local memtables), with [`sst_gate`] holding flushes
//!   back for the latter;
//! - [`fresh_db`]: emptying a database for a load, under its lock;
//! - [`offload_ship`]: shipping a sealed memtable to a memory node against
//!   the raw transport;
//! - [`threads`]: joining a phase's worker threads;
//! - [`cli`]: the command line and the TOML config file.
//!
//! A config file's `[engine]` and `[dbbench]` tables (the `--config` of
//! `o3-bench dbbench`), resolved with db_bench's defaults and run in
//! process: a sequential fill, then random reads that find every key:
//!
//! ```
//! use o3_bench::cli::ConfigFile;
//! use o3_bench::dbbench::{self, Benchmark};
//!
//! let config: ConfigFile = toml::from_str(
//!     r#"
//!     [engine]
//!     write_buffer_size = 1048576
//!     [dbbench]
//!     benchmarks = "fillseq,readrandom"
//!     num = 2000
//!     "#,
//! )?;
//! let workload = config.dbbench.resolve()?;
//! assert_eq!(workload.benchmarks, [Benchmark::FillSeq, Benchmark::ReadRandom]);
//! assert_eq!((workload.key_size, workload.value_size), (16, 100));
//!
//! let dir = tempfile::tempdir()?;
//! let mut engine = config.engine;
//! engine.db = Some(dir.path().join("db"));
//! let engine = engine.resolve("o3-dbbench")?;
//! let outcome = dbbench::run(&workload, &engine, false)?;
//! assert!(outcome.phases.iter().all(|phase| phase.result.ops == 2000));
//! let reads = outcome.phases[1].message.as_deref();
//! assert_eq!(reads, Some("(2000 of 2000 found)"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod children;
pub mod cli;
pub mod csa;
pub mod csa_compare;
pub mod dbbench;
pub mod engine;
pub mod error;
pub mod flush_compare;
pub mod fresh_db;
pub mod offload;
pub mod offload_compare;
pub mod offload_lookup;
pub mod offload_ship;
pub mod read_compare;
pub mod report;
pub mod shard_sweep;
pub mod sst_gate;
pub mod study;
pub mod threads;
pub mod ycsb;

pub use error::{BenchError, Result};

#[cfg(test)]
pub(crate) mod test_support {
    use o3_compute::DbStats;

    /// Statistics of a database that did nothing.
    pub fn empty_stats() -> DbStats {
        DbStats::default()
    }

    /// An in-memory database whose flush failed: every file mutation fails
    /// from the flush on, so the flush cannot create its table, which stops
    /// the database. Deterministic: without a WAL the writes before mutate no
    /// file, and nothing else runs in the background of a database without
    /// tables.
    pub fn db_with_failed_flush() -> o3_compute::Db {
        use o3_storage::env::{FaultInjectingFs, FaultPlan};
        let fs = FaultInjectingFs::new();
        let options = o3_compute::DbOptions {
            storage: std::sync::Arc::new(fs.clone()),
            disable_wal: true,
            ..o3_compute::DbOptions::default()
        };
        let db = o3_compute::Db::open("/db", options).unwrap();
        for i in 0..100u32 {
            db.put(&i.to_be_bytes(), b"value").unwrap();
        }
        fs.set_plan(FaultPlan {
            fail_after_mutations: Some(0),
            ..FaultPlan::default()
        });
        assert!(db.flush().is_err());
        db
    }
}
