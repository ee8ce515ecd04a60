//! Requester-side encoding of one-sided batches into `Batch` frames and
//! decoding of their `BatchResult` (format in [`crate::wire`]); used by the
//! `tcp` backend, whose server thread executes the batch.

use crate::access::RegionAccess;
use crate::error::{Error, Result};
use crate::verbs::{Completion, NodeId, WorkRequest};
use crate::wire::{Cursor, OpStatus, op};

/// A batch laid out for the wire: `meta` holds the count and every
/// operation's fixed fields; write data is sent straight from the caller's
/// buffers between them.
#[derive(Debug)]
pub struct EncodedBatch {
    meta: Vec<u8>,
    /// For each operation, where its fields end in `meta` and whether write
    /// data follows.
    cuts: Vec<usize>,
    /// The largest `BatchResult` payload these operations can produce.
    pub max_reply: u64,
}

impl EncodedBatch {
    pub fn new(batch: &[WorkRequest<'_>]) -> Self {
        let mut meta = Vec::with_capacity(4 + batch.len() * 41);
        meta.extend_from_slice(&(batch.len() as u32).to_le_bytes());
        let mut cuts = Vec::with_capacity(batch.len());
        let mut max_reply = 0u64;
        for request in batch {
            let remote = request.remote();
            let (code, offset, args): (u8, u64, [Option<u64>; 2]) = match request {
                WorkRequest::Read { offset, buf, .. } => {
                    (op::READ, *offset, [Some(buf.len() as u64), None])
                }
                WorkRequest::Write { offset, data, .. } => {
                    (op::WRITE, *offset, [Some(data.len() as u64), None])
                }
                WorkRequest::CompareAndSwap {
                    offset,
                    expected,
                    new,
                    ..
                } => (op::CAS, *offset, [Some(*expected), Some(*new)]),
                WorkRequest::FetchAdd { offset, add, .. } => {
                    (op::FETCH_ADD, *offset, [Some(*add), None])
                }
            };
            meta.push(code);
            meta.extend_from_slice(&remote.region.to_le_bytes());
            meta.extend_from_slice(&remote.rkey.to_le_bytes());
            meta.extend_from_slice(&offset.to_le_bytes());
            for arg in args.into_iter().flatten() {
                meta.extend_from_slice(&arg.to_le_bytes());
            }
            cuts.push(meta.len());
            max_reply += 1 + match request {
                WorkRequest::Read { buf, .. } => buf.len() as u64,
                _ => 8,
            };
        }
        EncodedBatch {
            meta,
            cuts,
            max_reply,
        }
    }

    /// The frame payload as slices: fields, then each write's data in place.
    pub fn parts<'a>(&'a self, batch: &'a [WorkRequest<'_>]) -> Vec<&'a [u8]> {
        let mut parts = Vec::with_capacity(batch.len() * 2 + 1);
        let mut start = 0;
        for (request, &cut) in batch.iter().zip(&self.cuts) {
            parts.push(&self.meta[start..cut]);
            start = cut;
            if let WorkRequest::Write { data, .. } = request {
                parts.push(*data);
            }
        }
        parts.push(&self.meta[start..]);
        parts
    }
}

/// Decode a `BatchResult` into one completion per request, copying read
/// data into the requests' buffers.
pub fn decode_result(
    payload: &[u8],
    batch: &mut [WorkRequest<'_>],
    peer: &NodeId,
) -> Result<Vec<Result<Completion>>> {
    let mut cursor = Cursor::new(payload, peer, "batch result");
    let mut out = Vec::with_capacity(batch.len());
    for (index, request) in batch.iter_mut().enumerate() {
        let status = cursor.u8()?;
        let status = OpStatus::from_u8(status).ok_or_else(|| {
            Error::protocol(
                peer,
                format!("unknown operation status {status} at {index}"),
            )
        })?;
        let region = request.remote().region;
        let completion = match (status, request) {
            (OpStatus::Ok, WorkRequest::Read { buf, .. }) => {
                buf.copy_from_slice(cursor.take(buf.len())?);
                Ok(Completion::Read { len: buf.len() })
            }
            (OpStatus::Ok, WorkRequest::Write { data, .. }) => {
                Ok(Completion::Write { len: data.len() })
            }
            (OpStatus::Ok, _) => Ok(Completion::Atomic { old: cursor.u64()? }),
            (OpStatus::OutOfBounds, request) => {
                let region_len = cursor.u64()?;
                let (offset, len) = match request {
                    WorkRequest::Read { offset, buf, .. } => (*offset, buf.len() as u64),
                    WorkRequest::Write { offset, data, .. } => (*offset, data.len() as u64),
                    WorkRequest::CompareAndSwap { offset, .. }
                    | WorkRequest::FetchAdd { offset, .. } => (*offset, 8),
                };
                Err(Error::OutOfBounds {
                    region,
                    offset,
                    len,
                    region_len,
                })
            }
            (OpStatus::AccessDenied, request) => {
                let bits = cursor.u8()?;
                let access = RegionAccess::from_bits(u64::from(bits)).ok_or_else(|| {
                    Error::protocol(peer, format!("unknown access flags {bits} at {index}"))
                })?;
                Err(Error::AccessDenied {
                    region,
                    op: request.op(),
                    access,
                })
            }
            (OpStatus::BadKey, _) => Err(Error::BadKey { region }),
            (OpStatus::RegionGone, _) => Err(Error::RegionGone { region }),
            (OpStatus::Misaligned, request) => Err(Error::Misaligned {
                region,
                offset: match request {
                    WorkRequest::CompareAndSwap { offset, .. }
                    | WorkRequest::FetchAdd { offset, .. } => *offset,
                    _ => 0,
                },
            }),
            (OpStatus::Flushed, _) => Err(Error::Flushed { index }),
        };
        out.push(completion);
    }
    if !cursor.is_empty() {
        return Err(Error::protocol(
            peer,
            format!("batch result has stray bytes at offset {}", cursor.offset()),
        ));
    }
    Ok(out)
}

/// Copy of a connection-level error for every request of a failed batch.
pub fn replicate(error: &Error, peer: &NodeId) -> Error {
    match error {
        Error::Timeout { op, after } => Error::Timeout { op, after: *after },
        other => Error::peer_gone(peer, other.to_string()),
    }
}

/// Run `execute` on the prefix of `batch` that passes the requester-side
/// checks; the first request that fails them gets its error and the rest are
/// flushed.
pub fn post_validated(
    peer: &NodeId,
    batch: &mut [WorkRequest<'_>],
    execute: impl FnOnce(&mut [WorkRequest<'_>]) -> Vec<Result<Completion>>,
) -> Vec<Result<Completion>> {
    let invalid = batch
        .iter()
        .enumerate()
        .find_map(|(i, r)| r.validate(peer).err().map(|e| (i, e)));
    let (valid, rest) = match &invalid {
        Some((i, _)) => batch.split_at_mut(*i),
        None => (batch, &mut [][..]),
    };
    let mut results = if valid.is_empty() {
        Vec::new()
    } else {
        execute(valid)
    };
    let failed_before = results.iter().any(|r| r.is_err());
    if let Some((i, error)) = invalid {
        results.push(if failed_before {
            Err(Error::Flushed { index: i })
        } else {
            Err(error)
        });
        results.extend((i + 1..i + rest.len()).map(|index| Err(Error::Flushed { index })));
    }
    results
}
