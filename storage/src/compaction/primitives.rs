//! The four primitives a compaction strategy is composed from (Sarkar et
//! al., "Constructing and Analyzing the LSM Compaction Design Space", VLDB
//! 2021): *trigger*, *data layout* per level, *granularity* and *file
//! picking*. Each is selectable by name (`FromStr`, and serde with the same
//! kebab-case names); an unknown name is an error listing the valid ones.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Declares a primitive: the enum, its kebab-case names, `FromStr` that
/// lists the valid names on error, and `Display`.
macro_rules! named_choice {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The configuration name.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.name() == s)
                    .ok_or_else(|| unknown_name($what, s, $name::ALL.iter().map(|v| v.name())))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

/// The error for a name that is not one of `valid`.
pub(crate) fn unknown_name<'a>(
    what: &str,
    got: &str,
    valid: impl Iterator<Item = &'a str>,
) -> Error {
    let valid: Vec<&str> = valid.collect();
    Error::InvalidArgument(format!(
        "unknown compaction {what} {got:?}; valid: {}",
        valid.join(", ")
    ))
}

named_choice! {
    /// What makes a compaction due.
    Trigger, "trigger" {
        /// A level holds more bytes than its target (leveled and tiered
        /// levels alike; score = bytes / target).
        LevelSaturation => "level-saturation",
        /// A tiered level holds `runs_per_tier` sorted runs (score = runs /
        /// runs per tier). L0 always drains by its per-shard file count.
        SortedRunCount => "sorted-run-count",
        /// A file above the last level is older than `max_file_age_ms`.
        FileStaleness => "file-staleness",
        /// The bytes above the last level exceed `max_space_amplification`
        /// times the last level's bytes: everything merges into the last level.
        SpaceAmplification => "space-amplification",
        /// A file holds tombstones older than `tombstone_ttl_ms`.
        TombstoneTtl => "tombstone-ttl",
    }
}

named_choice! {
    /// How a level below L0 holds its data.
    Layout, "layout" {
        /// One sorted run: files never overlap; data arriving is merged in.
        Leveling => "leveling",
        /// Up to `runs_per_tier` sorted runs; data arrives as a new run and
        /// runs merge only when the level moves down.
        Tiering => "tiering",
    }
}

named_choice! {
    /// How much data one compaction of a leveled level moves. A tiered level
    /// always moves its sorted runs together (a leveled level is one run, so
    /// there `sorted-runs` and `whole-level` coincide).
    Granularity, "granularity" {
        /// Every file of the level.
        WholeLevel => "whole-level",
        /// Whole sorted runs.
        SortedRuns => "sorted-runs",
        /// One file, chosen by the file picker (partial compaction).
        OneFile => "one-file",
        /// Files in the picker's order up to `max_compaction_bytes`.
        SeveralFiles => "several-files",
    }
}

named_choice! {
    /// Which file a partial compaction of a leveled level moves down.
    FilePicker, "file picker" {
        /// The next file after the one moved last time, in key order.
        RoundRobin => "round-robin",
        /// Least bytes overlapped in the next level per byte moved.
        LeastOverlapParent => "least-overlap-parent",
        /// Least bytes overlapped two levels down (fewer future rewrites).
        LeastOverlapGrandparent => "least-overlap-grandparent",
        /// The file whose newest entry is oldest (least recently updated).
        Coldest => "coldest",
        /// The file holding the oldest entry.
        Oldest => "oldest",
        /// The highest share of tombstones among entries.
        TombstoneDensity => "tombstone-density",
        /// The file whose tombstones have waited longest.
        ExpiredTombstoneTtl => "expired-tombstone-ttl",
    }
}

named_choice! {
    /// Named compositions of the primitives (see [`super::CompactionOptions`]).
    Preset, "preset" {
        /// Every level one sorted run, L0 included: each L0 file moves to L1
        /// at once (L0 trigger 1); partial compaction, least overlap.
        Leveling => "leveling",
        /// Every level below L0 tiered (RocksDB's universal style): runs
        /// merge when a level has `runs_per_tier` of them, and everything
        /// merges into the last level when space amplification is too high.
        Tiering => "tiering",
        /// The default, RocksDB-like: tiered L0 (per shard), leveled below,
        /// partial compaction of the least-overlapping file.
        OneLeveling => "one-leveling",
        /// Tiered levels, except the last one, which is leveled.
        LazyLeveling => "lazy-leveling",
        /// The upper half of the levels below L0 tiered, the rest leveled.
        Hybrid => "hybrid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_lists_valid() {
        for t in Trigger::ALL {
            assert_eq!(t.name().parse::<Trigger>().unwrap(), *t);
        }
        for p in FilePicker::ALL {
            assert_eq!(p.to_string().parse::<FilePicker>().unwrap(), *p);
        }
        let e = "fastest".parse::<FilePicker>().unwrap_err().to_string();
        assert!(e.contains("\"fastest\""), "{e}");
        for p in FilePicker::ALL {
            assert!(e.contains(p.name()), "{e}");
        }
        let e = "leveled".parse::<Layout>().unwrap_err().to_string();
        assert!(e.contains("leveling, tiering"), "{e}");
        assert!("one_file".parse::<Granularity>().is_err());
        let e = "universal".parse::<Preset>().unwrap_err().to_string();
        assert!(
            e.contains("one-leveling") && e.contains("lazy-leveling"),
            "{e}"
        );
    }
}
