//! Zstd for stored blocks (`docs/sst_format.md`, "Block trailer", type 2):
//! one-shot frames compressed at the writer's level and decompressed into a
//! buffer no larger than the size the block declares.
//!
//! Each thread keeps one compression and one decompression context: creating
//! a context costs more than compressing a 2 KiB block, and blocks are
//! compressed and read one at a time per thread.

use std::cell::RefCell;
use std::io::{self, Cursor};

use zstd::bulk::{Compressor, Decompressor};

/// Smallest stored cost of a zstd block: a 3-byte block header plus one
/// run-length byte.
const MIN_BLOCK_COST: u64 = 4;
/// Largest output of one zstd block (the format's `Block_Maximum_Size`).
const MAX_BLOCK_OUTPUT: u64 = 128 << 10;

thread_local! {
    static COMPRESSOR: RefCell<Option<Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Most bytes `compressed_len` bytes of zstd frames can decode to: every
/// block of at most [`MAX_BLOCK_OUTPUT`] bytes costs at least
/// [`MIN_BLOCK_COST`] stored bytes. A declared size above it cannot be
/// true, so a reader refuses it before allocating.
pub(super) fn max_output(compressed_len: usize) -> u64 {
    (compressed_len as u64 / MIN_BLOCK_COST).saturating_mul(MAX_BLOCK_OUTPUT)
}

/// Append `raw`, compressed as one zstd frame at `level`, to `out` after
/// what it already holds.
pub(super) fn compress_into(raw: &[u8], level: i32, out: &mut Vec<u8>) -> io::Result<()> {
    let start = out.len();
    out.reserve(zstd::zstd_safe::compress_bound(raw.len()));
    let mut tail = Cursor::new(out);
    tail.set_position(start as u64);
    with_compressor(level, |c| c.compress_to_buffer(raw, &mut tail))?;
    Ok(())
}

/// Decode `compressed` (zstd frames) into a buffer of capacity `declared`;
/// output that would pass it is an error, so a corrupt block never makes
/// the reader allocate more than it declared. The caller checks that the
/// output is exactly `declared` bytes long.
pub(super) fn decompress(compressed: &[u8], declared: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(declared);
    with_decompressor(|d| d.decompress_to_buffer(compressed, &mut out))?;
    Ok(out)
}

/// Run `f` with this thread's compression context set to `level`.
fn with_compressor<R>(
    level: i32,
    f: impl FnOnce(&mut Compressor<'static>) -> io::Result<R>,
) -> io::Result<R> {
    COMPRESSOR.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            // Only a nested call could hold the context; a fresh one serves.
            return f(&mut Compressor::new(level)?);
        };
        let mut context = match slot.take() {
            Some(mut c) => {
                c.set_compression_level(level)?;
                c
            }
            None => Compressor::new(level)?,
        };
        let result = f(&mut context);
        *slot = Some(context);
        result
    })
}

/// Run `f` with this thread's decompression context.
fn with_decompressor<R>(
    f: impl FnOnce(&mut Decompressor<'static>) -> io::Result<R>,
) -> io::Result<R> {
    DECOMPRESSOR.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return f(&mut Decompressor::new()?);
        };
        let mut context = match slot.take() {
            Some(d) => d,
            None => Decompressor::new()?,
        };
        let result = f(&mut context);
        *slot = Some(context);
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_after_existing_bytes() {
        let raw: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut out = vec![9, 8, 7];
        compress_into(&raw, 3, &mut out).unwrap();
        assert_eq!(&out[..3], &[9, 8, 7]);
        assert!(out.len() < raw.len() / 4, "{} bytes", out.len());
        assert_eq!(decompress(&out[3..], raw.len()).unwrap(), raw);
        assert!(raw.len() as u64 <= max_output(out.len() - 3));
    }

    #[test]
    fn output_beyond_the_declared_size_is_refused() {
        let raw = vec![1u8; 5000];
        let mut out = Vec::new();
        compress_into(&raw, 1, &mut out).unwrap();
        assert!(decompress(&out, raw.len() - 1).is_err());
        let short = decompress(&out, raw.len() + 100).unwrap();
        assert_eq!(short.len(), raw.len());
    }

    #[test]
    fn fast_default_and_high_levels_round_trip() {
        let raw = b"abcabcabcabcabcabcabcabcabcabcabcabcabc".repeat(20);
        for level in [-5, 0, 1, 3, 19] {
            let mut out = Vec::new();
            compress_into(&raw, level, &mut out).unwrap();
            assert_eq!(decompress(&out, raw.len()).unwrap(), raw, "level {level}");
        }
    }
}
