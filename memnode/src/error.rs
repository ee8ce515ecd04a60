//! Errors of the memory node core. Every variant names the owner, region or
//! image it concerns, so a control-plane or data-plane handler can turn it
//! into a reply without adding context.

use crate::images::ImageId;
use crate::pool::{OwnerId, RegionId};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An allocation of zero bytes.
    #[error("{owner} asked for an empty region")]
    EmptyRequest { owner: OwnerId },
    /// An allocation larger than the whole pool (it could never succeed).
    #[error("{owner} asked for {requested} bytes, more than the pool's {capacity}")]
    RequestTooLarge {
        owner: OwnerId,
        requested: u64,
        capacity: u64,
    },
    /// No free extent is large enough right now.
    #[error(
        "pool exhausted: {owner} asked for {requested} bytes, the largest free extent is {largest_free}"
    )]
    PoolExhausted {
        owner: OwnerId,
        requested: u64,
        largest_free: u64,
    },
    /// The data-plane fabric could not register the region's memory (e.g.
    /// the shm directory is full); nothing was allocated.
    #[error("cannot register a region of {bytes} bytes for {owner} with the data plane: {source}")]
    Register {
        owner: OwnerId,
        bytes: u64,
        #[source]
        source: o3_transport::Error,
    },
    /// No live region has this id (never allocated, or already released).
    #[error("unknown region {region} (asked by {owner})")]
    UnknownRegion { owner: OwnerId, region: RegionId },
    /// The region belongs to another owner; nothing was done.
    #[error("region {region} does not belong to {owner}")]
    WrongOwner { owner: OwnerId, region: RegionId },
    /// The descriptor's key, offset or length do not match the live region
    /// (a stale or forged descriptor); nothing was done.
    #[error("descriptor of region {region} does not match the region (asked by {owner})")]
    BadDescriptor { owner: OwnerId, region: RegionId },
    /// A local read or write outside the region.
    #[error(
        "access of {len} bytes at offset {offset} is outside region {region} of {region_len} bytes"
    )]
    OutOfBounds {
        region: RegionId,
        offset: u64,
        len: u64,
        region_len: u64,
    },
    /// A write into a region whose image is published (images are immutable).
    #[error("region {region} holds published {image}; it is read-only")]
    RegionPublished { region: RegionId, image: ImageId },
    /// The bytes in the region are not a valid memtable image.
    #[error("refused {image} in region {region}: {source}")]
    BadImage {
        region: RegionId,
        image: ImageId,
        #[source]
        source: o3_storage::Error,
    },
    /// A published image whose skiplist structure failed validation (its
    /// checksum matched at publish): lookups naming it are refused until
    /// its owner releases it.
    #[error("{image} in region {region} failed validation after publish: {reason}")]
    InvalidImage {
        region: RegionId,
        image: ImageId,
        reason: String,
    },
    /// The image is valid but its header disagrees with the publisher's
    /// description of it.
    #[error(
        "refused {image} in region {region}: {field} is {found} in the image, {expected} in the request"
    )]
    ImageMismatch {
        region: RegionId,
        image: ImageId,
        field: &'static str,
        expected: u64,
        found: u64,
    },
    /// The owner already published this image id somewhere else, or with
    /// another description.
    #[error("{owner} already published {image} in region {region}")]
    AlreadyPublished {
        owner: OwnerId,
        image: ImageId,
        region: RegionId,
    },
    /// The region already holds another published image.
    #[error("region {region} already holds {existing}; cannot publish {image} there")]
    RegionOccupied {
        region: RegionId,
        existing: ImageId,
        image: ImageId,
    },
    /// The owner has no published image with this id.
    #[error("{owner} has no published {image}")]
    UnknownImage { owner: OwnerId, image: ImageId },
    /// Iterating the merged images of a scan failed.
    #[error("scanning {images:?}: {source}")]
    Scan {
        images: Vec<ImageId>,
        #[source]
        source: o3_storage::Error,
    },
    /// A request that cannot be served as asked (e.g. an empty scan range).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Bytes that do not decode as a delegated-read message.
    #[error("cannot decode {message} at byte {offset}: {reason}")]
    Decode {
        message: &'static str,
        offset: usize,
        reason: String,
    },
}
