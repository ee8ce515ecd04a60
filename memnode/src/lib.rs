//! o3-memnode: the core of the memory node, as a library.
//!
//! A memory node owns one large pool of registered memory. Compute nodes
//! allocate regions in it, write sealed memtable images into them (the
//! image format is its own wire format: `storage/docs/memtable_image_format.md`),
//! publish them, and then ask the memory node to search them for them
//! ("delegated reads") instead of pulling the bytes back. This crate is that
//! logic, in process, with no networking:
//!
//! - [`Pool`] (`pool.rs`, `free_list.rs`): the pool over an `o3_transport`
//!   [`RegionMemory`](o3_transport::region::RegionMemory), carved first-fit
//!   into 4 KiB-aligned regions named by [`RegionDesc`] (owner + random key),
//!   with occupancy and fragmentation in [`PoolStats`];
//! - the image index (`images.rs`): [`ImageId`], [`ImageMeta`]; publish
//!   validates the image (header, checksum, structure, meta) before indexing;
//! - delegated reads (`lookup.rs`): batched [`GetRequest`] → per key and image
//!   [`Found`] with the entry's offset, and [`ScanRequest`] → a merged batch of
//!   internal entries plus a continuation;
//! - [`wire::Message`]: the versioned binary codec of those requests;
//! - [`MemoryNode`] (`node.rs`): all of the above behind one `Send + Sync`
//!   handle, every call on behalf of an [`OwnerId`], with typed [`Error`]s.
//!
//!
//! Around the core, the control plane and the binary:
//!
//! - [`ControlService`] (`control.rs`): the gRPC service
//!   `o3.memnode.v1.MemoryNode` (register, heartbeat, allocate, publish,
//!   release, stats), core errors mapped to gRPC statuses by [`status_of`];
//! - [`Leases`] (`lease.rs`): leases with a TTL; expired owners' regions are
//!   reclaimed with [`MemoryNode::release_all`];
//! - [`server::serve`]: the service behind the cluster-token check, with the
//!   lease reaper, until shutdown;
//! - [`config`]: the `o3-memnode` binary's TOML file and flags.
//!
//! Still to come: the data plane over `o3-transport` (one-sided writes into
//! regions, delegated reads with [`wire`]) and the compute side that offloads
//! sealed memtables and reads through them.

pub mod client;
pub mod config;
mod control;
mod error;
mod free_list;
mod images;
mod lease;
mod lookup;
mod node;
mod pool;
pub mod server;
pub mod wire;

pub use control::{ControlService, status_of};
pub use error::{Error, Result};
pub use free_list::ALIGN;
pub use images::{ImageId, ImageMeta};
pub use lease::{LeaseError, LeaseInfo, LeaseSecret, Leases};
pub use lookup::{
    Direction, Found, GetRequest, GetResponse, KeyLookup, ScanEntry, ScanRequest, ScanResponse,
};
pub use node::{MemoryNode, NodeStats};
pub use pool::{OwnerId, Pool, PoolStats, RegionDesc, RegionId};
