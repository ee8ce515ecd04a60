//! The data-plane handshake: a mutual challenge–response that proves both
//! ends hold the cluster token and binds the connector's identity to the
//! connection. Every backend runs it before anything else (`local` through
//! function calls, `tcp`/`shm` in frames of [`crate::wire`], `rdma` on its
//! side channel).
//!
//! 1. connector → acceptor: `Hello`: the connector's node id and a fresh
//!    32-byte nonce `Nc`;
//! 2. acceptor → connector: `Challenge`: the acceptor's node id, a fresh
//!    nonce `Na` and `proof(acceptor)`;
//! 3. the connector checks `proof(acceptor)` (a wrong one means the acceptor
//!    does not hold our token: [`Error::Unauthenticated`], nothing is sent)
//!    and answers `Proof`: `proof(connector)`;
//! 4. the acceptor checks it and answers `Welcome`, or `Refused` with a
//!    reason and closes: nothing is served on a refused connection.
//!
//! `proof(role) = HMAC-SHA256(token, label(role) | Nc | Na |
//! len u16 LE | connector id | len u16 LE | acceptor id)` with the labels
//! `o3 data plane v1 connector` / `o3 data plane v1 acceptor`. Both nonces
//! make every proof unique to one connection (no replay); both ids are
//! inside the MAC (a proof made for one name does not prove another);
//! distinct labels keep one side's proof from being reflected as the
//! other's. Proofs are compared in constant time (`hmac`'s `verify_slice`).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::identity::{Credentials, PeerIdentity};
use crate::verbs::NodeId;
use crate::wire::Cursor;

/// Bytes of a nonce.
pub const NONCE_LEN: usize = 32;
/// Bytes of a proof (an HMAC-SHA256 tag).
pub const PROOF_LEN: usize = 32;
/// Longest node id a handshake carries.
pub const MAX_NODE_ID: usize = 1024;

const CONNECTOR_LABEL: &[u8] = b"o3 data plane v1 connector";
const ACCEPTOR_LABEL: &[u8] = b"o3 data plane v1 acceptor";

/// A fresh random nonce from the operating system's CSPRNG.
pub fn fresh_nonce() -> Result<[u8; NONCE_LEN]> {
    let mut nonce = [0u8; NONCE_LEN];
    let mut filled = 0;
    while filled < NONCE_LEN {
        // SAFETY: the pointer and length describe the unfilled tail of
        // `nonce`, which is valid for writes.
        let n =
            unsafe { libc::getrandom(nonce[filled..].as_mut_ptr().cast(), NONCE_LEN - filled, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::io("getrandom for a handshake nonce", e));
        }
        filled += n as usize;
    }
    Ok(nonce)
}

/// Which side of the handshake a proof speaks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Connector,
    Acceptor,
}

/// Everything both proofs cover.
struct Transcript<'a> {
    connector: &'a NodeId,
    acceptor: &'a NodeId,
    connector_nonce: &'a [u8; NONCE_LEN],
    acceptor_nonce: &'a [u8; NONCE_LEN],
}

impl Transcript<'_> {
    fn mac(&self, credentials: &Credentials, role: Role) -> Result<Hmac<Sha256>> {
        let key = match credentials {
            Credentials::ClusterToken(token) => token.secret(),
        };
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
            .map_err(|e| Error::InvalidArgument(format!("cluster token as HMAC key: {e}")))?;
        mac.update(match role {
            Role::Connector => CONNECTOR_LABEL,
            Role::Acceptor => ACCEPTOR_LABEL,
        });
        mac.update(self.connector_nonce);
        mac.update(self.acceptor_nonce);
        for id in [self.connector, self.acceptor] {
            let bytes = id.0.as_bytes();
            mac.update(&(bytes.len() as u16).to_le_bytes());
            mac.update(bytes);
        }
        Ok(mac)
    }

    fn prove(&self, credentials: &Credentials, role: Role) -> Result<[u8; PROOF_LEN]> {
        let tag = self.mac(credentials, role)?.finalize().into_bytes();
        let mut out = [0u8; PROOF_LEN];
        out.copy_from_slice(&tag);
        Ok(out)
    }

    fn verify(&self, credentials: &Credentials, role: Role, proof: &[u8]) -> Result<bool> {
        Ok(self.mac(credentials, role)?.verify_slice(proof).is_ok())
    }
}

/// Step 1: the connector introduces itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub node: NodeId,
    pub nonce: [u8; NONCE_LEN],
}

/// Step 2: the acceptor's answer and proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub node: NodeId,
    pub nonce: [u8; NONCE_LEN],
    pub proof: [u8; PROOF_LEN],
}

/// Step 3: the connector's proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof(pub [u8; PROOF_LEN]);

fn check_id(node: &NodeId) -> Result<()> {
    if node.0.len() > MAX_NODE_ID {
        return Err(Error::InvalidArgument(format!(
            "node id of {} bytes (at most {MAX_NODE_ID})",
            node.0.len()
        )));
    }
    Ok(())
}

fn put_id(out: &mut Vec<u8>, node: &NodeId) {
    let bytes = node.0.as_bytes();
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn take_id(c: &mut Cursor<'_>, peer: &NodeId) -> Result<NodeId> {
    let len = c.take(2)?;
    let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
    if len > MAX_NODE_ID {
        return Err(Error::protocol(peer, format!("node id of {len} bytes")));
    }
    let bytes = c.take(len)?;
    std::str::from_utf8(bytes)
        .map(|s| NodeId(s.to_owned()))
        .map_err(|_| Error::protocol(peer, "node id is not UTF-8"))
}

fn take_array<const N: usize>(c: &mut Cursor<'_>) -> Result<[u8; N]> {
    let mut out = [0u8; N];
    out.copy_from_slice(c.take(N)?);
    Ok(out)
}

fn finished(c: &Cursor<'_>, peer: &NodeId, what: &str) -> Result<()> {
    if !c.is_empty() {
        return Err(Error::protocol(
            peer,
            format!("{what} has stray bytes at offset {}", c.offset()),
        ));
    }
    Ok(())
}

impl Hello {
    /// `nonce [32] | id length u16 LE | id`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(NONCE_LEN + 2 + self.node.0.len());
        out.extend_from_slice(&self.nonce);
        put_id(&mut out, &self.node);
        out
    }

    pub fn decode(bytes: &[u8], peer: &NodeId) -> Result<Self> {
        let mut c = Cursor::new(bytes, peer, "handshake hello");
        let nonce = take_array(&mut c)?;
        let node = take_id(&mut c, peer)?;
        finished(&c, peer, "handshake hello")?;
        Ok(Hello { node, nonce })
    }
}

impl Challenge {
    /// `nonce [32] | proof [32] | id length u16 LE | id`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(NONCE_LEN + PROOF_LEN + 2 + self.node.0.len());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.proof);
        put_id(&mut out, &self.node);
        out
    }

    pub fn decode(bytes: &[u8], peer: &NodeId) -> Result<Self> {
        let mut c = Cursor::new(bytes, peer, "handshake challenge");
        let nonce = take_array(&mut c)?;
        let proof = take_array(&mut c)?;
        let node = take_id(&mut c, peer)?;
        finished(&c, peer, "handshake challenge")?;
        Ok(Challenge { node, nonce, proof })
    }
}

impl Proof {
    pub fn decode(bytes: &[u8], peer: &NodeId) -> Result<Self> {
        let mut c = Cursor::new(bytes, peer, "handshake proof");
        let proof = take_array(&mut c)?;
        finished(&c, peer, "handshake proof")?;
        Ok(Proof(proof))
    }
}

/// The connector's half of a handshake in progress.
#[derive(Debug)]
pub struct Connecting {
    me: NodeId,
    peer: NodeId,
    nonce: [u8; NONCE_LEN],
}

impl Connecting {
    /// Start a handshake with `peer`; send the returned [`Hello`].
    pub fn start(me: &NodeId, peer: &NodeId) -> Result<(Self, Hello)> {
        check_id(me)?;
        let nonce = fresh_nonce()?;
        let hello = Hello {
            node: me.clone(),
            nonce,
        };
        Ok((
            Connecting {
                me: me.clone(),
                peer: peer.clone(),
                nonce,
            },
            hello,
        ))
    }

    /// Check the acceptor's challenge; the returned [`Proof`] is ours.
    /// An acceptor that answers as another node is a protocol error; one
    /// whose proof fails does not hold our token
    /// ([`Error::Unauthenticated`]).
    pub fn answer(self, credentials: &Credentials, challenge: &Challenge) -> Result<Proof> {
        if challenge.node != self.peer {
            return Err(Error::protocol(
                &self.peer,
                format!("answered as node {}", challenge.node),
            ));
        }
        let transcript = Transcript {
            connector: &self.me,
            acceptor: &self.peer,
            connector_nonce: &self.nonce,
            acceptor_nonce: &challenge.nonce,
        };
        if !transcript.verify(credentials, Role::Acceptor, &challenge.proof)? {
            return Err(Error::Unauthenticated {
                peer: self.peer.clone(),
                reason: "the peer's proof does not match our cluster token".into(),
            });
        }
        Ok(Proof(transcript.prove(credentials, Role::Connector)?))
    }
}

/// The acceptor's half of a handshake in progress.
#[derive(Debug)]
pub struct Accepting {
    me: NodeId,
    hello: Hello,
    nonce: [u8; NONCE_LEN],
}

impl Accepting {
    /// Answer a connector's [`Hello`]; send the returned [`Challenge`].
    pub fn start(
        credentials: &Credentials,
        me: &NodeId,
        hello: Hello,
    ) -> Result<(Self, Challenge)> {
        let nonce = fresh_nonce()?;
        let transcript = Transcript {
            connector: &hello.node,
            acceptor: me,
            connector_nonce: &hello.nonce,
            acceptor_nonce: &nonce,
        };
        let proof = transcript.prove(credentials, Role::Acceptor)?;
        let challenge = Challenge {
            node: me.clone(),
            nonce,
            proof,
        };
        Ok((
            Accepting {
                me: me.clone(),
                hello,
                nonce,
            },
            challenge,
        ))
    }

    /// The node the connector claims to be (not yet proven).
    pub fn claimed(&self) -> &NodeId {
        &self.hello.node
    }

    /// Check the connector's proof: its proven identity, or
    /// [`Error::Unauthenticated`] (refuse the connection).
    pub fn finish(self, credentials: &Credentials, proof: &Proof) -> Result<PeerIdentity> {
        let transcript = Transcript {
            connector: &self.hello.node,
            acceptor: &self.me,
            connector_nonce: &self.hello.nonce,
            acceptor_nonce: &self.nonce,
        };
        if !transcript.verify(credentials, Role::Connector, &proof.0)? {
            return Err(Error::Unauthenticated {
                peer: self.hello.node.clone(),
                reason: "its proof does not match the cluster token".into(),
            });
        }
        Ok(PeerIdentity {
            node: self.hello.node,
            method: credentials.method(),
        })
    }
}

/// Run both halves in one process (the `local` backend): the connector's
/// proven identity as the acceptor sees it, or the error the connector gets.
pub fn in_process(
    connector: (&NodeId, &Credentials),
    acceptor: (&NodeId, &Credentials),
) -> Result<PeerIdentity> {
    let (connecting, hello) = Connecting::start(connector.0, acceptor.0)?;
    let (accepting, challenge) = Accepting::start(acceptor.1, acceptor.0, hello)?;
    let proof = connecting.answer(connector.1, &challenge)?;
    accepting
        .finish(acceptor.1, &proof)
        .map_err(|e| refused_by(acceptor.0, e))
}

/// The connector's view of the acceptor refusing its proof.
pub fn refused_by(acceptor: &NodeId, error: Error) -> Error {
    match error {
        Error::Unauthenticated { .. } => Error::Unauthenticated {
            peer: acceptor.clone(),
            reason: "the peer refused our proof of the cluster token".into(),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ClusterToken;
    use crate::identity::AuthMethod;

    fn creds(token: &str) -> Credentials {
        Credentials::ClusterToken(ClusterToken::new(token).unwrap())
    }

    #[test]
    fn same_token_proves_the_connector() {
        let (a, b) = (NodeId::from("a"), NodeId::from("b"));
        let id = in_process((&a, &creds("t0k")), (&b, &creds("t0k"))).unwrap();
        assert_eq!(
            id,
            PeerIdentity {
                node: a,
                method: AuthMethod::ClusterToken
            }
        );
    }

    #[test]
    fn a_different_token_is_refused_on_the_connector_side() {
        let (a, b) = (NodeId::from("a"), NodeId::from("b"));
        let refused = in_process((&a, &creds("mine")), (&b, &creds("theirs")));
        assert!(
            matches!(&refused, Err(Error::Unauthenticated { peer, .. }) if *peer == b),
            "{refused:?}"
        );
    }

    /// An intruder without the token who forwards a genuine connector's
    /// proof under another name, or replays it on a new connection, fails.
    #[test]
    fn proofs_do_not_transfer_between_names_or_connections() {
        let token = creds("cluster");
        let (alice, mallory, owner) = (
            NodeId::from("alice"),
            NodeId::from("mallory"),
            NodeId::from("owner"),
        );
        let (connecting, hello) = Connecting::start(&alice, &owner).unwrap();
        let (accepting, challenge) = Accepting::start(&token, &owner, hello.clone()).unwrap();
        let proof = connecting.answer(&token, &challenge).unwrap();

        // The same proof presented for another name.
        let renamed = Hello {
            node: mallory.clone(),
            ..hello.clone()
        };
        let (swapped, _) = Accepting::start(&token, &owner, renamed).unwrap();
        assert!(matches!(
            swapped.finish(&token, &proof),
            Err(Error::Unauthenticated { .. })
        ));
        // The same hello and proof replayed: the acceptor's nonce is fresh.
        let (replayed, _) = Accepting::start(&token, &owner, hello).unwrap();
        assert!(matches!(
            replayed.finish(&token, &proof),
            Err(Error::Unauthenticated { .. })
        ));
        // The acceptor's own proof reflected back as the connector's.
        let (reflected, challenge2) = {
            let (c, h) = Connecting::start(&alice, &owner).unwrap();
            let (a, ch) = Accepting::start(&token, &owner, h).unwrap();
            drop(c);
            (a, ch)
        };
        assert!(matches!(
            reflected.finish(&token, &Proof(challenge2.proof)),
            Err(Error::Unauthenticated { .. })
        ));
        // The genuine exchange still succeeds.
        assert_eq!(accepting.finish(&token, &proof).unwrap().node, alice);
    }

    #[test]
    fn an_acceptor_answering_as_another_node_is_rejected() {
        let token = creds("cluster");
        let (a, b, c) = (NodeId::from("a"), NodeId::from("b"), NodeId::from("c"));
        let (connecting, hello) = Connecting::start(&a, &b).unwrap();
        let (_, challenge) = Accepting::start(&token, &c, hello).unwrap();
        assert!(matches!(
            connecting.answer(&token, &challenge),
            Err(Error::Protocol { .. })
        ));
    }

    #[test]
    fn messages_round_trip_and_reject_truncation() {
        let peer = NodeId::from("p");
        let hello = Hello {
            node: NodeId::from("ünï"),
            nonce: [7; NONCE_LEN],
        };
        assert_eq!(Hello::decode(&hello.encode(), &peer).unwrap(), hello);
        let challenge = Challenge {
            node: NodeId::from("x:1"),
            nonce: [1; NONCE_LEN],
            proof: [2; PROOF_LEN],
        };
        let bytes = challenge.encode();
        assert_eq!(Challenge::decode(&bytes, &peer).unwrap(), challenge);
        for cut in 0..bytes.len() {
            assert!(Challenge::decode(&bytes[..cut], &peer).is_err());
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(Challenge::decode(&long, &peer).is_err());
        assert!(Proof::decode(&[0; PROOF_LEN - 1], &peer).is_err());
        assert_ne!(fresh_nonce().unwrap(), fresh_nonce().unwrap());
    }
}
