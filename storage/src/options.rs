//! Options that describe how tables are written; they travel inside jobs, so
//! they are serializable.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Block compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Compression {
    /// Blocks are stored as they are.
    #[default]
    None,
    /// LZ4 block compression (pure-Rust `lz4_flex`).
    Lz4,
}

impl Compression {
    /// Byte stored in a block trailer.
    pub fn as_byte(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
        }
    }
    pub fn from_byte(b: u8) -> Option<Compression> {
        match b {
            0 => Some(Compression::None),
            1 => Some(Compression::Lz4),
            _ => None,
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Compression::None),
            "lz4" => Ok(Compression::Lz4),
            other => Err(Error::InvalidArgument(format!(
                "unknown compression '{other}' (valid: none, lz4)"
            ))),
        }
    }
}

/// How SSTs are built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableOptions {
    /// Target uncompressed size of a data block. The default, 2 KiB, is half
    /// of LevelDB's and RocksDB's 4 KiB: a point lookup that misses the block
    /// cache reads, copies and checksums one whole block, and at 2 KiB that
    /// measured ~25% more lookups per second (2M keys of 116 bytes, 8 MiB
    /// cache; single runs, noisy machine) and ~1% more file bytes; the
    /// pinned decoded index grows with the block count (~40 bytes per block,
    /// estimated from its layout, not measured). Scans were not slower
    /// (`bench/README.md`).
    pub block_size: usize,
    /// Keys between restart points inside a data block.
    pub restart_interval: usize,
    /// Bloom filter bits per key; 0 disables the filter.
    pub bloom_bits_per_key: u32,
    pub compression: Compression,
    /// Keep data blocks inside 4 KiB pages of the file: a block is closed
    /// before an entry that would carry it across a page boundary, and the
    /// file is zero-padded to the boundary when less than a quarter of a
    /// block would fit before it. A point lookup that misses the block
    /// cache then reads one page of the OS page cache instead of two (about
    /// half of all unaligned 2 KiB blocks straddle a boundary); on 2M keys
    /// of 116 bytes, alternating runs: readrandom +5-10%, files +1%. Applies to
    /// uncompressed tables with `block_size` of at most 4 KiB; a single
    /// entry too large for the room left still crosses.
    pub page_aligned_blocks: bool,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            block_size: 2048,
            restart_interval: 16,
            bloom_bits_per_key: 10,
            compression: Compression::None,
            page_aligned_blocks: true,
        }
    }
}

impl TableOptions {
    /// Reject values no table could be built with.
    pub fn validate(&self) -> Result<()> {
        if self.block_size < 64 || self.block_size > 64 << 20 {
            return Err(Error::InvalidArgument(format!(
                "block_size {} out of range [64, 64 MiB]",
                self.block_size
            )));
        }
        if self.restart_interval == 0 || self.restart_interval > 1024 {
            return Err(Error::InvalidArgument(format!(
                "restart_interval {} out of range [1, 1024]",
                self.restart_interval
            )));
        }
        if self.bloom_bits_per_key > 64 {
            return Err(Error::InvalidArgument(format!(
                "bloom_bits_per_key {} out of range [0, 64]",
                self.bloom_bits_per_key
            )));
        }
        Ok(())
    }
}
