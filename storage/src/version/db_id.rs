//! [`DbId`]: the persisted identity of a database, recorded in its manifest
//! (`docs/manifest_format.md`, tag 10) and carried by every job token, so a
//! job result can be told apart from one of another database (a checkpoint,
//! a restored copy) even when job ids and file numbers coincide.

use serde::{Deserialize, Serialize};

/// 16 random bytes drawn when a database (or a checkpoint, which is a new
/// database) is created. Shown as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DbId([u8; 16]);

impl DbId {
    /// Length of the id in bytes (and of its manifest record's value).
    pub const LEN: usize = 16;

    /// A fresh random id. 128 random bits make a collision between two
    /// databases that could exchange jobs negligible.
    pub fn random() -> DbId {
        DbId(rand::random())
    }

    pub fn from_bytes(bytes: [u8; Self::LEN]) -> DbId {
        DbId(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    /// The first 8 hex digits: enough to tell databases apart in a log line.
    pub(crate) fn fmt_short(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0[..4].iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::fmt::Display for DbId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::fmt::Debug for DbId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DbId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_32_hex_digits() {
        let mut bytes = [0u8; 16];
        bytes[0] = 0x1a;
        bytes[15] = 0xff;
        let id = DbId::from_bytes(bytes);
        assert_eq!(id.to_string(), "1a0000000000000000000000000000ff");
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(DbId::random(), DbId::random());
    }
}
