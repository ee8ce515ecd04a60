//! Memtable offloading: sealed memtables shipped to a memory node, read
//! through it, read back for their flush, released after it, and rebuilt
//! from the WAL when the memory node is lost.

mod options;

pub use options::{MemoryNodeChoice, OffloadOptions};
