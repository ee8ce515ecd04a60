//! Delegated reads: what a data-plane handler answers when a compute node
//! asks about its images here instead of reading them one-sidedly.
//!
//! Both operations answer per image or as raw internal entries and leave the
//! read semantics to the caller, which merges these answers with its other
//! sources exactly as it merges local memtables: `get` reports, for each
//! candidate image, the newest entry of the key visible at the snapshot
//! (value, tombstone or nothing); `scan` returns every version visible at the
//! snapshot in internal-key order (newest first per user key), so the
//! caller's user iterator hides shadowed versions and tombstones.

use std::cmp::Ordering;
use std::sync::Arc;

use o3_storage::iter::MergingIterator;
use o3_storage::iterator::InternalIterator;
use o3_storage::key::{
    MAX_SEQUENCE, ParsedKey, SequenceNumber, ValueKind, compare_internal, make_lookup_key,
    parse_internal_key,
};

use crate::error::{Error, Result};
use crate::images::{ImageId, PublishedImage};

/// One key of a batched `get`: its newest entry at `snapshot` in each of
/// `images`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLookup {
    pub key: Vec<u8>,
    pub snapshot: SequenceNumber,
    pub images: Vec<ImageId>,
}

/// A batched `get`: all keys the caller wants from this memory node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetRequest {
    pub lookups: Vec<KeyLookup>,
}

/// What one image holds for one key at the snapshot. `offset` is the
/// entry's offset in the image (`MemtableImage::value_at` accepts it), so
/// the compute node can cache it and later read the entry one-sidedly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Value {
        sequence: SequenceNumber,
        offset: u32,
        value: Vec<u8>,
    },
    Tombstone {
        sequence: SequenceNumber,
        offset: u32,
    },
    Absent,
}

/// `answers[k][i]` is what `lookups[k].images[i]` holds for `lookups[k].key`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetResponse {
    pub answers: Vec<Vec<Found>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// A range read over several images, merged: user keys in
/// `[lower, upper)` (`upper: None` = unbounded), entries with sequence
/// `<= snapshot`, at most `limit` of them, starting after `resume_after`
/// (a [`ScanResponse::continuation`]) when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRequest {
    pub images: Vec<ImageId>,
    pub lower: Vec<u8>,
    pub upper: Option<Vec<u8>>,
    pub direction: Direction,
    pub limit: u32,
    pub snapshot: SequenceNumber,
    pub resume_after: Option<Vec<u8>>,
}

/// One internal entry of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEntry {
    pub user_key: Vec<u8>,
    pub sequence: SequenceNumber,
    pub kind: ValueKind,
    /// Empty for tombstones.
    pub value: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanResponse {
    pub entries: Vec<ScanEntry>,
    /// Set when the limit stopped the scan and more entries follow: the
    /// internal key of the last entry returned, to pass as `resume_after`.
    /// Sequence numbers are unique in a database, so internal keys are
    /// unique across its images and resuming strictly after one loses and
    /// repeats nothing.
    pub continuation: Option<Vec<u8>>,
}

/// Answer one key over its resolved candidate images.
pub(crate) fn get_key(
    key: &[u8],
    snapshot: SequenceNumber,
    images: &[Arc<PublishedImage>],
) -> Result<Vec<Found>> {
    images
        .iter()
        .map(|published| {
            Ok(match published.image()?.get(key, snapshot) {
                None => Found::Absent,
                Some(entry) => match entry.kind {
                    ValueKind::Tombstone => Found::Tombstone {
                        sequence: entry.sequence,
                        offset: entry.offset,
                    },
                    ValueKind::Value => Found::Value {
                        sequence: entry.sequence,
                        offset: entry.offset,
                        value: entry.value.to_vec(),
                    },
                },
            })
        })
        .collect()
}

/// Run `request` over its resolved images (in the request's order).
pub(crate) fn scan(request: &ScanRequest, images: &[Arc<PublishedImage>]) -> Result<ScanResponse> {
    if request.limit == 0 {
        return Err(Error::InvalidRequest("scan limit 0".into()));
    }
    if let Some(after) = &request.resume_after {
        parse_internal_key(after).map_err(|e| {
            Error::InvalidRequest(format!("scan continuation is not an internal key: {e}"))
        })?;
    }
    let children = images
        .iter()
        .map(|p| Ok(Box::new(p.image()?.iter()) as Box<dyn InternalIterator + '_>))
        .collect::<Result<_>>()?;
    let mut merged = MergingIterator::new(children);
    let (entries, continuation) =
        collect_scan(request, &mut merged, false, |key, value| ScanEntry {
            user_key: key.user_key.to_vec(),
            sequence: key.sequence,
            kind: key.kind,
            value: value.to_vec(),
        })
        .map_err(|source| Error::Scan {
            images: images.iter().map(|p| p.id()).collect(),
            source,
        })?;
    Ok(ScanResponse {
        entries,
        continuation,
    })
}

/// The entries `request` asks for from `merged` (every image's entries in
/// internal-key order), each made by `take` from its parsed key and value,
/// and the continuation when the limit stopped the scan. The memory node
/// runs it over images; a compute node runs it over its local key indexes
/// of images, whose values it then reads one-sidedly. `positioned` says
/// `merged` is still where the previous call, which returned
/// `request.resume_after` as its continuation, left it (on the next entry
/// to return), so it need not seek again.
pub fn collect_scan<T>(
    request: &ScanRequest,
    merged: &mut dyn InternalIterator,
    positioned: bool,
    mut take: impl FnMut(&ParsedKey<'_>, &[u8]) -> T,
) -> o3_storage::Result<(Vec<T>, Option<Vec<u8>>)> {
    if !(positioned && request.resume_after.is_some()) {
        position(merged, request)?;
    }
    // The memory node refuses a limit of 0; here it means 1.
    let limit = (request.limit as usize).max(1);
    let mut entries = Vec::new();
    let mut last = Vec::new();
    while merged.valid() {
        let key = parse_internal_key(merged.key())?;
        // Both bounds in both directions: the far one ends the scan, and the
        // near one also ends it should a (forged) continuation start outside
        // the range, so no entry outside `[lower, upper)` is ever returned.
        let in_range = key.user_key >= request.lower.as_slice()
            && request
                .upper
                .as_deref()
                .is_none_or(|upper| key.user_key < upper);
        if !in_range {
            break;
        }
        if key.sequence <= request.snapshot {
            if entries.len() == limit {
                // One more visible entry exists: resume after the last one.
                return Ok((entries, Some(last)));
            }
            entries.push(take(&key, merged.value()));
            last.clear();
            last.extend_from_slice(merged.key());
        }
        step(merged, request.direction)?;
    }
    Ok((entries, None))
}

/// Put `merged` on the first entry the scan may return (range and resume
/// point applied; the snapshot is applied while stepping).
fn position(merged: &mut dyn InternalIterator, request: &ScanRequest) -> o3_storage::Result<()> {
    match (request.direction, &request.resume_after) {
        (Direction::Forward, Some(after)) => {
            merged.seek(after)?;
            if merged.valid() && compare_internal(merged.key(), after) == Ordering::Equal {
                merged.next()?;
            }
        }
        (Direction::Backward, Some(after)) => {
            merged.seek_for_prev(after)?;
            if merged.valid() && compare_internal(merged.key(), after) == Ordering::Equal {
                merged.prev()?;
            }
        }
        // The lookup key of (lower, MAX_SEQUENCE) sorts before every entry of
        // `lower`, so this lands on the first entry with user key >= lower.
        (Direction::Forward, None) => {
            merged.seek(&make_lookup_key(&request.lower, MAX_SEQUENCE))?
        }
        (Direction::Backward, None) => match &request.upper {
            None => merged.seek_to_last()?,
            Some(upper) => {
                merged.seek_for_prev(&make_lookup_key(upper, MAX_SEQUENCE))?;
                // `upper` itself is excluded.
                while merged.valid() && o3_storage::key::user_key(merged.key()) >= upper.as_slice()
                {
                    merged.prev()?;
                }
            }
        },
    }
    Ok(())
}

fn step(merged: &mut dyn InternalIterator, direction: Direction) -> o3_storage::Result<()> {
    match direction {
        Direction::Forward => merged.next(),
        Direction::Backward => merged.prev(),
    }
}
