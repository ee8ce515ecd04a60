//! Local key indexes of offloaded images (`ReadPolicy::Adaptive`, within
//! `OffloadOptions::index_bytes`).
//!
//! An image's index holds every entry's internal key, the entry's offset in
//! the image and its value's length, in internal-key order: everything a
//! scan needs to merge the image with others, and to know which entries it
//! will return, without the memory node. A scan over indexed images merges
//! their indexes here and reads only the values of the entries it returns,
//! in one batch of one-sided reads; a delegated scan would have the memory
//! node seek and merge every image instead, which is what makes scans over
//! many images slow. An index takes about 24 bytes an entry for YCSB's
//! 23-byte keys (about a sixth of an image of 100-byte values), where a
//! pulled-back copy takes the whole image.
//!
//! Built from the memtable at shipping time (one pass, the one that builds
//! the image's filter), immutable; dropped with the image, or before it
//! when a newer image needs the room.
//!
//! Not an SST data block (`o3_storage::sst::BlockBuilder`), which has the
//! same prefix compression and restart points: a block keeps each key's
//! 8-byte trailer whole, where this index writes it as a varint. For 14,000
//! YCSB keys a block took 434 KB and this index 364 KB, the difference
//! between read-compare's 22 images fitting in 8 MiB or not.

use std::cmp::Ordering;
use std::sync::Arc;

use o3_storage::Result;
use o3_storage::coding::{get_varint32, get_varint64, put_varint32, put_varint64};
use o3_storage::iterator::InternalIterator;
use o3_storage::key::{
    TRAILER_LEN, ValueKind, compare_internal, parse_internal_key, trailer, with_lookup_key,
};

/// Entries between restart points: each group starts with a whole key, the
/// others keep only what differs from the key before them.
const GROUP: usize = 16;

/// One offloaded image's keys, in internal-key order, compactly: per
/// entry, varints of the user-key bytes shared with the previous entry's
/// and of the rest's length, those bytes, then varints of the trailer
/// (sequence and kind), the entry's offset in the image and its value's
/// length. Every [`GROUP`]th entry shares nothing and is a restart point,
/// for binary search. About 25 bytes an entry for YCSB's 23-byte keys.
#[derive(Debug, Default)]
pub(crate) struct ImageIndex {
    data: Vec<u8>,
    /// Where each group starts in `data`.
    restarts: Vec<u32>,
    len: usize,
    /// The user key of the last entry pushed (building only).
    last: Vec<u8>,
}

/// One decoded index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub sequence: u64,
    pub kind: ValueKind,
    pub offset: u32,
    pub value_len: u32,
}

impl ImageIndex {
    /// Append the entry after all others (the caller goes in order).
    /// Fails, adding nothing, on a key that is not an internal key.
    pub fn push(&mut self, internal_key: &[u8], offset: u32, value_len: u32) -> Result<()> {
        let user_key = parse_internal_key(internal_key)?.user_key;
        let shared = if self.len.is_multiple_of(GROUP) {
            self.restarts.push(self.data.len() as u32);
            0
        } else {
            self.last
                .iter()
                .zip(user_key)
                .take_while(|(a, b)| a == b)
                .count()
        };
        put_varint32(&mut self.data, shared as u32);
        put_varint32(&mut self.data, (user_key.len() - shared) as u32);
        self.data.extend_from_slice(&user_key[shared..]);
        put_varint64(&mut self.data, trailer(internal_key));
        put_varint32(&mut self.data, offset);
        put_varint32(&mut self.data, value_len);
        self.last.clear();
        self.last.extend_from_slice(user_key);
        self.len += 1;
        Ok(())
    }

    /// The index of every entry of `mem` (shipping builds it in the pass
    /// that also builds the filter; tests build it alone).
    #[cfg(test)]
    pub fn of_memtable(mem: &Arc<o3_storage::memtable::Memtable>) -> ImageIndex {
        let mut index = ImageIndex::default();
        let mut it = mem.iter();
        let _ = it.seek_to_first();
        while it.valid() {
            index
                .push(it.key(), it.offset(), it.value().len() as u32)
                .expect("a memtable's keys are internal keys");
            let _ = it.next();
        }
        index.finish()
    }

    /// Release the spare capacity of building.
    pub fn finish(mut self) -> ImageIndex {
        self.data.shrink_to_fit();
        self.restarts.shrink_to_fit();
        self.last = Vec::new();
        self
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Local memory it takes.
    pub fn bytes(&self) -> u64 {
        (self.data.capacity() + 4 * self.restarts.capacity() + std::mem::size_of::<Self>()) as u64
    }

    /// Decode the entry at byte `at` whose previous entry's user key is in
    /// `key` (its user-key part); leaves the entry's internal key in `key`
    /// and returns the entry and where the next one starts. `None` on bytes
    /// this index did not write (never, short of a bug).
    fn decode(&self, at: usize, key: &mut Vec<u8>) -> Option<(IndexEntry, usize)> {
        let rest = self.data.get(at..)?;
        let (shared, a) = get_varint32(rest)?;
        let (unshared, b) = get_varint32(rest.get(a..)?)?;
        let (shared, unshared) = (shared as usize, unshared as usize);
        let bytes = rest.get(a + b..a + b + unshared)?;
        let mut p = a + b + unshared;
        let (trailer, n) = get_varint64(rest.get(p..)?)?;
        p += n;
        let (offset, n) = get_varint32(rest.get(p..)?)?;
        p += n;
        let (value_len, n) = get_varint32(rest.get(p..)?)?;
        p += n;
        // `key` holds the previous internal key: keep its shared user-key
        // bytes, then the rest and this trailer.
        if shared > key.len().saturating_sub(TRAILER_LEN) {
            return None;
        }
        key.truncate(shared);
        key.extend_from_slice(bytes);
        key.extend_from_slice(&trailer.to_le_bytes());
        let kind = ValueKind::from_u8((trailer & 0xff) as u8)?;
        Some((
            IndexEntry {
                sequence: trailer >> 8,
                kind,
                offset,
                value_len,
            },
            at + p,
        ))
    }

    /// The newest entry of `user_key` visible at `snapshot`. `None` means
    /// the image holds no such entry, which the index knows exactly (no
    /// false positives, unlike a filter).
    pub fn find(&self, user_key: &[u8], snapshot: u64) -> Option<IndexEntry> {
        let mut cursor = Position::default();
        with_lookup_key(user_key, snapshot, |target| self.seek(&mut cursor, target));
        let entry = cursor.entry?;
        (o3_storage::key::user_key(&cursor.key) == user_key).then_some(entry)
    }

    /// Put `c` on entry number `index`, which starts at byte `at` (its
    /// group's restart, or where the entry before it ended).
    fn load(&self, c: &mut Position, index: usize, at: usize) -> bool {
        match self.decode(at, &mut c.key) {
            Some((entry, next)) => {
                c.index = index;
                c.next = next;
                c.entry = Some(entry);
                true
            }
            None => {
                c.entry = None;
                false
            }
        }
    }

    /// Put `c` on the group's first entry.
    fn load_group(&self, c: &mut Position, group: usize) -> bool {
        match self.restarts.get(group) {
            Some(&at) => {
                c.key.clear();
                self.load(c, group * GROUP, at as usize)
            }
            None => {
                c.entry = None;
                false
            }
        }
    }

    /// Step `c` to the next entry.
    fn step(&self, c: &mut Position) {
        if c.entry.is_none() || c.index + 1 >= self.len {
            c.entry = None;
            return;
        }
        self.load(c, c.index + 1, c.next);
    }

    /// Put `c` on the first entry at or after `target`.
    fn seek(&self, c: &mut Position, target: &[u8]) {
        // The last group whose first key is before `target`: the entry
        // sought is in it or is the next group's first.
        let (mut lo, mut hi) = (0, self.restarts.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.load_group(c, mid) && compare_internal(&c.key, target) == Ordering::Less {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 {
            self.load_group(c, 0);
            return;
        }
        self.load_group(c, lo - 1);
        while c.entry.is_some() && compare_internal(&c.key, target) == Ordering::Less {
            self.step(c);
        }
    }

    /// Put `c` on the last entry at or before `target`.
    fn seek_for_prev(&self, c: &mut Position, target: &[u8]) {
        self.seek(c, target);
        match c.entry {
            Some(_) if compare_internal(&c.key, target) == Ordering::Equal => {}
            Some(_) => self.back(c),
            None => self.last_entry(c),
        }
    }

    /// Put `c` on the entry before the one it is on.
    fn back(&self, c: &mut Position) {
        if c.entry.is_none() || c.index == 0 {
            c.entry = None;
            return;
        }
        self.go_to(c, c.index - 1);
    }

    /// Put `c` on entry number `index`.
    fn go_to(&self, c: &mut Position, index: usize) {
        if !self.load_group(c, index / GROUP) {
            return;
        }
        while c.entry.is_some() && c.index < index {
            self.step(c);
        }
    }

    fn last_entry(&self, c: &mut Position) {
        match self.len {
            0 => c.entry = None,
            n => self.go_to(c, n - 1),
        }
    }
}

/// Where a cursor is in an index: the entry, its internal key, and where
/// the next entry starts.
#[derive(Debug, Default)]
struct Position {
    index: usize,
    next: usize,
    key: Vec<u8>,
    entry: Option<IndexEntry>,
}

/// Bytes of an [`IndexCursor`]'s value: which image (the cursor's number
/// among a scan's), the entry's offset and its value length, little-endian
/// `u32`s.
pub(crate) const ENTRY_REF_LEN: usize = 12;

/// Decode an [`IndexCursor`] value: (image number, offset, value length).
pub(crate) fn entry_ref(value: &[u8]) -> (usize, u32, u32) {
    let word = |at: usize| {
        value
            .get(at..at + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    (word(0) as usize, word(4), word(8))
}

/// An iterator over one index whose values are entry references
/// ([`entry_ref`]), so a merge of several says where each entry is.
pub(crate) struct IndexCursor {
    index: Arc<ImageIndex>,
    image: u32,
    at: Position,
    value: [u8; ENTRY_REF_LEN],
}

impl IndexCursor {
    /// A cursor over `index`, the scan's image number `image`.
    pub fn new(index: Arc<ImageIndex>, image: u32) -> IndexCursor {
        IndexCursor {
            index,
            image,
            at: Position::default(),
            value: [0; ENTRY_REF_LEN],
        }
    }

    /// Refresh the value after a move.
    fn moved(&mut self) -> Result<()> {
        if let Some(e) = self.at.entry {
            self.value[0..4].copy_from_slice(&self.image.to_le_bytes());
            self.value[4..8].copy_from_slice(&e.offset.to_le_bytes());
            self.value[8..12].copy_from_slice(&e.value_len.to_le_bytes());
        }
        Ok(())
    }
}

impl InternalIterator for IndexCursor {
    fn valid(&self) -> bool {
        self.at.entry.is_some()
    }

    fn seek_to_first(&mut self) -> Result<()> {
        self.index.load_group(&mut self.at, 0);
        self.moved()
    }

    fn seek_to_last(&mut self) -> Result<()> {
        self.index.last_entry(&mut self.at);
        self.moved()
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        self.index.seek(&mut self.at, target);
        self.moved()
    }

    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        self.index.seek_for_prev(&mut self.at, target);
        self.moved()
    }

    fn next(&mut self) -> Result<()> {
        self.index.step(&mut self.at);
        self.moved()
    }

    fn prev(&mut self) -> Result<()> {
        self.index.back(&mut self.at);
        self.moved()
    }

    fn key(&self) -> &[u8] {
        if self.valid() { &self.at.key } else { &[] }
    }

    fn value(&self) -> &[u8] {
        if self.valid() { &self.value } else { &[] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use o3_storage::key::{ValueKind, make_internal_key};
    use o3_storage::memtable::Memtable;
    use std::cmp::Reverse;
    use std::collections::BTreeMap;

    /// Keys sharing prefixes of several lengths, some with several
    /// versions and tombstones: (user key, sequence, kind).
    fn writes() -> Vec<(Vec<u8>, u64, ValueKind)> {
        let mut out = Vec::new();
        let mut seq = 1;
        for n in 0..70u32 {
            let key = match n % 3 {
                0 => format!("user{n:04}"),
                1 => format!("user{n:04}-long-suffix-{}", n * 7),
                _ => format!("u{n}"),
            };
            for v in 0..=(n % 4) {
                let kind = if v == 2 {
                    ValueKind::Tombstone
                } else {
                    ValueKind::Value
                };
                out.push((key.clone().into_bytes(), seq, kind));
                seq += 1;
            }
        }
        out
    }

    /// An index built from a memtable holding `writes()`, as shipping
    /// builds it, and the memtable.
    fn built() -> (ImageIndex, Arc<Memtable>) {
        let mem = Arc::new(Memtable::new(1 << 20, 0).unwrap());
        for (k, seq, kind) in writes() {
            mem.insert(&k, seq, kind, format!("v{seq}").as_bytes())
                .unwrap();
        }
        (ImageIndex::of_memtable(&mem), mem)
    }

    /// Every entry of the memtable in order: (internal key, offset, value
    /// length).
    fn entries(mem: &Arc<Memtable>) -> Vec<(Vec<u8>, u32, u32)> {
        let mut out = Vec::new();
        let mut it = mem.iter();
        it.seek_to_first().unwrap();
        while it.valid() {
            out.push((it.key().to_vec(), it.offset(), it.value().len() as u32));
            it.next().unwrap();
        }
        out
    }

    #[test]
    fn a_cursor_moves_like_the_memtable_it_indexes() {
        let (index, mem) = built();
        let want = entries(&mem);
        assert_eq!(index.len(), want.len());
        assert!(want.len() > 3 * GROUP, "several groups: {}", want.len());
        let mut c = IndexCursor::new(Arc::new(index), 5);
        c.seek_to_first().unwrap();
        for (key, offset, value_len) in &want {
            assert!(c.valid());
            assert_eq!(c.key(), key.as_slice());
            assert_eq!(entry_ref(c.value()), (5, *offset, *value_len));
            c.next().unwrap();
        }
        assert!(!c.valid());
        c.seek_to_last().unwrap();
        for (key, _, _) in want.iter().rev() {
            assert_eq!(c.key(), key.as_slice());
            c.prev().unwrap();
        }
        assert!(!c.valid());
    }

    #[test]
    fn seeks_land_where_a_btreemap_of_internal_keys_says() {
        let (index, mem) = built();
        // Internal keys order by user key, then newest first.
        let model: BTreeMap<(Vec<u8>, Reverse<u64>), Vec<u8>> = entries(&mem)
            .into_iter()
            .map(|(k, _, _)| {
                let p = parse_internal_key(&k).unwrap();
                ((p.user_key.to_vec(), Reverse(p.sequence)), k.clone())
            })
            .collect();
        let mut users: Vec<Vec<u8>> = writes().into_iter().map(|w| w.0).collect();
        users.extend([
            b"".to_vec(),
            b"a".to_vec(),
            b"user0".to_vec(),
            b"zzz".to_vec(),
        ]);
        let mut c = IndexCursor::new(Arc::new(index), 0);
        for user in &users {
            for seq in [0, 1, 3, 40, 41, 150, 1000] {
                let target = make_internal_key(user, seq, ValueKind::Value);
                let at = (user.clone(), Reverse(seq));
                c.seek(&target).unwrap();
                let ge = model.range(at.clone()..).next().map(|(_, k)| k.as_slice());
                assert_eq!(c.valid().then(|| c.key()), ge, "seek {user:?}@{seq}");
                c.seek_for_prev(&target).unwrap();
                let le = model.range(..=at).next_back().map(|(_, k)| k.as_slice());
                assert_eq!(
                    c.valid().then(|| c.key()),
                    le,
                    "seek_for_prev {user:?}@{seq}"
                );
            }
        }
    }

    #[test]
    fn find_answers_as_the_memtable_does() {
        let (index, mem) = built();
        let mut users: Vec<Vec<u8>> = writes().into_iter().map(|w| w.0).collect();
        users.extend([b"".to_vec(), b"user0001x".to_vec(), b"zzz".to_vec()]);
        for user in &users {
            for snapshot in [0, 1, 5, 40, 77, 150, u64::MAX >> 8] {
                let want = mem.get(user, snapshot).map(|e| IndexEntry {
                    sequence: e.sequence,
                    kind: e.kind,
                    offset: e.offset,
                    value_len: e.value.len() as u32,
                });
                assert_eq!(index.find(user, snapshot), want, "{user:?}@{snapshot}");
            }
        }
    }

    #[test]
    fn it_is_smaller_than_the_keys_it_holds() {
        let (index, mem) = built();
        let key_bytes: usize = entries(&mem).iter().map(|(k, _, _)| k.len()).sum();
        assert!(
            (index.bytes() as usize) < key_bytes,
            "{} bytes for {key_bytes} bytes of internal keys",
            index.bytes()
        );
    }

    #[test]
    fn an_empty_index_is_never_valid() {
        let mut c = IndexCursor::new(Arc::new(ImageIndex::default()), 0);
        c.seek_to_first().unwrap();
        assert!(!c.valid());
        c.seek_to_last().unwrap();
        assert!(!c.valid());
        c.seek(&make_internal_key(b"x", 1, ValueKind::Value))
            .unwrap();
        assert!(!c.valid());
        assert_eq!(c.key(), b"");
        assert_eq!(ImageIndex::default().find(b"x", 9), None);
    }
}
