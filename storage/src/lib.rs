//! `o3-storage` owns everything about LSM data and its mechanisms; it does not
//! decide *where* or *when* work runs (that is the compute node's job).
//!
//! Main types, by concept:
//! - keys and batches: [`key`] (internal keys, ordering), [`batch::WriteBatch`];
//! - range deletions: [`range_del::RangeTombstone`] and the query-optimised
//!   [`range_del::RangeTombstoneSet`];
//! - the write-ahead log: [`wal::LogWriter`], [`wal::LogReader`] (`docs/wal_format.md`);
//! - memtables: [`memtable::Memtable`] (the owner's writable arena) and
//!   [`memtable::MemtableImage`], which searches a sealed image in any byte
//!   buffer (`docs/memtable_image_format.md`);
//! - sorted tables: [`sst::TableBuilder`], [`sst::Table`], [`sst::BlockCache`]
//!   (`docs/sst_format.md`);
//! - versions: [`version::FileMeta`], [`version::VersionEdit`],
//!   [`version::VersionSet`] and the manifest (`docs/manifest_format.md`),
//!   which records the database's identity ([`version::DbId`], incarnation)
//!   and the durable file-number mark;
//! - compaction picking: [`compaction`];
//! - jobs: [`job::FlushJob`], [`job::CompactionJob`] — self-contained,
//!   serializable work that runs with nothing but storage access, fenced by
//!   a [`job::JobToken`]; refusals are [`job::JobError`]
//!   (`docs/job_format.md`);
//! - iterators: [`iterator::InternalIterator`], [`iter::MergingIterator`],
//!   [`iter::UserIterator`];
//! - storage backends: [`env::Storage`], [`env::LocalFs`],
//!   [`env::FaultInjectingFs`], [`env::ThrottledStorage`].
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod batch;
pub mod coding;
pub mod compaction;
pub mod env;
pub mod error;
pub mod filename;
pub mod iter;
pub mod iterator;
pub mod job;
pub mod key;
pub mod memtable;
pub mod options;
mod prefetch;
pub mod range_del;
pub mod sst;
pub mod version;
pub mod wal;

pub use error::{Error, Result};
