//! An [`InternalIterator`] over an owned, sorted vector of entries.

use std::cmp::Ordering;

use crate::error::Result;
use crate::iterator::InternalIterator;
use crate::key::compare_internal;

/// Entries held in memory, ordered by [`compare_internal`].
///
/// Invariant: `entries` is sorted by internal key and `pos <= entries.len()`;
/// `pos == entries.len()` means "not positioned".
#[derive(Debug, Clone, Default)]
pub struct VecIterator {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    pos: usize,
}

impl VecIterator {
    /// Take ownership of `entries`, sorting them by internal key (a stable
    /// sort, so already sorted input is left as it is). The iterator starts
    /// unpositioned.
    pub fn new(mut entries: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        entries.sort_by(|a, b| compare_internal(&a.0, &b.0));
        let pos = entries.len();
        VecIterator { entries, pos }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Index of the first entry whose key is `>= target`.
    fn lower_bound(&self, target: &[u8]) -> usize {
        self.entries
            .partition_point(|(k, _)| compare_internal(k, target) == Ordering::Less)
    }
}

impl InternalIterator for VecIterator {
    fn valid(&self) -> bool {
        self.pos < self.entries.len()
    }

    fn seek_to_first(&mut self) -> Result<()> {
        self.pos = 0;
        Ok(())
    }

    fn seek_to_last(&mut self) -> Result<()> {
        self.pos = self
            .entries
            .len()
            .checked_sub(1)
            .unwrap_or(self.entries.len());
        Ok(())
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        self.pos = self.lower_bound(target);
        Ok(())
    }

    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        let after = self
            .entries
            .partition_point(|(k, _)| compare_internal(k, target) != Ordering::Greater);
        self.pos = after.checked_sub(1).unwrap_or(self.entries.len());
        Ok(())
    }

    fn next(&mut self) -> Result<()> {
        if self.valid() {
            self.pos += 1;
        }
        Ok(())
    }

    fn prev(&mut self) -> Result<()> {
        self.pos = self.pos.checked_sub(1).unwrap_or(self.entries.len());
        Ok(())
    }

    fn key(&self) -> &[u8] {
        &self.entries[self.pos].0
    }

    fn value(&self) -> &[u8] {
        &self.entries[self.pos].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{ValueKind, make_internal_key};

    fn ik(k: &str, seq: u64) -> Vec<u8> {
        make_internal_key(k.as_bytes(), seq, ValueKind::Value)
    }

    #[test]
    fn sorts_and_walks_both_ways() {
        let mut it = VecIterator::new(vec![
            (ik("b", 1), b"b1".to_vec()),
            (ik("a", 1), b"a1".to_vec()),
            (ik("a", 2), b"a2".to_vec()),
        ]);
        assert!(!it.valid());
        it.seek_to_first().unwrap();
        assert_eq!(it.value(), b"a2");
        it.next().unwrap();
        assert_eq!(it.value(), b"a1");
        it.next().unwrap();
        assert_eq!(it.value(), b"b1");
        it.next().unwrap();
        assert!(!it.valid());
        it.seek_to_last().unwrap();
        assert_eq!(it.value(), b"b1");
        it.prev().unwrap();
        it.prev().unwrap();
        assert_eq!(it.value(), b"a2");
        it.prev().unwrap();
        assert!(!it.valid());
    }

    #[test]
    fn seek_and_seek_for_prev_find_neighbours() {
        let mut it = VecIterator::new(vec![
            (ik("a", 5), b"a5".to_vec()),
            (ik("c", 5), b"c5".to_vec()),
        ]);
        it.seek(&ik("b", 9)).unwrap();
        assert_eq!(it.value(), b"c5");
        it.seek_for_prev(&ik("b", 9)).unwrap();
        assert_eq!(it.value(), b"a5");
        it.seek_for_prev(&ik("a", 6)).unwrap();
        assert!(!it.valid());
        it.seek(&ik("c", 4)).unwrap();
        assert!(!it.valid());
        let mut empty = VecIterator::new(Vec::new());
        empty.seek_to_last().unwrap();
        assert!(!empty.valid());
    }
}
