//! The index of published memtable images: which image lives in which
//! region, validated once at publish and then searched in place.
//!
//! Publishing is the point where bytes a compute node wrote become an image
//! the memory node answers reads from, so it is where they are checked:
//! `MemtableImage::open` verifies header, checksum and skiplist structure,
//! and the header must agree with the publisher's [`ImageMeta`]. A refused
//! image is not indexed and its region stays writable (the owner may write
//! it again or release it). From publish until release a region is
//! read-only.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use o3_storage::memtable::MemtableImage;
use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::pool::{OwnerId, Region, RegionState};

/// A compute node's name for a sealed memtable image (as in o3-compute's
/// `ImageId`): unique per owner for as long as its database is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageId {
    pub shard: u32,
    pub serial: u64,
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "image {} of shard {}", self.serial, self.shard)
    }
}

/// What the publisher says the region holds; checked against the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageMeta {
    pub id: ImageId,
    pub entries: u64,
    pub largest_seq: u64,
}

/// An indexed image. Holding it keeps its region's extent allocated (see
/// `pool.rs`), so the bytes `image` searches stay valid and unchanged.
#[derive(Debug)]
pub(crate) struct PublishedImage {
    // Declared before `region` so it is dropped first: it borrows the bytes
    // `region` keeps alive. Never handed out with the `'static` lifetime.
    image: MemtableImage<'static>,
    meta: ImageMeta,
    region: Arc<Region>,
}

impl PublishedImage {
    pub(crate) fn image(&self) -> &MemtableImage<'_> {
        &self.image
    }

    pub(crate) fn id(&self) -> ImageId {
        self.meta.id
    }
}

#[derive(Debug, Default)]
pub(crate) struct ImageIndex {
    images: RwLock<HashMap<(OwnerId, ImageId), Arc<PublishedImage>>>,
}

impl ImageIndex {
    /// Validate the image `region` holds against `meta` and index it under
    /// `(owner, meta.id)`. `region` was checked to belong to `owner`.
    /// Publishing the same image into the same region again succeeds and
    /// changes nothing (a retried call).
    pub(crate) fn publish(
        &self,
        owner: OwnerId,
        region: Arc<Region>,
        meta: ImageMeta,
    ) -> Result<()> {
        let region_id = region.desc().region;
        // Exclusive: no write into the region while it is validated, and a
        // concurrent release either happened before (refused below) or
        // waits and then unpublishes.
        let mut state = region.state().write();
        match *state {
            RegionState::Open => {}
            RegionState::Released => {
                return Err(Error::UnknownRegion {
                    owner,
                    region: region_id,
                });
            }
            RegionState::Published(existing) if existing != meta.id => {
                return Err(Error::RegionOccupied {
                    region: region_id,
                    existing,
                    image: meta.id,
                });
            }
            RegionState::Published(_) => {
                return match self.images.read().get(&(owner, meta.id)) {
                    Some(published) if published.meta == meta => Ok(()),
                    _ => Err(Error::AlreadyPublished {
                        owner,
                        image: meta.id,
                        region: region_id,
                    }),
                };
            }
        }
        self.refuse_duplicate(owner, meta.id)?;
        // SAFETY: the state lock is held exclusively, so nobody writes the
        // region now, and from the moment the state becomes `Published`
        // below the write path refuses it until the region is released. The
        // `'static` borrow is stored next to the `Arc<Region>` that keeps the
        // bytes alive and in place, and only ever lent out re-borrowed to
        // the `PublishedImage` (see `PublishedImage::image`).
        let bytes: &'static [u8] = unsafe { &*std::ptr::from_ref::<[u8]>(region.bytes()) };
        let location = format!("{} in region {region_id} of {owner}", meta.id);
        let image = MemtableImage::open(bytes, &location).map_err(|source| Error::BadImage {
            region: region_id,
            image: meta.id,
            source,
        })?;
        check_meta(image.header(), &meta, region_id)?;
        let mut images = self.images.write();
        // Re-checked under the write lock: another region may have published
        // the same id while this one was validated.
        if let Some(other) = images.get(&(owner, meta.id)) {
            return Err(Error::AlreadyPublished {
                owner,
                image: meta.id,
                region: other.region.desc().region,
            });
        }
        images.insert(
            (owner, meta.id),
            Arc::new(PublishedImage {
                image,
                meta,
                region: Arc::clone(&region),
            }),
        );
        *state = RegionState::Published(meta.id);
        Ok(())
    }

    fn refuse_duplicate(&self, owner: OwnerId, image: ImageId) -> Result<()> {
        match self.images.read().get(&(owner, image)) {
            Some(other) => Err(Error::AlreadyPublished {
                owner,
                image,
                region: other.region.desc().region,
            }),
            None => Ok(()),
        }
    }

    /// Drop `(owner, image)` from the index (its region is being released).
    pub(crate) fn unpublish(&self, owner: OwnerId, image: ImageId) {
        self.images.write().remove(&(owner, image));
    }

    /// The published images `ids` of `owner`, in the order asked.
    pub(crate) fn resolve(
        &self,
        owner: OwnerId,
        ids: &[ImageId],
    ) -> Result<Vec<Arc<PublishedImage>>> {
        let images = self.images.read();
        ids.iter()
            .map(|&image| {
                images
                    .get(&(owner, image))
                    .cloned()
                    .ok_or(Error::UnknownImage { owner, image })
            })
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.images.read().len()
    }
}

fn check_meta(
    header: &o3_storage::memtable::ImageHeader,
    meta: &ImageMeta,
    region: crate::pool::RegionId,
) -> Result<()> {
    let fields = [
        ("shard", u64::from(meta.id.shard), u64::from(header.shard)),
        ("entries", meta.entries, header.entries),
        ("largest sequence", meta.largest_seq, header.largest_seq),
    ];
    for (field, expected, found) in fields {
        if expected != found {
            return Err(Error::ImageMismatch {
                region,
                image: meta.id,
                field,
                expected,
                found,
            });
        }
    }
    Ok(())
}
