//! The index of published memtable images: which image lives in which
//! region, validated once and then searched in place.
//!
//! Publishing is the point where bytes a compute node wrote become an image
//! the memory node answers reads from, so it is where they are checked, in
//! two steps:
//!
//! 1. **At publish** (on the shipping path): the header (magic, version,
//!    length within the region), the CRC32C over the whole image, and the
//!    header against the publisher's [`ImageMeta`]. A refused image is not
//!    indexed and its region stays writable (the owner may write it again
//!    or release it).
//! 2. **Before the first search**: the skiplist structure
//!    (`MemtableImage::open`: every node and link in bounds, keys in order,
//!    levels consistent), which is what guarantees that searches stay in
//!    bounds and terminate. It starts on a background thread as soon as the
//!    image is published, and the first lookup that needs the image waits
//!    for it (a `OnceLock`), so no search ever runs over bytes whose
//!    structure was not validated. An image that fails it stays indexed,
//!    and every lookup naming it is refused with the reason until the owner
//!    releases it.
//!
//! Why the split: the structure check follows every link of the list (for
//! a 64 MiB image of ~450 k entries, tens of milliseconds of cache misses),
//! as long as the whole one-sided write of the image, while the checksum
//! runs at memory bandwidth. The checksum still proves at publish that the
//! bytes are exactly what the compute node sealed, and the sealer only
//! writes valid structures; what the deferred step can still catch is a
//! writer that stored a bad structure under a valid checksum (a bug, or a
//! hostile owner), and it catches it before any search. From publish until
//! release a region is read-only (see `node.rs` for what that does and does
//! not stop).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use o3_storage::memtable::{HEADER_LEN, ImageHeader, MemtableImage, image_checksum};
use parking_lot::{Condvar, Mutex, RwLock};

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
    // `image` and `bytes` are declared before `region` so they are dropped
    // first: they borrow the bytes `region` keeps alive. Never handed out
    // with the `'static` lifetime.
    /// The image once its structure was validated, or why it was not.
    image: OnceLock<std::result::Result<MemtableImage<'static>, String>>,
    /// The image's bytes `[0, used)`, checksum verified.
    bytes: &'static [u8],
    location: String,
    meta: ImageMeta,
    region: Arc<Region>,
    validator: Arc<Validator>,
}

/// The background validation of one image, so that releasing the image
/// can wait for it: once [`Validator::stop`] returns, the validating thread
/// holds no reference to the image (its region is freed as soon as lookups
/// let go, exactly as without a validator).
#[derive(Debug, Default)]
struct Validator {
    phase: Mutex<Phase>,
    finished: Condvar,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    #[default]
    Pending,
    Running,
    Finished,
}

impl Validator {
    /// Claim the validation; false when it was stopped first.
    fn start(&self) -> bool {
        let mut phase = self.phase.lock();
        let claimed = *phase == Phase::Pending;
        if claimed {
            *phase = Phase::Running;
        }
        claimed
    }

    fn finish(&self) {
        *self.phase.lock() = Phase::Finished;
        self.finished.notify_all();
    }

    /// Keep a pending validation from starting, or wait for a running one.
    fn stop(&self) {
        let mut phase = self.phase.lock();
        if *phase == Phase::Pending {
            *phase = Phase::Finished;
        }
        while *phase == Phase::Running {
            self.finished.wait(&mut phase);
        }
    }
}

impl PublishedImage {
    /// The image, its structure validated by the first caller (the others
    /// wait for it); an image whose structure is bad is refused.
    pub(crate) fn image(&self) -> Result<&MemtableImage<'_>> {
        let validated = self.image.get_or_init(|| {
            MemtableImage::open(self.bytes, &self.location).map_err(|e| e.to_string())
        });
        validated.as_ref().map_err(|reason| Error::InvalidImage {
            region: self.region.desc().region,
            image: self.meta.id,
            reason: reason.clone(),
        })
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
        let (header, bytes) = checksummed(bytes, &location).map_err(|source| Error::BadImage {
            region: region_id,
            image: meta.id,
            source,
        })?;
        check_meta(&header, &meta, region_id)?;
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
        let published = Arc::new(PublishedImage {
            image: OnceLock::new(),
            bytes,
            location,
            meta,
            region: Arc::clone(&region),
            validator: Arc::default(),
        });
        images.insert((owner, meta.id), Arc::clone(&published));
        *state = RegionState::Published(meta.id);
        drop(images);
        drop(state);
        validate_soon(&published);
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

    /// Drop `(owner, image)` from the index (its region is being
    /// released); returns once no background validation refers to it.
    pub(crate) fn unpublish(&self, owner: OwnerId, image: ImageId) {
        let removed = self.images.write().remove(&(owner, image));
        if let Some(published) = removed {
            published.validator.stop();
        }
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

/// The header of the image at the start of `bytes` and the image's bytes
/// `[0, used)`, once the length is within `bytes` and the checksum matches
/// (the structure is validated later, see the module doc).
fn checksummed<'b>(bytes: &'b [u8], location: &str) -> o3_storage::Result<(ImageHeader, &'b [u8])> {
    let header = ImageHeader::decode(bytes, location)?;
    let used = header.used as usize;
    let image = bytes
        .get(..used)
        .filter(|_| used >= HEADER_LEN)
        .ok_or_else(|| {
            o3_storage::Error::corruption(
                location,
                16,
                format!(
                    "image length {used} outside [{HEADER_LEN}, {}] (the region's length)",
                    bytes.len()
                ),
            )
        })?;
    o3_storage::error::check_crc(
        location,
        60,
        header.checksum,
        image_checksum(image).unwrap_or(0),
    )?;
    Ok((header, image))
}

/// Start validating `published`'s structure on a thread of its own, so it
/// is usually done before the first lookup needs it. Without a thread the
/// first lookup validates.
fn validate_soon(published: &Arc<PublishedImage>) {
    let image = Arc::downgrade(published);
    let validator = Arc::clone(&published.validator);
    let spawned = std::thread::Builder::new()
        .name("o3-memnode-validate".into())
        .spawn(move || {
            if !validator.start() {
                return;
            }
            // Dropped before `finish`: see `Validator`.
            if let Some(published) = image.upgrade()
                && let Err(e) = published.image()
            {
                tracing::warn!(error = %e, "published image failed validation");
            }
            validator.finish();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start validating an image; its first lookup will");
    }
}

fn check_meta(header: &ImageHeader, meta: &ImageMeta, region: crate::pool::RegionId) -> Result<()> {
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
