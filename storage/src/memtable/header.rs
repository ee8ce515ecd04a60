//! The fixed 64-byte header at offset 0 of every memtable image
//! (`docs/memtable_image_format.md`, "Header").
//!
//! The header is written once, by `Memtable::seal`; before that the region is
//! zero and nothing reads it. Its checksum covers the header fields (bytes
//! `[0, 60)`) followed by the arena bytes `[HEADER_LEN, used)`, so a change to
//! any byte of the image except the stored checksum itself is detected.

use crate::error::{Error, Result};

/// `"O3MEMIMG"` read as a little-endian u64.
pub const IMAGE_MAGIC: u64 = u64::from_le_bytes(*b"O3MEMIMG");

/// The only image format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Length of the header; the head node starts right after it.
pub const HEADER_LEN: usize = 64;

/// Where the stored checksum lives; it is the header's last field.
const CHECKSUM_AT: usize = 60;

/// The decoded header of a sealed memtable image.
///
/// `first_entry` and `last_entry` are the offsets of the smallest and largest
/// entries (0 when the image is empty); their user keys are the image's key
/// range, so the range costs no variable-length header field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    pub format_version: u32,
    /// Height of the head node: the tallest tower any node may have.
    pub max_height: u32,
    /// Image length: the bytes `[0, used)` are the whole image.
    pub used: u32,
    /// Offset of the head node (the skiplist's sentinel, no key).
    pub head: u32,
    pub entries: u64,
    /// Smallest and largest sequence number of any entry (0 when empty).
    pub smallest_seq: u64,
    pub largest_seq: u64,
    pub shard: u32,
    pub first_entry: u32,
    pub last_entry: u32,
    /// CRC32C over header bytes `[0, 60)` followed by `[HEADER_LEN, used)`.
    pub checksum: u32,
}

impl ImageHeader {
    /// Encode all fields, including `checksum` as stored.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let mut put = |at: usize, bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
        };
        put(0, &IMAGE_MAGIC.to_le_bytes());
        put(8, &self.format_version.to_le_bytes());
        put(12, &self.max_height.to_le_bytes());
        put(16, &self.used.to_le_bytes());
        put(20, &self.head.to_le_bytes());
        put(24, &self.entries.to_le_bytes());
        put(32, &self.smallest_seq.to_le_bytes());
        put(40, &self.largest_seq.to_le_bytes());
        put(48, &self.shard.to_le_bytes());
        put(52, &self.first_entry.to_le_bytes());
        put(56, &self.last_entry.to_le_bytes());
        put(CHECKSUM_AT, &self.checksum.to_le_bytes());
        out
    }

    /// Decode the header at the start of `image`, checking length, magic and
    /// format version. Field values are validated by the image reader.
    pub fn decode(image: &[u8], location: &str) -> Result<ImageHeader> {
        let Some(h) = image.get(..HEADER_LEN) else {
            return Err(Error::corruption(
                location,
                0,
                format!(
                    "memtable image of {} bytes is shorter than its {HEADER_LEN}-byte header",
                    image.len()
                ),
            ));
        };
        let magic = read_u64(h, 0);
        if magic != IMAGE_MAGIC {
            return Err(Error::corruption(
                location,
                0,
                format!("bad memtable image magic {magic:#018x}"),
            ));
        }
        let format_version = read_u32(h, 8);
        if format_version != FORMAT_VERSION {
            return Err(Error::corruption(
                location,
                8,
                format!(
                    "unsupported memtable image format version {format_version} (this build reads {FORMAT_VERSION})"
                ),
            ));
        }
        Ok(ImageHeader {
            format_version,
            max_height: read_u32(h, 12),
            used: read_u32(h, 16),
            head: read_u32(h, 20),
            entries: read_u64(h, 24),
            smallest_seq: read_u64(h, 32),
            largest_seq: read_u64(h, 40),
            shard: read_u32(h, 48),
            first_entry: read_u32(h, 52),
            last_entry: read_u32(h, 56),
            checksum: read_u32(h, CHECKSUM_AT),
        })
    }
}

/// The checksum of an image whose header (checksum field ignored) is `header`
/// and whose arena bytes after the header are `rest` (`[HEADER_LEN, used)`).
pub(crate) fn checksum_parts(header: &[u8; HEADER_LEN], rest: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&header[..CHECKSUM_AT]), rest)
}

/// The checksum that the header of `image` (the bytes `[0, used)`) must store.
/// Used by the reader, and by tests and fuzzers that craft images whose
/// checksum is valid so that the structural checks are exercised.
/// Returns `None` when `image` is shorter than the header.
pub fn image_checksum(image: &[u8]) -> Option<u32> {
    let header: &[u8; HEADER_LEN] = image.get(..HEADER_LEN)?.try_into().ok()?;
    Some(checksum_parts(header, image.get(HEADER_LEN..)?))
}

/// Overwrite the stored checksum of `image` (the bytes `[0, used)`) with the
/// correct one. For tests and fuzzers; returns `false` when `image` is shorter
/// than the header.
pub fn store_checksum(image: &mut [u8]) -> bool {
    let Some(crc) = image_checksum(image) else {
        return false;
    };
    image[CHECKSUM_AT..CHECKSUM_AT + 4].copy_from_slice(&crc.to_le_bytes());
    true
}

/// Little-endian u32 at `at`; the caller has checked that `bytes` is long enough.
fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ImageHeader {
        ImageHeader {
            format_version: FORMAT_VERSION,
            max_height: 12,
            used: 4096,
            head: HEADER_LEN as u32,
            entries: 7,
            smallest_seq: 3,
            largest_seq: 99,
            shard: 5,
            first_entry: 200,
            last_entry: 300,
            checksum: 0xdead_beef,
        }
    }

    #[test]
    fn encode_decode_round_trips() {
        let h = sample();
        assert_eq!(ImageHeader::decode(&h.encode(), "t").unwrap(), h);
    }

    #[test]
    fn decode_rejects_short_bad_magic_and_version() {
        let bytes = sample().encode();
        let e = ImageHeader::decode(&bytes[..63], "img-a").unwrap_err();
        assert!(e.to_string().contains("img-a"), "{e}");
        let mut bad = bytes;
        bad[3] ^= 1;
        assert!(ImageHeader::decode(&bad, "t").unwrap_err().is_corruption());
        let mut bad = bytes;
        bad[8] = 2;
        let e = ImageHeader::decode(&bad, "t").unwrap_err();
        assert!(e.to_string().contains("version 2"), "{e}");
    }

    #[test]
    fn checksum_ignores_only_its_own_field() {
        let mut image = sample().encode().to_vec();
        image.extend_from_slice(b"arena bytes");
        assert!(store_checksum(&mut image));
        let good = image_checksum(&image).unwrap();
        let stored = ImageHeader::decode(&image, "t").unwrap().checksum;
        assert_eq!(good, stored);
        for i in (0..image.len()).filter(|i| !(CHECKSUM_AT..CHECKSUM_AT + 4).contains(i)) {
            let mut c = image.clone();
            c[i] ^= 0x10;
            assert_ne!(image_checksum(&c).unwrap(), good, "byte {i}");
        }
        assert_eq!(image_checksum(&image[..10]), None);
    }
}
