//! Skiplist node layout inside a memtable arena
//! (`docs/memtable_image_format.md`, "Nodes").
//!
//! ```text
//! node + 0   height     u8        1..=max_height (the head node: max_height)
//! node + 1   reserved   [u8; 3]   zero
//! node + 4   key_len    u32 LE    internal key length (user key + 8-byte trailer)
//! node + 8   value_len  u32 LE
//! node + 12  links      [u32 LE; height]   next node per level, 0 = end of list
//! then       internal key, then value; the next node starts 4-aligned
//! ```
//!
//! Nodes start at 4-aligned offsets so that the live memtable can treat each
//! link as an `AtomicU32`; readers of images never rely on alignment (they
//! decode with `from_le_bytes`). The internal key is stored contiguously so
//! iterators hand it out as a zero-copy slice.

use crate::error::{Error, Result};
use crate::key::{TRAILER_LEN, ValueKind};

/// Bytes before the links: height, reserved, key length, value length.
pub(crate) const NODE_PREFIX: usize = 12;

/// Tallest tower the writer builds. With p = 1/4 a list of n entries needs
/// about log4(n) levels: 12 levels serve 4^12 ≈ 16.7 M entries at full speed,
/// more than a 4 GiB arena of typical entries holds (and beyond that searches
/// stay correct, only slightly longer).
pub(crate) const MAX_HEIGHT: usize = 12;

/// Tallest head a reader accepts; bounds the reader's per-level state. Larger
/// than [`MAX_HEIGHT`] so that a future writer may build taller towers.
pub(crate) const MAX_READ_HEIGHT: usize = 32;

/// Nodes (and therefore links) are aligned to this many bytes.
pub(crate) const NODE_ALIGN: usize = 4;

/// Offset of the link of `node` at `level`.
#[inline]
pub(crate) fn link_pos(node: u32, level: usize) -> usize {
    node as usize + NODE_PREFIX + 4 * level
}

/// Arena bytes taken by a node, including padding up to the next node;
/// `None` on overflow.
pub(crate) fn node_size(height: usize, key_len: usize, value_len: usize) -> Option<usize> {
    let raw = NODE_PREFIX
        .checked_add(height.checked_mul(4)?)?
        .checked_add(key_len)?
        .checked_add(value_len)?;
    raw.checked_next_multiple_of(NODE_ALIGN)
}

/// The node prefix for the given sizes.
pub(crate) fn encode_prefix(height: u8, key_len: u32, value_len: u32) -> [u8; NODE_PREFIX] {
    let mut p = [0u8; NODE_PREFIX];
    p[0] = height;
    p[4..8].copy_from_slice(&key_len.to_le_bytes());
    p[8..12].copy_from_slice(&value_len.to_le_bytes());
    p
}

/// Where the parts of one node lie, as absolute arena offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeLayout {
    pub height: usize,
    pub key_at: usize,
    pub key_len: usize,
    pub value_len: usize,
}

impl NodeLayout {
    pub fn value_at(&self) -> usize {
        self.key_at + self.key_len
    }
    pub fn end(&self) -> usize {
        self.key_at + self.key_len + self.value_len
    }
}

/// Decode the prefix of the node at `node` in `bytes` and check that the
/// whole node (links, key and value) lies inside `bytes`. `None` when it does
/// not, when the height is zero or when the reserved bytes are not zero.
pub(crate) fn parse_layout(bytes: &[u8], node: usize) -> Option<NodeLayout> {
    let prefix = bytes.get(node..node.checked_add(NODE_PREFIX)?)?;
    let height = prefix[0] as usize;
    if height == 0 || prefix[1..4] != [0, 0, 0] {
        return None;
    }
    let key_len = u32::from_le_bytes(prefix[4..8].try_into().ok()?) as usize;
    let value_len = u32::from_le_bytes(prefix[8..12].try_into().ok()?) as usize;
    let key_at = node.checked_add(NODE_PREFIX)?.checked_add(height * 4)?;
    let end = key_at.checked_add(key_len)?.checked_add(value_len)?;
    if end > bytes.len() {
        return None;
    }
    Some(NodeLayout {
        height,
        key_at,
        key_len,
        value_len,
    })
}

/// Bytes from a node's start that surely hold the whole entry of a user key
/// of `user_key_len` bytes and a value of `value_len` bytes, whatever its
/// height (up to `MAX_HEIGHT`, 12, the tallest tower a writer builds): what a
/// one-sided read of a cached entry fetches. `None` on overflow.
pub fn entry_read_bound(user_key_len: usize, value_len: usize) -> Option<usize> {
    NODE_PREFIX
        .checked_add(4 * MAX_HEIGHT)?
        .checked_add(user_key_len)?
        .checked_add(TRAILER_LEN)?
        .checked_add(value_len)
}

/// Decode the entry whose node starts at `node[0]`: returns its internal key
/// and value. `node` may be the rest of an image from the node's offset on,
/// or just the bytes of that node fetched by a one-sided read. Checks that
/// the node fits, its height is at most `max_height`, and its key is a valid
/// internal key; `location` and `offset` (the node's offset in its image)
/// name it in errors.
pub fn decode_entry<'a>(
    node: &'a [u8],
    max_height: usize,
    location: &str,
    offset: u32,
) -> Result<(&'a [u8], &'a [u8])> {
    let bad = |reason: &str| Error::corruption(location, offset as u64, reason);
    let layout = parse_layout(node, 0).ok_or_else(|| bad("entry node does not fit"))?;
    if layout.height > max_height {
        return Err(bad("entry node is taller than the image's head"));
    }
    if layout.key_len < TRAILER_LEN {
        return Err(bad("entry key is shorter than its 8-byte trailer"));
    }
    let key = &node[layout.key_at..layout.value_at()];
    let kind = key[layout.key_len - TRAILER_LEN];
    if ValueKind::from_u8(kind).is_none() {
        return Err(bad("entry has an unknown value kind"));
    }
    Ok((key, &node[layout.value_at()..layout.end()]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::make_internal_key;

    fn node(height: u8, key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut n = encode_prefix(height, key.len() as u32, value.len() as u32).to_vec();
        n.resize(NODE_PREFIX + 4 * height as usize, 0);
        n.extend_from_slice(key);
        n.extend_from_slice(value);
        n
    }

    #[test]
    fn layout_and_decode_round_trip() {
        let k = make_internal_key(b"key", 9, ValueKind::Value);
        let n = node(3, &k, b"value");
        let l = parse_layout(&n, 0).unwrap();
        assert_eq!((l.height, l.key_at, l.end()), (3, 24, n.len()));
        assert_eq!(node_size(3, k.len(), 5), Some(n.len().next_multiple_of(4)));
        let (key, value) = decode_entry(&n, 12, "t", 0).unwrap();
        assert_eq!((key, value), (&k[..], &b"value"[..]));
    }

    #[test]
    fn decode_rejects_truncated_tall_and_bad_kind() {
        let k = make_internal_key(b"key", 9, ValueKind::Value);
        let n = node(3, &k, b"value");
        for cut in 0..n.len() {
            assert!(decode_entry(&n[..cut], 12, "t", 0).is_err(), "cut {cut}");
        }
        assert!(decode_entry(&n, 2, "t", 0).is_err());
        let mut bad_kind = k.clone();
        bad_kind[3] = 9;
        let e = decode_entry(&node(1, &bad_kind, b""), 12, "img", 40).unwrap_err();
        assert!(e.to_string().contains("img at offset 40"), "{e}");
        assert!(decode_entry(&node(1, b"short", b""), 12, "t", 0).is_err());
        assert!(parse_layout(&node(0, &k, b""), 0).is_none());
    }
}
