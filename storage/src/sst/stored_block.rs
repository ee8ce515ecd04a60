//! A block as stored in the file: contents (maybe lz4- or zstd-compressed) plus the
//! 5-byte trailer (`docs/sst_format.md`, "Block trailer"). Writing compresses
//! and checksums; reading verifies the checksum before anything else looks at
//! the bytes, then decompresses with a bounded output size.

use std::borrow::Cow;

use bytes::Bytes;

use crate::coding::{get_varint64, put_varint64};
use crate::env::{RandomAccessFile, WritableFile};
use crate::error::{Error, Result, check_crc};
use crate::options::Compression;

use super::footer::{BLOCK_TRAILER_LEN, BlockHandle};
use super::zstd_block;

/// Largest uncompressed block a reader accepts from a compressed block's
/// header.
const MAX_UNCOMPRESSED: u64 = 1 << 30;

/// CRC of stored contents plus the compression byte.
fn block_crc(contents: &[u8], kind: u8) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(contents), &[kind])
}

/// Append `raw` as a block at file offset `offset` (the caller tracks it),
/// compressing with `compression` when that saves at least 1/8. `scratch` is
/// reused across calls to avoid an allocation per block.
pub(crate) fn append_block(
    file: &mut dyn WritableFile,
    offset: u64,
    raw: &[u8],
    compression: Compression,
    scratch: &mut Vec<u8>,
) -> Result<BlockHandle> {
    let compressed = compress(raw, compression, scratch)?;
    let (contents, kind): (&[u8], Compression) =
        if compressed && scratch.len() < raw.len() - raw.len() / 8 {
            (scratch.as_slice(), compression)
        } else {
            (raw, Compression::None)
        };
    let kind = kind.as_byte();
    let mut trailer = [0u8; BLOCK_TRAILER_LEN as usize];
    trailer[0] = kind;
    trailer[1..].copy_from_slice(&block_crc(contents, kind).to_le_bytes());
    file.append(contents)?;
    file.append(&trailer)?;
    Ok(BlockHandle::new(offset, contents.len() as u64))
}

/// Fill `scratch` with the stored contents of `raw` under `compression`
/// (`uncompressed_len: varint | codec bytes`); false, leaving `scratch`
/// unused, for [`Compression::None`].
fn compress(raw: &[u8], compression: Compression, scratch: &mut Vec<u8>) -> Result<bool> {
    if compression == Compression::None {
        return Ok(false);
    }
    scratch.clear();
    put_varint64(scratch, raw.len() as u64);
    let header = scratch.len();
    match compression {
        Compression::None => {}
        Compression::Lz4 => {
            scratch.resize(
                header + lz4_flex::block::get_maximum_output_size(raw.len()),
                0,
            );
            let n = lz4_flex::block::compress_into(raw, &mut scratch[header..])
                .map_err(|e| Error::InvalidArgument(format!("lz4 compression failed: {e}")))?;
            scratch.truncate(header + n);
        }
        Compression::Zstd { level } => {
            zstd_block::compress_into(raw, level, scratch).map_err(|e| {
                Error::InvalidArgument(format!("zstd compression at level {level} failed: {e}"))
            })?;
        }
    }
    Ok(true)
}

/// Read the block at `handle`, which must end (trailer included) at or before
/// `limit` (the start of the footer), verify its checksum and decompress it.
pub fn read_block(
    file: &dyn RandomAccessFile,
    handle: BlockHandle,
    limit: u64,
    location: &str,
) -> Result<Bytes> {
    let mut buf = vec![0u8; stored_len(handle, limit, location)?];
    file.read_exact_at(handle.offset, &mut buf)?;
    decode_stored_block(buf, handle.offset, location)
}

/// [`read_block`] into `buf`, a buffer the caller reuses across reads (a
/// point lookup's block that the cache does not keep then costs no
/// allocation): the contents are borrowed from `buf` when the block is
/// stored uncompressed, decompressed into a new buffer otherwise.
pub(crate) fn read_block_into<'b>(
    file: &dyn RandomAccessFile,
    handle: BlockHandle,
    limit: u64,
    location: &str,
    buf: &'b mut Vec<u8>,
) -> Result<Cow<'b, [u8]>> {
    let len = stored_len(handle, limit, location)?;
    // Only growth is zeroed; a reused buffer of the usual block size is not
    // touched before the read overwrites it.
    buf.resize(len, 0);
    file.read_exact_at(handle.offset, buf)?;
    let (contents, kind) = verify_stored_block(buf, handle.offset, location)?;
    match kind {
        Compression::None => Ok(Cow::Borrowed(contents)),
        codec => decompress(contents, codec, handle.offset, location).map(Cow::Owned),
    }
}

/// Bytes to read for the block at `handle` (contents and trailer), which
/// must end at or before `limit`.
fn stored_len(handle: BlockHandle, limit: u64, location: &str) -> Result<usize> {
    let in_bounds = handle.end_with_trailer().is_some_and(|end| end <= limit);
    let len = usize::try_from(handle.size + BLOCK_TRAILER_LEN).ok();
    let (true, Some(len)) = (in_bounds, len) else {
        return Err(Error::corruption(
            location,
            handle.offset,
            format!(
                "block handle (size {}) runs past the block area ending at {limit}",
                handle.size
            ),
        ));
    };
    Ok(len)
}

/// Verify and decode stored contents + trailer read from file offset
/// `offset`. Public so that fuzzing can reach it without a file.
pub fn decode_stored_block(mut buf: Vec<u8>, offset: u64, location: &str) -> Result<Bytes> {
    let (contents, kind) = verify_stored_block(&buf, offset, location)?;
    match kind {
        Compression::None => {
            let size = contents.len();
            buf.truncate(size);
            Ok(Bytes::from(buf))
        }
        codec => decompress(contents, codec, offset, location).map(Bytes::from),
    }
}

/// Check the trailer of stored contents + trailer: the checksum first, then
/// the compression type. Returns the stored (maybe compressed) contents.
fn verify_stored_block<'b>(
    buf: &'b [u8],
    offset: u64,
    location: &str,
) -> Result<(&'b [u8], Compression)> {
    let Some(size) = buf.len().checked_sub(BLOCK_TRAILER_LEN as usize) else {
        return Err(Error::corruption(
            location,
            offset,
            format!("{} bytes cannot hold a block trailer", buf.len()),
        ));
    };
    let kind = buf[size];
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&buf[size + 1..]);
    check_crc(
        location,
        offset,
        u32::from_le_bytes(crc),
        block_crc(&buf[..size], kind),
    )?;
    match Compression::from_byte(kind) {
        Some(c) => Ok((&buf[..size], c)),
        None => Err(Error::corruption(
            location,
            offset,
            format!("unknown compression type {kind}"),
        )),
    }
}

/// Decode the stored contents of a block of type `codec`; uncompressed
/// contents are returned as they are.
fn decompress(stored: &[u8], codec: Compression, offset: u64, location: &str) -> Result<Vec<u8>> {
    let codec = match codec {
        Compression::None => return Ok(stored.to_vec()),
        Compression::Lz4 => Codec {
            name: "lz4",
            // lz4 encodes at most 255 bytes per input byte, plus a short tail.
            max_output: |compressed| compressed as u64 * 255 + 16,
            decode: decode_lz4,
        },
        Compression::Zstd { .. } => Codec {
            name: "zstd",
            max_output: zstd_block::max_output,
            decode: |compressed, declared| {
                zstd_block::decompress(compressed, declared).map_err(|e| e.to_string())
            },
        },
    };
    codec.decode_sized(stored, offset, location)
}

/// A block decoder and what it can produce.
struct Codec {
    name: &'static str,
    /// Most bytes this many compressed bytes can decode to.
    max_output: fn(usize) -> u64,
    /// Decode into at most `declared` bytes.
    decode: fn(&[u8], usize) -> std::result::Result<Vec<u8>, String>,
}

impl Codec {
    /// Decode `uncompressed_len: varint | codec bytes`. The declared length
    /// is checked against what the codec could produce from the bytes that
    /// follow, and against [`MAX_UNCOMPRESSED`], before anything is
    /// allocated; the output must be exactly that long.
    fn decode_sized(&self, stored: &[u8], offset: u64, location: &str) -> Result<Vec<u8>> {
        let name = self.name;
        let corrupt = |reason: String| Error::corruption(location, offset, reason);
        let (declared, n) =
            get_varint64(stored).ok_or_else(|| corrupt(format!("truncated {name} length")))?;
        let compressed = &stored[n..];
        let bound = (self.max_output)(compressed.len()).min(MAX_UNCOMPRESSED);
        if declared > bound {
            return Err(corrupt(format!(
                "{name} block declares {declared} uncompressed bytes, more than {bound} possible"
            )));
        }
        let out = (self.decode)(compressed, declared as usize)
            .map_err(|e| corrupt(format!("{name} decompression failed: {e}")))?;
        if out.len() as u64 != declared {
            return Err(corrupt(format!(
                "{name} block produced {} bytes, declared {declared}",
                out.len()
            )));
        }
        Ok(out)
    }
}

fn decode_lz4(compressed: &[u8], declared: usize) -> std::result::Result<Vec<u8>, String> {
    let mut out = vec![0u8; declared];
    let produced =
        lz4_flex::block::decompress_into(compressed, &mut out).map_err(|e| e.to_string())?;
    out.truncate(produced);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct VecFile(Vec<u8>);
    impl WritableFile for VecFile {
        fn append(&mut self, data: &[u8]) -> Result<()> {
            self.0.extend_from_slice(data);
            Ok(())
        }
        fn flush(&mut self) -> Result<()> {
            Ok(())
        }
        fn sync(&mut self) -> Result<()> {
            Ok(())
        }
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
    }

    #[test]
    fn round_trips_with_and_without_compression() {
        let compressible = vec![7u8; 5000];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let random: Vec<u8> = (0..5000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        for raw in [&compressible, &random] {
            for c in [Compression::None, Compression::Lz4, Compression::zstd()] {
                let mut f = VecFile(Vec::new());
                let h = append_block(&mut f, 0, raw, c, &mut Vec::new()).unwrap();
                assert_eq!(h.end_with_trailer(), Some(f.0.len() as u64));
                // Random bytes do not shrink by 1/8 and are stored as they are.
                let expect_kind = if raw == &compressible { c.as_byte() } else { 0 };
                assert_eq!(f.0[h.size as usize], expect_kind);
                assert_eq!(
                    &decode_stored_block(f.0.clone(), 0, "t").unwrap()[..],
                    &raw[..]
                );
                let mut bad = f.0.clone();
                bad[3] ^= 1;
                let err = decode_stored_block(bad, 0, "t").unwrap_err();
                assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
            }
        }
    }

    /// A block of type `kind` whose checksum matches `stored`.
    fn checksummed(mut stored: Vec<u8>, kind: Compression) -> Vec<u8> {
        let kind = kind.as_byte();
        let crc = block_crc(&stored, kind);
        stored.push(kind);
        stored.extend_from_slice(&crc.to_le_bytes());
        stored
    }

    #[test]
    fn declared_length_is_bounded_before_allocating() {
        for codec in [Compression::Lz4, Compression::zstd()] {
            let mut stored = Vec::new();
            put_varint64(&mut stored, u64::MAX >> 1);
            stored.push(0);
            let err = decode_stored_block(checksummed(stored, codec), 0, "t").unwrap_err();
            assert!(err.is_corruption(), "{err}");
            assert!(err.to_string().contains("possible"), "{err}");
        }
    }

    /// A checksummed zstd block whose frame is damaged, truncated, longer
    /// or shorter than declared, or not zstd at all, is corruption.
    #[test]
    fn damaged_zstd_contents_are_corruption() {
        let raw = b"zstd block contents, repeated; ".repeat(40);
        let mut frame = Vec::new();
        zstd_block::compress_into(&raw, 3, &mut frame).unwrap();
        let with_len = |declared: usize, frame: &[u8]| {
            let mut stored = Vec::new();
            put_varint64(&mut stored, declared as u64);
            stored.extend_from_slice(frame);
            checksummed(stored, Compression::zstd())
        };
        let good = decode_stored_block(with_len(raw.len(), &frame), 0, "t").unwrap();
        assert_eq!(&good[..], &raw[..]);
        let cases = [
            ("declared short", with_len(raw.len() - 1, &frame)),
            ("declared long", with_len(raw.len() + 1, &frame)),
            ("truncated", with_len(raw.len(), &frame[..frame.len() - 3])),
            ("not zstd", with_len(raw.len(), &raw[..100])),
            ("empty", checksummed(Vec::new(), Compression::zstd())),
        ];
        for (what, block) in cases {
            let err = decode_stored_block(block, 7, "t").unwrap_err();
            assert!(err.is_corruption(), "{what}: {err}");
        }
        let mut detected = 0;
        for i in 0..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x55;
            match decode_stored_block(with_len(raw.len(), &bad), 7, "t") {
                Err(err) => {
                    assert!(err.is_corruption(), "byte {i}: {err}");
                    detected += 1;
                }
                // zstd cannot notice every flip (frames carry no checksum
                // here; the block trailer's CRC is what catches damage on
                // disk), but never yields more or fewer bytes than declared.
                Ok(out) => assert_eq!(out.len(), raw.len(), "byte {i}"),
            }
        }
        assert!(detected > 0, "no flipped frame byte was noticed");
    }
}
