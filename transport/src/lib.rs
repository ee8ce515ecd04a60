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
