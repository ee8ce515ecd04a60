//! Sorted tables (SSTs): immutable files of internal keys with prefix-
//! compressed data blocks, an index, one bloom filter over user keys and a
//! properties block. The format is written down in `docs/sst_format.md`.
//!
//! - [`TableBuilder`] writes a table from keys in increasing order;
//! - [`Table`] opens one (index and filter pinned in memory), answers point
//!   lookups and hands out [`TableIterator`]s;
//! - [`BlockCache`] holds uncompressed data blocks for any number of tables
//!   (and databases) in one byte budget.
//!
//! Cached blocks are `bytes::Bytes`, so the cache and iterators share block
//! memory without copying; a point lookup copies out only the value it
//! returns.

mod block;
mod block_builder;
mod block_cache;
mod bloom;
mod footer;
mod index;
mod properties;
mod stored_block;
mod table;
mod table_builder;
mod table_iterator;
mod zstd_block;

pub use block::{Block, BlockIter};
pub use block_builder::BlockBuilder;
pub use block_cache::{BlockCache, CacheAdmission};
pub use bloom::{BloomBuilder, BloomFilter, bloom_hash};
pub use footer::{BLOCK_TRAILER_LEN, BlockHandle, FOOTER_LEN, FORMAT_VERSION, Footer, TABLE_MAGIC};
pub use index::TableIndex;
pub use properties::TableProperties;
pub use stored_block::{decode_stored_block, read_block};
pub use table::{Found, Table};
pub use table_builder::{MAX_ENTRY_PART, TableBuilder};
pub use table_iterator::TableIterator;
