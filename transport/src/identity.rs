//! Who is at the other end of a data-plane connection, and how that was
//! proven.
//!
//! A node holds [`Credentials`]; every connection starts with the
//! challenge–response of [`crate::handshake`], after which the owner's
//! [`RequestHandler`](crate::verbs::RequestHandler) receives the connector's
//! [`PeerIdentity`] with every request. A handler never sees an identity a
//! peer merely claimed: a connection whose proof fails is refused before
//! anything is served.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::control::ClusterToken;
use crate::verbs::NodeId;

/// What a node proves its identity with.
///
/// Today every node of a cluster holds the cluster token, so any token
/// holder may name itself; the proof shows that the peer holds the token and
/// binds the name it claims to this connection (fresh nonces on both sides,
/// so a recorded handshake cannot be replayed, and the claimed names are
/// inside the MAC, so they cannot be swapped). A lease issued over the
/// authenticated control plane, which names exactly one node, is the next
/// variant: it will let a memory node tell apart peers that share no secret.
#[derive(Clone)]
pub enum Credentials {
    /// The cluster's shared secret (the one the gRPC control plane checks).
    ClusterToken(ClusterToken),
}

impl Credentials {
    /// The method a peer proving with these credentials is recorded under.
    pub fn method(&self) -> AuthMethod {
        match self {
            Credentials::ClusterToken(_) => AuthMethod::ClusterToken,
        }
    }
}

impl From<ClusterToken> for Credentials {
    fn from(token: ClusterToken) -> Self {
        Credentials::ClusterToken(token)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::ClusterToken(_) => f.write_str("Credentials::ClusterToken(<redacted>)"),
        }
    }
}

/// How a peer's identity was proven.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuthMethod {
    /// Challenge–response keyed by the cluster token.
    ClusterToken,
}

/// A peer's identity as proven at connection set-up.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerIdentity {
    /// The node the peer proved to be.
    pub node: NodeId,
    /// How it proved it.
    pub method: AuthMethod,
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (proven by {:?})", self.node, self.method)
    }
}
