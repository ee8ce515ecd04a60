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
//! Still to come: the gRPC control plane (register/lease,
//! allocate, publish, release, stats, lease expiry calling
//! [`MemoryNode::release_all`]), the data plane over `o3-transport`
//! (one-sided writes into regions, delegated reads with [`wire`]), the
//! `o3-memnode` binary, and the compute side that offloads sealed memtables
//! and reads through them.

mod error;
mod free_list;
mod images;
mod lookup;
mod node;
mod pool;
pub mod wire;

pub use error::{Error, Result};
pub use free_list::ALIGN;
pub use images::{ImageId, ImageMeta};
pub use lookup::{
    Direction, Found, GetRequest, GetResponse, KeyLookup, ScanEntry, ScanRequest, ScanResponse,
};
pub use node::{MemoryNode, NodeStats};
pub use pool::{OwnerId, Pool, PoolStats, RegionDesc, RegionId};
