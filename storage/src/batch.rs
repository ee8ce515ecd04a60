//! Write batches: an atomic group of puts, deletes and range deletions,
//! encoded once and written to the WAL as one record without re-encoding.
//!
//! Encoding (also the WAL record payload, see `docs/wal_format.md`):
//! `first_sequence: u64 LE | count: u32 LE | op*`, where
//! `op = kind: u8 | varint key_len | key | (varint value_len | value if kind is put or delete-range)`;
//! a range deletion stores its start as the key and its (exclusive) end as
//! the value, and `start <= end` (equal bounds delete nothing).

use crate::coding::{Decoder, put_length_prefixed};
use crate::error::{Error, Result};
use crate::key::{SequenceNumber, ValueKind};

/// Size of the batch header (first sequence + count).
pub const BATCH_HEADER_LEN: usize = 12;

/// An atomic group of writes.
#[derive(Clone, PartialEq, Eq)]
pub struct WriteBatch {
    rep: Vec<u8>,
    /// Range deletions among the operations, so that the write path can
    /// skip decoding batches that hold none.
    range_deletions: u32,
}

impl std::fmt::Debug for WriteBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBatch")
            .field("count", &self.count())
            .field("bytes", &self.rep.len())
            .finish()
    }
}

impl Default for WriteBatch {
    fn default() -> Self {
        Self::new()
    }
}

/// What one batch operation does. The byte values are the encoding's kind
/// byte; put and delete share theirs with [`ValueKind`], the kinds of stored
/// entries, while a range deletion is never a stored entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BatchOpKind {
    /// Delete `key`.
    Delete = 0,
    /// Set `key` to `value`.
    Put = 1,
    /// Delete every key in `[key, value)`.
    DeleteRange = 2,
}

impl BatchOpKind {
    /// Decode a kind byte; `None` for unknown kinds.
    pub fn from_u8(b: u8) -> Option<BatchOpKind> {
        match b {
            0 => Some(BatchOpKind::Delete),
            1 => Some(BatchOpKind::Put),
            2 => Some(BatchOpKind::DeleteRange),
            _ => None,
        }
    }

    /// The kind of the memtable entry a put or delete becomes; `None` for a
    /// range deletion, which is kept beside the entries.
    pub fn entry_kind(self) -> Option<ValueKind> {
        match self {
            BatchOpKind::Delete => Some(ValueKind::Tombstone),
            BatchOpKind::Put => Some(ValueKind::Value),
            BatchOpKind::DeleteRange => None,
        }
    }
}

/// One operation inside a batch, borrowed from its encoding. For a range
/// deletion `key` is the start and `value` the exclusive end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOp<'a> {
    pub kind: BatchOpKind,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl WriteBatch {
    pub fn new() -> Self {
        WriteBatch {
            rep: vec![0; BATCH_HEADER_LEN],
            range_deletions: 0,
        }
    }

    /// An empty batch with room for `bytes` of operations (see
    /// [`WriteBatch::encoded_op_len`]) before it reallocates.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut rep = Vec::with_capacity(BATCH_HEADER_LEN + bytes);
        rep.resize(BATCH_HEADER_LEN, 0);
        WriteBatch {
            rep,
            range_deletions: 0,
        }
    }

    /// Bytes one operation with these lengths takes in a batch's encoding:
    /// the kind byte and two varint32-prefixed fields, at most.
    pub fn encoded_op_len(key_len: usize, value_len: usize) -> usize {
        1 + 5 + key_len + 5 + value_len
    }

    /// Add a put of `key` → `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.rep.push(BatchOpKind::Put as u8);
        put_length_prefixed(&mut self.rep, key);
        put_length_prefixed(&mut self.rep, value);
        self.set_count(self.count() + 1);
    }

    /// Add a delete of `key`.
    pub fn delete(&mut self, key: &[u8]) {
        self.rep.push(BatchOpKind::Delete as u8);
        put_length_prefixed(&mut self.rep, key);
        self.set_count(self.count() + 1);
    }

    /// Add a deletion of every key in `[start, end)` (RocksDB's
    /// `DeleteRange`): one operation, however many keys the range holds.
    /// `start == end` deletes nothing; a write of a batch with
    /// `start > end` fails with an invalid-argument error (see
    /// [`WriteBatch::check_ranges`]).
    pub fn delete_range(&mut self, start: &[u8], end: &[u8]) {
        self.rep.push(BatchOpKind::DeleteRange as u8);
        put_length_prefixed(&mut self.rep, start);
        put_length_prefixed(&mut self.rep, end);
        self.set_count(self.count() + 1);
        self.range_deletions += 1;
    }

    /// Number of range deletions among the operations.
    pub fn range_deletions(&self) -> u32 {
        self.range_deletions
    }

    /// Fail with `InvalidArgument` naming both keys when a range deletion
    /// has `start > end`. Costs nothing for a batch without range deletions.
    pub fn check_ranges(&self) -> Result<()> {
        if self.range_deletions == 0 {
            return Ok(());
        }
        for op in self.iter() {
            if op.kind == BatchOpKind::DeleteRange && op.key > op.value {
                return Err(Error::InvalidArgument(format!(
                    "range deletion start {:?} is after its end {:?}",
                    String::from_utf8_lossy(op.key),
                    String::from_utf8_lossy(op.value)
                )));
            }
        }
        Ok(())
    }

    /// Append every operation of `other` to this batch.
    pub fn extend_from(&mut self, other: &WriteBatch) {
        self.rep.extend_from_slice(&other.rep[BATCH_HEADER_LEN..]);
        self.set_count(self.count() + other.count());
        self.range_deletions += other.range_deletions;
    }

    /// Number of operations.
    pub fn count(&self) -> u32 {
        u32::from_le_bytes([self.rep[8], self.rep[9], self.rep[10], self.rep[11]])
    }

    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    fn set_count(&mut self, n: u32) {
        self.rep[8..12].copy_from_slice(&n.to_le_bytes());
    }

    /// Sequence number assigned to the first operation (0 until assigned).
    pub fn sequence(&self) -> SequenceNumber {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.rep[..8]);
        u64::from_le_bytes(b)
    }

    /// Assign the first sequence number; operation `i` gets `seq + i`.
    pub fn set_sequence(&mut self, seq: SequenceNumber) {
        self.rep[..8].copy_from_slice(&seq.to_le_bytes());
    }

    /// Size of the encoding in bytes.
    pub fn approximate_size(&self) -> usize {
        self.rep.len()
    }

    /// The encoding, ready to be written to the WAL.
    pub fn encoded(&self) -> &[u8] {
        &self.rep
    }

    /// Take over an encoding read back from the WAL, validating every
    /// operation so that later iteration cannot fail.
    pub fn from_encoded(rep: Vec<u8>, location: &str, offset: u64) -> Result<WriteBatch> {
        if rep.len() < BATCH_HEADER_LEN {
            return Err(Error::corruption(
                location,
                offset,
                format!(
                    "write batch of {} bytes is shorter than its 12-byte header",
                    rep.len()
                ),
            ));
        }
        let mut batch = WriteBatch {
            rep,
            range_deletions: 0,
        };
        let mut seen = 0u32;
        let mut range_deletions = 0u32;
        let mut d = Decoder::new(&batch.rep[BATCH_HEADER_LEN..]);
        while !d.is_empty() {
            let at = offset + (BATCH_HEADER_LEN + d.position()) as u64;
            let op = decode_op(&mut d).map_err(|reason| Error::corruption(location, at, reason))?;
            if op.kind == BatchOpKind::DeleteRange {
                // `Db::write` refuses reversed ranges, so none is ever logged.
                if op.key > op.value {
                    return Err(Error::corruption(
                        location,
                        at,
                        "range deletion start is after its end",
                    ));
                }
                range_deletions += 1;
            }
            seen += 1;
        }
        batch.range_deletions = range_deletions;
        if seen != batch.count() {
            return Err(Error::corruption(
                location,
                offset,
                format!(
                    "write batch header says {} operations, found {seen}",
                    batch.count()
                ),
            ));
        }
        Ok(batch)
    }

    /// Iterate over the operations in order.
    pub fn iter(&self) -> BatchIter<'_> {
        BatchIter {
            d: Decoder::new(&self.rep[BATCH_HEADER_LEN..]),
        }
    }

    /// Remove every operation.
    pub fn clear(&mut self) {
        self.rep.truncate(BATCH_HEADER_LEN);
        self.rep[..BATCH_HEADER_LEN].fill(0);
        self.range_deletions = 0;
    }
}

fn decode_op<'a>(d: &mut Decoder<'a>) -> std::result::Result<BatchOp<'a>, String> {
    let kb = d.u8().ok_or("truncated operation kind")?;
    let kind = BatchOpKind::from_u8(kb).ok_or_else(|| format!("unknown operation kind {kb}"))?;
    let key = d.length_prefixed().ok_or("truncated key")?;
    let value = match kind {
        BatchOpKind::Put => d.length_prefixed().ok_or("truncated value")?,
        BatchOpKind::DeleteRange => d.length_prefixed().ok_or("truncated range end")?,
        BatchOpKind::Delete => &[],
    };
    Ok(BatchOp { kind, key, value })
}

/// Iterator over a validated batch.
#[derive(Debug)]
pub struct BatchIter<'a> {
    d: Decoder<'a>,
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = BatchOp<'a>;
    fn next(&mut self) -> Option<BatchOp<'a>> {
        if self.d.is_empty() {
            return None;
        }
        // Batches are validated on construction from bytes and built by
        // `put`/`delete`/`delete_range` otherwise, so decoding cannot fail
        // here.
        decode_op(&mut self.d).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trips_through_bytes() {
        let mut b = WriteBatch::new();
        b.put(b"a", b"1");
        b.delete(b"b");
        b.put(b"", b"");
        b.set_sequence(77);
        let back = WriteBatch::from_encoded(b.encoded().to_vec(), "test", 0).unwrap();
        assert_eq!(back.sequence(), 77);
        let ops: Vec<_> = back.iter().collect();
        assert_eq!(ops.len(), 3);
        assert_eq!(
            ops[1],
            BatchOp {
                kind: BatchOpKind::Delete,
                key: b"b",
                value: b""
            }
        );
    }

    #[test]
    fn range_deletion_round_trips_and_is_counted() {
        let mut b = WriteBatch::new();
        b.put(b"a", b"1");
        b.delete_range(b"c", b"f");
        b.delete_range(b"x", b"x");
        b.set_sequence(9);
        assert_eq!(b.range_deletions(), 2);
        b.check_ranges().unwrap();
        let back = WriteBatch::from_encoded(b.encoded().to_vec(), "test", 0).unwrap();
        assert_eq!(back, b);
        let ops: Vec<_> = back.iter().collect();
        assert_eq!(
            ops[1],
            BatchOp {
                kind: BatchOpKind::DeleteRange,
                key: b"c",
                value: b"f"
            }
        );
        let mut joined = WriteBatch::new();
        joined.extend_from(&back);
        assert_eq!(joined.range_deletions(), 2);
        joined.clear();
        assert_eq!(joined.range_deletions(), 0);
    }

    #[test]
    fn reversed_range_is_refused_on_write_and_corrupt_on_decode() {
        let mut b = WriteBatch::new();
        b.delete_range(b"m", b"c");
        let e = b.check_ranges().unwrap_err().to_string();
        assert!(e.contains("\"m\"") && e.contains("\"c\""), "{e}");
        let e = WriteBatch::from_encoded(b.encoded().to_vec(), "wal 7", 40).unwrap_err();
        assert!(e.is_corruption(), "{e}");
        assert!(e.to_string().contains("wal 7"), "{e}");
    }

    #[test]
    fn truncated_or_unknown_range_op_is_rejected() {
        let mut b = WriteBatch::new();
        b.delete_range(b"start", b"end-key");
        let enc = b.encoded().to_vec();
        for cut in 0..enc.len() {
            assert!(
                WriteBatch::from_encoded(enc[..cut].to_vec(), "test", 0).is_err(),
                "cut {cut}"
            );
        }
        let mut bad = enc.clone();
        bad[BATCH_HEADER_LEN] = 3;
        assert!(WriteBatch::from_encoded(bad, "test", 0).is_err());
    }

    #[test]
    fn truncated_batch_is_rejected() {
        let mut b = WriteBatch::new();
        b.put(b"key", b"value");
        let enc = b.encoded();
        for cut in 0..enc.len() {
            assert!(
                WriteBatch::from_encoded(enc[..cut].to_vec(), "test", 0).is_err(),
                "cut {cut}"
            );
        }
    }
}
