//! Structural validation of a memtable image whose checksum already matched.
//!
//! The checksum catches damage; this catches images that were *written*
//! wrong (a buggy or hostile writer can store any bytes with a valid CRC).
//! After it succeeds, the searches in `skiplist.rs` are guaranteed to stay in
//! bounds and to terminate:
//! - the head node fits, has `max_height` levels and no key or value;
//! - level 0 is a list of nodes that fit in `[HEADER_LEN, used)`, are
//!   4-aligned, at most `max_height` tall, whose keys are valid internal keys
//!   in strictly increasing order (so the list has no cycle);
//! - every higher level `i` is exactly the subsequence of level-0 nodes taller
//!   than `i`, in the same order (checked in the same single pass: the
//!   pending link of each level must point at the next node tall enough);
//! - entry count, first and last entry and sequence range match the header.
//!
//! The pass is O(entries × max_height) and allocates nothing.

use std::cmp::Ordering;

use crate::error::{Error, Result};
use crate::key::{self, TRAILER_LEN, ValueKind};

use super::header::{HEADER_LEN, ImageHeader};
use super::node::{MAX_READ_HEIGHT, NODE_ALIGN, NodeLayout, link_pos, parse_layout};

/// Little-endian u32 at `at`, or `None` past the end.
fn read_link(image: &[u8], at: usize) -> Option<u32> {
    let b = image.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

/// Check the skiplist structure of `image` (the bytes `[0, used)`) against
/// its decoded `header`; errors name `location` and the offending offset.
pub(crate) fn check_structure(image: &[u8], header: &ImageHeader, location: &str) -> Result<()> {
    let bad = |offset: u64, reason: String| Error::corruption(location, offset, reason);
    let max_height = header.max_height as usize;
    if max_height == 0 || max_height > MAX_READ_HEIGHT {
        return Err(bad(
            12,
            format!("max height {max_height} outside 1..={MAX_READ_HEIGHT}"),
        ));
    }
    let head = header.head as usize;
    let head_layout = node_at(image, head)
        .filter(|l| l.height == max_height && l.key_len == 0 && l.value_len == 0)
        .ok_or_else(|| bad(20, format!("head offset {head} is not a head node")))?;

    // pending[level]: the link of the last node seen on `level` — the next
    // node tall enough must be exactly this one.
    let mut pending = [0u32; MAX_READ_HEIGHT];
    for (level, slot) in pending.iter_mut().enumerate().take(max_height) {
        *slot = read_link(image, link_pos(header.head, level))
            .ok_or_else(|| bad(head as u64, "head links out of bounds".into()))?;
    }
    debug_assert_eq!(head_layout.key_at, link_pos(header.head, max_height));

    let mut count: u64 = 0;
    let mut previous: Option<&[u8]> = None;
    let mut last = 0u32;
    let (mut smallest_seq, mut largest_seq) = (u64::MAX, 0u64);
    let mut node = pending[0];
    while node != 0 {
        let at = node as u64;
        count += 1;
        if count > header.entries {
            return Err(bad(
                at,
                format!(
                    "more than the {} entries the header records",
                    header.entries
                ),
            ));
        }
        let layout = node_at(image, node as usize)
            .ok_or_else(|| bad(at, "node is misaligned or does not fit in the image".into()))?;
        if layout.height > max_height {
            return Err(bad(
                at,
                format!(
                    "node height {} exceeds max height {max_height}",
                    layout.height
                ),
            ));
        }
        if layout.key_len < TRAILER_LEN {
            return Err(bad(at, "key shorter than its 8-byte trailer".into()));
        }
        let ikey = &image[layout.key_at..layout.value_at()];
        let trailer = key::trailer(ikey);
        if ValueKind::from_u8((trailer & 0xff) as u8).is_none() {
            return Err(bad(at, format!("unknown value kind {}", trailer & 0xff)));
        }
        if let Some(prev) = previous
            && key::compare_internal(prev, ikey) != Ordering::Less
        {
            return Err(bad(at, "keys out of order on level 0".into()));
        }
        for (level, slot) in pending.iter_mut().enumerate().take(max_height).skip(1) {
            if level < layout.height {
                if *slot != node {
                    return Err(bad(
                        at,
                        format!("level {level} skips this node (links to {})", *slot),
                    ));
                }
                *slot = read_link(image, link_pos(node, level))
                    .ok_or_else(|| bad(at, "link out of bounds".into()))?;
            } else if *slot == node {
                return Err(bad(
                    at,
                    format!("level {level} links to a node only {} high", layout.height),
                ));
            }
        }
        let seq = trailer >> 8;
        smallest_seq = smallest_seq.min(seq);
        largest_seq = largest_seq.max(seq);
        previous = Some(ikey);
        last = node;
        node = read_link(image, link_pos(node, 0))
            .ok_or_else(|| bad(at, "link out of bounds".into()))?;
    }

    if let Some(level) = (1..max_height).find(|&l| pending[l] != 0) {
        return Err(bad(
            pending[level] as u64,
            format!("level {level} links to a node missing from level 0"),
        ));
    }
    if count != header.entries {
        return Err(bad(
            24,
            format!(
                "header records {} entries, level 0 holds {count}",
                header.entries
            ),
        ));
    }
    if count == 0 {
        (smallest_seq, largest_seq) = (0, 0);
    }
    if (smallest_seq, largest_seq) != (header.smallest_seq, header.largest_seq) {
        return Err(bad(
            32,
            format!(
                "header sequence range {}..={} differs from the entries' {smallest_seq}..={largest_seq}",
                header.smallest_seq, header.largest_seq
            ),
        ));
    }
    let first = read_link(image, link_pos(header.head, 0)).unwrap_or(0);
    if (header.first_entry, header.last_entry) != (first, last) {
        return Err(bad(
            52,
            format!(
                "header names entries {} and {} as first and last, the list has {first} and {last}",
                header.first_entry, header.last_entry
            ),
        ));
    }
    Ok(())
}

/// The layout of a node that starts 4-aligned inside `[HEADER_LEN, image.len())`
/// and fits entirely in `image`.
fn node_at(image: &[u8], node: usize) -> Option<NodeLayout> {
    if node < HEADER_LEN || !node.is_multiple_of(NODE_ALIGN) {
        return None;
    }
    parse_layout(image, node)
}
