//! `o3-compute` is the database instance: it decides *where and when* work
//! runs, while `o3-storage` says *what* is done to data.
//!
//! Main types:
//! - [`Db`]: open, `put`/`get`/`delete`/`delete_range`/`write`, snapshots,
//!   `multi_get`, ranges and prefixes as Rust iterators in both directions,
//!   `flush`, `compact_range`, `sync_wal`/`flush_wal`, `checkpoint`,
//!   `stats`, `close`;
//! - [`DbOptions`]: every knob, with defaults and validation
//!   ([`WalRecoveryMode`] among them), and the option types it uses,
//!   re-exported from `o3-storage`;
//! - [`DbRange`] (a key range as a double-ended Rust iterator),
//!   [`DbIterator`] (a cursor), [`ReadOptions`], [`Snapshot`], [`DbStats`].
//!
//! - [`OffloadOptions`]: memtable offloading to a memory node (in process
//!   or an `o3-memnode` process); [`OffloadStats`] in [`DbStats`];
//! - [`Executor`]: where flushes and compactions run (the seam memory
//!   nodes and compaction agents implement), with [`RoundTripExecutor`]
//!   (every job and result through bytes, asynchronously); results are
//!   fenced by [`JobToken`] and refused with a typed [`JobError`];
//! - [`CompactionServiceOptions`]: compactions sent to an `o3-csa`
//!   scheduler and its agents, each placed by a cost model
//!   ([`PlacementPolicy`]); decisions and remote jobs in
//!   [`PlacementStats`].
//!
//! Open a database in a directory, write, read at a snapshot, flush to a
//! table and read it back after a reopen:
//!
//! ```
//! use o3_compute::{Db, DbOptions, WriteBatch};
//!
//! let dir = tempfile::tempdir()?;
//! let db = Db::open(dir.path(), DbOptions::default())?;
//! db.put(b"user:1", b"ada")?;
//! let before = db.snapshot();
//! let mut batch = WriteBatch::new();
//! batch.put(b"user:2", b"grace");
//! batch.delete(b"user:1");
//! db.write(batch)?; // all of it or nothing
//! assert_eq!(db.get(b"user:1")?, None);
//! assert_eq!(db.get_at(b"user:1", &before)?, Some(b"ada".to_vec()));
//! drop(before);
//!
//! db.flush()?; // the memtables become level-0 tables
//! let users = db.prefix(b"user:").collect::<Result<Vec<_>, _>>()?;
//! assert_eq!(users, [(b"user:2".to_vec(), b"grace".to_vec())]);
//! db.close()?;
//! let db = Db::open(dir.path(), DbOptions::default())?;
//! assert_eq!(db.get(b"user:2")?, Some(b"grace".to_vec()));
//! db.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Inside, every module in one line, and what it uses (an arrow points to
//! the modules a module uses; there is no cycle, which
//! `tests/module_graph.rs` checks on the sources):
//!
//! - leaves: `image_id` (a sealed memtable's name), `key_range` (the
//!   ranges the read API takes), `snapshot`, `stats`, `table_cache`,
//!   `write_queue` (writers waiting for a group-commit leader, a group's
//!   memtable inserts run by its writers at once),
//!   `shard_balance` (adaptive shards: key sampling, split keys at
//!   quantiles, when to re-split);
//!   `level_iter` → `table_cache`;
//! - memtable offloading, below the engine: `offload::options`,
//!   `offload::connect` (a memory node connected when it answers);
//!   `offload::runtime` (what a database shares for it: the memory node,
//!   counters, release queue) → `offload::connect`, `offload::options`,
//!   `stats`;
//!   `offload::image` (an offloaded image: location, key range, filter) →
//!   `image_id`, `offload::runtime`; `offload::slot` (a sealed memtable,
//!   local or offloaded) → `image_id`, `offload::image`; `offload::read`
//!   (delegated lookups, batched remote scans) → `offload::image`,
//!   `offload::runtime`, `offload::slot`;
//! - `jobs::placement` (the cost model placing a compaction here or on the
//!   compaction service, its counters) → `stats`;
//! - `jobs::executor` (the [`Executor`] seam, the local and round-trip
//!   executors) → `image_id`, `jobs::placement`, `offload::slot`, `stats`,
//!   `table_cache`; `jobs::registry` (claims, attempts,
//!   leases and the fencing verdict on a result) → `jobs::executor`;
//!   `jobs::service` (the compaction service's executor: an `o3-csa`
//!   scheduler's client) → `jobs::executor`, `jobs::placement`, `stats`;
//! - `options` → `jobs::executor`, `jobs::service`, `offload`,
//!   `shard_balance`; `options_file` (the `OPTIONS` file that
//!   guards the tree's shape) → `options`;
//! - `state` (the mutable state behind the database mutex, and the
//!   published super version) → `image_id`, `jobs::registry`,
//!   `offload::slot`, `shard_balance`;
//! - `engine` (what every part of a running database shares) → `options`,
//!   `snapshot`, `state`, `stats`, `table_cache`, `write_queue`,
//!   `jobs::executor`, `jobs::placement`, `jobs::registry`,
//!   `jobs::service`, `offload::runtime`;
//! - above the engine, offloading's threads: `offload::rebuild` (lost
//!   images rebuilt from the WAL) and `offload::ship` (the shipping
//!   threads) → `engine`, `state` and the offload modules below;
//! - `jobs::build` (claiming: building a job, reserving its file numbers)
//!   and `jobs::install` (fenced installation, cleanup) → `engine`,
//!   `state`, `jobs::executor`, `jobs::registry`; `jobs` (placement and
//!   dispatch to an executor, outcomes, retries) → `engine`, `jobs::install`,
//!   `jobs::executor`, `jobs::placement`, `jobs::registry`, `stats`;
//! - `write` (group commit, WAL, memtables, stalls) → `engine`, `state`,
//!   `stats`, `image_id`, `offload::slot`, `write_queue`; `read` (point lookups and
//!   cursors) → `engine`, `key_range`, `level_iter`, `snapshot`, `state`,
//!   `table_cache`, `offload::{image, read, runtime, slot}`; `range_iter` → `read`;
//! - `scheduler` (background workers: what runs next, leases) → `engine`,
//!   `state`, `jobs`, `jobs::build`, `jobs::install`;
//! - `manual` (`flush`, `compact_range`, externally claimed compactions)
//!   → `engine`, `write`, `jobs`, `jobs::build`, `jobs::install`,
//!   `jobs::registry`; `checkpoint` → `engine`, `manual`, `options_file`;
//! - `reshard` (moving the shard split keys: flush, then switch in one
//!   manifest edit) → `engine`, `manual`, `options`, `state`,
//!   `write_queue`;
//! - `recovery` (opening: find the WAL, replay, flush what was replayed,
//!   remove unreferenced files, fresh state) → `engine`, `options`,
//!   `shard_balance`, `state`, `table_cache`, `jobs::build`,
//!   `jobs::registry`;
//! - `db` (the public handle) → the modules behind its methods and
//!   `offload::ship` (it starts the shipping threads).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod checkpoint;
mod db;
mod engine;
mod image_id;
mod jobs;
mod key_range;
mod level_iter;
mod manual;
mod offload;
mod options;
mod options_file;
mod range_iter;
mod read;
mod recovery;
mod reshard;
mod scheduler;
mod shard_balance;
mod snapshot;
mod state;
mod stats;
mod table_cache;
mod write;
mod write_queue;

pub use db::{Db, WriteOptions};
pub use jobs::executor::{
    Completion, Executor, FlushWork, ImageId, Job, LocalLoad, RoundTripExecutor, SealedImage,
};
pub use key_range::KeyRange;
pub use o3_storage::batch::WriteBatch;
pub use o3_storage::job::{CompactionJob, FlushJob, JobError, JobResult, JobToken};
pub use o3_storage::version::DbId;
pub use o3_storage::{Error, Result};
pub use options::{DbOptions, MAX_SHARDS};
pub use range_iter::DbRange;
pub use shard_balance::{ShardBalanceOptions, choose_splits};

// The types that fill in `DbOptions` and read `DbStats`, so an embedded user
// needs no second dependency on `o3-storage`.
pub use jobs::placement::{JobSummary, PlacementPolicy, RemoteEstimate, RemoteOffer};
pub use jobs::service::{CompactionServiceOptions, FlushPlacement};
pub use o3_memnode::client::{ImageStore, RemoteConfig, StoreConfig};
pub use o3_storage::compaction::{
    CompactionOptions, FilePicker, Granularity, Layout, LeveledOptions, Preset, Trigger,
};
pub use o3_storage::env::{FileLock, LocalFs, RandomAccessFile, Storage, WritableFile};
pub use o3_storage::options::{Compression, TableOptions};
pub use o3_storage::sst::CacheAdmission;
pub use o3_transport::control::ClusterToken;
pub use offload::{
    CacheValues, DEFAULT_OFFSET_CACHE_BYTES, DEFAULT_PULL_BACK_BYTES, MemoryNodeChoice,
    OffloadOptions, ReadPolicy,
};
pub use options::WalRecoveryMode;
pub use read::{DbIterator, ReadOptions};
pub use snapshot::Snapshot;
pub use stats::{
    DbStats, FlushPlacementStats, LevelStats, OffloadStats, PlacementReason, PlacementStats,
    ShardStats, StallReason,
};

/// The repository README's Rust example, compiled and run as a doctest
/// (`cargo test -p o3-compute --doc`) so that it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// The user guide's examples (`docs/embedded.md`) run as doctests too.
#[cfg(doctest)]
#[doc = include_str!("../../docs/embedded.md")]
pub struct EmbeddedGuideDoctests;
