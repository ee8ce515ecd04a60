//! The binary codec of delegated-read messages, for the data plane's
//! two-sided request/response (`data_plane.rs`).
//!
//! Every request carries the lease secret of the owner it acts for: any
//! holder of the cluster token can open a data-plane connection, so the
//! connection's identity says nothing about which compute node's images it
//! may search; the lease secret, handed out by the authenticated control
//! plane, does.
//!
//! Every message is `tag: u8, version: u8, body`; all integers are
//! little-endian; byte strings are `len: u32, bytes`; an optional byte
//! string is `present: u8 (0|1)` then, if present, a byte string; lists are
//! `count: u32` then the elements. Bodies (version 2):
//!
//! | tag | message        | body |
//! |-----|----------------|------|
//! | 1   | get request    | lease: u64, lookups: list of (key: bytes, snapshot: u64, images: list of image id) |
//! | 2   | get response   | answers: list of list of found |
//! | 3   | scan request   | lease: u64, images: list of image id, lower: bytes, upper: optional bytes, direction: u8 (0 forward, 1 backward), limit: u32, snapshot: u64, resume_after: optional bytes |
//! | 4   | scan response  | entries: list of (user key: bytes, sequence: u64, kind: u8, value: bytes), continuation: optional bytes |
//! | 5   | refused        | kind: u8 (0 the request, 1 the lease: unknown or expired, register again), reason: bytes (UTF-8): the request failed as a whole |
//!
//! Version 2 added the lease to both requests and the kind to refusals;
//! version 1 is refused.
//!
//! An image id is `shard: u32, serial: u64`. A found is `0` (absent),
//! `1, sequence: u64, offset: u32` (tombstone) or `2, sequence: u64,
//! offset: u32, value: bytes`. A kind is the storage `ValueKind` byte.
//!
//! Decoding checks every length against the bytes left, accepts only known
//! tags, versions and enum bytes, and refuses trailing bytes; it returns
//! [`Error::Decode`] and never panics or allocates more than the input
//! justifies.

use o3_storage::key::ValueKind;

use crate::error::{Error, Result};
use crate::images::ImageId;
use crate::lease::LeaseSecret;
use crate::lookup::{
    Direction, Found, GetRequest, GetResponse, KeyLookup, ScanEntry, ScanRequest, ScanResponse,
};

/// The only version this code writes and reads.
pub const WIRE_VERSION: u8 = 2;

const TAG_GET_REQUEST: u8 = 1;
const TAG_GET_RESPONSE: u8 = 2;
const TAG_SCAN_REQUEST: u8 = 3;
const TAG_SCAN_RESPONSE: u8 = 4;
const TAG_REFUSED: u8 = 5;

/// Smallest encodings, to bound list counts by the bytes left.
const IMAGE_ID_LEN: usize = 12;
const KEY_LOOKUP_MIN_LEN: usize = 4 + 8 + 4;
const FOUND_MIN_LEN: usize = 1;
const LIST_MIN_LEN: usize = 4;
const SCAN_ENTRY_MIN_LEN: usize = 4 + 8 + 1 + 4;

/// True when `bytes` start like a get request: a lookup in published
/// images, answered at once (CPU only) unless an image's background
/// structure check is still running.
pub fn is_get_request(bytes: &[u8]) -> bool {
    bytes.first() == Some(&TAG_GET_REQUEST)
}

/// A delegated-read message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A batched `get` on behalf of the owner of `lease`.
    GetRequest {
        lease: LeaseSecret,
        request: GetRequest,
    },
    GetResponse(GetResponse),
    /// A `scan` on behalf of the owner of `lease`.
    ScanRequest {
        lease: LeaseSecret,
        request: ScanRequest,
    },
    ScanResponse(ScanResponse),
    /// The request failed as a whole; the reason is the memory node's
    /// error message.
    Refused {
        kind: Refusal,
        reason: String,
    },
}

/// Why a request was refused, by what the requester must do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request itself (an unknown image, a malformed message): the
    /// reason says what.
    Request,
    /// The lease is unknown or expired: the requester's regions here are
    /// gone and it must register again.
    Lease,
}

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Writer(Vec::new());
        match self {
            Message::GetRequest { lease, request } => {
                out.header(TAG_GET_REQUEST);
                out.u64(lease.0);
                out.u32(request.lookups.len() as u32);
                for lookup in &request.lookups {
                    out.bytes(&lookup.key);
                    out.u64(lookup.snapshot);
                    out.images(&lookup.images);
                }
            }
            Message::GetResponse(response) => {
                out.header(TAG_GET_RESPONSE);
                out.u32(response.answers.len() as u32);
                for answers in &response.answers {
                    out.u32(answers.len() as u32);
                    for found in answers {
                        out.found(found);
                    }
                }
            }
            Message::ScanRequest { lease, request } => {
                out.header(TAG_SCAN_REQUEST);
                out.u64(lease.0);
                out.images(&request.images);
                out.bytes(&request.lower);
                out.optional(request.upper.as_deref());
                out.0.push(match request.direction {
                    Direction::Forward => 0,
                    Direction::Backward => 1,
                });
                out.u32(request.limit);
                out.u64(request.snapshot);
                out.optional(request.resume_after.as_deref());
            }
            Message::ScanResponse(response) => {
                out.header(TAG_SCAN_RESPONSE);
                out.u32(response.entries.len() as u32);
                for entry in &response.entries {
                    out.bytes(&entry.user_key);
                    out.u64(entry.sequence);
                    out.0.push(entry.kind as u8);
                    out.bytes(&entry.value);
                }
                out.optional(response.continuation.as_deref());
            }
            Message::Refused { kind, reason } => {
                out.header(TAG_REFUSED);
                out.0.push(match kind {
                    Refusal::Request => 0,
                    Refusal::Lease => 1,
                });
                out.bytes(reason.as_bytes());
            }
        }
        out.0
    }

    pub fn decode(bytes: &[u8]) -> Result<Message> {
        let mut r = Reader {
            buf: bytes,
            at: 0,
            message: "delegated-read message",
        };
        let tag = r.u8()?;
        r.message = match tag {
            TAG_GET_REQUEST => "get request",
            TAG_GET_RESPONSE => "get response",
            TAG_SCAN_REQUEST => "scan request",
            TAG_SCAN_RESPONSE => "scan response",
            TAG_REFUSED => "refusal",
            other => return Err(r.error(0, format!("unknown message tag {other}"))),
        };
        let version = r.u8()?;
        if version != WIRE_VERSION {
            return Err(r.error(
                1,
                format!("unsupported version {version} (this build reads {WIRE_VERSION})"),
            ));
        }
        let message = match tag {
            TAG_GET_REQUEST => {
                let lease = LeaseSecret(r.u64()?);
                let count = r.count(KEY_LOOKUP_MIN_LEN)?;
                let mut lookups = Vec::with_capacity(count);
                for _ in 0..count {
                    lookups.push(KeyLookup {
                        key: r.bytes()?.to_vec(),
                        snapshot: r.u64()?,
                        images: r.images()?,
                    });
                }
                Message::GetRequest {
                    lease,
                    request: GetRequest { lookups },
                }
            }
            TAG_GET_RESPONSE => {
                let count = r.count(LIST_MIN_LEN)?;
                let mut answers = Vec::with_capacity(count);
                for _ in 0..count {
                    let n = r.count(FOUND_MIN_LEN)?;
                    let mut per_key = Vec::with_capacity(n);
                    for _ in 0..n {
                        per_key.push(r.found()?);
                    }
                    answers.push(per_key);
                }
                Message::GetResponse(GetResponse { answers })
            }
            TAG_SCAN_REQUEST => Message::ScanRequest {
                lease: LeaseSecret(r.u64()?),
                request: ScanRequest {
                    images: r.images()?,
                    lower: r.bytes()?.to_vec(),
                    upper: r.optional()?,
                    direction: match r.u8()? {
                        0 => Direction::Forward,
                        1 => Direction::Backward,
                        other => {
                            return Err(r.error(r.at - 1, format!("unknown direction {other}")));
                        }
                    },
                    limit: r.u32()?,
                    snapshot: r.u64()?,
                    resume_after: r.optional()?,
                },
            },
            TAG_SCAN_RESPONSE => {
                let count = r.count(SCAN_ENTRY_MIN_LEN)?;
                let mut entries = Vec::with_capacity(count);
                for _ in 0..count {
                    entries.push(ScanEntry {
                        user_key: r.bytes()?.to_vec(),
                        sequence: r.u64()?,
                        kind: r.kind()?,
                        value: r.bytes()?.to_vec(),
                    });
                }
                Message::ScanResponse(ScanResponse {
                    entries,
                    continuation: r.optional()?,
                })
            }
            _ => {
                let kind = match r.u8()? {
                    0 => Refusal::Request,
                    1 => Refusal::Lease,
                    other => return Err(r.error(r.at - 1, format!("unknown refusal kind {other}"))),
                };
                let at = r.at;
                let reason = String::from_utf8(r.bytes()?.to_vec())
                    .map_err(|_| r.error(at, "refusal reason is not UTF-8".into()))?;
                Message::Refused { kind, reason }
            }
        };
        if r.at != bytes.len() {
            return Err(r.error(r.at, format!("{} trailing bytes", bytes.len() - r.at)));
        }
        Ok(message)
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn header(&mut self, tag: u8) {
        self.0.extend_from_slice(&[tag, WIRE_VERSION]);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn optional(&mut self, b: Option<&[u8]>) {
        match b {
            None => self.0.push(0),
            Some(b) => {
                self.0.push(1);
                self.bytes(b);
            }
        }
    }
    fn images(&mut self, images: &[ImageId]) {
        self.u32(images.len() as u32);
        for image in images {
            self.u32(image.shard);
            self.u64(image.serial);
        }
    }
    fn found(&mut self, found: &Found) {
        match found {
            Found::Absent => self.0.push(0),
            Found::Tombstone { sequence, offset } => {
                self.0.push(1);
                self.u64(*sequence);
                self.u32(*offset);
            }
            Found::Value {
                sequence,
                offset,
                value,
            } => {
                self.0.push(2);
                self.u64(*sequence);
                self.u32(*offset);
                self.bytes(value);
            }
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn error(&self, offset: usize, reason: String) -> Error {
        Error::Decode {
            message: self.message,
            offset,
            reason,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let left = self.buf.len() - self.at;
        if n > left {
            return Err(self.error(self.at, format!("needs {n} bytes, {left} left")));
        }
        let out = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn optional(&mut self) -> Result<Option<Vec<u8>>> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.bytes()?.to_vec())),
            other => Err(self.error(self.at - 1, format!("presence byte {other} is not 0 or 1"))),
        }
    }

    /// A list count, refused when even elements of `min_len` bytes could
    /// not fit in what is left (so a forged count cannot make us allocate).
    fn count(&mut self, min_len: usize) -> Result<usize> {
        let at = self.at;
        let count = self.u32()? as usize;
        let left = self.buf.len() - self.at;
        if count > left / min_len {
            return Err(self.error(
                at,
                format!("{count} elements of at least {min_len} bytes do not fit in {left} bytes"),
            ));
        }
        Ok(count)
    }

    fn images(&mut self) -> Result<Vec<ImageId>> {
        let count = self.count(IMAGE_ID_LEN)?;
        (0..count)
            .map(|_| {
                Ok(ImageId {
                    shard: self.u32()?,
                    serial: self.u64()?,
                })
            })
            .collect()
    }

    fn found(&mut self) -> Result<Found> {
        match self.u8()? {
            0 => Ok(Found::Absent),
            1 => Ok(Found::Tombstone {
                sequence: self.u64()?,
                offset: self.u32()?,
            }),
            2 => Ok(Found::Value {
                sequence: self.u64()?,
                offset: self.u32()?,
                value: self.bytes()?.to_vec(),
            }),
            other => Err(self.error(self.at - 1, format!("unknown answer kind {other}"))),
        }
    }

    fn kind(&mut self) -> Result<ValueKind> {
        let b = self.u8()?;
        ValueKind::from_u8(b)
            .ok_or_else(|| self.error(self.at - 1, format!("unknown value kind {b}")))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..12)
    }

    fn image_ids() -> impl Strategy<Value = Vec<ImageId>> {
        proptest::collection::vec(
            (any::<u32>(), any::<u64>()).prop_map(|(shard, serial)| ImageId { shard, serial }),
            0..4,
        )
    }

    fn kind() -> impl Strategy<Value = ValueKind> {
        prop_oneof![Just(ValueKind::Value), Just(ValueKind::Tombstone)]
    }

    fn found() -> impl Strategy<Value = Found> {
        prop_oneof![
            Just(Found::Absent),
            (any::<u64>(), any::<u32>())
                .prop_map(|(sequence, offset)| Found::Tombstone { sequence, offset }),
            (any::<u64>(), any::<u32>(), bytes()).prop_map(|(sequence, offset, value)| {
                Found::Value {
                    sequence,
                    offset,
                    value,
                }
            }),
        ]
    }

    fn message() -> impl Strategy<Value = Message> {
        let lookup =
            (bytes(), any::<u64>(), image_ids()).prop_map(|(key, snapshot, images)| KeyLookup {
                key,
                snapshot,
                images,
            });
        let entry = (bytes(), any::<u64>(), kind(), bytes()).prop_map(
            |(user_key, sequence, kind, value)| ScanEntry {
                user_key,
                sequence,
                kind,
                value,
            },
        );
        prop_oneof![
            (any::<u64>(), proptest::collection::vec(lookup, 0..4)).prop_map(|(lease, lookups)| {
                Message::GetRequest {
                    lease: LeaseSecret(lease),
                    request: GetRequest { lookups },
                }
            }),
            proptest::collection::vec(proptest::collection::vec(found(), 0..4), 0..4)
                .prop_map(|answers| Message::GetResponse(GetResponse { answers })),
            (
                any::<u64>(),
                image_ids(),
                bytes(),
                proptest::option::of(bytes()),
                any::<bool>(),
                any::<u32>(),
                any::<u64>(),
                proptest::option::of(bytes()),
            )
                .prop_map(
                    |(lease, images, lower, upper, backward, limit, snapshot, resume_after)| {
                        Message::ScanRequest {
                            lease: LeaseSecret(lease),
                            request: ScanRequest {
                                images,
                                lower,
                                upper,
                                direction: if backward {
                                    Direction::Backward
                                } else {
                                    Direction::Forward
                                },
                                limit,
                                snapshot,
                                resume_after,
                            },
                        }
                    }
                ),
            (
                proptest::collection::vec(entry, 0..4),
                proptest::option::of(bytes())
            )
                .prop_map(|(entries, continuation)| {
                    Message::ScanResponse(ScanResponse {
                        entries,
                        continuation,
                    })
                }),
            (any::<bool>(), ".{0,20}").prop_map(|(lease, reason)| Message::Refused {
                kind: if lease {
                    Refusal::Lease
                } else {
                    Refusal::Request
                },
                reason,
            }),
        ]
    }

    proptest! {
        #[test]
        fn encode_then_decode_round_trips(message in message()) {
            prop_assert_eq!(Message::decode(&message.encode()).unwrap(), message);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Message::decode(&bytes);
        }

        /// Garbage that starts like a real message reaches the body decoders.
        #[test]
        fn damaged_messages_are_refused_or_decode_cleanly(
            message in message(),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let encoded = message.encode();
            let truncated = &encoded[..cut.index(encoded.len())];
            let decoded = Message::decode(truncated);
            prop_assert!(matches!(decoded, Err(Error::Decode { .. })), "prefix decoded: {:?}", decoded);
            let mut flipped = encoded.clone();
            let at = flip.index(flipped.len());
            flipped[at] = byte;
            let _ = Message::decode(&flipped);
            let mut longer = encoded;
            longer.push(0);
            let decoded = Message::decode(&longer);
            prop_assert!(matches!(decoded, Err(Error::Decode { .. })), "trailing byte accepted: {:?}", decoded);
        }
    }

    #[test]
    fn unknown_tags_and_versions_are_typed_errors() {
        assert!(matches!(
            Message::decode(&[9, WIRE_VERSION]),
            Err(Error::Decode { offset: 0, .. })
        ));
        // Version 1 (no lease) and unknown versions are refused.
        for version in [1, 3] {
            assert!(matches!(
                Message::decode(&[TAG_REFUSED, version]),
                Err(Error::Decode { offset: 1, .. })
            ));
        }
        assert!(matches!(
            Message::decode(&[TAG_REFUSED, WIRE_VERSION, 2, 0, 0, 0, 0]),
            Err(Error::Decode { offset: 2, .. })
        ));
        assert!(matches!(Message::decode(&[]), Err(Error::Decode { .. })));
        // A count far beyond the bytes present is refused before allocating.
        let mut huge = vec![TAG_GET_REQUEST, WIRE_VERSION];
        huge.extend_from_slice(&7u64.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Message::decode(&huge),
            Err(Error::Decode { offset: 10, .. })
        ));
    }
}
