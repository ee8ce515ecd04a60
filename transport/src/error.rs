//! The transport's error type. Every variant names the region, peer or
//! operation it concerns so that one line of output says what failed where.
//!
//! Invariant shared by all backends: an operation rejected with
//! [`Error::OutOfBounds`], [`Error::Misaligned`], [`Error::BadKey`],
//! [`Error::RegionGone`], [`Error::WrongNode`] or [`Error::AccessDenied`] had
//! no effect on memory.

use std::time::Duration;

use crate::access::{RegionAccess, RemoteOp};
use crate::verbs::NodeId;

/// Result alias used throughout `o3-transport`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when moving bytes between nodes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A one-sided access reaches outside the region.
    #[error(
        "access out of bounds: region {region}, offset {offset}, length {len}, region length {region_len}"
    )]
    OutOfBounds {
        region: u64,
        offset: u64,
        len: u64,
        region_len: u64,
    },
    /// An atomic operation at an offset that is not 8-byte aligned.
    #[error("atomic access to region {region} at offset {offset} is not 8-byte aligned")]
    Misaligned { region: u64, offset: u64 },
    /// The access key in the descriptor does not match the region's key.
    #[error("bad access key for region {region}")]
    BadKey { region: u64 },
    /// The region's access flags do not permit the operation.
    #[error("region {region} does not permit a remote {op} ({access})")]
    AccessDenied {
        region: u64,
        op: RemoteOp,
        access: RegionAccess,
    },
    /// The data-plane handshake failed: the peer (or we) could not prove to
    /// hold the cluster token, so the connection was refused.
    #[error("connection with {peer} refused: {reason}")]
    Unauthenticated { peer: NodeId, reason: String },
    /// The region was deregistered (or never existed on that node).
    #[error("region {region} is gone (deregistered)")]
    RegionGone { region: u64 },
    /// The descriptor names a different node than the connection's peer.
    #[error("region {region} belongs to node {node}, but this connection goes to {peer}")]
    WrongNode {
        region: u64,
        node: NodeId,
        peer: NodeId,
    },
    /// The peer closed the connection or its process died.
    #[error("peer {peer} is gone: {reason}")]
    PeerGone { peer: NodeId, reason: String },
    /// No completion arrived within the configured operation timeout.
    #[error("{op} timed out after {after:?}")]
    Timeout { op: &'static str, after: Duration },
    /// An operating-system call failed.
    #[error("I/O error ({context}): {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Bytes received from a peer (or found in a shared region header) do not
    /// follow the wire format.
    #[error("protocol error with {peer}: {reason}")]
    Protocol { peer: NodeId, reason: String },
    /// The peer's request handler rejected a request.
    #[error("peer {peer} failed the request: {message}")]
    Remote { peer: NodeId, message: String },
    /// A work request was not executed because an earlier request in the
    /// same batch failed (RDMA semantics: the queue pair stops at the first
    /// error, later requests are flushed).
    #[error("work request {index} flushed after an earlier request in its batch failed")]
    Flushed { index: usize },
    /// No RDMA device is usable on this host (the `rdma` backend only).
    #[error("no RDMA device: {reason}")]
    NoDevice { reason: String },
    /// The caller passed something the transport cannot accept.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// Build an [`Error::Io`] with a description of what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Build an [`Error::Protocol`].
    pub fn protocol(peer: &NodeId, reason: impl Into<String>) -> Self {
        Error::Protocol {
            peer: peer.clone(),
            reason: reason.into(),
        }
    }

    /// Build an [`Error::PeerGone`].
    pub fn peer_gone(peer: &NodeId, reason: impl Into<String>) -> Self {
        Error::PeerGone {
            peer: peer.clone(),
            reason: reason.into(),
        }
    }

    /// True when the failure is about the connection (peer gone, timeout)
    /// rather than about one access, i.e. the connection should be replaced.
    pub fn is_connection_failure(&self) -> bool {
        matches!(
            self,
            Error::PeerGone { .. } | Error::Timeout { .. } | Error::Io { .. }
        )
    }
}
