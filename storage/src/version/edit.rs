//! Version edits: the unit of change recorded in the manifest
//! (`docs/manifest_format.md`). Each edit is one log record; applying the
//! edits in order from an empty state rebuilds the live file set.

use crate::coding::{Decoder, put_length_prefixed, put_varint32, put_varint64};
use crate::error::{Error, Result};
use crate::key::SequenceNumber;
use crate::range_del::RangeTombstone;

use super::{DbId, FileMeta};

const TAG_SHARD_SPLITS: u32 = 1;
const TAG_LOG_NUMBER: u32 = 2;
const TAG_NEXT_FILE: u32 = 3;
const TAG_LAST_SEQUENCE: u32 = 4;
const TAG_SHARD_FLUSHED: u32 = 5;
const TAG_DELETED_FILE: u32 = 6;
const TAG_NEW_FILE: u32 = 7;
const TAG_NEW_RANGE_TOMBSTONE: u32 = 8;
const TAG_DELETED_RANGE_TOMBSTONE: u32 = 9;
const TAG_DB_ID: u32 = 10;
const TAG_INCARNATION: u32 = 11;
/// Kept apart from the low tags, which other edit fields take in order.
const TAG_CLOSED_WAL: u32 = 16;
/// A re-split: new split keys replacing the current ones. A tag of its own
/// (not tag 1 again), so a reader that predates re-splits refuses such a
/// manifest instead of applying flushed sequences to the wrong shards.
const TAG_SHARD_RESPLIT: u32 = 17;

/// A change to the database's persistent state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionEdit {
    /// Shard split keys (set when the database is created, and in every
    /// snapshot record).
    pub shard_splits: Option<Vec<Vec<u8>>>,
    /// Split keys replacing the current ones (a re-split of an adaptive
    /// database): the flushed sequences of the old layout are void from
    /// this edit on, and the edit's own `shard_flushed` entries are of the
    /// new layout.
    pub resplit: Option<Vec<Vec<u8>>>,
    /// WAL segments numbered below this hold nothing that is not in an SST.
    pub log_number: Option<u64>,
    pub next_file_number: Option<u64>,
    pub last_sequence: Option<SequenceNumber>,
    /// `(shard, seq)`: every write of `shard` with sequence <= `seq` is in an SST.
    pub shard_flushed: Vec<(u32, SequenceNumber)>,
    /// `(level, file number)` removed.
    pub deleted_files: Vec<(u32, u64)>,
    /// `(level, file)` added.
    pub new_files: Vec<(u32, FileMeta)>,
    /// `(WAL segment, length)`: the database was closed cleanly with this
    /// segment synced through `length` bytes, so recovery treats any damage
    /// before that point as corruption, never as a torn tail.
    pub closed_wal: Option<(u64, u64)>,
    /// `(shard, tombstone)` installed: range deletions of flushed memtables.
    pub new_range_tombstones: Vec<(u32, RangeTombstone)>,
    /// `(shard, seq)` of installed range tombstones removed (garbage
    /// collected: nothing they could delete is left).
    pub deleted_range_tombstones: Vec<(u32, SequenceNumber)>,
    /// The database's identity; only a manifest's snapshot record (its
    /// first) carries it.
    pub db_id: Option<DbId>,
    /// How many times the database has been opened, counting its creation
    /// as the first; recorded with the id.
    pub incarnation: Option<u64>,
}

impl VersionEdit {
    /// Encode as a manifest record payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.new_files.len() * 96);
        for (tag, splits) in [
            (TAG_SHARD_SPLITS, &self.shard_splits),
            (TAG_SHARD_RESPLIT, &self.resplit),
        ] {
            if let Some(splits) = splits {
                put_varint32(&mut out, tag);
                put_varint64(&mut out, splits.len() as u64);
                for s in splits {
                    put_length_prefixed(&mut out, s);
                }
            }
        }
        if let Some(id) = &self.db_id {
            put_varint32(&mut out, TAG_DB_ID);
            put_length_prefixed(&mut out, id.as_bytes());
        }
        for (tag, v) in [
            (TAG_INCARNATION, self.incarnation),
            (TAG_LOG_NUMBER, self.log_number),
            (TAG_NEXT_FILE, self.next_file_number),
            (TAG_LAST_SEQUENCE, self.last_sequence),
        ] {
            if let Some(v) = v {
                put_varint32(&mut out, tag);
                put_varint64(&mut out, v);
            }
        }
        for &(shard, seq) in &self.shard_flushed {
            put_varint32(&mut out, TAG_SHARD_FLUSHED);
            put_varint32(&mut out, shard);
            put_varint64(&mut out, seq);
        }
        for &(level, number) in &self.deleted_files {
            put_varint32(&mut out, TAG_DELETED_FILE);
            put_varint32(&mut out, level);
            put_varint64(&mut out, number);
        }
        for (level, f) in &self.new_files {
            put_varint32(&mut out, TAG_NEW_FILE);
            put_varint32(&mut out, *level);
            put_varint64(&mut out, f.number);
            put_varint64(&mut out, f.size);
            put_length_prefixed(&mut out, &f.smallest);
            put_length_prefixed(&mut out, &f.largest);
            put_varint64(&mut out, f.smallest_seq);
            put_varint64(&mut out, f.largest_seq);
            put_varint64(&mut out, f.entries);
            put_varint64(&mut out, f.tombstones);
            put_varint32(&mut out, f.shard);
            put_varint64(&mut out, f.created_ms);
        }
        if let Some((number, length)) = self.closed_wal {
            put_varint32(&mut out, TAG_CLOSED_WAL);
            put_varint64(&mut out, number);
            put_varint64(&mut out, length);
        }
        for &(shard, seq) in &self.deleted_range_tombstones {
            put_varint32(&mut out, TAG_DELETED_RANGE_TOMBSTONE);
            put_varint32(&mut out, shard);
            put_varint64(&mut out, seq);
        }
        for (shard, t) in &self.new_range_tombstones {
            put_varint32(&mut out, TAG_NEW_RANGE_TOMBSTONE);
            put_varint32(&mut out, *shard);
            put_varint64(&mut out, t.seq);
            put_length_prefixed(&mut out, &t.start);
            put_length_prefixed(&mut out, &t.end);
        }
        out
    }

    /// Decode a manifest record payload; `location`/`offset` name the record
    /// in errors.
    pub fn decode(buf: &[u8], location: &str, offset: u64) -> Result<VersionEdit> {
        let mut d = Decoder::new(buf);
        let mut e = VersionEdit::default();
        let bad = |d: &Decoder<'_>, what: &str| {
            Error::corruption(
                location,
                offset,
                format!("version edit: {what} at byte {}", d.position()),
            )
        };
        while !d.is_empty() {
            let tag = d.varint32().ok_or_else(|| bad(&d, "truncated tag"))?;
            match tag {
                TAG_SHARD_SPLITS | TAG_SHARD_RESPLIT => {
                    let n = d
                        .varint64()
                        .ok_or_else(|| bad(&d, "truncated split count"))?;
                    // Each split key takes at least one byte, so a count larger than
                    // the remaining bytes is corrupt (and must not drive an allocation).
                    if n > d.remaining().len() as u64 {
                        return Err(bad(&d, "split count exceeds record"));
                    }
                    let mut splits = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        splits.push(
                            d.length_prefixed()
                                .ok_or_else(|| bad(&d, "truncated split key"))?
                                .to_vec(),
                        );
                    }
                    if tag == TAG_SHARD_SPLITS {
                        e.shard_splits = Some(splits);
                    } else {
                        e.resplit = Some(splits);
                    }
                }
                TAG_LOG_NUMBER => {
                    e.log_number = Some(
                        d.varint64()
                            .ok_or_else(|| bad(&d, "truncated log number"))?,
                    )
                }
                TAG_NEXT_FILE => {
                    e.next_file_number = Some(
                        d.varint64()
                            .ok_or_else(|| bad(&d, "truncated next file number"))?,
                    )
                }
                TAG_LAST_SEQUENCE => {
                    e.last_sequence = Some(
                        d.varint64()
                            .ok_or_else(|| bad(&d, "truncated last sequence"))?,
                    )
                }
                TAG_SHARD_FLUSHED => {
                    let shard = d.varint32().ok_or_else(|| bad(&d, "truncated shard"))?;
                    let seq = d
                        .varint64()
                        .ok_or_else(|| bad(&d, "truncated flushed sequence"))?;
                    e.shard_flushed.push((shard, seq));
                }
                TAG_DELETED_FILE => {
                    let level = d.varint32().ok_or_else(|| bad(&d, "truncated level"))?;
                    let number = d
                        .varint64()
                        .ok_or_else(|| bad(&d, "truncated file number"))?;
                    e.deleted_files.push((level, number));
                }
                TAG_NEW_FILE => {
                    let level = d.varint32().ok_or_else(|| bad(&d, "truncated level"))?;
                    let mut field = |name: &str| d.varint64().ok_or_else(|| name.to_string());
                    let number = field("file number");
                    let size = field("file size");
                    let (number, size) = match (number, size) {
                        (Ok(n), Ok(s)) => (n, s),
                        (Err(w), _) | (_, Err(w)) => {
                            return Err(bad(&d, &format!("truncated {w}")));
                        }
                    };
                    let smallest = d
                        .length_prefixed()
                        .ok_or_else(|| bad(&d, "truncated smallest key"))?
                        .to_vec();
                    let largest = d
                        .length_prefixed()
                        .ok_or_else(|| bad(&d, "truncated largest key"))?
                        .to_vec();
                    let mut nums = [0u64; 4];
                    for n in &mut nums {
                        *n = d
                            .varint64()
                            .ok_or_else(|| bad(&d, "truncated file statistics"))?;
                    }
                    let shard = d.varint32().ok_or_else(|| bad(&d, "truncated shard"))?;
                    let created_ms = d
                        .varint64()
                        .ok_or_else(|| bad(&d, "truncated creation time"))?;
                    if smallest.len() < crate::key::TRAILER_LEN
                        || largest.len() < crate::key::TRAILER_LEN
                    {
                        return Err(bad(&d, "file key shorter than an internal key"));
                    }
                    e.new_files.push((
                        level,
                        FileMeta {
                            number,
                            size,
                            smallest,
                            largest,
                            smallest_seq: nums[0],
                            largest_seq: nums[1],
                            entries: nums[2],
                            tombstones: nums[3],
                            shard,
                            created_ms,
                        },
                    ));
                }
                TAG_CLOSED_WAL => {
                    let number = d
                        .varint64()
                        .ok_or_else(|| bad(&d, "truncated closed WAL number"))?;
                    let length = d
                        .varint64()
                        .ok_or_else(|| bad(&d, "truncated closed WAL length"))?;
                    e.closed_wal = Some((number, length));
                }
                TAG_DELETED_RANGE_TOMBSTONE => {
                    let shard = d.varint32().ok_or_else(|| bad(&d, "truncated shard"))?;
                    let seq = d
                        .varint64()
                        .ok_or_else(|| bad(&d, "truncated range tombstone sequence"))?;
                    e.deleted_range_tombstones.push((shard, seq));
                }
                TAG_NEW_RANGE_TOMBSTONE => {
                    let shard = d.varint32().ok_or_else(|| bad(&d, "truncated shard"))?;
                    let seq = d
                        .varint64()
                        .ok_or_else(|| bad(&d, "truncated range tombstone sequence"))?;
                    let start = d
                        .length_prefixed()
                        .ok_or_else(|| bad(&d, "truncated range tombstone start"))?
                        .to_vec();
                    let end = d
                        .length_prefixed()
                        .ok_or_else(|| bad(&d, "truncated range tombstone end"))?
                        .to_vec();
                    if start >= end {
                        return Err(bad(&d, "empty range tombstone"));
                    }
                    e.new_range_tombstones
                        .push((shard, RangeTombstone { start, end, seq }));
                }
                TAG_DB_ID => {
                    let bytes = d
                        .length_prefixed()
                        .ok_or_else(|| bad(&d, "truncated database id"))?;
                    let bytes: [u8; DbId::LEN] = bytes.try_into().map_err(|_| {
                        bad(
                            &d,
                            &format!(
                                "database id of {} bytes, expected {}",
                                bytes.len(),
                                DbId::LEN
                            ),
                        )
                    })?;
                    if e.db_id.is_some() {
                        return Err(bad(&d, "second database id"));
                    }
                    e.db_id = Some(DbId::from_bytes(bytes));
                }
                TAG_INCARNATION => {
                    e.incarnation = Some(
                        d.varint64()
                            .ok_or_else(|| bad(&d, "truncated incarnation"))?,
                    )
                }
                other => return Err(bad(&d, &format!("unknown tag {other}"))),
            }
        }
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{ValueKind, make_internal_key};

    fn sample() -> VersionEdit {
        VersionEdit {
            shard_splits: Some(vec![b"g".to_vec(), b"p".to_vec()]),
            resplit: Some(vec![b"k".to_vec()]),
            log_number: Some(9),
            next_file_number: Some(42),
            last_sequence: Some(1000),
            shard_flushed: vec![(1, 500)],
            deleted_files: vec![(0, 7)],
            new_files: vec![(
                1,
                FileMeta {
                    number: 12,
                    size: 4096,
                    smallest: make_internal_key(b"a", 5, ValueKind::Value),
                    largest: make_internal_key(b"f", 9, ValueKind::Tombstone),
                    smallest_seq: 5,
                    largest_seq: 9,
                    entries: 10,
                    tombstones: 1,
                    shard: 0,
                    created_ms: 123,
                },
            )],
            closed_wal: Some((9, 70_000)),
            new_range_tombstones: vec![(
                1,
                RangeTombstone {
                    start: b"h".to_vec(),
                    end: b"k".to_vec(),
                    seq: 777,
                },
            )],
            deleted_range_tombstones: vec![(2, 600)],
            db_id: Some(DbId::from_bytes([7; DbId::LEN])),
            incarnation: Some(3),
        }
    }

    #[test]
    fn edit_round_trips() {
        let e = sample();
        assert_eq!(VersionEdit::decode(&e.encode(), "m", 0).unwrap(), e);
    }

    #[test]
    fn a_resplit_round_trips_under_its_own_tag() {
        let e = VersionEdit {
            resplit: Some(vec![b"d".to_vec(), b"m".to_vec()]),
            shard_flushed: vec![(0, 7), (1, 7), (2, 7)],
            ..VersionEdit::default()
        };
        let bytes = e.encode();
        assert_eq!(bytes[0], TAG_SHARD_RESPLIT as u8);
        let back = VersionEdit::decode(&bytes, "m", 0).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.shard_splits, None);
    }

    /// An edit as written before range tombstones existed (tags 1-7 only),
    /// byte for byte: it still decodes, with no range tombstones.
    #[test]
    fn edits_without_range_tombstone_tags_still_decode() {
        let bytes = [
            2, 9, // log number 9
            4, 0xe8, 0x07, // last sequence 1000
            5, 1, 0xf4, 0x03, // shard 1 flushed through 500
            6, 0, 7, // file 7 deleted from level 0
        ];
        let e = VersionEdit::decode(&bytes, "m", 0).unwrap();
        assert_eq!(
            e,
            VersionEdit {
                log_number: Some(9),
                last_sequence: Some(1000),
                shard_flushed: vec![(1, 500)],
                deleted_files: vec![(0, 7)],
                ..VersionEdit::default()
            }
        );
        assert_eq!(e.encode(), bytes);
    }

    #[test]
    fn empty_range_tombstone_is_corruption() {
        let mut e = sample();
        e.new_range_tombstones[0].1.end = b"h".to_vec();
        let err = VersionEdit::decode(&e.encode(), "MANIFEST-000009", 64).unwrap_err();
        assert!(
            err.is_corruption() && err.to_string().contains("MANIFEST-000009"),
            "{err}"
        );
    }

    #[test]
    fn a_database_id_of_the_wrong_length_is_corruption() {
        let mut bytes = Vec::new();
        put_varint32(&mut bytes, TAG_DB_ID);
        put_length_prefixed(&mut bytes, &[1; 15]);
        let err = VersionEdit::decode(&bytes, "MANIFEST-000004", 0).unwrap_err();
        assert!(
            err.is_corruption() && err.to_string().contains("database id of 15 bytes"),
            "{err}"
        );
    }

    #[test]
    fn two_database_ids_in_one_edit_are_corruption() {
        let id = sample().encode();
        let mut bytes = Vec::new();
        put_varint32(&mut bytes, TAG_DB_ID);
        put_length_prefixed(&mut bytes, &[1; DbId::LEN]);
        bytes.extend_from_slice(&id);
        let err = VersionEdit::decode(&bytes, "MANIFEST-000004", 128).unwrap_err();
        assert!(
            err.is_corruption() && err.to_string().contains("second database id"),
            "{err}"
        );
        assert!(err.to_string().contains("MANIFEST-000004"), "{err}");
    }

    #[test]
    fn every_truncation_is_an_error() {
        let enc = sample().encode();
        for cut in 1..enc.len() {
            // A cut may land exactly on a field boundary and still decode, but
            // then it must decode to a different (shorter) edit, never panic.
            if let Ok(e) = VersionEdit::decode(&enc[..cut], "m", 0) {
                assert_ne!(e, sample());
            }
        }
    }
}
