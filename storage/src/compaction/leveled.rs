//! RocksDB-like 1-leveling: L0 is tiered (files of one shard may overlap each
//! other, files of different shards never do), L1 and below are leveled.
//!
//! - L0 → L1 runs per shard: the shard with the most L0 files, once that
//!   count reaches `l0_compaction_trigger` (score = count / trigger).
//! - A deeper level scores `bytes / target`; when it wins, ONE of its files
//!   moves down (partial compaction): the one whose overlapping files in the
//!   next level are smallest relative to its own size, so the least data is
//!   rewritten per byte moved.
//! - The last level is never a source by size.
//!
//! Safety with concurrent jobs: a plan never reads a busy file, and never
//! writes a key range a running job writes (the argument is at
//! [`Leveled::pick_l0_shard`] and [`Leveled::pick_one_file`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::Result;
use crate::version::{FileMeta, Version};

use super::CompactionStrategy;
use super::options::LeveledOptions;
use super::plan::{
    BusyFiles, CompactionPlan, CompactionReason, any_busy, is_bottommost, user_key_range,
};

/// The default leveled strategy. The version's level count is the tree's
/// shape (`num_levels` in the options is what the database creates).
#[derive(Debug, Clone)]
pub struct Leveled {
    options: LeveledOptions,
}

/// Where a candidate compaction would come from.
#[derive(Debug, Clone, Copy)]
enum Source {
    L0,
    Level(usize),
}

impl Leveled {
    /// A strategy with validated `options`.
    pub fn new(options: LeveledOptions) -> Result<Self> {
        options.validate()?;
        Ok(Leveled { options })
    }

    pub fn options(&self) -> &LeveledOptions {
        &self.options
    }

    /// L0 file count per shard, not counting files in `busy`.
    pub(super) fn l0_counts(version: &Version, busy: &BusyFiles) -> BTreeMap<u32, usize> {
        let mut counts = BTreeMap::new();
        for f in version.levels.first().into_iter().flatten() {
            if !busy.contains(&f.number) {
                *counts.entry(f.shard).or_insert(0) += 1;
            }
        }
        counts
    }

    pub(super) fn l0_score(&self, version: &Version, busy: &BusyFiles) -> f64 {
        let max = Self::l0_counts(version, busy)
            .into_values()
            .max()
            .unwrap_or(0);
        max as f64 / self.options.l0_compaction_trigger as f64
    }

    /// Score of a level below L0 that may be a source (not the last one).
    fn size_score(&self, version: &Version, level: usize) -> f64 {
        version.level_bytes(level) as f64 / self.options.target_level_bytes(level)
    }

    /// The last level of `version`; `None` when it has fewer than two.
    fn last_level(version: &Version) -> Option<usize> {
        version.num_levels().checked_sub(1).filter(|&l| l >= 1)
    }

    /// L0 → L1 for `shard`, which has `files` non-busy L0 files (the score
    /// is `files / trigger`): its non-busy L0 files, oldest first up to
    /// `max_compaction_bytes` (at least one), plus the L1 files overlapping
    /// them.
    ///
    /// Leaving newer L0 files behind is safe (they shadow L1). Leaving an
    /// older overlapping one behind is not, and neither is writing into L1
    /// next to a running L0 job: so the plan is abandoned when any busy L0
    /// file overlaps its whole range, or any needed L1 file is busy (a running
    /// job that writes L1 over this range holds those files).
    fn pick_l0_shard(
        &self,
        version: &Version,
        shard: u32,
        files: usize,
        busy: &BusyFiles,
    ) -> Option<CompactionPlan> {
        let l0 = version.levels.first()?;
        let picked = self.l0_inputs(version, shard, busy);
        let (lo, hi) = user_key_range(picked.iter().map(|f| f.as_ref()))?;
        let parents = version.overlapping(1, Some(lo), Some(hi));
        if any_busy(&parents, busy) {
            return None;
        }
        let (lo, hi) = user_key_range(picked.iter().chain(&parents).map(|f| f.as_ref()))?;
        if l0
            .iter()
            .any(|f| busy.contains(&f.number) && f.overlaps(Some(lo), Some(hi)))
        {
            return None;
        }
        let bottommost = is_bottommost(version, 1, lo, hi);
        let score = files as f64 / self.options.l0_compaction_trigger as f64;
        Some(CompactionPlan {
            level: 0,
            output_level: 1,
            inputs: vec![picked, parents],
            input_levels: vec![0, 1],
            target_file_size: self.options.target_file_size(1),
            bottommost,
            score,
            reason: CompactionReason::L0FileCount,
        })
    }

    /// The L0 inputs of `shard`: its non-busy files, oldest first up to
    /// `max_compaction_bytes` (at least one), in the version's newest-first
    /// order; then widened by every non-busy L0 file of another shard that
    /// overlaps them and is not newer than all of them.
    ///
    /// Files of different shards overlap only after a re-split (files
    /// flushed under the old split keys may cross the new ones). An older
    /// overlapping file left in L0 would shadow the newer data moved below,
    /// so it joins the inputs (repeatedly, as the range grows); a file
    /// newer than every input may stay. A busy one that overlaps makes the
    /// callers abandon the plan (their busy check covers the whole range).
    pub(super) fn l0_inputs(
        &self,
        version: &Version,
        shard: u32,
        busy: &BusyFiles,
    ) -> Vec<Arc<FileMeta>> {
        let l0 = version.levels.first().map(|l| l.as_slice()).unwrap_or(&[]);
        // Positions in `l0` (newest first).
        let mut picked: Vec<usize> = Vec::new();
        let mut bytes = 0u64;
        for (i, f) in l0
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, f)| f.shard == shard && !busy.contains(&f.number))
        {
            if !picked.is_empty()
                && bytes.saturating_add(f.size) > self.options.max_compaction_bytes
            {
                break;
            }
            bytes = bytes.saturating_add(f.size);
            picked.push(i);
        }
        while let Some(newest) = picked.iter().min().copied() {
            let Some((lo, hi)) = user_key_range(picked.iter().map(|&i| l0[i].as_ref())) else {
                break;
            };
            let older_overlapping: Vec<usize> = (newest..l0.len())
                .filter(|i| !picked.contains(i))
                .filter(|&i| !busy.contains(&l0[i].number) && l0[i].overlaps(Some(lo), Some(hi)))
                .collect();
            if older_overlapping.is_empty() {
                break;
            }
            picked.extend(older_overlapping);
        }
        picked.sort_unstable();
        picked.into_iter().map(|i| l0[i].clone()).collect()
    }

    /// Shards at or over the trigger, most files first, and try each.
    pub(super) fn pick_l0(&self, version: &Version, busy: &BusyFiles) -> Option<CompactionPlan> {
        let mut shards: Vec<(u32, usize)> = Self::l0_counts(version, busy)
            .into_iter()
            .filter(|&(_, n)| n >= self.options.l0_compaction_trigger)
            .collect();
        shards.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        shards
            .into_iter()
            .find_map(|(shard, files)| self.pick_l0_shard(version, shard, files, busy))
    }

    /// One file of `level` and its overlapping files in `level + 1`: among
    /// non-busy files whose overlapping files are not busy, the least
    /// overlap ratio (ties: the first in key order).
    ///
    /// No running job writes into the chosen range: a job writing
    /// `level + 1` from a file `g` of `level` holds `g` and `g`'s overlapping
    /// files; any file of `level + 1` reaching from `g` into this file's
    /// range would overlap both files and so be busy, and a job writing
    /// `level` from above holds every file of `level` it overlaps.
    fn pick_one_file(
        &self,
        version: &Version,
        level: usize,
        score: f64,
        busy: &BusyFiles,
    ) -> Option<CompactionPlan> {
        let mut best: Option<(f64, Arc<FileMeta>, Vec<Arc<FileMeta>>)> = None;
        for f in version
            .levels
            .get(level)?
            .iter()
            .filter(|f| !busy.contains(&f.number))
        {
            let parents = version.overlapping(
                level + 1,
                Some(f.smallest_user_key()),
                Some(f.largest_user_key()),
            );
            if any_busy(&parents, busy) {
                continue;
            }
            let parent_bytes: u64 = parents.iter().map(|p| p.size).sum();
            let ratio = parent_bytes as f64 / f.size.max(1) as f64;
            if best.as_ref().is_none_or(|(r, _, _)| ratio < *r) {
                best = Some((ratio, f.clone(), parents));
            }
        }
        let (_, file, parents) = best?;
        let (lo, hi) = user_key_range(
            std::iter::once(file.as_ref()).chain(parents.iter().map(|f| f.as_ref())),
        )?;
        Some(CompactionPlan {
            level,
            output_level: level + 1,
            bottommost: is_bottommost(version, level + 1, lo, hi),
            inputs: vec![vec![file], parents],
            input_levels: vec![level, level + 1],
            target_file_size: self.options.target_file_size(level + 1),
            score,
            reason: CompactionReason::LevelSize,
        })
    }
}

impl CompactionStrategy for Leveled {
    fn pick(&self, version: &Version, busy: &BusyFiles) -> Option<CompactionPlan> {
        let last = Self::last_level(version)?;
        let mut candidates = vec![(self.l0_score(version, busy), Source::L0)];
        candidates.extend((1..last).map(|l| (self.size_score(version, l), Source::Level(l))));
        // Highest score first; the sort is stable, so ties favour L0 and then
        // shallower levels.
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
        candidates
            .into_iter()
            .take_while(|(score, _)| *score >= 1.0)
            .find_map(|(score, source)| match source {
                Source::L0 => self.pick_l0(version, busy),
                Source::Level(l) => self.pick_one_file(version, l, score, busy),
            })
    }

    /// Level 0: every L0 file overlapping the range, widened until no other
    /// L0 or L1 file overlaps the plan (an older overlapping L0 file left
    /// behind would shadow newer data moved to L1). Deeper levels: every
    /// file overlapping the range. Any busy file needed means `None`: taking
    /// only part of a contiguous run would write outputs across the gap.
    fn pick_manual(
        &self,
        version: &Version,
        level: usize,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        busy: &BusyFiles,
    ) -> Option<CompactionPlan> {
        let last = version.num_levels().checked_sub(1)?;
        if level > last {
            return None;
        }
        let output_level = if level == last { level } else { level + 1 };
        let mut sources = version.overlapping(level, lo, hi);
        let mut parents = Vec::new();
        loop {
            let (a, b) = user_key_range(sources.iter().map(|f| f.as_ref()))?;
            if output_level != level {
                parents = version.overlapping(output_level, Some(a), Some(b));
            }
            if level != 0 {
                break;
            }
            let (a, b) = user_key_range(sources.iter().chain(&parents).map(|f| f.as_ref()))?;
            let widened = version.overlapping(0, Some(a), Some(b));
            if widened.len() == sources.len() {
                break;
            }
            sources = widened;
        }
        if any_busy(&sources, busy) || any_busy(&parents, busy) {
            return None;
        }
        let (a, b) = user_key_range(sources.iter().chain(&parents).map(|f| f.as_ref()))?;
        let score = self
            .level_scores(version)
            .get(level)
            .copied()
            .unwrap_or(0.0);
        Some(CompactionPlan {
            level,
            output_level,
            bottommost: is_bottommost(version, output_level, a, b),
            inputs: vec![sources, parents],
            input_levels: vec![level, output_level],
            target_file_size: self.options.target_file_size(output_level),
            score,
            reason: CompactionReason::Manual,
        })
    }

    /// L0: the largest per-shard file count over the trigger; L1 up to the
    /// level above the last: bytes over target; the last level: 0.
    fn level_scores(&self, version: &Version) -> Vec<f64> {
        let n = version.num_levels();
        (0..n)
            .map(|level| match level {
                0 => self.l0_score(version, &BusyFiles::new()),
                l if l + 1 < n => self.size_score(version, l),
                _ => 0.0,
            })
            .collect()
    }

    /// RocksDB's estimate: when L0 compaction is due (a shard at the trigger,
    /// or L0 bytes over the L1 target), the L0 bytes of the due shards plus
    /// their L1 bytes; then, level by level, the bytes a level exceeds its
    /// target by (after receiving the excess of the level above), times the
    /// fan-out `1 + next level bytes / level bytes` that moving them costs.
    fn pending_compaction_bytes(&self, version: &Version) -> u64 {
        let Some(last) = Self::last_level(version) else {
            return 0;
        };
        let opts = &self.options;
        let l0_all = version.level_bytes(0);
        let counts = Self::l0_counts(version, &BusyFiles::new());
        let all_due = l0_all >= opts.max_bytes_for_level_base;
        let due = |shard: u32| {
            all_due
                || counts
                    .get(&shard)
                    .is_some_and(|&n| n >= opts.l0_compaction_trigger)
        };
        let shard_bytes = |level: usize| -> u64 {
            version.levels[level]
                .iter()
                .filter(|f| due(f.shard))
                .map(|f| f.size)
                .sum()
        };
        let l0_due = shard_bytes(0);
        let mut estimate = l0_due as f64;
        if l0_due > 0 {
            estimate += shard_bytes(1) as f64;
        }
        let mut incoming = l0_due as f64;
        for level in 1..last {
            let size = version.level_bytes(level) as f64 + incoming;
            let target = opts.target_level_bytes(level);
            incoming = 0.0;
            if size > target {
                let excess = size - target;
                incoming = excess;
                let next = version.level_bytes(level + 1) as f64;
                if next > 0.0 {
                    estimate += excess * (next / size + 1.0);
                }
            }
        }
        estimate.min(u64::MAX as f64) as u64
    }
}
