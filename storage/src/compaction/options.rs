//! Options of the leveled strategy.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Shape of a leveled LSM tree. The defaults follow RocksDB's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LeveledOptions {
    /// Number of levels, L0 included.
    pub num_levels: usize,
    /// L0 files of one shard that trigger an L0 → L1 compaction of the shard.
    pub l0_compaction_trigger: usize,
    /// Target size of L1.
    pub max_bytes_for_level_base: u64,
    /// Each level below L1 targets this many times the size of the one above.
    pub max_bytes_for_level_multiplier: f64,
    /// Output file size at L1.
    pub target_file_size_base: u64,
    /// Each level below L1 writes files this many times larger.
    pub target_file_size_multiplier: u64,
    /// Upper bound on the L0 input bytes of one automatic L0 → L1 compaction.
    pub max_compaction_bytes: u64,
}

impl Default for LeveledOptions {
    fn default() -> Self {
        let target_file_size_base = 64 << 20;
        LeveledOptions {
            num_levels: 7,
            l0_compaction_trigger: 4,
            max_bytes_for_level_base: 256 << 20,
            max_bytes_for_level_multiplier: 10.0,
            target_file_size_base,
            target_file_size_multiplier: 1,
            max_compaction_bytes: 25 * target_file_size_base,
        }
    }
}

impl LeveledOptions {
    /// Reject shapes no tree can have.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidArgument(what));
        if !(2..=64).contains(&self.num_levels) {
            return bad(format!(
                "num_levels {} out of range [2, 64]",
                self.num_levels
            ));
        }
        if self.l0_compaction_trigger == 0 {
            return bad("l0_compaction_trigger must be at least 1".into());
        }
        if self.max_bytes_for_level_base == 0 {
            return bad("max_bytes_for_level_base must be positive".into());
        }
        if !(self.max_bytes_for_level_multiplier.is_finite()
            && self.max_bytes_for_level_multiplier >= 1.0)
        {
            return bad(format!(
                "max_bytes_for_level_multiplier {} must be a finite number >= 1",
                self.max_bytes_for_level_multiplier
            ));
        }
        if self.target_file_size_base == 0 {
            return bad("target_file_size_base must be positive".into());
        }
        if self.target_file_size_multiplier == 0 {
            return bad("target_file_size_multiplier must be at least 1".into());
        }
        if self.max_compaction_bytes < self.target_file_size_base {
            return bad(format!(
                "max_compaction_bytes {} is below target_file_size_base {}",
                self.max_compaction_bytes, self.target_file_size_base
            ));
        }
        Ok(())
    }

    /// Target size in bytes of `level` (>= 1): the base at L1, times the
    /// multiplier per level below.
    pub fn target_level_bytes(&self, level: usize) -> f64 {
        let depth = level.saturating_sub(1).min(i32::MAX as usize) as i32;
        self.max_bytes_for_level_base as f64 * self.max_bytes_for_level_multiplier.powi(depth)
    }

    /// Size of the files a compaction writes into `output_level`.
    pub fn target_file_size(&self, output_level: usize) -> u64 {
        let depth = output_level.saturating_sub(1).min(u32::MAX as usize) as u32;
        self.target_file_size_base
            .saturating_mul(self.target_file_size_multiplier.saturating_pow(depth))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_targets_grow_per_level() {
        let o = LeveledOptions::default();
        o.validate().unwrap();
        assert_eq!(o.target_level_bytes(1), (256u64 << 20) as f64);
        assert_eq!(o.target_level_bytes(3), (256u64 << 20) as f64 * 100.0);
        assert_eq!(o.target_file_size(1), 64 << 20);
        let o2 = LeveledOptions {
            target_file_size_multiplier: 2,
            ..o.clone()
        };
        assert_eq!(o2.target_file_size(3), 256 << 20);
    }

    #[test]
    fn rejects_impossible_shapes() {
        let base = LeveledOptions::default();
        for bad in [
            LeveledOptions {
                num_levels: 1,
                ..base.clone()
            },
            LeveledOptions {
                l0_compaction_trigger: 0,
                ..base.clone()
            },
            LeveledOptions {
                max_bytes_for_level_multiplier: 0.5,
                ..base.clone()
            },
            LeveledOptions {
                max_bytes_for_level_multiplier: f64::NAN,
                ..base.clone()
            },
            LeveledOptions {
                max_compaction_bytes: 1,
                ..base.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
