//! The log format shared by the write-ahead log and the manifest: a file of
//! 32 KiB blocks holding checksummed fragments of opaque records.
//!
//! The exact layout and the recovery rules are in `storage/docs/wal_format.md`;
//! this module follows that document. In short:
//! - [`LogWriter`] splits each record into FULL / FIRST / MIDDLE / LAST
//!   fragments that never cross a block boundary, zero-filling a block tail
//!   too small for a fragment header;
//! - [`LogReader`] streams the file one block at a time, reassembles records,
//!   treats damage *followed by valid fragments* as corruption (an error
//!   naming the location and offset) and a damaged or cut-short *end* of the
//!   log as a torn tail (end of log, reported by [`LogReader::torn_tail`]) as
//!   far as its [`TailTolerance`] and known synced length allow.
//!
//! The layer is payload-agnostic: the WAL stores encoded write batches, the
//! manifest stores version edits.

mod reader;
mod writer;

pub use reader::{LogReader, TailTolerance};
pub use writer::LogWriter;

/// Size of a log block; fragments never cross a multiple of it.
pub const BLOCK_SIZE: usize = 32 * 1024;

/// Fragment header: `crc32c: u32 | payload length: u16 | type: u8 | log number: u64`.
pub const HEADER_LEN: usize = 15;

/// The largest payload one fragment can carry (a whole block minus its header).
pub const MAX_FRAGMENT_PAYLOAD: usize = BLOCK_SIZE - HEADER_LEN;

/// How a fragment relates to the record it belongs to (`wal_format.md`,
/// "Fragment types"). Type byte 0 is never written: it is what zero-filled
/// space decodes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentType {
    /// The whole record.
    Full = 1,
    /// The first piece of a record spanning several fragments.
    First = 2,
    /// A piece strictly inside such a record.
    Middle = 3,
    /// The final piece of such a record.
    Last = 4,
}

impl FragmentType {
    /// Decode a stored type byte; `None` for anything the writer never emits.
    pub fn from_byte(b: u8) -> Option<FragmentType> {
        match b {
            1 => Some(FragmentType::Full),
            2 => Some(FragmentType::First),
            3 => Some(FragmentType::Middle),
            4 => Some(FragmentType::Last),
            _ => None,
        }
    }
}

/// The checksum stored in a fragment header: CRC32C over the type byte, the
/// log number (8 bytes little-endian) and the payload — exactly the header
/// bytes `[6, 15)` followed by the payload, so it is computed without copying.
fn fragment_crc(type_and_log: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(type_and_log), payload)
}

/// Encode a fragment header for `payload`.
fn encode_header(kind: FragmentType, log_number: u64, payload: &[u8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    // The writer never builds a fragment larger than MAX_FRAGMENT_PAYLOAD,
    // which fits in u16.
    h[4..6].copy_from_slice(&(payload.len() as u16).to_le_bytes());
    h[6] = kind as u8;
    h[7..15].copy_from_slice(&log_number.to_le_bytes());
    let crc = fragment_crc(&h[6..15], payload);
    h[0..4].copy_from_slice(&crc.to_le_bytes());
    h
}
