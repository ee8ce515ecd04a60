//! The index of an open table, decoded once at open into flat arrays.
//!
//! The stored index block (`docs/sst_format.md`, "Index block") is built for
//! size: prefix-compressed entries behind a restart array, varint handles. A
//! point lookup searching it directly touches a restart slot and an entry
//! header per probe, each a likely cache miss in an index of thousands of
//! entries. [`TableIndex`] keeps, per data block, eight bytes of the
//! separator's user key as a big-endian integer next to its neighbours, so a
//! search compares integers in one small array and reads a full separator
//! only when the integers tie. The eight bytes are those after the prefix
//! that every separator of the table shares (`user` in YCSB's `user…`
//! keys, a tenant or table name in many schemas), so that tables of such
//! keys do not tie on nearly every comparison.
//!
//! Decoding checks what a search relies on: every handle decodes and lies
//! inside the block area, and separators strictly increase. A table whose
//! index fails this does not open.

use std::cmp::Ordering;

use crate::error::{Error, Result};
use crate::iterator::InternalIterator;
use crate::key::{compare_internal, user_key};

use super::block::Block;
use super::footer::BlockHandle;

/// The first eight bytes of `user_key` as a big-endian integer, zero-padded.
/// Integer order agrees with bytewise key order whenever the integers
/// differ; equal integers say nothing.
#[inline]
fn key_prefix(user_key: &[u8]) -> u64 {
    match user_key.first_chunk::<8>() {
        Some(b) => u64::from_be_bytes(*b),
        None => {
            let mut b = [0u8; 8];
            b[..user_key.len()].copy_from_slice(user_key);
            u64::from_be_bytes(b)
        }
    }
}

/// Entries per summary slot of [`TableIndex`]: 16 prefixes, two cache lines.
const GROUP: usize = 16;

/// Where data block `i` is and where its separator ends; one record so that
/// a lookup's handle costs one cache line.
#[derive(Debug, Clone, Copy)]
struct BlockEntry {
    offset: u64,
    size: u32,
    /// End of this block's separator in [`TableIndex::keys`].
    key_end: u32,
}

/// One table's index as parallel arrays, entry `i` describing data block `i`.
/// Opaque outside this crate: an open [`super::Table`] hands its index out
/// ([`super::Table::shared_index`]) so that another open of the same file (a
/// compaction reading it) need not decode and hold a second copy.
#[derive(Debug, Default)]
pub struct TableIndex {
    /// The longest prefix shared by every separator's user key.
    common: Vec<u8>,
    /// [`key_prefix`] of each separator's user key after `common`, alone in
    /// its array so a binary search touches as few cache lines as possible.
    prefixes: Vec<u64>,
    /// Every [`GROUP`]-th prefix: a summary small enough to stay in cache, so
    /// a search touches only one group (two cache lines) of `prefixes`.
    summary: Vec<u64>,
    blocks: Vec<BlockEntry>,
    /// Separators (internal keys) back to back.
    keys: Vec<u8>,
}

impl TableIndex {
    /// Decode the stored index `block` of a table whose blocks end before
    /// `block_area_end`. `location` and `offset` (the index block's file
    /// offset) name it in errors.
    pub(crate) fn decode(
        block: &Block,
        location: &std::sync::Arc<str>,
        offset: u64,
        block_area_end: u64,
    ) -> Result<TableIndex> {
        let corrupt = |i: usize, reason: &str| {
            Error::corruption(&**location, offset, format!("index entry {i}: {reason}"))
        };
        let mut index = TableIndex::default();
        let mut it = block.iter(location.clone(), offset);
        it.seek_to_first()?;
        while it.valid() {
            let i = index.blocks.len();
            let handle = BlockHandle::decode(it.value())
                .ok_or_else(|| corrupt(i, "bad data block handle"))?;
            if handle
                .end_with_trailer()
                .is_none_or(|end| end > block_area_end)
            {
                return Err(corrupt(i, "data block runs past the block area"));
            }
            let size = u32::try_from(handle.size)
                .map_err(|_| corrupt(i, "data block larger than 4 GiB"))?;
            if i > 0 && compare_internal(index.separator(i - 1), it.key()) != Ordering::Less {
                return Err(corrupt(i, "separator does not sort after the previous one"));
            }
            index.keys.extend_from_slice(it.key());
            let key_end = u32::try_from(index.keys.len())
                .map_err(|_| corrupt(i, "index separators exceed 4 GiB"))?;
            index.blocks.push(BlockEntry {
                offset: handle.offset,
                size,
                key_end,
            });
            it.next()?;
        }
        // Sorted keys all share the common prefix of the first and the last.
        if let Some(last) = index.len().checked_sub(1) {
            let (a, b) = (
                user_key(index.separator(0)),
                user_key(index.separator(last)),
            );
            let n = a.iter().zip(b).take_while(|(x, y)| x == y).count();
            index.common = a[..n].to_vec();
        }
        index.prefixes = (0..index.len())
            .map(|i| key_prefix(&user_key(index.separator(i))[index.common.len()..]))
            .collect();
        index.summary = index.prefixes.iter().step_by(GROUP).copied().collect();
        index.blocks.shrink_to_fit();
        index.keys.shrink_to_fit();
        Ok(index)
    }

    /// Whether every block this index names ends (trailer included) at or
    /// before `block_area_end`: the check a decoded index passed for its
    /// own file, repeated when it is reused for another open of a file.
    pub(crate) fn fits(&self, block_area_end: u64) -> bool {
        self.blocks.last().is_none_or(|b| {
            BlockHandle::new(b.offset, u64::from(b.size))
                .end_with_trailer()
                .is_some_and(|end| end <= block_area_end)
        })
    }

    /// Number of data blocks.
    pub(crate) fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Handle of data block `i` (`i < len()`).
    pub(crate) fn handle(&self, i: usize) -> BlockHandle {
        let b = self.blocks[i];
        BlockHandle::new(b.offset, u64::from(b.size))
    }

    /// Separator of data block `i` (`i < len()`): an internal key at or
    /// after the block's last key and before the next block's first.
    pub(crate) fn separator(&self, i: usize) -> &[u8] {
        let start = if i == 0 {
            0
        } else {
            self.blocks[i - 1].key_end as usize
        };
        &self.keys[start..self.blocks[i].key_end as usize]
    }

    /// The first block whose separator is at or after the internal key
    /// `target`: the only block that can hold the first entry `>= target`.
    /// `len()` when every separator sorts before it.
    pub(crate) fn seek(&self, target: &[u8]) -> usize {
        self.finish_seek(&self.start_seek(target), target)
    }

    /// First half of [`TableIndex::seek`]: narrow the search to one group
    /// through the summary (which stays in cache) and start loading that
    /// group's prefixes and block records, so the caller can overlap those
    /// misses with other work (a bloom probe) before
    /// [`TableIndex::finish_seek`].
    #[inline]
    pub(crate) fn start_seek(&self, target: &[u8]) -> SeekStart {
        let target_user = user_key(target);
        let Some(rest) = target_user.strip_prefix(self.common.as_slice()) else {
            // The target's user key lies outside the common prefix: before
            // every separator or after all of them.
            let shared = target_user.len().min(self.common.len());
            let answer = if target_user[..shared] <= self.common[..shared] {
                0
            } else {
                self.len()
            };
            return SeekStart::Decided(answer);
        };
        let want = key_prefix(rest);
        // Groups whose first prefix is below `want`: the answer lies in the
        // last of them, or is the start of the next.
        let groups_below = self.summary.partition_point(|&p| p < want);
        let from = groups_below.saturating_sub(1) * GROUP;
        let to = (groups_below * GROUP).min(self.len());
        crate::prefetch::prefetch_slice(&self.prefixes[from..to]);
        crate::prefetch::prefetch_slice(&self.blocks[from..to]);
        SeekStart::Group { want, from, to }
    }

    /// Second half of [`TableIndex::seek`], for the same `target`.
    ///
    /// Separators before the target are those whose prefix is smaller, then
    /// those with an equal prefix that compare smaller in full. The first
    /// prefix not below the target's is found in the group; full separators
    /// are compared only inside a run of equal prefixes.
    pub(crate) fn finish_seek(&self, start: &SeekStart, target: &[u8]) -> usize {
        let (want, from, to) = match *start {
            SeekStart::Decided(answer) => return answer,
            SeekStart::Group { want, from, to } => (want, from, to),
        };
        let first = from + self.prefixes[from..to].partition_point(|&p| p < want);
        // Entries from `first` on with an equal prefix form a run; those of
        // it that sort before the target in full come first.
        let tied_before = |i: usize| {
            self.prefixes[i] == want
                && compare_internal(self.separator(i), target) == Ordering::Less
        };
        if first == self.len() || !tied_before(first) {
            return first;
        }
        // `tied_before` holds for the start of the entries from `first` on
        // and for none after (past the run its prefix test fails at once).
        // Runs are short, so its end is bracketed by galloping from `first`
        // (nearby entries, few cache lines), then found by binary search.
        let (mut lo, mut step) = (first + 1, 1);
        let mut hi = loop {
            let probe = first + step;
            if probe >= self.len() || !tied_before(probe) {
                break probe.min(self.len());
            }
            lo = probe + 1;
            step *= 2;
        };
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if tied_before(mid) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// The first half of a search ([`TableIndex::start_seek`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum SeekStart {
    /// The common prefix alone decided the answer.
    Decided(usize),
    /// The answer lies in `from..=to`, found by comparing `want` with the
    /// prefixes of `from..to`.
    Group { want: u64, from: usize, to: usize },
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::key::{ValueKind, make_internal_key};
    use crate::sst::block_builder::BlockBuilder;

    fn index_block(entries: &[(Vec<u8>, BlockHandle)]) -> Block {
        let mut b = BlockBuilder::new(1);
        for (k, h) in entries {
            let mut v = Vec::new();
            h.encode_to(&mut v);
            b.add(k, &v);
        }
        Block::new(Bytes::copy_from_slice(b.finish()), "t", 0).unwrap()
    }

    /// Internal keys of `users` at two sequences each, sorted.
    fn internal_keys(users: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        for u in users {
            keys.push(make_internal_key(&u, 9, ValueKind::Value));
            keys.push(make_internal_key(&u, 3, ValueKind::Value));
        }
        keys.sort_by(|a, b| compare_internal(a, b));
        keys
    }

    /// Decode an index over `keys` (as separators) and check every lookup of
    /// each key and of `extra` user keys (at several sequences) against a
    /// linear scan.
    fn check_against_linear_scan(keys: &[Vec<u8>], extra: &[&[u8]]) {
        let entries: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), BlockHandle::new(i as u64 * 10, 5)))
            .collect();
        let loc: Arc<str> = "t".into();
        let index = TableIndex::decode(&index_block(&entries), &loc, 0, 1 << 20).unwrap();
        assert_eq!(index.len(), keys.len());
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(index.separator(i), &k[..]);
            assert_eq!(index.handle(i), BlockHandle::new(i as u64 * 10, 5));
        }
        let mut targets = keys.to_vec();
        for u in extra {
            for seq in [0, 5, 100] {
                targets.push(make_internal_key(u, seq, ValueKind::Value));
            }
        }
        for t in &targets {
            let expect = keys
                .iter()
                .position(|k| compare_internal(k, t) != Ordering::Less)
                .unwrap_or(keys.len());
            assert_eq!(index.seek(t), expect, "target {t:?}");
        }
    }

    /// Separators with shared 8-byte prefixes, short keys and equal user keys
    /// at different sequences, so both the integer and the full comparison
    /// decide some probes.
    #[test]
    fn seek_matches_a_linear_scan() {
        let mut users: Vec<Vec<u8>> =
            vec![b"".to_vec(), b"a".to_vec(), b"a\0".to_vec(), b"ab".to_vec()];
        for i in 0..40u32 {
            let mut k = b"prefix00".to_vec();
            k.extend_from_slice(&i.to_be_bytes());
            users.push(k);
        }
        users.push(b"zz".to_vec());
        check_against_linear_scan(
            &internal_keys(users),
            &[
                b"",
                b"\0",
                b"a",
                b"aa",
                b"prefix00",
                b"prefix00\0\0\0\x05\0",
                b"zzz",
                b"\xff",
            ],
        );
    }

    /// Every separator starts with `user`: prefixes are taken after it, and
    /// targets outside it are answered by it alone. Runs of equal prefixes
    /// longer than a summary group cross group boundaries.
    #[test]
    fn seek_past_a_common_prefix_matches_a_linear_scan() {
        let mut users: Vec<Vec<u8>> = vec![b"user".to_vec(), b"user\0".to_vec()];
        for i in 0..50u32 {
            let mut k = b"user12345678".to_vec();
            k.extend_from_slice(&i.to_be_bytes());
            users.push(k);
        }
        for i in 0..30u32 {
            users.push(format!("user{i:08}").into_bytes());
        }
        users.push(b"userz".to_vec());
        let keys = internal_keys(users);
        check_against_linear_scan(
            &keys,
            &[
                b"",
                b"u",
                b"us",
                b"usa",
                b"use",
                b"user",
                b"user\0\0",
                b"user1234567",
                b"user12345678",
                b"user12345678\0\0\0\x07",
                b"user12345679",
                b"user00000015x",
                b"userzz",
                b"usez",
                b"v",
                b"\xff",
            ],
        );
        // One separator: its whole user key is the common prefix.
        check_against_linear_scan(&keys[..1], &[b"", b"user", b"usera", b"usea"]);
    }

    #[test]
    fn unsorted_or_out_of_bounds_entries_do_not_decode() {
        let a = make_internal_key(b"a", 1, ValueKind::Value);
        let b = make_internal_key(b"b", 1, ValueKind::Value);
        let loc: Arc<str> = "tbl".into();
        let h = BlockHandle::new(0, 10);
        let unsorted = index_block(&[(b.clone(), h), (a.clone(), h)]);
        let err = TableIndex::decode(&unsorted, &loc, 77, 100).unwrap_err();
        assert!(err.to_string().contains("index entry 1"), "{err}");
        let far = index_block(&[(a, h), (b, BlockHandle::new(95, 10))]);
        let err = TableIndex::decode(&far, &loc, 77, 100).unwrap_err();
        assert!(
            err.is_corruption() && err.to_string().contains("past the block area"),
            "{err}"
        );
    }
}
