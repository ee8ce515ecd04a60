//! Internal keys: a user key followed by an 8-byte little-endian trailer
//! `(sequence << 8) | kind`.
//!
//! Ordering (see [`compare_internal`]): user key ascending, then trailer
//! descending, so for one user key the newest entry comes first. A lookup for
//! `key` as of sequence `s` seeks to `make_lookup_key(key, s)` and takes the
//! first entry with the same user key.

use std::cmp::Ordering;

use crate::error::{Error, Result};

/// Sequence numbers are global per database and fit in 56 bits.
pub type SequenceNumber = u64;

/// The largest sequence number that fits in a trailer.
pub const MAX_SEQUENCE: SequenceNumber = (1 << 56) - 1;

/// Length of the trailer appended to every user key.
pub const TRAILER_LEN: usize = 8;

/// What an entry records about its user key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ValueKind {
    /// The key was deleted at this sequence.
    Tombstone = 0,
    /// The key holds a value.
    Value = 1,
}

/// The kind used when building seek targets: the highest kind, so a seek
/// key sorts before every real entry with the same user key and sequence.
pub const KIND_FOR_SEEK: ValueKind = ValueKind::Value;

impl ValueKind {
    /// Decode a kind byte; `None` for unknown kinds.
    pub fn from_u8(b: u8) -> Option<ValueKind> {
        match b {
            0 => Some(ValueKind::Tombstone),
            1 => Some(ValueKind::Value),
            _ => None,
        }
    }
}

/// Pack a sequence number and kind into a trailer.
#[inline]
pub fn pack_trailer(seq: SequenceNumber, kind: ValueKind) -> u64 {
    debug_assert!(seq <= MAX_SEQUENCE);
    (seq << 8) | kind as u64
}

/// Append `user_key ++ trailer(seq, kind)` to `out`.
#[inline]
pub fn append_internal_key(
    out: &mut Vec<u8>,
    user_key: &[u8],
    seq: SequenceNumber,
    kind: ValueKind,
) {
    out.extend_from_slice(user_key);
    out.extend_from_slice(&pack_trailer(seq, kind).to_le_bytes());
}

/// Build an owned internal key.
pub fn make_internal_key(user_key: &[u8], seq: SequenceNumber, kind: ValueKind) -> Vec<u8> {
    let mut v = Vec::with_capacity(user_key.len() + TRAILER_LEN);
    append_internal_key(&mut v, user_key, seq, kind);
    v
}

/// The seek key that finds the newest entry of `user_key` visible at `seq`.
pub fn make_lookup_key(user_key: &[u8], seq: SequenceNumber) -> Vec<u8> {
    make_internal_key(user_key, seq, KIND_FOR_SEEK)
}

/// Call `f` with [`make_lookup_key`]`(user_key, seq)`, built on the stack
/// when it is short (point lookups build one per `get`).
pub fn with_lookup_key<R>(user_key: &[u8], seq: SequenceNumber, f: impl FnOnce(&[u8]) -> R) -> R {
    const STACK: usize = 128;
    let len = user_key.len() + TRAILER_LEN;
    if len > STACK {
        return f(&make_lookup_key(user_key, seq));
    }
    let mut buf = [0u8; STACK];
    buf[..user_key.len()].copy_from_slice(user_key);
    buf[user_key.len()..len].copy_from_slice(&pack_trailer(seq, KIND_FOR_SEEK).to_le_bytes());
    f(&buf[..len])
}

/// A decoded view of an internal key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    pub user_key: &'a [u8],
    pub sequence: SequenceNumber,
    pub kind: ValueKind,
}

/// Decode an internal key, rejecting short keys and unknown kinds.
pub fn parse_internal_key(ikey: &[u8]) -> Result<ParsedKey<'_>> {
    if ikey.len() < TRAILER_LEN {
        return Err(Error::corruption(
            "internal key",
            0,
            format!(
                "key of {} bytes is shorter than the 8-byte trailer",
                ikey.len()
            ),
        ));
    }
    let (user_key, trailer) = ikey.split_at(ikey.len() - TRAILER_LEN);
    let t = u64::from_le_bytes(
        trailer
            .try_into()
            .map_err(|_| Error::corruption("internal key", 0, "bad trailer"))?,
    );
    let kind = ValueKind::from_u8((t & 0xff) as u8).ok_or_else(|| {
        Error::corruption(
            "internal key",
            0,
            format!("unknown value kind {}", t & 0xff),
        )
    })?;
    Ok(ParsedKey {
        user_key,
        sequence: t >> 8,
        kind,
    })
}

/// The user-key part of an internal key (no validation beyond length).
#[inline]
pub fn user_key(ikey: &[u8]) -> &[u8] {
    &ikey[..ikey.len().saturating_sub(TRAILER_LEN)]
}

/// The trailer of an internal key (0 if the key is too short).
#[inline]
pub fn trailer(ikey: &[u8]) -> u64 {
    if ikey.len() < TRAILER_LEN {
        return 0;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&ikey[ikey.len() - TRAILER_LEN..]);
    u64::from_le_bytes(b)
}

/// Sequence number of an internal key.
#[inline]
pub fn sequence(ikey: &[u8]) -> SequenceNumber {
    trailer(ikey) >> 8
}

/// Bytewise order on user keys. Keys that differ in their first 8 bytes
/// (most keys in practice: numbers, hashes, prefixes) are told apart with
/// one integer comparison instead of a `memcmp` call.
#[inline]
pub fn compare_user_keys(a: &[u8], b: &[u8]) -> Ordering {
    if let (Some(x), Some(y)) = (a.first_chunk::<8>(), b.first_chunk::<8>()) {
        let (x, y) = (u64::from_be_bytes(*x), u64::from_be_bytes(*y));
        if x != y {
            return x.cmp(&y);
        }
    }
    a.cmp(b)
}

/// Total order on internal keys: user key ascending, trailer descending.
#[inline]
pub fn compare_internal(a: &[u8], b: &[u8]) -> Ordering {
    match compare_user_keys(user_key(a), user_key(b)) {
        Ordering::Equal => trailer(b).cmp(&trailer(a)),
        o => o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_sequence_sorts_first() {
        let a = make_internal_key(b"k", 10, ValueKind::Value);
        let b = make_internal_key(b"k", 9, ValueKind::Value);
        let c = make_internal_key(b"l", 100, ValueKind::Value);
        assert_eq!(compare_internal(&a, &b), Ordering::Less);
        assert_eq!(compare_internal(&b, &c), Ordering::Less);
        // A lookup key sorts at or before every entry of its key and
        // sequence, and after every newer entry.
        let lookup = make_lookup_key(b"k", 10);
        with_lookup_key(b"k", 10, |k| assert_eq!(k, &lookup[..]));
        let long = vec![7u8; 300];
        with_lookup_key(&long, 10, |k| {
            assert_eq!(k, &make_lookup_key(&long, 10)[..])
        });
        assert_ne!(compare_internal(&lookup, &a), Ordering::Greater);
        let older_kind = make_internal_key(b"k", 10, ValueKind::Tombstone);
        assert_eq!(compare_internal(&lookup, &older_kind), Ordering::Less);
        let newer = make_internal_key(b"k", 11, ValueKind::Tombstone);
        assert_eq!(compare_internal(&newer, &lookup), Ordering::Less);
    }

    #[test]
    fn user_key_order_is_bytewise() {
        let keys: [&[u8]; 9] = [
            b"",
            b"a",
            b"ab",
            b"abcdefgh",
            b"abcdefgh\x00",
            b"abcdefgi",
            b"b",
            b"\xff",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\x01",
        ];
        for a in keys {
            for b in keys {
                assert_eq!(compare_user_keys(a, b), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn parse_round_trips_and_rejects_garbage() {
        let k = make_internal_key(b"abc", 42, ValueKind::Tombstone);
        let p = parse_internal_key(&k).unwrap();
        assert_eq!(
            (p.user_key, p.sequence, p.kind),
            (&b"abc"[..], 42, ValueKind::Tombstone)
        );
        assert!(parse_internal_key(b"short").is_err());
        let mut bad = k.clone();
        let n = bad.len();
        bad[n - 8] = 7;
        assert!(parse_internal_key(&bad).is_err());
    }
}
