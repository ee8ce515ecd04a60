//! Reads one key/value block (`docs/sst_format.md`, "Key/value block"):
//! [`Block`] checks the restart array's framing, [`BlockIter`] walks and
//! searches the entries.
//!
//! Decoding never trusts the bytes: every restart offset and every
//! shared/non-shared/value length is bounds-checked when it is used, and a bad
//! one is an [`Error::Corruption`] naming the table and the block's file
//! offset. Stepping always moves forward by at least one byte, so corrupt
//! input cannot make an iterator loop.

use std::cmp::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use crate::coding::get_varint32;
use crate::error::{Error, Result};
use crate::iterator::InternalIterator;
use crate::key::compare_internal;

/// A decoded block: its bytes plus where the restart array starts.
///
/// The bytes are usually `Bytes` (reference-counted, shared with the block
/// cache, so cloning is cheap); a point lookup that reads a block the cache
/// does not take searches it in place in a reused buffer (`Block<&[u8]>`).
#[derive(Debug, Clone)]
pub struct Block<D = Bytes> {
    data: D,
    /// Offset of the restart array, i.e. the end of the entry area.
    restarts: usize,
    num_restarts: u32,
}

impl Block {
    /// The whole block, restart array included.
    pub fn data(&self) -> &Bytes {
        &self.data
    }
}

impl<D: AsRef<[u8]>> Block<D> {
    /// Check the block's framing: room for `num_restarts >= 1` restart
    /// offsets before the trailing count. `location` and `offset` (the
    /// block's file offset) go into the error.
    pub fn new(data: D, location: &str, offset: u64) -> Result<Block<D>> {
        let bytes = data.as_ref();
        let len = bytes.len();
        let Some(count_bytes) = len.checked_sub(4).and_then(|p| bytes.get(p..)) else {
            return Err(Error::corruption(
                location,
                offset,
                format!("block of {len} bytes is too short for its restart count"),
            ));
        };
        let mut b = [0u8; 4];
        b.copy_from_slice(count_bytes);
        let num_restarts = u32::from_le_bytes(b);
        let array_len = (num_restarts as usize).checked_mul(4);
        let restarts = array_len.and_then(|a| (len - 4).checked_sub(a));
        match restarts {
            Some(restarts) if num_restarts >= 1 => Ok(Block {
                data,
                restarts,
                num_restarts,
            }),
            _ => Err(Error::corruption(
                location,
                offset,
                format!("block of {len} bytes cannot hold {num_restarts} restart points"),
            )),
        }
    }

    /// The block's bytes, restart array included.
    fn bytes(&self) -> &[u8] {
        self.data.as_ref()
    }

    /// Bytes of the block (what it weighs in the cache).
    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }

    /// An iterator over this block. Keys are compared with
    /// [`compare_internal`] when seeking; blocks whose keys are plain names
    /// (properties, meta-index) are only scanned.
    pub fn iter(&self, location: Arc<str>, offset: u64) -> BlockIter<D>
    where
        D: Clone,
    {
        self.clone().into_iter(location, offset)
    }

    /// [`Block::iter`], consuming the block.
    pub fn into_iter(self, location: Arc<str>, offset: u64) -> BlockIter<D> {
        BlockIter {
            current: self.restarts,
            next: self.restarts,
            block: self,
            key: Vec::new(),
            value: (0, 0),
            location,
            offset,
        }
    }
}

/// A cursor over the entries of a [`Block`].
///
/// Invariant: when valid, `key` holds the full key of the entry at `current`,
/// `value` is its value's range in the block and `next` is the offset just
/// past it. When invalid, `current == block.restarts`.
#[derive(Debug)]
pub struct BlockIter<D = Bytes> {
    block: Block<D>,
    current: usize,
    next: usize,
    key: Vec<u8>,
    value: (usize, usize),
    location: Arc<str>,
    offset: u64,
}

/// The three lengths that start every entry.
struct EntryHeader {
    shared: usize,
    non_shared: usize,
    value_len: usize,
    /// Offset of the key suffix.
    body: usize,
}

impl<D: AsRef<[u8]>> BlockIter<D> {
    /// Whether positioned at an entry ([`InternalIterator::valid`]).
    #[inline]
    fn at_entry(&self) -> bool {
        self.current < self.block.restarts
    }

    /// Point this iterator at another block, reusing its key buffer (so a
    /// table iterator crossing blocks does not allocate).
    pub fn reset(&mut self, block: Block<D>, offset: u64) {
        self.current = block.restarts;
        self.next = block.restarts;
        self.block = block;
        self.offset = offset;
        self.key.clear();
    }

    /// The iterator contract: after an error the iterator is invalid.
    fn invalid_on_error(&mut self, r: Result<()>) -> Result<()> {
        if r.is_err() {
            self.invalidate();
        }
        r
    }

    fn seek_to_last_inner(&mut self) -> Result<()> {
        self.seek_to_restart(self.block.num_restarts - 1)?;
        self.parse_next()?;
        while self.at_entry() && self.next < self.block.restarts {
            self.parse_next()?;
        }
        Ok(())
    }

    fn seek_for_prev_inner(&mut self, target: &[u8]) -> Result<()> {
        self.seek_inner(target)?;
        if !self.at_entry() {
            return self.seek_to_last_inner();
        }
        if compare_internal(&self.key, target) == Ordering::Greater {
            self.prev_inner()?;
        }
        Ok(())
    }

    fn seek_inner(&mut self, target: &[u8]) -> Result<()> {
        let (mut lo, mut hi) = (0u32, self.block.num_restarts - 1);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if compare_internal(self.restart_key(mid)?, target) == Ordering::Less {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        self.seek_to_restart(lo)?;
        loop {
            self.parse_next()?;
            if !self.at_entry() || compare_internal(&self.key, target) != Ordering::Less {
                return Ok(());
            }
        }
    }

    /// Rescan from the last restart point before the current entry (found by
    /// binary search: entries do not track their restart interval, which
    /// keeps forward steps free of restart-array reads).
    fn prev_inner(&mut self) -> Result<()> {
        let original = self.current;
        // `lo` = number of restart points before `original`; on a corrupt,
        // unsorted array it is still one whose predecessor lies before it.
        let (mut lo, mut hi) = (0u32, self.block.num_restarts);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.restart_point(mid)? < original {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 {
            self.invalidate();
            return Ok(());
        }
        self.seek_to_restart(lo - 1)?;
        loop {
            self.parse_next()?;
            if !self.at_entry() || self.next >= original {
                return Ok(());
            }
        }
    }

    fn invalidate(&mut self) {
        self.current = self.block.restarts;
        self.next = self.block.restarts;
        self.key.clear();
        self.value = (0, 0);
    }

    fn corruption(&self, at: usize, reason: impl std::fmt::Display) -> Error {
        Error::corruption(
            &*self.location,
            self.offset,
            format!("block entry at block offset {at}: {reason}"),
        )
    }

    /// Offset of restart point `index`; must lie within the entry area.
    fn restart_point(&self, index: u32) -> Result<usize> {
        let at = self.block.restarts + 4 * index as usize;
        let bytes = self.block.bytes().get(at..at + 4).ok_or_else(|| {
            self.corruption(at, format_args!("restart index {index} out of range"))
        })?;
        let mut b = [0u8; 4];
        b.copy_from_slice(bytes);
        let point = u32::from_le_bytes(b) as usize;
        if point > self.block.restarts {
            return Err(self.corruption(
                at,
                format_args!(
                    "restart point {point} past the entry area ({} bytes)",
                    self.block.restarts
                ),
            ));
        }
        Ok(point)
    }

    /// Prepare to decode restart point `index` as the next entry.
    fn seek_to_restart(&mut self, index: u32) -> Result<()> {
        let point = self.restart_point(index)?;
        self.key.clear();
        self.current = point;
        self.next = point;
        Ok(())
    }

    /// Decode the three entry lengths at `at` and check that the entry fits
    /// in the entry area.
    #[inline]
    fn header(&self, at: usize) -> Result<EntryHeader> {
        let area = self
            .block
            .bytes()
            .get(at..self.block.restarts)
            .unwrap_or(&[]);
        let (shared, non_shared, value_len, n) =
            if area.len() >= 3 && (area[0] | area[1] | area[2]) < 0x80 {
                (area[0] as u32, area[1] as u32, area[2] as u32, 3)
            } else {
                let bad = || self.corruption(at, "truncated entry header");
                let (s, n1) = get_varint32(area).ok_or_else(bad)?;
                let rest = area.get(n1..).unwrap_or(&[]);
                let (ns, n2) = get_varint32(rest).ok_or_else(bad)?;
                let rest = rest.get(n2..).unwrap_or(&[]);
                let (v, n3) = get_varint32(rest).ok_or_else(bad)?;
                (s, ns, v, n1 + n2 + n3)
            };
        let (non_shared, value_len) = (non_shared as usize, value_len as usize);
        if non_shared + value_len > area.len() - n {
            return Err(self.corruption(
                at,
                format_args!(
                    "key suffix {non_shared} + value {value_len} bytes overrun the entry area"
                ),
            ));
        }
        Ok(EntryHeader {
            shared: shared as usize,
            non_shared,
            value_len,
            body: at + n,
        })
    }

    /// The full key stored at restart point `index` (restart entries share
    /// nothing with their predecessor).
    fn restart_key(&self, index: u32) -> Result<&[u8]> {
        let at = self.restart_point(index)?;
        let h = self.header(at)?;
        if h.shared != 0 {
            return Err(self.corruption(at, "restart entry shares a key prefix"));
        }
        Ok(&self.block.bytes()[h.body..h.body + h.non_shared])
    }

    /// Decode the entry at `next`, or become invalid at the end of the area.
    fn parse_next(&mut self) -> Result<()> {
        let at = self.next;
        if at >= self.block.restarts {
            self.invalidate();
            return Ok(());
        }
        let h = match self.header(at) {
            Ok(h) => h,
            Err(e) => {
                self.invalidate();
                return Err(e);
            }
        };
        if h.shared > self.key.len() {
            let err = self.corruption(
                at,
                format_args!(
                    "shares {} bytes with a previous key of {} bytes",
                    h.shared,
                    self.key.len()
                ),
            );
            self.invalidate();
            return Err(err);
        }
        self.key.truncate(h.shared);
        let suffix_end = h.body + h.non_shared;
        self.key
            .extend_from_slice(&self.block.bytes()[h.body..suffix_end]);
        self.value = (suffix_end, suffix_end + h.value_len);
        self.current = at;
        self.next = suffix_end + h.value_len;
        Ok(())
    }
}

impl<D: AsRef<[u8]> + Send> InternalIterator for BlockIter<D> {
    fn valid(&self) -> bool {
        self.at_entry()
    }

    fn seek_to_first(&mut self) -> Result<()> {
        let r = self.seek_to_restart(0).and_then(|()| self.parse_next());
        self.invalid_on_error(r)
    }

    fn seek_to_last(&mut self) -> Result<()> {
        let r = self.seek_to_last_inner();
        self.invalid_on_error(r)
    }

    /// Position at the first entry whose key is `>= target`
    /// ([`compare_internal`] order): binary search over the restart points,
    /// then a scan of at most one restart interval.
    fn seek(&mut self, target: &[u8]) -> Result<()> {
        let r = self.seek_inner(target);
        self.invalid_on_error(r)
    }

    /// The last entry `<= target`.
    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        let r = self.seek_for_prev_inner(target);
        self.invalid_on_error(r)
    }

    /// Advance; invalid past the last entry.
    fn next(&mut self) -> Result<()> {
        if !self.valid() {
            return Ok(());
        }
        self.parse_next()
    }

    /// Step back: rescan from the last restart point before the current
    /// entry. Invalid before the first entry.
    fn prev(&mut self) -> Result<()> {
        if !self.valid() {
            return Ok(());
        }
        let r = self.prev_inner();
        self.invalid_on_error(r)
    }

    /// Empty when invalid.
    fn key(&self) -> &[u8] {
        &self.key
    }

    /// Empty when invalid.
    fn value(&self) -> &[u8] {
        self.block
            .bytes()
            .get(self.value.0..self.value.1)
            .unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{ValueKind, make_internal_key};
    use crate::sst::block_builder::BlockBuilder;

    fn build(n: usize, interval: usize) -> (Vec<Vec<u8>>, Block) {
        let mut b = BlockBuilder::new(interval);
        let keys: Vec<Vec<u8>> = (0..n)
            .map(|i| make_internal_key(format!("key{:05}", i * 2).as_bytes(), 7, ValueKind::Value))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            b.add(k, format!("v{i}").as_bytes());
        }
        let block = Block::new(Bytes::copy_from_slice(b.finish()), "t", 0).unwrap();
        (keys, block)
    }

    #[test]
    fn scans_both_ways_and_seeks() {
        for interval in [1, 2, 16] {
            let (keys, block) = build(100, interval);
            let mut it = block.iter("t".into(), 0);
            it.seek_to_first().unwrap();
            for (i, k) in keys.iter().enumerate() {
                assert_eq!(it.key(), &k[..]);
                assert_eq!(it.value(), format!("v{i}").as_bytes());
                it.next().unwrap();
            }
            assert!(!it.valid());
            it.seek_to_last().unwrap();
            for k in keys.iter().rev() {
                assert_eq!(it.key(), &k[..]);
                it.prev().unwrap();
            }
            assert!(!it.valid());
            for i in 0..200usize {
                let target =
                    make_internal_key(format!("key{i:05}").as_bytes(), 7, ValueKind::Value);
                it.seek(&target).unwrap();
                match keys.get(i.div_ceil(2)) {
                    Some(k) => assert_eq!(it.key(), &k[..]),
                    None => assert!(!it.valid()),
                }
            }
        }
    }

    #[test]
    fn empty_block_has_no_entries() {
        let mut b = BlockBuilder::new(4);
        let block = Block::new(Bytes::copy_from_slice(b.finish()), "t", 0).unwrap();
        let mut it = block.iter("t".into(), 0);
        it.seek_to_first().unwrap();
        assert!(!it.valid());
        it.seek_to_last().unwrap();
        assert!(!it.valid());
        it.seek(b"anything").unwrap();
        assert!(!it.valid());
    }

    #[test]
    fn bad_framing_is_corruption() {
        assert!(Block::new(Bytes::from_static(&[1, 0]), "t", 9).is_err());
        assert!(Block::new(Bytes::from_static(&[0, 0, 0, 0]), "t", 9).is_err());
        assert!(Block::new(Bytes::from_static(&[0, 0, 0, 0, 2, 0, 0, 0]), "t", 9).is_err());
        // A restart point beyond the entry area.
        let block = Block::new(Bytes::from_static(&[9, 0, 0, 0, 1, 0, 0, 0]), "t", 9).unwrap();
        let err = block.iter("t".into(), 9).seek_to_first().unwrap_err();
        assert!(matches!(err, Error::Corruption { offset: 9, .. }), "{err}");
    }
}
