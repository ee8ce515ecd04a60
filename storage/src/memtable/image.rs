//! Read-only access to sealed memtable images in any byte buffer: a local
//! `Vec`, a shared-memory or file mapping, a copy of a remote region. The
//! bytes are validated once ([`MemtableImage::open`]) and then searched in
//! place with the same skiplist code as the live memtable; nothing is copied
//! and no alignment is assumed.

use crate::error::{Error, Result, check_crc};

use super::EntryRef;
use super::header::{HEADER_LEN, ImageHeader, image_checksum};
use super::node::{decode_entry, link_pos, parse_layout};
use super::skiplist::{self, Cursor, NodeSource, Target, cursor_iterator};
use super::validate::check_structure;

/// A validated image's bytes `[0, used)` plus what searching needs from its
/// header. Copyable; every accessor is bounds-checked and returns an empty
/// slice or 0 rather than panicking (which validation makes unreachable).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ImageView<'a> {
    image: &'a [u8],
    head: u32,
    max_height: usize,
}

impl<'a> ImageView<'a> {
    fn new(image: &'a [u8], header: &ImageHeader) -> ImageView<'a> {
        ImageView {
            image,
            head: header.head,
            max_height: header.max_height as usize,
        }
    }

    fn key_of(&self, node: u32) -> &'a [u8] {
        parse_layout(self.image, node as usize)
            .and_then(|l| self.image.get(l.key_at..l.value_at()))
            .unwrap_or(&[])
    }

    fn value_of(&self, node: u32) -> &'a [u8] {
        parse_layout(self.image, node as usize)
            .and_then(|l| self.image.get(l.value_at()..l.end()))
            .unwrap_or(&[])
    }

    fn get(&self, user_key: &[u8], snapshot: u64) -> Option<EntryRef<'a>> {
        let n = skiplist::find_visible(self, user_key, snapshot);
        if n == 0 {
            return None;
        }
        skiplist::entry_ref(self.key_of(n), self.value_of(n), n)
    }

    /// The entry whose node starts at `offset`, if there is one.
    fn entry_at(&self, offset: u32, location: &str) -> Result<(&'a [u8], &'a [u8])> {
        let rest = self.image.get(offset as usize..).unwrap_or(&[]);
        let (ikey, value) = decode_entry(rest, self.max_height, location, offset)?;
        // A node decodes from any offset whose bytes happen to look like one;
        // it is an entry only if the search for its key lands on it.
        if skiplist::seek_ge(self, &Target::internal(ikey)) != offset {
            return Err(Error::corruption(
                location,
                offset as u64,
                "offset is not the start of an entry of this image",
            ));
        }
        Ok((ikey, value))
    }
}

impl NodeSource for ImageView<'_> {
    fn head(&self) -> u32 {
        self.head
    }
    fn max_height(&self) -> usize {
        self.max_height
    }
    fn next(&self, node: u32, level: usize) -> u32 {
        let at = link_pos(node, level);
        match self.image.get(at..at + 4) {
            Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            None => 0,
        }
    }
    fn key(&self, node: u32) -> &[u8] {
        self.key_of(node)
    }
    fn value(&self, node: u32) -> &[u8] {
        self.value_of(node)
    }
}

/// Validate `bytes` as an image: header, checksum, then structure. Returns
/// the header; the image is `bytes[..header.used]`.
fn validate(bytes: &[u8], location: &str) -> Result<ImageHeader> {
    let header = ImageHeader::decode(bytes, location)?;
    let used = header.used as usize;
    if used < HEADER_LEN || used > bytes.len() {
        return Err(Error::corruption(
            location,
            16,
            format!(
                "image length {used} outside [{HEADER_LEN}, {}] (the bytes available)",
                bytes.len()
            ),
        ));
    }
    let image = &bytes[..used];
    check_crc(
        location,
        60,
        header.checksum,
        image_checksum(image).unwrap_or(0),
    )?;
    check_structure(image, &header, location)?;
    Ok(header)
}

/// A sealed memtable image, searched in place.
#[derive(Debug, Clone)]
pub struct MemtableImage<'a> {
    view: ImageView<'a>,
    header: ImageHeader,
    location: String,
}

impl<'a> MemtableImage<'a> {
    /// Validate the header, the checksum and the skiplist structure (every
    /// offset in bounds, keys sorted along each level, entry count and ranges
    /// matching the header) without copying. `bytes` may extend past the
    /// image (e.g. a larger region); the image is its first `used` bytes.
    /// Errors name `location` and the offset of the problem.
    pub fn open(bytes: &'a [u8], location: &str) -> Result<MemtableImage<'a>> {
        let header = validate(bytes, location)?;
        Ok(MemtableImage {
            view: ImageView::new(&bytes[..header.used as usize], &header),
            header,
            location: location.to_string(),
        })
    }

    /// The newest entry of `user_key` with sequence `<= snapshot` (which may
    /// be a tombstone).
    pub fn get(&self, user_key: &[u8], snapshot: u64) -> Option<EntryRef<'a>> {
        self.view.get(user_key, snapshot)
    }

    /// The internal key and value of the entry at `offset` (an
    /// [`EntryRef::offset`] from this image). Errors when no entry starts
    /// there, so a stale or wrong offset never yields another entry's bytes.
    pub fn value_at(&self, offset: u32) -> Result<(&'a [u8], &'a [u8])> {
        self.view.entry_at(offset, &self.location)
    }

    pub fn header(&self) -> &ImageHeader {
        &self.header
    }

    /// The image bytes `[0, used)`: what to copy to ship the image.
    pub fn bytes(&self) -> &'a [u8] {
        self.view.image
    }

    /// Smallest and largest user key; `None` for an empty image.
    pub fn key_range(&self) -> Option<(&'a [u8], &'a [u8])> {
        if self.header.entries == 0 {
            return None;
        }
        Some((
            crate::key::user_key(self.view.key_of(self.header.first_entry)),
            crate::key::user_key(self.view.key_of(self.header.last_entry)),
        ))
    }

    pub fn iter(&self) -> ImageIter<'a> {
        ImageIter {
            cursor: Cursor::new(self.view),
        }
    }
}

/// An [`crate::iterator::InternalIterator`] over a borrowed image.
#[derive(Debug)]
pub struct ImageIter<'a> {
    cursor: Cursor<ImageView<'a>>,
}

cursor_iterator!(ImageIter<'a>, 'a);

/// Image bytes of any owner (`Vec<u8>`, `Arc<[u8]>`, a memory map) with the
/// header fields searching needs, validated at construction.
#[derive(Debug)]
pub(crate) struct OwnedImage<B> {
    bytes: B,
    header: ImageHeader,
}

impl<B: AsRef<[u8]>> OwnedImage<B> {
    fn view(&self) -> ImageView<'_> {
        let image = self.bytes.as_ref();
        ImageView::new(
            image.get(..self.header.used as usize).unwrap_or(&[]),
            &self.header,
        )
    }
}

impl<B: AsRef<[u8]>> NodeSource for OwnedImage<B> {
    fn head(&self) -> u32 {
        self.header.head
    }
    fn max_height(&self) -> usize {
        self.header.max_height as usize
    }
    fn next(&self, node: u32, level: usize) -> u32 {
        self.view().next(node, level)
    }
    fn key(&self, node: u32) -> &[u8] {
        self.view().key_of(node)
    }
    fn value(&self, node: u32) -> &[u8] {
        self.view().value_of(node)
    }
}

/// An [`crate::iterator::InternalIterator`] that owns its image bytes, so a
/// scan can outlive the place the bytes came from. `B` must keep returning
/// the same bytes from `as_ref` (true of `Vec`, `Box`, `Arc<[u8]>`, maps).
#[derive(Debug)]
pub struct OwnedImageIter<B> {
    cursor: Cursor<OwnedImage<B>>,
}

impl<B: AsRef<[u8]> + Send> OwnedImageIter<B> {
    /// Validate `bytes` exactly as [`MemtableImage::open`] does and take them.
    pub fn new(bytes: B, location: &str) -> Result<OwnedImageIter<B>> {
        let header = validate(bytes.as_ref(), location)?;
        Ok(OwnedImageIter {
            cursor: Cursor::new(OwnedImage { bytes, header }),
        })
    }

    pub fn header(&self) -> &ImageHeader {
        &self.cursor.source.header
    }
}

cursor_iterator!(OwnedImageIter<B>, B: AsRef<[u8]> + Send);

/// A validated image in shared, immutable bytes: validated once, then
/// searched by any number of threads ([`SharedImage::get`]) and iterated by
/// any number of cursors ([`SharedImage::iter`]) without validating again.
/// A compute node keeps one for an offloaded image it pulled back into
/// local memory.
#[derive(Debug, Clone)]
pub struct SharedImage {
    bytes: std::sync::Arc<[u8]>,
    header: ImageHeader,
}

impl SharedImage {
    /// Validate `bytes` exactly as [`MemtableImage::open`] does and keep them.
    pub fn open(bytes: std::sync::Arc<[u8]>, location: &str) -> Result<SharedImage> {
        let header = validate(&bytes, location)?;
        Ok(SharedImage { bytes, header })
    }

    fn view(&self) -> ImageView<'_> {
        ImageView::new(
            self.bytes.get(..self.header.used as usize).unwrap_or(&[]),
            &self.header,
        )
    }

    /// The newest entry of `user_key` with sequence `<= snapshot`.
    pub fn get(&self, user_key: &[u8], snapshot: u64) -> Option<EntryRef<'_>> {
        self.view().get(user_key, snapshot)
    }

    pub fn header(&self) -> &ImageHeader {
        &self.header
    }

    /// Bytes held (the image's used length).
    pub fn len(&self) -> usize {
        self.header.used as usize
    }

    pub fn is_empty(&self) -> bool {
        self.header.entries == 0
    }

    /// A cursor over the image that shares its bytes.
    pub fn iter(&self) -> OwnedImageIter<std::sync::Arc<[u8]>> {
        OwnedImageIter {
            cursor: Cursor::new(OwnedImage {
                bytes: self.bytes.clone(),
                header: self.header,
            }),
        }
    }
}
