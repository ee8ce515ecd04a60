//! Block handles and the fixed-size footer (`docs/sst_format.md`, "Block
//! handle" and "Footer").

use crate::coding::{Decoder, put_varint64};
use crate::error::{Error, Result, check_crc};

/// Length of the footer at the end of every table.
pub const FOOTER_LEN: usize = 48;
/// The footer's last eight bytes.
pub const TABLE_MAGIC: u64 = 0x6f33_5353_5442_4c31;
/// The only format version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes after every block: compression type (1) + crc32c (4).
pub const BLOCK_TRAILER_LEN: u64 = 5;

/// Where a block lives: its file offset and the size of its stored contents
/// (trailer excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockHandle {
    pub offset: u64,
    pub size: u64,
}

impl BlockHandle {
    pub fn new(offset: u64, size: u64) -> BlockHandle {
        BlockHandle { offset, size }
    }

    /// Append `offset: varint | size: varint`.
    pub fn encode_to(&self, out: &mut Vec<u8>) {
        put_varint64(out, self.offset);
        put_varint64(out, self.size);
    }

    /// Decode a handle that makes up all of `buf`; `None` on truncation or
    /// trailing bytes.
    pub fn decode(buf: &[u8]) -> Option<BlockHandle> {
        let mut d = Decoder::new(buf);
        let handle = BlockHandle {
            offset: d.varint64()?,
            size: d.varint64()?,
        };
        d.is_empty().then_some(handle)
    }

    /// First byte after the block's trailer; `None` on overflow.
    pub fn end_with_trailer(&self) -> Option<u64> {
        self.offset
            .checked_add(self.size)?
            .checked_add(BLOCK_TRAILER_LEN)
    }
}

/// The footer: where the meta-index and index blocks are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    pub meta_index: BlockHandle,
    pub index: BlockHandle,
}

impl Footer {
    pub fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut out = [0u8; FOOTER_LEN];
        out[0..8].copy_from_slice(&self.meta_index.offset.to_le_bytes());
        out[8..16].copy_from_slice(&self.meta_index.size.to_le_bytes());
        out[16..24].copy_from_slice(&self.index.offset.to_le_bytes());
        out[24..32].copy_from_slice(&self.index.size.to_le_bytes());
        out[32..36].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        let crc = crc32c::crc32c(&out[..36]);
        out[36..40].copy_from_slice(&crc.to_le_bytes());
        out[40..48].copy_from_slice(&TABLE_MAGIC.to_le_bytes());
        out
    }

    /// Decode the last [`FOOTER_LEN`] bytes of a file of `file_size` bytes
    /// and check that both handles end at or before the footer.
    pub fn decode(buf: &[u8], file_size: u64, location: &str) -> Result<Footer> {
        let footer_offset = file_size.saturating_sub(FOOTER_LEN as u64);
        let corrupt = |reason: String| Error::corruption(location, footer_offset, reason);
        if buf.len() != FOOTER_LEN || file_size < FOOTER_LEN as u64 {
            return Err(corrupt(format!(
                "file of {file_size} bytes is too short for the {FOOTER_LEN}-byte footer"
            )));
        }
        let mut d = Decoder::new(buf);
        let truncated = || corrupt("truncated footer".to_string());
        let meta_index = BlockHandle::new(
            d.u64().ok_or_else(truncated)?,
            d.u64().ok_or_else(truncated)?,
        );
        let index = BlockHandle::new(
            d.u64().ok_or_else(truncated)?,
            d.u64().ok_or_else(truncated)?,
        );
        let version = d.u32().ok_or_else(truncated)?;
        let stored_crc = d.u32().ok_or_else(truncated)?;
        let magic = d.u64().ok_or_else(truncated)?;
        if magic != TABLE_MAGIC {
            return Err(corrupt(format!(
                "bad magic {magic:#018x} (expected {TABLE_MAGIC:#018x}); not an o3 table"
            )));
        }
        check_crc(
            location,
            footer_offset,
            stored_crc,
            crc32c::crc32c(&buf[..36]),
        )?;
        if version != FORMAT_VERSION {
            return Err(corrupt(format!(
                "unknown format version {version} (this build reads {FORMAT_VERSION})"
            )));
        }
        for (name, h) in [("meta-index", meta_index), ("index", index)] {
            if h.end_with_trailer().is_none_or(|end| end > footer_offset) {
                return Err(corrupt(format!(
                    "{name} handle (offset {}, size {}) runs past the footer",
                    h.offset, h.size
                )));
            }
        }
        Ok(Footer { meta_index, index })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_round_trips_and_detects_damage() {
        let f = Footer {
            meta_index: BlockHandle::new(100, 20),
            index: BlockHandle::new(40, 55),
        };
        let bytes = f.encode();
        assert_eq!(Footer::decode(&bytes, 200, "t").unwrap(), f);
        assert!(
            Footer::decode(&bytes, 120, "t").is_err(),
            "handle past footer"
        );
        for i in 0..FOOTER_LEN {
            let mut b = bytes;
            b[i] ^= 0x10;
            let err = Footer::decode(&b, 200, "t").unwrap_err();
            assert!(err.is_corruption(), "{err}");
        }
    }

    #[test]
    fn handle_round_trips_and_rejects_trailing_bytes() {
        let h = BlockHandle::new(u64::MAX, 4096);
        let mut b = Vec::new();
        h.encode_to(&mut b);
        assert_eq!(BlockHandle::decode(&b), Some(h));
        assert_eq!(h.end_with_trailer(), None);
        b.push(0);
        assert_eq!(BlockHandle::decode(&b), None);
    }
}
