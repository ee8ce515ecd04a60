//! Versions: which SSTs are live at each level, the edits that change them,
//! the manifest that logs the edits, and the version set that applies them.

mod db_id;
mod edit;
mod file_meta;
mod tombstone_gc;
mod version_set;

pub use db_id::DbId;
pub use edit::VersionEdit;
pub use file_meta::FileMeta;
pub use version_set::{RecoveredState, VersionSet};

use std::sync::Arc;

use crate::range_del::{RangeTombstone, RangeTombstoneSet};

/// An immutable snapshot of the live SSTs and of the installed (flushed)
/// range tombstones.
///
/// Invariants: `levels[0]` is ordered newest first (by `largest_seq`
/// descending) and its files of different shards never overlap unless a
/// re-split cut them at other keys (`docs/manifest_format.md`, "Re-splits"); every deeper
/// level is ordered by smallest key and its files never overlap. Range
/// tombstones are ordered by shard, then sequence, and `(shard, seq)` names
/// one; each lies inside the key range its shard had when it was written.
#[derive(Debug, Clone, Default)]
pub struct Version {
    pub levels: Vec<Vec<Arc<FileMeta>>>,
    range_tombstones: Arc<Vec<(u32, RangeTombstone)>>,
    /// The query form of `range_tombstones`; shared by every version with
    /// the same tombstones, so its address identifies them.
    range_tombstone_set: Arc<RangeTombstoneSet>,
}

impl Version {
    /// An empty version with `num_levels` levels.
    pub fn new(num_levels: usize) -> Self {
        Version {
            levels: vec![Vec::new(); num_levels],
            ..Version::default()
        }
    }
    /// Installed range tombstones as `(shard, tombstone)`.
    pub fn range_tombstones(&self) -> &[(u32, RangeTombstone)] {
        &self.range_tombstones
    }
    /// Installed range tombstones, fragmented for queries.
    pub fn range_tombstone_set(&self) -> &Arc<RangeTombstoneSet> {
        &self.range_tombstone_set
    }
    /// Installed range tombstones that intersect the inclusive user-key
    /// range `[lo, hi]` with a sequence `<= max_seq`.
    pub fn range_tombstones_overlapping(
        &self,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        max_seq: crate::key::SequenceNumber,
    ) -> Vec<RangeTombstone> {
        self.range_tombstones
            .iter()
            .map(|(_, t)| t)
            .filter(|t| t.seq <= max_seq && t.overlaps(lo, hi))
            .cloned()
            .collect()
    }
    pub fn num_levels(&self) -> usize {
        self.levels.len()
    }
    /// Total bytes of the files at `level`.
    pub fn level_bytes(&self, level: usize) -> u64 {
        self.levels
            .get(level)
            .map_or(0, |l| l.iter().map(|f| f.size).sum())
    }
    /// Files at `level` whose user-key range intersects `[lo, hi]`.
    pub fn overlapping(
        &self,
        level: usize,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
    ) -> Vec<Arc<FileMeta>> {
        self.levels
            .get(level)
            .map(|files| {
                files
                    .iter()
                    .filter(|f| f.overlaps(lo, hi))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}
