//! Memtable offloading: sealed memtables shipped to a memory node, read
//! through it, read back for their flush, released after it, and rebuilt
//! from the WAL when the memory node is lost.
//!
//! - `options`: [`OffloadOptions`];
//! - `slot` (leaf): a sealed memtable wherever its bytes are;
//! - `connect` (leaf): a memory node reached when it answers;
//! - `runtime` → `connect`, `cache`, `costs`: what one database shares for
//!   offloading (pull-back requests among it);
//! - `image` → `runtime`: an offloaded image's location, key range, filter;
//! - `ship` → engine, state: the shipping threads (they also pull hot
//!   images back when readers ask);
//! - `rebuild` → engine: rebuilding lost images from the WAL;
//! - `cache` (leaf): the key→offset cache and its admission sketch;
//! - `costs` (leaf): measured costs of each way to read, and the choices;
//! - `read` → engine: lookups and scans over offloaded images.

pub(crate) mod cache;
mod connect;
pub(crate) mod costs;
pub(crate) mod image;
pub(crate) mod index;
mod options;
pub(crate) mod read;
pub(crate) mod rebuild;
pub(crate) mod runtime;
pub(crate) mod ship;
pub(crate) mod slot;

pub use options::{
    CacheValues, DEFAULT_OFFSET_CACHE_BYTES, DEFAULT_PULL_BACK_BYTES, MemoryNodeChoice,
    OffloadOptions, ReadPolicy,
};
