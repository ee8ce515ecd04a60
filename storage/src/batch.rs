//! Write batches: an atomic group of puts and deletes, encoded once and
//! written to the WAL as one record without re-encoding.
//!
//! Encoding (also the WAL record payload, see `docs/wal_format.md`):
//! `first_sequence: u64 LE | count: u32 LE | op*`, where
//! `op = kind: u8 | varint key_len | key | (varint value_len | value if kind = value)`.

use crate::coding::{Decoder, put_length_prefixed};
use crate::error::{Error, Result};
use crate::key::{SequenceNumber, ValueKind};

/// Size of the batch header (first sequence + count).
pub const BATCH_HEADER_LEN: usize = 12;

/// An atomic group of writes.
#[derive(Clone, PartialEq, Eq)]
pub struct WriteBatch {
    rep: Vec<u8>,
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

/// One operation inside a batch, borrowed from its encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOp<'a> {
    pub kind: ValueKind,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl WriteBatch {
    pub fn new() -> Self {
        WriteBatch {
            rep: vec![0; BATCH_HEADER_LEN],
        }
    }

    /// An empty batch with room for `bytes` of operations (see
    /// [`WriteBatch::encoded_op_len`]) before it reallocates.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut rep = Vec::with_capacity(BATCH_HEADER_LEN + bytes);
        rep.resize(BATCH_HEADER_LEN, 0);
        WriteBatch { rep }
    }

    /// Bytes one operation with these lengths takes in a batch's encoding:
    /// the kind byte and two varint32-prefixed fields, at most.
    pub fn encoded_op_len(key_len: usize, value_len: usize) -> usize {
        1 + 5 + key_len + 5 + value_len
    }

    /// Add a put of `key` → `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.rep.push(ValueKind::Value as u8);
        put_length_prefixed(&mut self.rep, key);
        put_length_prefixed(&mut self.rep, value);
        self.set_count(self.count() + 1);
    }

    /// Add a delete of `key`.
    pub fn delete(&mut self, key: &[u8]) {
        self.rep.push(ValueKind::Tombstone as u8);
        put_length_prefixed(&mut self.rep, key);
        self.set_count(self.count() + 1);
    }

    /// Append every operation of `other` to this batch.
    pub fn extend_from(&mut self, other: &WriteBatch) {
        self.rep.extend_from_slice(&other.rep[BATCH_HEADER_LEN..]);
        self.set_count(self.count() + other.count());
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
        let batch = WriteBatch { rep };
        let mut seen = 0u32;
        let mut d = Decoder::new(&batch.rep[BATCH_HEADER_LEN..]);
        while !d.is_empty() {
            decode_op(&mut d).map_err(|reason| {
                Error::corruption(
                    location,
                    offset + (BATCH_HEADER_LEN + d.position()) as u64,
                    reason,
                )
            })?;
            seen += 1;
        }
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
    }
}

fn decode_op<'a>(d: &mut Decoder<'a>) -> std::result::Result<BatchOp<'a>, String> {
    let kb = d.u8().ok_or("truncated operation kind")?;
    let kind = ValueKind::from_u8(kb).ok_or_else(|| format!("unknown operation kind {kb}"))?;
    let key = d.length_prefixed().ok_or("truncated key")?;
    let value = match kind {
        ValueKind::Value => d.length_prefixed().ok_or("truncated value")?,
        ValueKind::Tombstone => &[],
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
        // `put`/`delete` otherwise, so decoding cannot fail here.
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
                kind: ValueKind::Tombstone,
                key: b"b",
                value: b""
            }
        );
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
