//! Metadata of one SST, as recorded in version edits and carried by jobs.

use serde::{Deserialize, Serialize};

use crate::key::{SequenceNumber, user_key};

/// Everything the engine knows about an SST without opening it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// File number (`{number:06}.sst`).
    pub number: u64,
    /// Size in bytes of the whole file.
    pub size: u64,
    /// Smallest internal key in the file.
    pub smallest: Vec<u8>,
    /// Largest internal key in the file.
    pub largest: Vec<u8>,
    pub smallest_seq: SequenceNumber,
    pub largest_seq: SequenceNumber,
    /// Number of entries (values and tombstones).
    pub entries: u64,
    /// Number of tombstones.
    pub tombstones: u64,
    /// The shard whose key range contains every key of the file.
    pub shard: u32,
    /// Creation time (milliseconds since the Unix epoch).
    pub created_ms: u64,
}

impl FileMeta {
    /// Smallest user key.
    pub fn smallest_user_key(&self) -> &[u8] {
        user_key(&self.smallest)
    }
    /// Largest user key.
    pub fn largest_user_key(&self) -> &[u8] {
        user_key(&self.largest)
    }
    /// True when the file's user-key range intersects `[lo, hi]` (inclusive;
    /// `None` means unbounded).
    pub fn overlaps(&self, lo: Option<&[u8]>, hi: Option<&[u8]>) -> bool {
        let before = matches!(hi, Some(h) if self.smallest_user_key() > h);
        let after = matches!(lo, Some(l) if self.largest_user_key() < l);
        !(before || after)
    }
}
