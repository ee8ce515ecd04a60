//! Configuration of a composed strategy: a preset plus optional overrides of
//! each primitive, and the tree's numbers ([`LeveledOptions`]).
//!
//! How tiering fits the [`Version`](crate::version::Version): every physical
//! level below L0 is exactly one sorted run (files never overlap), so the
//! read path, the manifest and installation stay as they are. A *logical*
//! level with the tiering layout owns `runs_per_tier` consecutive physical
//! levels ("slots"), its newest run in the shallowest occupied slot; a
//! leveled logical level owns one slot. With every level leveled, logical
//! and physical levels coincide, which is the default tree.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

use super::CompactionStrategy;
use super::clock::{Clock, SystemClock};
use super::composed::Composed;
use super::options::LeveledOptions;
use super::primitives::{FilePicker, Granularity, Layout, Preset, Trigger};
use super::shape::TreeShape;

/// Physical levels a tree may have (slots of all logical levels, L0 included).
pub const MAX_PHYSICAL_LEVELS: usize = 128;

/// A strategy chosen by configuration: `preset` gives every primitive a
/// value; each `Some` override replaces the preset's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompactionOptions {
    pub preset: Preset,
    /// Layout of logical levels 1.. (one entry per level below L0): a
    /// per-level hybrid. `None`: the preset's.
    pub layouts: Option<Vec<Layout>>,
    /// Enabled triggers. `None`: the preset's.
    pub triggers: Option<Vec<Trigger>>,
    /// Granularity of leveled levels. `None`: the preset's.
    pub granularity: Option<Granularity>,
    /// File picker of partial compactions. `None`: the preset's.
    pub picker: Option<FilePicker>,
    /// Sorted runs a tiered level holds before it merges them (>= 2).
    pub runs_per_tier: usize,
    /// File staleness trigger: files above the last level older than this.
    pub max_file_age_ms: u64,
    /// Space amplification trigger: bytes above the last level over bytes in
    /// it (RocksDB universal's `max_size_amplification_percent` / 100).
    pub max_space_amplification: f64,
    /// Tombstone TTL trigger: files holding tombstones older than this.
    pub tombstone_ttl_ms: u64,
    /// Logical level count, level sizes, file sizes and the L0 trigger.
    pub levels: LeveledOptions,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        CompactionOptions {
            preset: Preset::OneLeveling,
            layouts: None,
            triggers: None,
            granularity: None,
            picker: None,
            runs_per_tier: 4,
            max_file_age_ms: 24 * 3600 * 1000,
            max_space_amplification: 2.0,
            tombstone_ttl_ms: 3600 * 1000,
            levels: LeveledOptions::default(),
        }
    }
}

/// The primitives with every choice made: what [`Composed`] runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Composition {
    /// Layout per logical level; entry 0 (L0) is always tiering.
    pub layouts: Vec<Layout>,
    pub triggers: Vec<Trigger>,
    pub granularity: Granularity,
    pub picker: FilePicker,
    pub runs_per_tier: usize,
    /// L0 files of one shard that trigger L0 → L1 (1 under `leveling`).
    pub l0_trigger: usize,
    pub max_file_age_ms: u64,
    pub max_space_amplification: f64,
    pub tombstone_ttl_ms: u64,
}

impl Composition {
    pub fn has(&self, trigger: Trigger) -> bool {
        self.triggers.contains(&trigger)
    }
}

impl CompactionOptions {
    /// Defaults with `preset`.
    pub fn with_preset(preset: Preset) -> Self {
        CompactionOptions {
            preset,
            ..CompactionOptions::default()
        }
    }

    /// Every primitive resolved, checked against the tree's numbers.
    pub fn composition(&self) -> Result<Composition> {
        self.levels.validate()?;
        let bad = |what: String| Err(Error::InvalidArgument(what));
        let below_l0 = self.levels.num_levels - 1;
        use Layout::{Leveling as L, Tiering as T};
        let preset_layouts: Vec<Layout> = match self.preset {
            Preset::Leveling | Preset::OneLeveling => vec![L; below_l0],
            Preset::Tiering => vec![T; below_l0],
            Preset::LazyLeveling => (1..=below_l0)
                .map(|l| if l == below_l0 { L } else { T })
                .collect(),
            Preset::Hybrid => (1..=below_l0)
                .map(|l| if l <= below_l0.div_ceil(2) { T } else { L })
                .collect(),
        };
        let (preset_triggers, preset_granularity) = match self.preset {
            Preset::Leveling | Preset::OneLeveling => {
                (vec![Trigger::LevelSaturation], Granularity::OneFile)
            }
            Preset::Tiering => (
                vec![Trigger::SortedRunCount, Trigger::SpaceAmplification],
                Granularity::SortedRuns,
            ),
            Preset::LazyLeveling | Preset::Hybrid => (
                vec![Trigger::SortedRunCount, Trigger::LevelSaturation],
                Granularity::OneFile,
            ),
        };
        let layouts = self.layouts.clone().unwrap_or(preset_layouts);
        if layouts.len() != below_l0 {
            return bad(format!(
                "layouts has {} entries, the tree has {below_l0} levels below L0",
                layouts.len()
            ));
        }
        let triggers = self.triggers.clone().unwrap_or(preset_triggers);
        if !triggers
            .iter()
            .any(|t| matches!(t, Trigger::LevelSaturation | Trigger::SortedRunCount))
        {
            return bad(
                "triggers need level-saturation or sorted-run-count, or no data ever leaves L1"
                    .into(),
            );
        }
        if layouts.contains(&T) && self.runs_per_tier < 2 {
            return bad(format!(
                "runs_per_tier {} must be at least 2",
                self.runs_per_tier
            ));
        }
        if !(self.max_space_amplification.is_finite() && self.max_space_amplification > 0.0) {
            return bad(format!(
                "max_space_amplification {} must be a positive number",
                self.max_space_amplification
            ));
        }
        if self.max_file_age_ms == 0 || self.tombstone_ttl_ms == 0 {
            return bad("max_file_age_ms and tombstone_ttl_ms must be positive".into());
        }
        let composition = Composition {
            layouts: std::iter::once(T).chain(layouts).collect(),
            triggers,
            granularity: self.granularity.unwrap_or(preset_granularity),
            picker: self.picker.unwrap_or(FilePicker::LeastOverlapParent),
            runs_per_tier: self.runs_per_tier,
            l0_trigger: match self.preset {
                Preset::Leveling => 1,
                _ => self.levels.l0_compaction_trigger,
            },
            max_file_age_ms: self.max_file_age_ms,
            max_space_amplification: self.max_space_amplification,
            tombstone_ttl_ms: self.tombstone_ttl_ms,
        };
        let physical = TreeShape::configured(&composition).physical_levels();
        if physical > MAX_PHYSICAL_LEVELS {
            return bad(format!(
                "the layout needs {physical} physical levels, more than {MAX_PHYSICAL_LEVELS}"
            ));
        }
        Ok(composition)
    }

    /// Physical levels the database must create for this configuration.
    pub fn physical_levels(&self) -> Result<usize> {
        Ok(TreeShape::configured(&self.composition()?).physical_levels())
    }

    /// The strategy, reading time from the system clock.
    pub fn build(&self) -> Result<Box<dyn CompactionStrategy>> {
        Ok(Box::new(self.build_with_clock(Arc::new(SystemClock))?))
    }

    /// The strategy, reading time from `clock` (the simulator's).
    pub fn build_with_clock(&self, clock: Arc<dyn Clock>) -> Result<Composed> {
        Composed::new(self.composition()?, self.levels.clone(), clock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_resolve_to_their_layouts() {
        let c = |p| CompactionOptions::with_preset(p).composition().unwrap();
        use Layout::{Leveling as L, Tiering as T};
        assert_eq!(c(Preset::OneLeveling).layouts, vec![T, L, L, L, L, L, L]);
        assert_eq!(c(Preset::Tiering).layouts, vec![T; 7]);
        assert_eq!(c(Preset::LazyLeveling).layouts, vec![T, T, T, T, T, T, L]);
        assert_eq!(c(Preset::Hybrid).layouts, vec![T, T, T, T, L, L, L]);
        assert_eq!(c(Preset::Leveling).l0_trigger, 1);
        assert_eq!(c(Preset::OneLeveling).l0_trigger, 4);
        let one = CompactionOptions::default();
        assert_eq!(one.physical_levels().unwrap(), 7);
        let tiering = CompactionOptions::with_preset(Preset::Tiering);
        assert_eq!(tiering.physical_levels().unwrap(), 1 + 6 * 4);
    }

    #[test]
    fn bad_compositions_are_rejected() {
        let base = CompactionOptions::default();
        for bad in [
            CompactionOptions {
                layouts: Some(vec![Layout::Tiering]),
                ..base.clone()
            },
            CompactionOptions {
                triggers: Some(vec![Trigger::TombstoneTtl]),
                ..base.clone()
            },
            CompactionOptions {
                preset: Preset::Tiering,
                runs_per_tier: 1,
                ..base.clone()
            },
            CompactionOptions {
                max_space_amplification: f64::NAN,
                ..base.clone()
            },
            CompactionOptions {
                preset: Preset::Tiering,
                runs_per_tier: 30,
                ..base.clone()
            },
        ] {
            assert!(bad.composition().is_err(), "{bad:?}");
        }
    }
}
