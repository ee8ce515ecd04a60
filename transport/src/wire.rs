//! The stream wire format shared by the `tcp` backend (all traffic) and the
//! `shm` backend (two-sided messages over a Unix socket).
//!
//! Every frame starts with a 24-byte little-endian header:
//!
//! | bytes | field  | meaning |
//! |-------|--------|---------|
//! | 0..8  | len    | payload length in bytes |
//! | 8..16 | id     | request id (0 for one-way messages) |
//! | 16    | kind   | [`FrameKind`] |
//! | 17    | status | 0 = ok; for `Response`, 1 = the handler failed (payload = message) |
//! | 18..24| —      | zero |
//!
//! A connection opens with the handshake of [`crate::handshake`]: the
//! requester sends `Hello` (its nonce and node id), the owner answers
//! `Challenge` (its nonce, proof and node id), the requester sends `Proof`,
//! and the owner answers `Welcome` (empty) or `Refused` (payload = the
//! reason, UTF-8) and closes. Handshake frames carry at most 4096 bytes and
//! any of them after the handshake is a protocol error. Only then do
//! `Message`, `Request` and `Batch` frames flow. An `shm` owner's `Welcome`
//! names a mailbox file in its directory (`crate::mailbox`) through which
//! small requests and responses may travel instead of frames; an empty
//! payload means none. `Doorbell` (empty, either direction) wakes a peer
//! that sleeps on the socket after a message was put in its mailbox. A `Batch` payload is a u32
//! count followed by that many operations:
//! `op u8 (1 read, 2 write, 3 cas, 4 fetch-add) | region u64 | rkey u64 |
//! offset u64`, then for read `len u64`, for write `len u64` and the data,
//! for cas `expected u64 | new u64`, for fetch-add `add u64`.
//! The `BatchResult` payload has one entry per operation: a status byte
//! ([`OpStatus`]), then for a successful read the data, for an atomic the old
//! value, for `OutOfBounds` the region length, for `AccessDenied` the
//! region's access flags (u8: bit 0 remote read, bit 1 remote write).

use crate::error::{Error, Result};
use crate::verbs::NodeId;

/// Largest payload of a handshake frame.
pub const MAX_HANDSHAKE_FRAME: u64 = 4096;

/// Length of every frame header.
pub const HEADER_LEN: usize = 24;

/// Length of an operation's fixed prefix in a `Batch` payload.
pub const OP_PREFIX_LEN: usize = 1 + 8 + 8 + 8;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    Hello = 1,
    Message = 2,
    Request = 3,
    Response = 4,
    Batch = 5,
    BatchResult = 6,
    Challenge = 7,
    Proof = 8,
    Welcome = 9,
    Refused = 10,
    Doorbell = 11,
}

impl FrameKind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => FrameKind::Hello,
            2 => FrameKind::Message,
            3 => FrameKind::Request,
            4 => FrameKind::Response,
            5 => FrameKind::Batch,
            6 => FrameKind::BatchResult,
            7 => FrameKind::Challenge,
            8 => FrameKind::Proof,
            9 => FrameKind::Welcome,
            10 => FrameKind::Refused,
            11 => FrameKind::Doorbell,
            _ => return None,
        })
    }
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub len: u64,
    pub id: u64,
    pub kind: FrameKind,
    pub status: u8,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&self.len.to_le_bytes());
        out[8..16].copy_from_slice(&self.id.to_le_bytes());
        out[16] = self.kind as u8;
        out[17] = self.status;
        out
    }

    /// Decode a header received from `peer`; an unknown kind is a protocol
    /// error.
    pub fn decode(bytes: &[u8; HEADER_LEN], peer: &NodeId) -> Result<Self> {
        let kind = FrameKind::from_u8(bytes[16])
            .ok_or_else(|| Error::protocol(peer, format!("unknown frame kind {}", bytes[16])))?;
        Ok(Header {
            len: u64_at(bytes, 0),
            id: u64_at(bytes, 8),
            kind,
            status: bytes[17],
        })
    }
}

/// One-sided operation codes in a `Batch` payload.
pub mod op {
    pub const READ: u8 = 1;
    pub const WRITE: u8 = 2;
    pub const CAS: u8 = 3;
    pub const FETCH_ADD: u8 = 4;
}

/// Per-operation status in a `BatchResult` payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpStatus {
    Ok = 0,
    OutOfBounds = 1,
    BadKey = 2,
    RegionGone = 3,
    Misaligned = 4,
    Flushed = 5,
    AccessDenied = 6,
}

impl OpStatus {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => OpStatus::Ok,
            1 => OpStatus::OutOfBounds,
            2 => OpStatus::BadKey,
            3 => OpStatus::RegionGone,
            4 => OpStatus::Misaligned,
            5 => OpStatus::Flushed,
            6 => OpStatus::AccessDenied,
            _ => return None,
        })
    }

    /// The status that reports `error` to the requester; errors that are not
    /// about one access never reach a `BatchResult`.
    pub fn of(error: &Error) -> OpStatus {
        match error {
            Error::OutOfBounds { .. } => OpStatus::OutOfBounds,
            Error::BadKey { .. } => OpStatus::BadKey,
            Error::Misaligned { .. } => OpStatus::Misaligned,
            Error::Flushed { .. } => OpStatus::Flushed,
            Error::AccessDenied { .. } => OpStatus::AccessDenied,
            _ => OpStatus::RegionGone,
        }
    }
}

/// Read a little-endian u64 at `at`; the caller guarantees the bounds.
pub fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// A bounds-checked little-endian reader over a received payload.
#[derive(Debug)]
pub struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    peer: &'a NodeId,
    what: &'static str,
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8], peer: &'a NodeId, what: &'static str) -> Self {
        Cursor {
            bytes,
            pos: 0,
            peer,
            what,
        }
    }

    /// The next `n` bytes, or a protocol error naming the offset.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(Error::protocol(
                self.peer,
                format!(
                    "{} truncated at offset {}: need {n} more bytes, {} left",
                    self.what,
                    self.pos,
                    self.bytes.len() - self.pos
                ),
            ));
        };
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64_at(self.take(8)?, 0))
    }

    pub fn offset(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos == self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = Header {
            len: 1 << 40,
            id: 77,
            kind: FrameKind::BatchResult,
            status: 1,
        };
        assert_eq!(Header::decode(&h.encode(), &NodeId::from("p")).unwrap(), h);
    }

    #[test]
    fn unknown_kind_is_a_protocol_error() {
        let mut bytes = [0u8; HEADER_LEN];
        bytes[16] = 99;
        assert!(matches!(
            Header::decode(&bytes, &NodeId::from("p")),
            Err(Error::Protocol { .. })
        ));
    }

    #[test]
    fn cursor_rejects_truncation() {
        let peer = NodeId::from("p");
        let mut c = Cursor::new(&[1, 2, 3], &peer, "batch");
        assert_eq!(c.u8().unwrap(), 1);
        assert!(matches!(c.u64(), Err(Error::Protocol { .. })));
    }
}
