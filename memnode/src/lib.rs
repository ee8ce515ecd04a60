//! o3-memnode: the core of the memory node, as a library.
//!
//! A memory node owns one large pool of registered memory. Compute nodes
//! allocate regions in it, write sealed memtable images into them (the
//! image format is its own wire format: `storage/docs/memtable_image_format.md`),
//! publish them, and then ask the memory node to search them for them
//! ("delegated reads") instead of pulling the bytes back. This crate is that
//! logic, in process, with no networking:
//!
//! - [`Pool`] (`pool.rs`, `free_list.rs`): the pool's capacity carved
//!   first-fit into 4 KiB-aligned regions named by [`RegionDesc`] (owner +
//!   random key), with occupancy and fragmentation in [`PoolStats`]; each
//!   region's bytes are its own registration with the data-plane
//!   [`Fabric`](o3_transport::Fabric) (or, without one, a window of one
//!   heap block);
//! - the image index (`images.rs`): [`ImageId`], [`ImageMeta`]; publish
//!   validates the image (header, checksum, structure, meta) before indexing;
//! - delegated reads (`lookup.rs`): batched [`GetRequest`] → per key and image
//!   [`Found`] with the entry's offset, and [`ScanRequest`] → a merged batch of
//!   internal entries plus a continuation;
//! - [`wire::Message`]: the versioned binary codec of those requests;
//! - [`MemoryNode`] (`node.rs`): all of the above behind one `Send + Sync`
//!   handle, every call on behalf of an [`OwnerId`], with typed [`Error`]s.
//!
//! A compute node's sealed memtable, written into a region of an
//! in-process memory node, published and searched there by a delegated
//! `get`:
//!
//! ```
//! use o3_memnode::{Found, GetRequest, ImageId, ImageMeta, KeyLookup, MemoryNode, OwnerId};
//! use o3_storage::key::ValueKind;
//! use o3_storage::memtable::Memtable;
//!
//! let node = MemoryNode::with_capacity(1 << 20)?;
//! let owner = OwnerId(7);
//! let memtable = Memtable::new(64 << 10, 0)?;
//! memtable.insert(b"k", 5, ValueKind::Value, b"v")?;
//! memtable.seal()?;
//! let image = memtable.image_bytes()?;
//! let region = node.allocate(owner, image.len() as u64)?;
//! node.write(owner, &region, 0, image)?;
//! let id = ImageId { shard: 0, serial: 1 };
//! node.publish(owner, &region, ImageMeta { id, entries: 1, largest_seq: 5 })?;
//!
//! let lookup = |key: &[u8]| KeyLookup { key: key.to_vec(), snapshot: 9, images: vec![id] };
//! let request = GetRequest { lookups: vec![lookup(b"k"), lookup(b"other")] };
//! let answers = node.get(owner, &request)?.answers;
//! assert!(matches!(&answers[0][0], Found::Value { sequence: 5, value, .. } if value == b"v"));
//! assert_eq!(answers[1][0], Found::Absent);
//! // Another owner cannot search this image.
//! assert!(node.get(OwnerId(8), &request).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Around the core, the control and data planes, the clients and the
//! binary:
//!
//! - [`ControlService`] (`control.rs`): the gRPC service
//!   `o3.memnode.v1.MemoryNode` (register, heartbeat, allocate, publish,
//!   release, stats), core errors mapped to gRPC statuses by [`status_of`];
//! - [`Leases`] (`lease.rs`): leases with a TTL; expired owners' regions are
//!   reclaimed with [`MemoryNode::release_all`];
//! - [`DataPlane`] (`data_plane.rs`): the data-plane fabric's request
//!   handler, serving delegated `get` and `scan` ([`wire`]) for the owner of
//!   the lease each request carries; one-sided writes and reads of regions
//!   need no code here (the fabric serves them on the registrations);
//! - [`server::serve`]: the service behind the cluster-token check, with the
//!   lease reaper, until shutdown;
//! - [`client`]: what a compute node uses ([`client::ImageStore`]) and its
//!   implementations: in process without transport, in process over the
//!   `local` transport, and a remote `o3-memnode` over gRPC + `shm`/`tcp`;
//! - [`config`]: the `o3-memnode` binary's TOML file and flags;
//! - [`flush_executor`]: the memory node executing flushes of images in its
//!   pool for an `o3-csa` scheduler ([`flush_executor::PoolImages`]);
//! - [`local`]: [`local::LocalMemoryNode`], a whole memory node (control,
//!   tcp data plane, flush executor) served from this process.

pub mod client;
pub mod config;
mod control;
pub mod data_plane;
mod error;
pub mod flush_executor;
mod free_list;
mod images;
mod lease;
pub mod local;
mod lookup;
mod node;
mod pool;
pub mod server;
pub mod wire;

pub use control::{ControlService, data_region_from_proto, data_region_to_proto, status_of};
pub use data_plane::{DataPlane, TransportKind};
pub use error::{Error, Result};
pub use free_list::ALIGN;
pub use images::{ImageId, ImageMeta};
pub use lease::{LeaseError, LeaseInfo, LeaseSecret, Leases};
pub use lookup::{
    Direction, Found, GetRequest, GetResponse, KeyLookup, ScanEntry, ScanRequest, ScanResponse,
    collect_scan,
};
pub use node::{MemoryNode, NodeStats};
pub use pool::{OwnerId, Pool, PoolStats, RegionDesc, RegionId};
