//! The pool's free extents: first-fit allocation over an address-ordered
//! free list, coalescing neighbours on release.
//!
//! Memtable images are few and large (~64 MiB) with sizes that vary a little,
//! and they are released in roughly allocation order (oldest image flushed
//! first), so first-fit in address order keeps the low end of the pool
//! packed and the free space in a few large extents at the top. Every extent
//! offset and length is a multiple of [`ALIGN`].
//!
//! Invariants: free extents never overlap, never touch (touching extents
//! are merged on release), and their total is `free`.

use std::collections::BTreeMap;

/// Allocation granularity and alignment of every extent (one page), so a
/// region can be registered or mapped on its own later.
pub const ALIGN: u64 = 4096;

/// `bytes` rounded up to a multiple of [`ALIGN`]; `None` on overflow.
pub fn round_up(bytes: u64) -> Option<u64> {
    bytes.checked_next_multiple_of(ALIGN)
}

#[derive(Debug)]
pub struct FreeList {
    /// Free extents by offset: offset → length.
    extents: BTreeMap<u64, u64>,
    free: u64,
}

impl FreeList {
    /// One free extent `[0, capacity)`; `capacity` must be a multiple of
    /// [`ALIGN`].
    pub fn new(capacity: u64) -> FreeList {
        let mut extents = BTreeMap::new();
        if capacity > 0 {
            extents.insert(0, capacity);
        }
        FreeList {
            extents,
            free: capacity,
        }
    }

    /// Take the first extent (lowest offset) of at least `len` bytes
    /// (`len` a non-zero multiple of [`ALIGN`]); returns its offset.
    pub fn take(&mut self, len: u64) -> Option<u64> {
        let (&offset, &extent) = self.extents.iter().find(|&(_, &l)| l >= len)?;
        self.extents.remove(&offset);
        if extent > len {
            self.extents.insert(offset + len, extent - len);
        }
        self.free -= len;
        Some(offset)
    }

    /// Return `[offset, offset + len)`, merging it with free neighbours.
    /// The extent must have come from [`FreeList::take`] and not be free.
    pub fn give_back(&mut self, offset: u64, len: u64) {
        let mut start = offset;
        let mut end = offset + len;
        if let Some((&prev, &prev_len)) = self.extents.range(..offset).next_back()
            && prev + prev_len == offset
        {
            self.extents.remove(&prev);
            start = prev;
        }
        if let Some(&next_len) = self.extents.get(&end) {
            self.extents.remove(&end);
            end += next_len;
        }
        self.extents.insert(start, end - start);
        self.free += len;
    }

    pub fn free(&self) -> u64 {
        self.free
    }

    pub fn largest(&self) -> u64 {
        self.extents.values().copied().max().unwrap_or(0)
    }

    pub fn extent_count(&self) -> usize {
        self.extents.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_takes_the_lowest_extent_that_fits() {
        let mut list = FreeList::new(10 * ALIGN);
        let a = list.take(2 * ALIGN).unwrap();
        let b = list.take(ALIGN).unwrap();
        let c = list.take(3 * ALIGN).unwrap();
        assert_eq!((a, b, c), (0, 2 * ALIGN, 3 * ALIGN));
        list.give_back(a, 2 * ALIGN);
        // The hole at 0 is too small for 3 pages: the tail is used.
        assert_eq!(list.take(3 * ALIGN), Some(6 * ALIGN));
        // One page fits the hole at 0.
        assert_eq!(list.take(ALIGN), Some(0));
        assert_eq!(list.free(), 10 * ALIGN - 8 * ALIGN);
    }

    #[test]
    fn release_coalesces_both_neighbours() {
        let mut list = FreeList::new(3 * ALIGN);
        let a = list.take(ALIGN).unwrap();
        let b = list.take(ALIGN).unwrap();
        let c = list.take(ALIGN).unwrap();
        assert_eq!(list.take(ALIGN), None);
        list.give_back(a, ALIGN);
        list.give_back(c, ALIGN);
        assert_eq!(list.extent_count(), 2);
        list.give_back(b, ALIGN);
        assert_eq!(list.extent_count(), 1);
        assert_eq!(list.largest(), 3 * ALIGN);
    }
}
