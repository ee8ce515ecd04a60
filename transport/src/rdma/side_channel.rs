//! The TCP side channel of an RDMA connection.
//!
//! Queue pairs cannot find each other on their own: the requester opens a
//! TCP connection to the owner's listener and the two run the handshake of
//! [`crate::handshake`] on it: `Hello` (node id, nonce and the requester's
//! queue-pair endpoints), `Challenge` (the owner's node id, nonce and
//! proof), `Proof`; the owner then either creates its queue pairs and
//! answers `Welcome` with their endpoints, or answers `Refused` with a
//! reason and closes (no queue pair is ever connected for an unproven
//! peer). Both bring their queue pairs to RTS and the requester confirms
//! with `Ready`. The socket then stays open for
//! what the NIC cannot say: why a one-sided access failed (`Diagnose`: an
//! RDMA NIC reports the same remote-access error for a bad key, a
//! deregistered region and an out-of-bounds access) and replacing the
//! one-sided queue pair after such an error (`RenewData`), since an error
//! leaves a reliable-connected queue pair unusable. Its closing tells the
//! owner the requester is gone.
//!
//! Every message is `kind u8 | body length u32 LE | body` with a body of at
//! most 4096 bytes; integers are little-endian; an endpoint is
//! `qpn u32 | psn u32 | lid u16 | gid [16]`; a node id is
//! `length u16 | UTF-8 bytes`; nonces and proofs are 32 bytes. `Hello` is
//! `magic "O3RD" | version u8 (2) | node id | nonce | data endpoint |
//! message endpoint`; `Challenge` is `node id | nonce | proof`; `Welcome`
//! is `data endpoint | message endpoint`; `Refused` is a reason (`length u16 | UTF-8`);
//! `Diagnose` ends with the operation's [`RemoteOp::code`], and an
//! access-denied `Diagnosis` carries the region's access bits.

use std::io::{Read, Write};

use super::queue_pair::QpEndpoint;
use crate::access::{RegionAccess, RemoteOp};
use crate::error::{Error, Result};
use crate::handshake::{NONCE_LEN, PROOF_LEN};
use crate::verbs::NodeId;

/// Longest message body; bounds what a bad length can make us allocate.
const MAX_BODY: usize = 4096;
const MAGIC: &[u8; 4] = b"O3RD";
/// Version 2 added the handshake's proofs and access flags.
const VERSION: u8 = 2;
const ENDPOINT_LEN: usize = 4 + 4 + 2 + 16;

/// Why a one-sided access failed, as the region's owner sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The access is valid (the failure was elsewhere).
    Valid,
    BadKey,
    Gone,
    OutOfBounds {
        region_len: u64,
    },
    AccessDenied {
        access: RegionAccess,
    },
}

/// One side-channel message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SideMessage {
    Hello {
        node: NodeId,
        nonce: [u8; NONCE_LEN],
        data: QpEndpoint,
        messages: QpEndpoint,
    },
    Challenge {
        node: NodeId,
        nonce: [u8; NONCE_LEN],
        proof: [u8; PROOF_LEN],
    },
    Proof([u8; PROOF_LEN]),
    Welcome {
        data: QpEndpoint,
        messages: QpEndpoint,
    },
    Refused(String),
    Ready,
    Diagnose {
        region: u64,
        base: u64,
        rkey: u64,
        offset: u64,
        len: u64,
        op: RemoteOp,
    },
    Diagnosis(Verdict),
    RenewData(QpEndpoint),
    Renewed(QpEndpoint),
}

impl SideMessage {
    fn kind(&self) -> u8 {
        match self {
            SideMessage::Hello { .. } => 1,
            SideMessage::Welcome { .. } => 2,
            SideMessage::Ready => 3,
            SideMessage::Diagnose { .. } => 4,
            SideMessage::Diagnosis(_) => 5,
            SideMessage::RenewData(_) => 6,
            SideMessage::Renewed(_) => 7,
            SideMessage::Challenge { .. } => 8,
            SideMessage::Proof(_) => 9,
            SideMessage::Refused(_) => 10,
        }
    }

    /// The encoded message, header included.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(64);
        match self {
            SideMessage::Hello {
                node,
                nonce,
                data,
                messages,
            } => {
                body.extend_from_slice(MAGIC);
                body.push(VERSION);
                put_node(&mut body, node);
                body.extend_from_slice(nonce);
                put_endpoint(&mut body, data);
                put_endpoint(&mut body, messages);
            }
            SideMessage::Challenge { node, nonce, proof } => {
                put_node(&mut body, node);
                body.extend_from_slice(nonce);
                body.extend_from_slice(proof);
            }
            SideMessage::Proof(proof) => body.extend_from_slice(proof),
            SideMessage::Welcome { data, messages } => {
                put_endpoint(&mut body, data);
                put_endpoint(&mut body, messages);
            }
            SideMessage::Refused(reason) => {
                let reason = reason.as_bytes();
                // Cut at a character boundary so the body stays UTF-8.
                let mut end = reason.len().min(MAX_BODY / 2);
                while std::str::from_utf8(&reason[..end]).is_err() {
                    end -= 1;
                }
                body.extend_from_slice(&(end as u16).to_le_bytes());
                body.extend_from_slice(&reason[..end]);
            }
            SideMessage::Ready => {}
            SideMessage::Diagnose {
                region,
                base,
                rkey,
                offset,
                len,
                op,
            } => {
                for v in [region, base, rkey, offset, len] {
                    body.extend_from_slice(&v.to_le_bytes());
                }
                body.push(op.code());
            }
            SideMessage::Diagnosis(verdict) => {
                let (code, detail) = match verdict {
                    Verdict::Valid => (0u8, 0u64),
                    Verdict::BadKey => (1, 0),
                    Verdict::Gone => (2, 0),
                    Verdict::OutOfBounds { region_len } => (3, *region_len),
                    Verdict::AccessDenied { access } => (4, access.bits()),
                };
                body.push(code);
                body.extend_from_slice(&detail.to_le_bytes());
            }
            SideMessage::RenewData(e) | SideMessage::Renewed(e) => put_endpoint(&mut body, e),
        }
        let mut out = Vec::with_capacity(5 + body.len());
        out.push(self.kind());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decode one message body of `kind` received from `peer`.
    pub fn decode(kind: u8, body: &[u8], peer: &NodeId) -> Result<Self> {
        let mut r = Reader {
            bytes: body,
            pos: 0,
            peer,
        };
        let message = match kind {
            1 => {
                if r.take(4)? != MAGIC {
                    return Err(r.error("bad magic in handshake"));
                }
                let version = r.u8()?;
                if version != VERSION {
                    return Err(
                        r.error(&format!("handshake version {version}, expected {VERSION}"))
                    );
                }
                SideMessage::Hello {
                    node: r.node()?,
                    nonce: r.array()?,
                    data: r.endpoint()?,
                    messages: r.endpoint()?,
                }
            }
            2 => SideMessage::Welcome {
                data: r.endpoint()?,
                messages: r.endpoint()?,
            },
            3 => SideMessage::Ready,
            4 => SideMessage::Diagnose {
                region: r.u64()?,
                base: r.u64()?,
                rkey: r.u64()?,
                offset: r.u64()?,
                len: r.u64()?,
                op: {
                    let code = r.u8()?;
                    RemoteOp::from_code(code)
                        .ok_or_else(|| r.error(&format!("unknown operation {code}")))?
                },
            },
            5 => {
                let code = r.u8()?;
                let detail = r.u64()?;
                if !matches!(code, 3 | 4) && detail != 0 {
                    return Err(r.error("detail given for a verdict that has none"));
                }
                SideMessage::Diagnosis(match code {
                    0 => Verdict::Valid,
                    1 => Verdict::BadKey,
                    2 => Verdict::Gone,
                    3 => Verdict::OutOfBounds { region_len: detail },
                    4 => Verdict::AccessDenied {
                        access: RegionAccess::from_bits(detail)
                            .ok_or_else(|| r.error(&format!("access flags {detail:#x}")))?,
                    },
                    other => return Err(r.error(&format!("unknown verdict {other}"))),
                })
            }
            6 => SideMessage::RenewData(r.endpoint()?),
            7 => SideMessage::Renewed(r.endpoint()?),
            8 => SideMessage::Challenge {
                node: r.node()?,
                nonce: r.array()?,
                proof: r.array()?,
            },
            9 => SideMessage::Proof(r.array()?),
            10 => SideMessage::Refused(r.node()?.0),
            other => return Err(r.error(&format!("unknown side-channel message kind {other}"))),
        };
        if r.pos != body.len() {
            return Err(r.error("trailing bytes after side-channel message"));
        }
        Ok(message)
    }
}

/// Write one message.
pub fn send(stream: &mut impl Write, message: &SideMessage, peer: &NodeId) -> Result<()> {
    stream
        .write_all(&message.encode())
        .map_err(|e| Error::peer_gone(peer, format!("side channel write: {e}")))
}

/// Read one message; end of stream or a read timeout means the peer is gone
/// or unresponsive.
pub fn receive(stream: &mut impl Read, peer: &NodeId) -> Result<SideMessage> {
    let mut header = [0u8; 5];
    stream
        .read_exact(&mut header)
        .map_err(|e| Error::peer_gone(peer, format!("side channel read: {e}")))?;
    let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_BODY {
        return Err(Error::protocol(
            peer,
            format!("side-channel message of {len} bytes at offset 1 (limit {MAX_BODY})"),
        ));
    }
    let mut body = [0u8; MAX_BODY];
    stream
        .read_exact(&mut body[..len])
        .map_err(|e| Error::peer_gone(peer, format!("side channel read: {e}")))?;
    SideMessage::decode(header[0], &body[..len], peer)
}

fn put_node(out: &mut Vec<u8>, node: &NodeId) {
    let name = node.0.as_bytes();
    let len = name.len().min(MAX_BODY / 2);
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&name[..len]);
}

fn put_endpoint(out: &mut Vec<u8>, e: &QpEndpoint) {
    out.extend_from_slice(&e.qpn.to_le_bytes());
    out.extend_from_slice(&e.psn.to_le_bytes());
    out.extend_from_slice(&e.lid.to_le_bytes());
    out.extend_from_slice(&e.gid);
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    peer: &'a NodeId,
}

impl<'a> Reader<'a> {
    fn error(&self, what: &str) -> Error {
        Error::protocol(
            self.peer,
            format!("{what} (side-channel body offset {})", self.pos),
        )
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| self.error(&format!("truncated: {n} more bytes needed")))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn node(&mut self) -> Result<NodeId> {
        let len = usize::from(self.u16()?);
        let node =
            std::str::from_utf8(self.take(len)?).map_err(|_| self.error("node id is not UTF-8"))?;
        Ok(NodeId(node.to_owned()))
    }

    fn endpoint(&mut self) -> Result<QpEndpoint> {
        debug_assert_eq!(ENDPOINT_LEN, 26);
        Ok(QpEndpoint {
            qpn: self.u32()?,
            psn: self.u32()?,
            lid: self.u16()?,
            gid: self.array()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn endpoint(seed: u8) -> QpEndpoint {
        QpEndpoint {
            qpn: 0x11_2233 + u32::from(seed),
            psn: 0xab_cdef,
            lid: 7,
            gid: [seed; 16],
        }
    }

    fn samples() -> Vec<SideMessage> {
        vec![
            SideMessage::Hello {
                node: NodeId::from("10.0.0.1:7000"),
                nonce: [9; NONCE_LEN],
                data: endpoint(1),
                messages: endpoint(2),
            },
            SideMessage::Challenge {
                node: NodeId::from("ünïcode-node"),
                nonce: [3; NONCE_LEN],
                proof: [4; PROOF_LEN],
            },
            SideMessage::Proof([5; PROOF_LEN]),
            SideMessage::Welcome {
                data: endpoint(3),
                messages: endpoint(4),
            },
            SideMessage::Refused("proof refused".into()),
            SideMessage::Ready,
            SideMessage::Diagnose {
                region: 9,
                base: 0x7f00_0000_1000,
                rkey: 0x1234,
                offset: 4096,
                len: 64,
                op: RemoteOp::Atomic,
            },
            SideMessage::Diagnosis(Verdict::AccessDenied {
                access: RegionAccess::READ_ONLY,
            }),
            SideMessage::Diagnosis(Verdict::Valid),
            SideMessage::Diagnosis(Verdict::BadKey),
            SideMessage::Diagnosis(Verdict::Gone),
            SideMessage::Diagnosis(Verdict::OutOfBounds {
                region_len: 1 << 20,
            }),
            SideMessage::RenewData(endpoint(5)),
            SideMessage::Renewed(endpoint(6)),
        ]
    }

    #[test]
    fn every_message_round_trips() {
        let peer = NodeId::from("p");
        for message in samples() {
            let bytes = message.encode();
            let decoded = receive(&mut &bytes[..], &peer).unwrap();
            assert_eq!(decoded, message);
        }
    }

    #[test]
    fn truncations_and_trailing_bytes_are_errors() {
        let peer = NodeId::from("p");
        for message in samples() {
            let bytes = message.encode();
            let body = &bytes[5..];
            for cut in 0..body.len() {
                assert!(SideMessage::decode(bytes[0], &body[..cut], &peer).is_err());
            }
            let mut long = body.to_vec();
            long.push(0);
            assert!(matches!(
                SideMessage::decode(bytes[0], &long, &peer),
                Err(Error::Protocol { .. })
            ));
        }
    }

    #[test]
    fn oversized_length_is_rejected_before_reading_the_body() {
        let peer = NodeId::from("p");
        let mut bytes = vec![4u8];
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            receive(&mut &bytes[..], &peer),
            Err(Error::Protocol { .. })
        ));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let peer = NodeId::from("p");
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x03_5eed);
        for _ in 0..20_000 {
            let len = rng.random_range(0..96);
            let body: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let kind = rng.random_range(0..10);
            let _ = SideMessage::decode(kind, &body, &peer);
        }
        // Flipping any byte of a valid message gives an error or a message
        // that encodes back to exactly the flipped bytes (never garbage).
        for message in samples() {
            let bytes = message.encode();
            for i in 0..bytes.len() {
                let mut flipped = bytes.clone();
                flipped[i] ^= 0x41;
                if let Ok(m) = receive(&mut &flipped[..], &peer) {
                    assert_eq!(m.encode(), flipped);
                }
            }
        }
    }
}
