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
//!
//! A memtable's arena is its own wire format: insert versions of keys,
//! seal it, copy the bytes anywhere (another process, a memory node's
//! region) and search the copy as an image, without decoding it:
//!
//! ```
//! use o3_storage::key::ValueKind;
//! use o3_storage::memtable::{Memtable, MemtableImage};
//!
//! let memtable = Memtable::new(64 << 10, 0)?; // a 64 KiB arena for shard 0
//! memtable.insert(b"apple", 1, ValueKind::Value, b"red")?;
//! memtable.insert(b"apple", 2, ValueKind::Value, b"green")?;
//! memtable.insert(b"pear", 3, ValueKind::Tombstone, b"")?;
//! // A read sees the newest entry with a sequence at or below its snapshot.
//! let at = |snapshot| memtable.get(b"apple", snapshot).map(|e| e.value);
//! assert_eq!((at(1), at(9)), (Some(&b"red"[..]), Some(&b"green"[..])));
//!
//! memtable.seal()?;
//! let shipped: Vec<u8> = memtable.image_bytes()?.to_vec();
//! let image = MemtableImage::open(&shipped, "the shipped copy")?; // validates
//! assert_eq!(image.header().entries, 3);
//! assert_eq!(image.get(b"apple", 9).map(|e| e.value), Some(&b"green"[..]));
//! let pear = image.get(b"pear", 9).map(|e| e.kind);
//! assert_eq!(pear, Some(ValueKind::Tombstone));
//! # Ok::<(), o3_storage::Error>(())
//! ```
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
