//! Logical levels on physical levels. Every physical level below L0 is one
//! sorted run; a tiered logical level owns `runs_per_tier` consecutive
//! physical levels (slots), a leveled one owns one.
//!
//! Invariant kept by every plan: for any key, a shallower slot holds newer
//! data. A tiered level therefore receives a new run in the slot just above
//! the shallowest slot already holding data in the run's key range (the
//! deepest slot when none does), and is *full* for that range when its
//! first slot already holds data there.

use std::ops::Range;

use crate::version::Version;

use super::composition::Composition;
use super::primitives::Layout;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeShape {
    /// `slots[l]`: the physical levels of logical level `l` (`0..1` for L0).
    slots: Vec<Range<usize>>,
    layouts: Vec<Layout>,
}

impl TreeShape {
    /// The shape the configuration asks for.
    pub fn configured(c: &Composition) -> Self {
        let physical = 1 + c
            .layouts
            .iter()
            .skip(1)
            .map(|&l| runs(l, c.runs_per_tier))
            .sum::<usize>();
        Self::fit(c, physical)
    }

    /// The configured shape laid over `physical` levels (a version's level
    /// count is the tree it has): the deepest logical levels lose slots when
    /// there are too few; extra slots become more levels like the last one.
    pub fn fit(c: &Composition, physical: usize) -> Self {
        let mut slots: Vec<Range<usize>> = Vec::new();
        slots.push(0..1.min(physical));
        let mut layouts = vec![Layout::Tiering];
        let mut next = 1;
        let last = c.layouts.last().copied().unwrap_or(Layout::Leveling);
        let mut configured = c.layouts.iter().skip(1).copied();
        while next < physical {
            let layout = configured.next().unwrap_or(last);
            let end = (next + runs(layout, c.runs_per_tier)).min(physical);
            slots.push(next..end);
            layouts.push(layout);
            next = end;
        }
        TreeShape { slots, layouts }
    }

    pub fn physical_levels(&self) -> usize {
        self.slots.last().map_or(0, |r| r.end)
    }

    pub fn logical_levels(&self) -> usize {
        self.slots.len()
    }

    /// Physical levels of logical `level` (empty when out of range).
    pub fn slots(&self, level: usize) -> Range<usize> {
        self.slots.get(level).cloned().unwrap_or(0..0)
    }

    pub fn layout(&self, level: usize) -> Layout {
        self.layouts.get(level).copied().unwrap_or(Layout::Leveling)
    }

    /// The logical level owning physical level `slot`.
    pub fn logical_of(&self, slot: usize) -> usize {
        self.slots
            .iter()
            .position(|r| r.contains(&slot))
            .unwrap_or(self.slots.len().saturating_sub(1))
    }

    /// Where a new run with user keys `[lo, hi]` enters tiered `level`;
    /// `None` when the level is full for that range.
    pub fn arrival_slot(
        &self,
        version: &Version,
        level: usize,
        lo: &[u8],
        hi: &[u8],
    ) -> Option<usize> {
        let slots = self.slots(level);
        let occupied = slots.clone().find(|&s| {
            version
                .levels
                .get(s)
                .is_some_and(|files| files.iter().any(|f| f.overlaps(Some(lo), Some(hi))))
        });
        match occupied {
            None => slots.end.checked_sub(1).filter(|s| slots.contains(s)),
            Some(s) if s == slots.start => None,
            Some(s) => Some(s - 1),
        }
    }

    /// Slots of `level` from its shallowest occupied one down: the sorted
    /// runs it holds, counting empty slots between runs (a level whose first
    /// slot is occupied is full whatever the gaps).
    pub fn runs_used(&self, version: &Version, level: usize) -> usize {
        let slots = self.slots(level);
        slots
            .clone()
            .find(|&s| version.levels.get(s).is_some_and(|f| !f.is_empty()))
            .map_or(0, |first| slots.end - first)
    }

    /// Bytes of logical `level` over all its slots.
    pub fn level_bytes(&self, version: &Version, level: usize) -> u64 {
        self.slots(level).map(|s| version.level_bytes(s)).sum()
    }
}

fn runs(layout: Layout, runs_per_tier: usize) -> usize {
    match layout {
        Layout::Leveling => 1,
        Layout::Tiering => runs_per_tier,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compaction::{CompactionOptions, Preset};

    #[test]
    fn slots_follow_layouts_and_fit_the_version() {
        let c = CompactionOptions {
            preset: Preset::LazyLeveling,
            levels: crate::compaction::LeveledOptions {
                num_levels: 4,
                ..Default::default()
            },
            runs_per_tier: 3,
            ..Default::default()
        }
        .composition()
        .unwrap();
        let s = TreeShape::configured(&c);
        assert_eq!(s.physical_levels(), 1 + 3 + 3 + 1);
        assert_eq!(s.slots(1), 1..4);
        assert_eq!(s.slots(3), 7..8);
        assert_eq!(s.logical_of(5), 2);
        let small = TreeShape::fit(&c, 5);
        assert_eq!(small.slots(2), 4..5);
        assert_eq!(small.logical_levels(), 3);
        let big = TreeShape::fit(&c, 10);
        assert_eq!(big.slots(4), 8..9);
        assert_eq!(big.layout(5), Layout::Leveling);
    }
}
