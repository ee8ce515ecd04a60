//! `o3-transport` moves bytes between o3 nodes.
//!
//! The data plane mirrors RDMA verbs ([`verbs`]): a node registers memory
//! ([`verbs::Fabric::register`] with [`access::RegionAccess`] flags →
//! [`region::LocalRegion`] with a [`verbs::RegionDesc`]), peers perform
//! one-sided reads, writes and atomics on it and exchange two-sided messages
//! over a [`verbs::Connection`]. Every connection is bound to an identity
//! proven with the cluster token ([`identity`], [`handshake`]); requests are
//! served concurrently ([`dispatch`]); waits park or busy-poll ([`poll`]);
//! small calls between processes of one host travel through a
//! shared-memory mailbox (`mailbox`, used by [`shm`] and, in-process, by
//! [`local`]).
//! Backends: [`local`] (in-process, the embedded default), [`shm`] (shared
//! memory files mapped by every process on a host), [`tcp`] (any host; a
//! server thread emulates the NIC) and `rdma` (feature `rdma`). [`link`]
//! wraps any connection with a latency and bandwidth model.
//! [`conformance`] is the one test suite every backend must pass.
//!
//! The control plane (gRPC, cluster-token auth) lives in [`control`].
//!
//! Two nodes of the in-process [`local`] backend: the owner serves
//! two-sided calls and registers a region that peers may only read; the
//! peer proves it holds the cluster token when it connects, then calls the
//! owner and reads the region one-sidedly:
//!
//! ```
//! use std::sync::Arc;
//!
//! use o3_transport::control::ClusterToken;
//! use o3_transport::local::LocalNetwork;
//! use o3_transport::verbs::no_requests;
//! use o3_transport::{ConnectOptions, Fabric, FabricOptions, PeerIdentity, RegionAccess};
//!
//! let options = FabricOptions::new(ClusterToken::new("doc-token")?);
//! let network = LocalNetwork::new();
//! let greet = |from: &PeerIdentity, request: &[u8]| -> Result<Vec<u8>, String> {
//!     Ok([request, b" from ", from.node.0.as_bytes()].concat())
//! };
//! let owner = network.node("owner", Arc::new(greet), options.clone())?;
//! let region = owner.register(4096, RegionAccess::READ_ONLY)?;
//! region.write(0, b"published")?;
//!
//! let peer = network.node("peer", no_requests(), options)?;
//! let conn = peer.connect(owner.node(), &ConnectOptions::default())?;
//! assert_eq!(conn.call(b"hello")?, b"hello from local:peer");
//! let mut buf = [0u8; 9];
//! conn.read(region.desc(), 0, &mut buf)?;
//! assert_eq!(&buf, b"published");
//! // The region's access flags are checked on every one-sided operation.
//! assert!(conn.write(region.desc(), 0, b"overwrite").is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod access;
pub mod error;
pub mod identity;
pub mod poll;
pub mod region;
pub mod verbs;

pub mod conformance;
pub mod host;

mod accept;
mod batch_codec;
pub mod dispatch;
pub mod handshake;
pub mod link;
pub mod local;
mod mailbox;
mod registry;
mod reply_slot;
pub mod shm;
mod socket;
mod stream;
pub mod tcp;
pub mod wire;

pub mod control;
#[cfg(feature = "rdma")]
pub mod rdma;

pub use access::{RegionAccess, RemoteOp};
pub use error::{Error, Result};
pub use identity::{AuthMethod, Credentials, PeerIdentity};
pub use poll::PollMode;
pub use region::{LocalRegion, RegionMemory};
pub use verbs::{
    Completion, ConnectOptions, Connection, Fabric, FabricOptions, InboundConnection, NodeId,
    PendingCall, RegionDesc, RequestHandler, WorkRequest,
};
