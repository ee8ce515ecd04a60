//! A compaction plan: the files one compaction reads and where it writes.

use std::collections::HashSet;
use std::sync::Arc;

use crate::version::{FileMeta, Version};

/// File numbers read or written by running jobs; a plan never touches them.
pub type BusyFiles = HashSet<u64>;

/// Why a plan was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompactionReason {
    /// A shard reached the L0 file-count trigger.
    L0FileCount,
    /// A level outgrew its target size.
    LevelSize,
    /// A tiered level holds its maximum number of sorted runs.
    SortedRunCount,
    /// A file outlived `max_file_age_ms`.
    FileStaleness,
    /// Bytes above the last level grew too large relative to it.
    SpaceAmplification,
    /// A file holds tombstones older than the TTL.
    TombstoneTtl,
    /// A user asked to compact a key range.
    Manual,
}

/// One compaction: merge `inputs` and write the result into `output_level`.
///
/// Invariant: `inputs[i]` are files of physical level `input_levels[i]`.
/// A plan of two levels reads the files at `level` and the files at
/// `output_level` whose user keys overlap them (empty when `output_level ==
/// level`, a bottom rewrite of the last level, or when the output is a new
/// sorted run of a tiered level). Merges of a tiered level's runs, and full
/// merges, read several levels. Level-0 inputs keep the version's
/// newest-first order.
#[derive(Debug, Clone)]
pub struct CompactionPlan {
    pub level: usize,
    pub output_level: usize,
    pub inputs: Vec<Vec<Arc<FileMeta>>>,
    /// The physical level of each entry of `inputs`.
    pub input_levels: Vec<usize>,
    /// Size at which the executor cuts output files.
    pub target_file_size: u64,
    /// No file in a level below `output_level` overlaps the inputs' user-key
    /// range, so tombstones that shadow nothing newer may be dropped.
    pub bottommost: bool,
    /// Urgency of the level the plan came from (`>= 1.0` for automatic
    /// plans).
    pub score: f64,
    pub reason: CompactionReason,
}

impl CompactionPlan {
    /// Every input file, source level first.
    pub fn input_files(&self) -> impl Iterator<Item = &Arc<FileMeta>> {
        self.inputs.iter().flatten()
    }

    /// Total bytes of the input files.
    pub fn input_bytes(&self) -> u64 {
        self.input_files().map(|f| f.size).sum()
    }

    /// Numbers of the input files; the caller marks them busy while the
    /// compaction runs.
    pub fn file_numbers(&self) -> impl Iterator<Item = u64> + '_ {
        self.input_files().map(|f| f.number)
    }

    /// `(level, files)` per input level with files, as a compaction job
    /// lists its inputs.
    pub fn inputs_by_level(&self) -> impl Iterator<Item = (usize, &[Arc<FileMeta>])> {
        self.input_levels
            .iter()
            .copied()
            .zip(self.inputs.iter().map(Vec::as_slice))
            .filter(|(_, files)| !files.is_empty())
    }

    /// Smallest and largest user key over all inputs.
    pub fn user_key_range(&self) -> Option<(&[u8], &[u8])> {
        user_key_range(self.input_files().map(|f| f.as_ref()))
    }
}

/// Smallest and largest user key over `files`; `None` when there are none.
pub(crate) fn user_key_range<'a>(
    files: impl IntoIterator<Item = &'a FileMeta>,
) -> Option<(&'a [u8], &'a [u8])> {
    files.into_iter().fold(None, |acc, f| {
        let (lo, hi) = (f.smallest_user_key(), f.largest_user_key());
        Some(match acc {
            None => (lo, hi),
            Some((a, b)) => (a.min(lo), b.max(hi)),
        })
    })
}

/// True when no file in a level below `output_level` overlaps `[lo, hi]`.
pub(crate) fn is_bottommost(version: &Version, output_level: usize, lo: &[u8], hi: &[u8]) -> bool {
    version
        .levels
        .iter()
        .skip(output_level + 1)
        .flatten()
        .all(|f| !f.overlaps(Some(lo), Some(hi)))
}

/// True when any of `files` is busy.
pub(crate) fn any_busy(files: &[Arc<FileMeta>], busy: &BusyFiles) -> bool {
    files.iter().any(|f| busy.contains(&f.number))
}
