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
    /// Zstandard (the reference C library, through the `zstd` crate) at
    /// `level`, as zstd and db_bench's `--compression_level` count it: 1
    /// (fastest) to 22 (smallest), negative levels faster still, 0 meaning
    /// zstd's default (3). Only a writer uses the level: a reader needs none,
    /// and the block trailer does not record it.
    Zstd { level: i32 },
}

/// `none`, `lz4`, or `zstd` with its level (`zstd level 3`): the names
/// `FromStr` takes, plus what a writer also needs to know.
impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Lz4 => f.write_str("lz4"),
            Compression::Zstd { level } => write!(f, "zstd level {level}"),
        }
    }
}

/// The zstd level used when none is given (zstd's own default).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// The names [`Compression`]'s `FromStr` accepts.
pub const COMPRESSION_NAMES: [&str; 3] = ["none", "lz4", "zstd"];

impl Compression {
    /// Zstd at [`DEFAULT_ZSTD_LEVEL`].
    pub const fn zstd() -> Compression {
        Compression::Zstd {
            level: DEFAULT_ZSTD_LEVEL,
        }
    }

    /// This compression at `level` where the codec has levels (zstd); none
    /// and lz4 have none and are returned unchanged, as db_bench ignores
    /// `--compression_level` for codecs without levels.
    pub fn with_level(self, level: i32) -> Compression {
        match self {
            Compression::Zstd { .. } => Compression::Zstd { level },
            other => other,
        }
    }

    /// The name `FromStr` parses back (without the level).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd { .. } => "zstd",
        }
    }

    /// Byte stored in a block trailer.
    pub fn as_byte(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
            Compression::Zstd { .. } => 2,
        }
    }

    /// The compression a trailer byte names; zstd comes back at the
    /// default level, since the level is not stored.
    pub fn from_byte(b: u8) -> Option<Compression> {
        match b {
            0 => Some(Compression::None),
            1 => Some(Compression::Lz4),
            2 => Some(Compression::zstd()),
            _ => None,
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = Error;
    /// One of [`COMPRESSION_NAMES`]; zstd at the default level.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Compression::None),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::zstd()),
            other => Err(Error::InvalidArgument(format!(
                "unknown compression '{other}' (valid: {})",
                COMPRESSION_NAMES.join(", ")
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
        if let Compression::Zstd { level } = self.compression {
            let valid = zstd::compression_level_range();
            if !valid.contains(&level) {
                return Err(Error::InvalidArgument(format!(
                    "zstd compression level {level} out of range [{}, {}]",
                    valid.start(),
                    valid.end()
                )));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_and_an_unknown_one_lists_them() {
        for c in [Compression::None, Compression::Lz4, Compression::zstd()] {
            assert_eq!(c.name().parse::<Compression>().unwrap(), c);
            assert_eq!(Compression::from_byte(c.as_byte()), Some(c));
        }
        assert_eq!(
            COMPRESSION_NAMES.map(|n| n.parse::<Compression>().unwrap().name()),
            COMPRESSION_NAMES
        );
        let err = "snappy".parse::<Compression>().unwrap_err().to_string();
        assert!(err.contains("'snappy'"), "{err}");
        for name in COMPRESSION_NAMES {
            assert!(err.contains(name), "{err} does not list {name}");
        }
        assert_eq!(Compression::from_byte(3), None);
    }

    #[test]
    fn display_names_the_codec_and_zstds_level() {
        assert_eq!(Compression::None.to_string(), "none");
        assert_eq!(Compression::Lz4.to_string(), "lz4");
        assert_eq!(
            Compression::zstd().with_level(9).to_string(),
            "zstd level 9"
        );
    }

    #[test]
    fn the_level_applies_to_zstd_only() {
        assert_eq!(
            Compression::zstd().with_level(9),
            Compression::Zstd { level: 9 }
        );
        assert_eq!(Compression::Lz4.with_level(9), Compression::Lz4);
        assert_eq!(Compression::None.with_level(9), Compression::None);
        // The trailer byte does not depend on the level.
        assert_eq!(Compression::Zstd { level: -7 }.as_byte(), 2);
        // "Default 3" is zstd's own default.
        assert_eq!(DEFAULT_ZSTD_LEVEL, zstd::DEFAULT_COMPRESSION_LEVEL);
    }

    #[test]
    fn zstd_levels_outside_zstds_range_are_rejected() {
        let with = |level| TableOptions {
            compression: Compression::Zstd { level },
            ..TableOptions::default()
        };
        for level in [-5, 0, 1, 3, 22] {
            with(level).validate().unwrap();
        }
        for level in [23, 1000, i32::MIN] {
            let err = with(level).validate().unwrap_err().to_string();
            assert!(err.contains(&format!("level {level}")), "{err}");
        }
    }
}
