//! A strategy composed from the four primitives ([`Composition`]) over the
//! slot layout of [`TreeShape`].
//!
//! Candidates are scored like [`Leveled`]'s (L0 first, then each level, then
//! the optional triggers); the highest score `>= 1` that yields a plan wins.
//! A leveled source moves the files its granularity and picker choose, a
//! tiered source moves all its runs together; the output merges into a
//! leveled next level (with the overlapping files there) or becomes a new run
//! of a tiered one, in the slot [`TreeShape::arrival_slot`] names. With
//! one-leveling's primitives the picks are exactly [`Leveled`]'s.
//!
//! Safety with concurrent jobs follows [`Leveled`]'s argument: a plan never
//! reads a busy file, a merge into a leveled slot needs every overlapping
//! file there free, and a tiered level moves only when none of its files is
//! busy, so two running jobs never write overlapping ranges into one slot.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::Result;
use crate::version::{FileMeta, Version};

use super::CompactionStrategy;
use super::clock::Clock;
use super::composition::Composition;
use super::leveled::Leveled;
use super::options::LeveledOptions;
use super::picker::{FileChoice, rank_files};
use super::plan::{
    BusyFiles, CompactionPlan, CompactionReason, any_busy, is_bottommost, user_key_range,
};
use super::primitives::{Granularity, Layout, Trigger};
use super::shape::TreeShape;

/// Which candidate a score belongs to.
#[derive(Debug, Clone, Copy)]
enum Source {
    L0,
    /// Logical level, moved by its shape trigger.
    Level(usize),
    /// Logical level holding a file older than `max_file_age_ms`.
    Stale(usize),
    /// Logical level holding tombstones older than the TTL.
    Tombstones(usize),
    /// Everything into the last level.
    FullMerge,
}

/// The configured strategy (see the module doc).
#[derive(Debug)]
pub struct Composed {
    c: Composition,
    levels: LeveledOptions,
    /// The leveled picker for what coincides with it: L0 into a leveled L1,
    /// manual ranges, and the pending-bytes estimate of all-leveled trees.
    leveled: Leveled,
    clock: Arc<dyn Clock>,
    /// Round-robin cursor per logical level: the largest user key moved last.
    cursors: Mutex<Vec<Vec<u8>>>,
}

impl Composed {
    pub fn new(c: Composition, levels: LeveledOptions, clock: Arc<dyn Clock>) -> Result<Self> {
        let leveled = Leveled::new(LeveledOptions {
            l0_compaction_trigger: c.l0_trigger,
            ..levels.clone()
        })?;
        Ok(Composed {
            c,
            levels,
            leveled,
            clock,
            cursors: Mutex::new(Vec::new()),
        })
    }

    pub fn composition(&self) -> &Composition {
        &self.c
    }

    /// The slot layout laid over `version`.
    pub fn shape(&self, version: &Version) -> TreeShape {
        TreeShape::fit(&self.c, version.num_levels())
    }

    /// Score of logical `level` (>= 1) by the layout's triggers.
    fn level_score(&self, shape: &TreeShape, version: &Version, level: usize) -> f64 {
        let last = level + 1 == shape.logical_levels();
        let saturation = if self.c.has(Trigger::LevelSaturation) && !last {
            shape.level_bytes(version, level) as f64 / self.levels.target_level_bytes(level)
        } else {
            0.0
        };
        match shape.layout(level) {
            Layout::Leveling => saturation,
            Layout::Tiering => {
                let runs = if self.c.has(Trigger::SortedRunCount) {
                    shape.runs_used(version, level) as f64 / self.c.runs_per_tier as f64
                } else {
                    0.0
                };
                saturation.max(runs)
            }
        }
    }

    /// Largest `age / limit` over the non-busy files of `level` that `counts`.
    fn age_score(
        &self,
        shape: &TreeShape,
        version: &Version,
        level: usize,
        limit_ms: u64,
        counts: impl Fn(&FileMeta) -> bool,
        busy: &BusyFiles,
    ) -> f64 {
        let now = self.clock.now_ms();
        shape
            .slots(level)
            .filter_map(|s| version.levels.get(s))
            .flatten()
            .filter(|f| counts(f) && !busy.contains(&f.number))
            .map(|f| now.saturating_sub(f.created_ms) as f64 / limit_ms.max(1) as f64)
            .fold(0.0, f64::max)
    }

    /// Bytes above the last physical level over the bytes in it, relative
    /// to the limit; 0 while the last level is empty.
    fn space_amp_score(&self, version: &Version) -> f64 {
        let Some(last) = version.num_levels().checked_sub(1) else {
            return 0.0;
        };
        let bottom = version.level_bytes(last);
        if bottom == 0 {
            return 0.0;
        }
        let above: u64 = (0..last).map(|l| version.level_bytes(l)).sum();
        above as f64 / bottom as f64 / self.c.max_space_amplification
    }

    fn candidates(
        &self,
        shape: &TreeShape,
        version: &Version,
        busy: &BusyFiles,
    ) -> Vec<(f64, Source)> {
        let n = shape.logical_levels();
        let mut out = vec![(self.leveled.l0_score(version, busy), Source::L0)];
        out.extend((1..n).map(|l| (self.level_score(shape, version, l), Source::Level(l))));
        if self.c.has(Trigger::FileStaleness) {
            let age = self.c.max_file_age_ms;
            out.extend((1..n.saturating_sub(1)).map(|l| {
                (
                    self.age_score(shape, version, l, age, |_| true, busy),
                    Source::Stale(l),
                )
            }));
        }
        if self.c.has(Trigger::TombstoneTtl) {
            let ttl = self.c.tombstone_ttl_ms;
            out.extend((1..n).map(|l| {
                let has_tombstones = |f: &FileMeta| f.tombstones > 0;
                (
                    self.age_score(shape, version, l, ttl, has_tombstones, busy),
                    Source::Tombstones(l),
                )
            }));
        }
        if self.c.has(Trigger::SpaceAmplification) {
            out.push((self.space_amp_score(version), Source::FullMerge));
        }
        out
    }

    fn plan_for(
        &self,
        shape: &TreeShape,
        version: &Version,
        source: Source,
        score: f64,
        busy: &BusyFiles,
    ) -> Option<CompactionPlan> {
        let now = self.clock.now_ms();
        let (level, choice, reason) = match source {
            Source::L0 => return self.pick_l0(shape, version, busy),
            Source::FullMerge => return self.full_merge(shape, version, score, busy),
            Source::Level(l) => {
                let reason = match shape.layout(l) {
                    Layout::Tiering if shape.runs_used(version, l) >= self.c.runs_per_tier => {
                        CompactionReason::SortedRunCount
                    }
                    _ => CompactionReason::LevelSize,
                };
                (l, FileChoice::Configured(self.c.picker), reason)
            }
            Source::Stale(l) => (
                l,
                FileChoice::OlderThan(now.saturating_sub(self.c.max_file_age_ms)),
                CompactionReason::FileStaleness,
            ),
            Source::Tombstones(l) => (
                l,
                FileChoice::TombstonesOlderThan(now.saturating_sub(self.c.tombstone_ttl_ms)),
                CompactionReason::TombstoneTtl,
            ),
        };
        match shape.layout(level) {
            Layout::Leveling => {
                self.pick_leveled(shape, version, level, choice, score, reason, busy)
            }
            Layout::Tiering => self.pick_tiered(shape, version, level, score, reason, busy),
        }
    }

    /// L0 → L1 for the fullest shard that can move: into a leveled L1 as
    /// [`Leveled`] does; into a tiered L1 as a new run.
    fn pick_l0(
        &self,
        shape: &TreeShape,
        version: &Version,
        busy: &BusyFiles,
    ) -> Option<CompactionPlan> {
        if shape.layout(1) == Layout::Leveling {
            return self.leveled.pick_l0(version, busy);
        }
        let mut shards: Vec<(u32, usize)> = Leveled::l0_counts(version, busy)
            .into_iter()
            .filter(|&(_, n)| n >= self.c.l0_trigger)
            .collect();
        shards.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        shards.into_iter().find_map(|(shard, files)| {
            let picked = self.leveled.l0_inputs(version, shard, busy);
            let (lo, hi) = user_key_range(picked.iter().map(|f| f.as_ref()))?;
            let l0 = version.levels.first()?;
            // An older overlapping L0 file left behind, or a running job of
            // the same range, would end up below newer data.
            if l0
                .iter()
                .any(|f| busy.contains(&f.number) && f.overlaps(Some(lo), Some(hi)))
            {
                return None;
            }
            let out = shape.arrival_slot(version, 1, lo, hi)?;
            Some(CompactionPlan {
                level: 0,
                output_level: out,
                bottommost: is_bottommost(version, out, lo, hi),
                inputs: vec![picked],
                input_levels: vec![0],
                target_file_size: self.levels.target_file_size(1),
                score: files as f64 / self.c.l0_trigger as f64,
                reason: CompactionReason::L0FileCount,
            })
        })
    }

    /// Files of leveled `level` chosen by `choice` and the granularity, into
    /// the next level (or rewritten in place at the last level).
    #[allow(clippy::too_many_arguments)]
    fn pick_leveled(
        &self,
        shape: &TreeShape,
        version: &Version,
        level: usize,
        choice: FileChoice,
        score: f64,
        reason: CompactionReason,
        busy: &BusyFiles,
    ) -> Option<CompactionPlan> {
        let src = shape.slots(level).start;
        let last = level + 1 == shape.logical_levels();
        // Where the output goes: a leveled slot to merge into, or `None`
        // for a new run of a tiered next level (or an in-place rewrite).
        let merge_into = match (last, shape.layout(level + 1)) {
            (true, _) => None,
            (false, Layout::Leveling) => Some(shape.slots(level + 1).start),
            (false, Layout::Tiering) => None,
        };
        let files = version.levels.get(src)?;
        let grandparents = shape.slots(level + 2);
        let cursor = self.cursors.lock().get(level).cloned().unwrap_or_default();
        let ranked = rank_files(files, choice, &cursor, busy, |f| {
            let (lo, hi) = (Some(f.smallest_user_key()), Some(f.largest_user_key()));
            let parents = merge_into
                .map(|t| version.overlapping(t, lo, hi))
                .unwrap_or_default();
            if any_busy(&parents, busy) {
                return None;
            }
            let parent_bytes = match merge_into {
                Some(_) => parents.iter().map(|p| p.size).sum(),
                None => shape
                    .slots(level + 1)
                    .flat_map(|s| version.overlapping(s, lo, hi))
                    .map(|p| p.size)
                    .sum(),
            };
            let grandparent_bytes = grandparents
                .clone()
                .flat_map(|s| version.overlapping(s, lo, hi))
                .map(|p| p.size)
                .sum();
            Some((parent_bytes, grandparent_bytes))
        });
        let whole = matches!(choice, FileChoice::Configured(_))
            && matches!(
                self.c.granularity,
                Granularity::WholeLevel | Granularity::SortedRuns
            );
        let mut chosen: Vec<Arc<FileMeta>> = if whole {
            if ranked.len() != files.len() {
                return None;
            }
            files.clone()
        } else if matches!(choice, FileChoice::Configured(_))
            && self.c.granularity == Granularity::SeveralFiles
        {
            let mut bytes = 0u64;
            let mut picked = Vec::new();
            for f in ranked {
                if !picked.is_empty()
                    && bytes.saturating_add(f.size) > self.levels.max_compaction_bytes
                {
                    break;
                }
                bytes = bytes.saturating_add(f.size);
                picked.push(f);
            }
            picked
        } else {
            ranked.into_iter().take(1).collect()
        };
        chosen.sort_by(|a, b| a.smallest_user_key().cmp(b.smallest_user_key()));
        let (lo, hi) = user_key_range(chosen.iter().map(|f| f.as_ref()))?;
        let (parents, out) = match merge_into {
            Some(t) => {
                let parents = version.overlapping(t, Some(lo), Some(hi));
                if any_busy(&parents, busy) {
                    return None;
                }
                (parents, t)
            }
            None if last => (Vec::new(), src),
            None => (Vec::new(), shape.arrival_slot(version, level + 1, lo, hi)?),
        };
        if matches!(
            choice,
            FileChoice::Configured(super::FilePicker::RoundRobin)
        ) {
            let mut cursors = self.cursors.lock();
            if cursors.len() <= level {
                cursors.resize(level + 1, Vec::new());
            }
            cursors[level] = hi.to_vec();
        }
        let (lo, hi) = user_key_range(chosen.iter().chain(&parents).map(|f| f.as_ref()))?;
        Some(CompactionPlan {
            level: src,
            output_level: out,
            bottommost: is_bottommost(version, out, lo, hi),
            input_levels: vec![src, out],
            inputs: vec![chosen, parents],
            target_file_size: self.levels.target_file_size(shape.logical_of(out)),
            score,
            reason,
        })
    }

    /// Every run of tiered `level` merged into one: a new run of a tiered
    /// next level, merged into a leveled next level, or (the last level) one
    /// run in its deepest slot.
    fn pick_tiered(
        &self,
        shape: &TreeShape,
        version: &Version,
        level: usize,
        score: f64,
        reason: CompactionReason,
        busy: &BusyFiles,
    ) -> Option<CompactionPlan> {
        let slots = shape.slots(level);
        let mut inputs = Vec::new();
        let mut input_levels = Vec::new();
        for s in slots.clone() {
            let files = version.levels.get(s)?;
            if !files.is_empty() {
                if any_busy(files, busy) {
                    return None;
                }
                inputs.push(files.clone());
                input_levels.push(s);
            }
        }
        let (lo, hi) = user_key_range(inputs.iter().flatten().map(|f| f.as_ref()))?;
        let last = level + 1 == shape.logical_levels();
        let out = if last {
            let deepest = slots.end.checked_sub(1)?;
            // One run already in the deepest slot: nothing to merge unless
            // its tombstones are due.
            if input_levels == [deepest] && reason != CompactionReason::TombstoneTtl {
                return None;
            }
            deepest
        } else {
            match shape.layout(level + 1) {
                Layout::Leveling => {
                    let t = shape.slots(level + 1).start;
                    let parents = version.overlapping(t, Some(lo), Some(hi));
                    if any_busy(&parents, busy) {
                        return None;
                    }
                    inputs.push(parents);
                    input_levels.push(t);
                    t
                }
                Layout::Tiering => shape.arrival_slot(version, level + 1, lo, hi)?,
            }
        };
        let (lo, hi) = user_key_range(inputs.iter().flatten().map(|f| f.as_ref()))?;
        Some(CompactionPlan {
            level: slots.start,
            output_level: out,
            bottommost: is_bottommost(version, out, lo, hi),
            inputs,
            input_levels,
            target_file_size: self.levels.target_file_size(shape.logical_of(out)),
            score,
            reason,
        })
    }

    /// Every file of the tree into the last physical level.
    fn full_merge(
        &self,
        shape: &TreeShape,
        version: &Version,
        score: f64,
        busy: &BusyFiles,
    ) -> Option<CompactionPlan> {
        let out = version.num_levels().checked_sub(1)?;
        let mut inputs = Vec::new();
        let mut input_levels = Vec::new();
        for (level, files) in version.levels.iter().enumerate() {
            if !files.is_empty() {
                if any_busy(files, busy) {
                    return None;
                }
                inputs.push(files.clone());
                input_levels.push(level);
            }
        }
        if input_levels.len() < 2 {
            return None;
        }
        Some(CompactionPlan {
            level: input_levels.first().copied()?,
            output_level: out,
            bottommost: true,
            inputs,
            input_levels,
            target_file_size: self.levels.target_file_size(shape.logical_of(out)),
            score,
            reason: CompactionReason::SpaceAmplification,
        })
    }
}

impl CompactionStrategy for Composed {
    fn pick(&self, version: &Version, busy: &BusyFiles) -> Option<CompactionPlan> {
        let shape = self.shape(version);
        if shape.logical_levels() < 2 {
            return None;
        }
        let mut candidates = self.candidates(&shape, version, busy);
        // Highest score first; the sort is stable, so ties favour L0, then
        // shallower levels, then the optional triggers.
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
        candidates
            .into_iter()
            .take_while(|(score, _)| *score >= 1.0)
            .find_map(|(score, source)| self.plan_for(&shape, version, source, score, busy))
    }

    /// A range of one physical level merged into the next one (the last
    /// level rewritten in place), as [`Leveled`] does: valid for every
    /// layout, since each physical level is one sorted run older than the
    /// one above it.
    fn pick_manual(
        &self,
        version: &Version,
        level: usize,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        busy: &BusyFiles,
    ) -> Option<CompactionPlan> {
        let mut plan = self.leveled.pick_manual(version, level, lo, hi, busy)?;
        let shape = self.shape(version);
        plan.score = self
            .level_scores(version)
            .get(level)
            .copied()
            .unwrap_or(0.0);
        plan.target_file_size = self
            .levels
            .target_file_size(shape.logical_of(plan.output_level));
        Some(plan)
    }

    /// Per physical level: the score of the logical level owning it.
    fn level_scores(&self, version: &Version) -> Vec<f64> {
        let shape = self.shape(version);
        (0..version.num_levels())
            .map(|slot| match shape.logical_of(slot) {
                0 => self.leveled.l0_score(version, &BusyFiles::new()),
                l => self.level_score(&shape, version, l),
            })
            .collect()
    }

    /// [`Leveled`]'s estimate when every level is leveled; otherwise the
    /// bytes of every due level plus those of the leveled level it merges
    /// into.
    fn pending_compaction_bytes(&self, version: &Version) -> u64 {
        let shape = self.shape(version);
        let n = shape.logical_levels();
        if (1..n).all(|l| shape.layout(l) == Layout::Leveling) {
            return self.leveled.pending_compaction_bytes(version);
        }
        let mut pending = 0u64;
        if self.leveled.l0_score(version, &BusyFiles::new()) >= 1.0 {
            pending = pending.saturating_add(version.level_bytes(0));
        }
        for l in 1..n {
            if self.level_score(&shape, version, l) >= 1.0 {
                pending = pending.saturating_add(shape.level_bytes(version, l));
                if l + 1 < n && shape.layout(l + 1) == Layout::Leveling {
                    pending = pending.saturating_add(shape.level_bytes(version, l + 1));
                }
            }
        }
        pending
    }
}
