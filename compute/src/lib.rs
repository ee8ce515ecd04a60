//! `o3-compute` is the database instance: it decides *where and when* work
//! runs, while `o3-storage` says *what* is done to data.
//!
//! Main types:
//! - [`Db`]: open, `put`/`get`/`delete`/`delete_range`/`write`, snapshots, scans in both
//!   directions, `flush`, `compact_range`, `stats`, `close`;
//! - [`DbOptions`]: every knob, with defaults and validation;
//! - [`DbIterator`], [`Snapshot`], [`DbStats`].
//!
//! Inside: the write path with group commit and key-range shards
//! (`write`), the read path over a published [`state::SuperVersion`]
//! (`read`), background flush and compaction with installation (`background`),
//! and recovery on open (`recovery`).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod background;
mod db;
mod level_iter;
mod options;
mod read;
mod recovery;
mod snapshot;
mod state;
mod stats;
mod table_cache;
mod write;

pub use db::{Db, WriteOptions};
pub use o3_storage::batch::WriteBatch;
pub use o3_storage::{Error, Result};
pub use options::DbOptions;
pub use read::{DbIterator, ReadOptions};
pub use snapshot::Snapshot;
pub use stats::{DbStats, LevelStats, StallReason};
