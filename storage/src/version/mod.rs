//! Versions: which SSTs are live at each level, the edits that change them,
//! the manifest that logs the edits, and the version set that applies them.

mod edit;
mod file_meta;
mod version_set;

pub use edit::VersionEdit;
pub use file_meta::FileMeta;
pub use version_set::{RecoveredState, VersionSet};

use std::sync::Arc;

/// An immutable snapshot of the live SSTs.
///
/// Invariants: `levels[0]` is ordered newest first (by `largest_seq`
/// descending) and its files of different shards never overlap; every deeper
/// level is ordered by smallest key and its files never overlap.
#[derive(Debug, Clone, Default)]
pub struct Version {
    pub levels: Vec<Vec<Arc<FileMeta>>>,
}

impl Version {
    /// An empty version with `num_levels` levels.
    pub fn new(num_levels: usize) -> Self {
        Version {
            levels: vec![Vec::new(); num_levels],
        }
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
