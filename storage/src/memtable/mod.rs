//! Memtables whose memory is their wire format (`docs/memtable_image_format.md`).
//!
//! A memtable is one contiguous arena: a 64-byte header, then skiplist nodes
//! holding each entry's links, internal key and value, all referring to each
//! other by 32-bit offsets from the arena start. Hence:
//! - sealing writes only the header ([`Memtable::seal`]); shipping a sealed
//!   memtable is one copy of [`Memtable::image_bytes`], with no encoding and
//!   no pointer fix-up;
//! - [`MemtableImage`] searches those bytes wherever they are — any buffer,
//!   any alignment — with the same search code as the live [`Memtable`];
//! - an entry's offset ([`EntryRef::offset`]) never changes, so a reader can
//!   cache `key → (image, offset)` and later fetch the entry with one read
//!   ([`MemtableImage::value_at`], or [`decode_entry`] on the bytes of one
//!   node read from a remote region).
//!
//! Iterators ([`MemtableIter`], [`ImageIter`], [`OwnedImageIter`]) implement
//! [`crate::iterator::InternalIterator`] in both directions.

mod arena;
mod header;
mod image;
#[allow(clippy::module_inception)]
mod memtable;
mod node;
mod skiplist;
mod validate;

pub use header::{
    FORMAT_VERSION, HEADER_LEN, IMAGE_MAGIC, ImageHeader, image_checksum, store_checksum,
};
pub use image::{ImageIter, MemtableImage, OwnedImageIter, SharedImage};
pub use memtable::{Memtable, MemtableIter};
pub use node::{decode_entry, entry_read_bound};

use crate::key::ValueKind;

/// One entry found by a lookup, borrowed from the memtable or image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    pub kind: ValueKind,
    pub sequence: u64,
    /// The value; empty for tombstones.
    pub value: &'a [u8],
    /// Offset of the entry's node from the start of the image; stable for the
    /// image's lifetime and accepted by [`MemtableImage::value_at`].
    pub offset: u32,
}
