//! What peers may do to a registered region.
//!
//! Access is fixed at registration ([`crate::verbs::Fabric::register`]) and
//! checked by the region's NIC on every one-sided operation: the `rdma`
//! backend maps it to the verbs access flags of the memory registration so
//! the real NIC enforces it, and the software NICs (`local`, the `tcp`
//! server thread, the `shm` requester against the region file's header)
//! check the owner's record, never the descriptor a peer presents. A
//! refused operation is [`crate::Error::AccessDenied`] and changes no byte.
//! An atomic both reads and writes its word, so it needs both rights (on
//! RDMA: `IBV_ACCESS_REMOTE_ATOMIC` is granted only with both).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Remote rights on a region. The owner's local access is never limited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RegionAccess {
    /// Peers may read (one-sided `read`).
    pub remote_read: bool,
    /// Peers may write (one-sided `write`).
    pub remote_write: bool,
}

/// The kind of one-sided operation, as far as access rights go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RemoteOp {
    Read,
    Write,
    /// Compare-and-swap or fetch-and-add: reads and writes one word.
    Atomic,
}

impl RegionAccess {
    /// No remote access: only the owner touches the bytes.
    pub const NONE: RegionAccess = RegionAccess {
        remote_read: false,
        remote_write: false,
    };
    /// Peers read; nobody but the owner writes (a published image).
    pub const READ_ONLY: RegionAccess = RegionAccess {
        remote_read: true,
        remote_write: false,
    };
    /// Peers write but cannot read back (a drop box).
    pub const WRITE_ONLY: RegionAccess = RegionAccess {
        remote_read: false,
        remote_write: true,
    };
    /// Every one-sided operation, atomics included.
    pub const READ_WRITE: RegionAccess = RegionAccess {
        remote_read: true,
        remote_write: true,
    };

    /// Whether `op` is allowed.
    pub fn permits(self, op: RemoteOp) -> bool {
        match op {
            RemoteOp::Read => self.remote_read,
            RemoteOp::Write => self.remote_write,
            RemoteOp::Atomic => self.remote_read && self.remote_write,
        }
    }

    /// Bit 0 = remote read, bit 1 = remote write (the `shm` region header
    /// and wire encodings).
    pub fn bits(self) -> u64 {
        u64::from(self.remote_read) | (u64::from(self.remote_write) << 1)
    }

    /// The inverse of [`RegionAccess::bits`]; unknown bits are `None`.
    pub fn from_bits(bits: u64) -> Option<Self> {
        (bits & !3 == 0).then_some(RegionAccess {
            remote_read: bits & 1 != 0,
            remote_write: bits & 2 != 0,
        })
    }
}

impl fmt::Display for RegionAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (self.remote_read, self.remote_write) {
            (false, false) => "no remote access",
            (true, false) => "remote read only",
            (false, true) => "remote write only",
            (true, true) => "remote read and write",
        })
    }
}

impl RemoteOp {
    /// One byte on the wire (`tcp` batch results, `rdma` diagnoses).
    pub fn code(self) -> u8 {
        match self {
            RemoteOp::Read => 1,
            RemoteOp::Write => 2,
            RemoteOp::Atomic => 3,
        }
    }

    /// The inverse of [`RemoteOp::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => RemoteOp::Read,
            2 => RemoteOp::Write,
            3 => RemoteOp::Atomic,
            _ => return None,
        })
    }
}

impl fmt::Display for RemoteOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RemoteOp::Read => "read",
            RemoteOp::Write => "write",
            RemoteOp::Atomic => "atomic",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomics_need_both_rights() {
        for access in [
            RegionAccess::NONE,
            RegionAccess::READ_ONLY,
            RegionAccess::WRITE_ONLY,
            RegionAccess::READ_WRITE,
        ] {
            assert_eq!(access.permits(RemoteOp::Read), access.remote_read);
            assert_eq!(access.permits(RemoteOp::Write), access.remote_write);
            assert_eq!(
                access.permits(RemoteOp::Atomic),
                access == RegionAccess::READ_WRITE
            );
            assert_eq!(RegionAccess::from_bits(access.bits()), Some(access));
        }
        assert_eq!(RegionAccess::from_bits(4), None);
    }
}
