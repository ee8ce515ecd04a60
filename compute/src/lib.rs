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
//! Inside: the write path with group commit and key-range shards
//! (`write`), the read path over a published super version (`state`,
//! `read`, `range_iter`), background flush and compaction with installation
//! (`background`), the work callers ask for and wait on — `flush`,
//! `compact_range`, externally executed compactions (`manual`) — recovery
//! on open (`recovery`), the `OPTIONS` file that guards the tree's shape
//! (`options_file`) and checkpoints (`checkpoint`).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod checkpoint;
mod db;
mod engine;
mod jobs;
mod key_range;
mod level_iter;
mod manual;
mod options;
mod options_file;
mod range_iter;
mod read;
mod recovery;
mod scheduler;
mod snapshot;
mod state;
mod stats;
mod table_cache;
mod write;
mod write_queue;

pub use db::{Db, WriteOptions};
pub use jobs::executor::{
    Completion, Executor, FlushWork, ImageId, Job, RoundTripExecutor, SealedImage,
};
pub use key_range::KeyRange;
pub use o3_storage::batch::WriteBatch;
pub use o3_storage::job::{CompactionJob, FlushJob, JobError, JobResult, JobToken};
pub use o3_storage::version::DbId;
pub use o3_storage::{Error, Result};
pub use options::DbOptions;
pub use range_iter::DbRange;

// The types that fill in `DbOptions` and read `DbStats`, so an embedded user
// needs no second dependency on `o3-storage`.
pub use o3_storage::compaction::{
    CompactionOptions, FilePicker, Granularity, Layout, LeveledOptions, Preset, Trigger,
};
pub use o3_storage::env::{FileLock, LocalFs, RandomAccessFile, Storage, WritableFile};
pub use o3_storage::options::{Compression, TableOptions};
pub use o3_storage::sst::CacheAdmission;
pub use options::WalRecoveryMode;
pub use read::{DbIterator, ReadOptions};
pub use snapshot::Snapshot;
pub use stats::{DbStats, LevelStats, StallReason};

/// The repository README's Rust example, compiled and run as a doctest
/// (`cargo test -p o3-compute --doc`) so that it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// The user guide's examples (`docs/embedded.md`) run as doctests too.
#[cfg(doctest)]
#[doc = include_str!("../../docs/embedded.md")]
pub struct EmbeddedGuideDoctests;
