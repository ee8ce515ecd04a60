//! The union of several sorted sources, in internal-key order, both ways.
//!
//! The merged order is `(internal key, child index)`: internal keys are unique
//! across the sources of one database, and when two children do hold the same
//! key the lower child index comes first, so the order is always a total one.
//!
//! A binary heap of child indices (ordered by each child's current key) picks
//! the next child. Heap slots are reused, so a step allocates nothing.

use std::cmp::Ordering;

use crate::error::Result;
use crate::iterator::InternalIterator;
use crate::key::compare_internal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Reverse,
}

/// An [`InternalIterator`] over the union of its children.
///
/// Invariants while valid: every valid child except the current one is
/// positioned at its first entry after (forward) or last entry before
/// (reverse) the current merged position, and `heap` holds exactly the valid
/// children with `heap[0]` the current one.
pub struct MergingIterator<'a> {
    children: Vec<Box<dyn InternalIterator + 'a>>,
    heap: Vec<usize>,
    direction: Direction,
    /// The current key, copied when the direction changes (buffer reused).
    switch_key: Vec<u8>,
}

impl std::fmt::Debug for MergingIterator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergingIterator")
            .field("children", &self.children.len())
            .field("current", &self.heap.first())
            .field("direction", &self.direction)
            .finish()
    }
}

impl<'a> MergingIterator<'a> {
    /// Merge `children` (which may borrow, e.g. from memtable images for
    /// `'a`); the iterator starts unpositioned.
    pub fn new(children: Vec<Box<dyn InternalIterator + 'a>>) -> Self {
        let heap = Vec::with_capacity(children.len());
        MergingIterator {
            children,
            heap,
            direction: Direction::Forward,
            switch_key: Vec::new(),
        }
    }

    /// Number of children.
    pub fn num_children(&self) -> usize {
        self.children.len()
    }

    /// True when child `a` must be yielded before child `b` in the current
    /// direction.
    fn before(&self, a: usize, b: usize) -> bool {
        let ord = compare_internal(self.children[a].key(), self.children[b].key()).then(a.cmp(&b));
        match self.direction {
            Direction::Forward => ord == Ordering::Less,
            Direction::Reverse => ord == Ordering::Greater,
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let l = 2 * i + 1;
            if l >= n {
                return;
            }
            let r = l + 1;
            let mut best = l;
            if r < n && self.before(self.heap[r], self.heap[l]) {
                best = r;
            }
            if !self.before(self.heap[best], self.heap[i]) {
                return;
            }
            self.heap.swap(i, best);
            i = best;
        }
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if !self.before(self.heap[i], self.heap[parent]) {
                return;
            }
            self.heap.swap(i, parent);
            i = parent;
        }
    }

    /// Rebuild the heap from every valid child, in `direction`.
    fn rebuild(&mut self, direction: Direction) {
        self.direction = direction;
        self.heap.clear();
        for i in 0..self.children.len() {
            if self.children[i].valid() {
                self.heap.push(i);
                let last = self.heap.len() - 1;
                self.sift_up(last);
            }
        }
    }

    /// Restore the heap after the current child moved.
    fn fix_top(&mut self) {
        let Some(&top) = self.heap.first() else {
            return;
        };
        if self.children[top].valid() {
            self.sift_down(0);
        } else {
            self.heap.swap_remove(0);
            self.sift_down(0);
        }
    }

    /// Run `op` on every child, rebuild the heap; on error leave the iterator
    /// unpositioned.
    fn position_all(
        &mut self,
        direction: Direction,
        mut op: impl FnMut(&mut dyn InternalIterator) -> Result<()>,
    ) -> Result<()> {
        self.heap.clear();
        for child in &mut self.children {
            op(child.as_mut())?;
        }
        self.rebuild(direction);
        Ok(())
    }

    /// Run a step on the current child and restore the heap; an error leaves
    /// the iterator unpositioned.
    fn step_current(&mut self, forward: bool) -> Result<()> {
        let Some(&top) = self.heap.first() else {
            return Ok(());
        };
        let child = &mut self.children[top];
        let moved = if forward { child.next() } else { child.prev() };
        if let Err(e) = moved {
            self.heap.clear();
            return Err(e);
        }
        self.fix_top();
        Ok(())
    }

    /// Move every child except the current one to the other side of the
    /// current position, so the merged order continues in `direction`.
    ///
    /// The current position is `(key, cur)`. Going forward, a child `j` must
    /// be at its first entry after `(key, cur)`: its first key `>= key` when
    /// `j > cur`, its first key `> key` when `j < cur`. Going backwards, the
    /// mirror image.
    fn switch_direction(&mut self, direction: Direction) -> Result<()> {
        let Some(&cur) = self.heap.first() else {
            return Ok(());
        };
        self.switch_key.clear();
        self.switch_key.extend_from_slice(self.children[cur].key());
        if let Err(e) = reposition(&mut self.children, cur, &self.switch_key, direction) {
            self.heap.clear();
            return Err(e);
        }
        self.rebuild(direction);
        Ok(())
    }
}

/// Move the children around the merged position `(key, cur)` as described
/// at [`MergingIterator::switch_direction`].
fn reposition(
    children: &mut [Box<dyn InternalIterator + '_>],
    cur: usize,
    key: &[u8],
    direction: Direction,
) -> Result<()> {
    for (j, child) in children.iter_mut().enumerate() {
        if j == cur {
            continue;
        }
        match direction {
            Direction::Forward => {
                child.seek(key)?;
                if j < cur && child.valid() && child.key() == key {
                    child.next()?;
                }
            }
            Direction::Reverse => {
                child.seek_for_prev(key)?;
                if j > cur && child.valid() && child.key() == key {
                    child.prev()?;
                }
            }
        }
    }
    match direction {
        Direction::Forward => children[cur].next(),
        Direction::Reverse => children[cur].prev(),
    }
}

impl InternalIterator for MergingIterator<'_> {
    fn valid(&self) -> bool {
        !self.heap.is_empty()
    }

    fn seek_to_first(&mut self) -> Result<()> {
        self.position_all(Direction::Forward, |c| c.seek_to_first())
    }

    fn seek_to_last(&mut self) -> Result<()> {
        self.position_all(Direction::Reverse, |c| c.seek_to_last())
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        self.position_all(Direction::Forward, |c| c.seek(target))
    }

    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        self.position_all(Direction::Reverse, |c| c.seek_for_prev(target))
    }

    fn next(&mut self) -> Result<()> {
        if self.direction == Direction::Reverse {
            return self.switch_direction(Direction::Forward);
        }
        self.step_current(true)
    }

    fn prev(&mut self) -> Result<()> {
        if self.direction == Direction::Forward {
            return self.switch_direction(Direction::Reverse);
        }
        self.step_current(false)
    }

    /// Empty when unpositioned (never a panic).
    fn key(&self) -> &[u8] {
        self.heap.first().map_or(&[], |&i| self.children[i].key())
    }

    /// Empty when unpositioned (never a panic).
    fn value(&self) -> &[u8] {
        self.heap.first().map_or(&[], |&i| self.children[i].value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iter::VecIterator;
    use crate::key::{ValueKind, make_internal_key};

    fn source(entries: &[(&str, u64)], tag: &str) -> Box<dyn InternalIterator> {
        Box::new(VecIterator::new(
            entries
                .iter()
                .map(|(k, s)| {
                    (
                        make_internal_key(k.as_bytes(), *s, ValueKind::Value),
                        format!("{tag}{k}{s}").into_bytes(),
                    )
                })
                .collect(),
        ))
    }

    #[test]
    fn duplicate_keys_order_by_child_index_both_ways() {
        let mut it = MergingIterator::new(vec![
            source(&[("a", 1), ("b", 1)], "x"),
            source(&[("b", 1), ("c", 1)], "y"),
        ]);
        it.seek_to_first().unwrap();
        let mut fwd = Vec::new();
        while it.valid() {
            fwd.push(String::from_utf8(it.value().to_vec()).unwrap());
            it.next().unwrap();
        }
        assert_eq!(fwd, ["xa1", "xb1", "yb1", "yc1"]);
        it.seek_to_last().unwrap();
        let mut rev = Vec::new();
        while it.valid() {
            rev.push(String::from_utf8(it.value().to_vec()).unwrap());
            it.prev().unwrap();
        }
        assert_eq!(rev, ["yc1", "yb1", "xb1", "xa1"]);
        // Switch direction on the tie: from yb1 back to xb1, forward to yb1.
        it.seek_to_first().unwrap();
        it.next().unwrap();
        it.next().unwrap();
        assert_eq!(it.value(), b"yb1");
        it.prev().unwrap();
        assert_eq!(it.value(), b"xb1");
        it.next().unwrap();
        assert_eq!(it.value(), b"yb1");
    }
}
