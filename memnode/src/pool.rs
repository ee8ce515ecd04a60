//! The memory pool: capacity carved into regions, one region per memtable
//! image a compute node ships here.
//!
//! The pool does capacity, placement and fragmentation accounting with a
//! first-fit free list over `[0, capacity)`; where a region's bytes live
//! depends on how the pool was built:
//!
//! - over one block of memory ([`Pool::new`], [`Pool::with_capacity`]): a
//!   region is the window `[offset, offset + len)` of that block (the
//!   in-process node that [`crate::client::Direct`] drives);
//! - over a data-plane fabric ([`Pool::registered`]): each region is its own
//!   registration with the fabric (`READ_WRITE`, a random transport key per
//!   region on every backend: an shm region file, a tcp or local region, an
//!   RDMA memory region), so the owner writes and reads it one-sidedly. The
//!   pool then allocates no memory of its own: the free list only accounts
//!   for the bytes the registrations hold.
//!
//! A region is owned by one compute node ([`OwnerId`]) and named by a
//! [`RegionDesc`] that carries a random 64-bit key; every control-plane
//! operation checks owner and key, so a node can neither guess nor reuse
//! another node's region. (One-sided operations are checked by the
//! transport against the registration's own key.)
//!
//! A released region leaves the region table and loses its registration at
//! once (its descriptors stop working), but its extent returns to the free
//! list — and its memory is dropped — only when the last reader holding it
//! (a lookup on its published image) finishes, so a lookup never reads
//! recycled bytes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use std::sync::atomic::{AtomicBool, Ordering};

use o3_transport::region::RegionMemory;
use o3_transport::{Fabric, RegionAccess};
use parking_lot::{Mutex, RwLock, RwLockReadGuard};

use crate::error::{Error, Result};
use crate::free_list::{ALIGN, FreeList, round_up};
use crate::images::ImageId;

/// A compute node, as identified by its lease (the control plane issues it;
/// this core trusts the caller to pass the authenticated one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnerId(pub u64);

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "owner {}", self.0)
    }
}

/// A region's id, unique for the pool's lifetime (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionId(pub u64);

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a compute node holds to name its region: all fields must match the
/// live region for any operation on it to proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegionDesc {
    pub region: RegionId,
    pub owner: OwnerId,
    /// Offset of the region's first byte from the start of the pool
    /// (a multiple of 4 KiB).
    pub offset: u64,
    /// Length as requested; the extent behind it is rounded up to 4 KiB.
    pub len: u64,
    /// Random; a descriptor with another key is refused.
    pub key: u64,
}

/// A snapshot of the pool's occupancy.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolStats {
    pub capacity: u64,
    /// Bytes in allocated extents (including released regions a lookup
    /// still reads).
    pub used: u64,
    pub free: u64,
    pub largest_free: u64,
    pub free_extents: usize,
    /// `1 − largest_free / free`: 0 when all free space is one extent,
    /// towards 1 when it is scattered in small pieces; 0 when nothing is free.
    pub fragmentation: f64,
    /// Live regions of every owner that has any.
    pub regions_per_owner: BTreeMap<OwnerId, usize>,
}

/// What happened to a region's bytes so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegionState {
    /// Allocated; the owner writes the image into it.
    Open,
    /// Holds a published image: read-only from now on.
    Published(ImageId),
    /// Released; kept alive only by lookups still reading it.
    Released,
}

/// A live region: its descriptor, the pool extent it accounts for, and the
/// memory behind it.
#[derive(Debug)]
pub(crate) struct Region {
    desc: RegionDesc,
    extent_len: u64,
    memory: Arc<RegionMemory>,
    /// Offset of the region's byte 0 in `memory` (its pool offset in a
    /// block-backed pool, 0 for a registration of its own).
    base: u64,
    registration: Option<Registration>,
    free: Arc<Mutex<FreeList>>,
    /// Writers into the region hold it shared; publish and release hold it
    /// exclusively, so a published image's bytes never change under a
    /// reader and a released region is never written.
    state: RwLock<RegionState>,
}

impl Region {
    pub(crate) fn desc(&self) -> &RegionDesc {
        &self.desc
    }

    pub(crate) fn state(&self) -> &RwLock<RegionState> {
        &self.state
    }

    /// The transport descriptor one-sided operations on the region use
    /// (for a fabric-backed pool).
    pub(crate) fn data_desc(&self) -> Option<&o3_transport::RegionDesc> {
        self.registration.as_ref().map(|r| &r.desc)
    }

    /// Revoke remote access (the region was released): later one-sided
    /// operations through its transport descriptor fail. The memory stays
    /// mapped for lookups still reading it.
    pub(crate) fn revoke(&self) {
        if let Some(registration) = &self.registration {
            registration.revoke();
        }
    }

    /// The region's bytes, viewed in place.
    ///
    /// # Safety
    /// Nobody may write the region while the slice lives: the caller holds
    /// the state lock exclusively, or the state is `Published` (the write
    /// path refuses published regions).
    pub(crate) unsafe fn bytes(&self) -> &[u8] {
        // SAFETY: `[base, base + len)` lies inside `self.memory` (a window
        // carved from `[0, capacity)` of a block at least `capacity` long,
        // or a registration of exactly `len` bytes at base 0), which
        // `self.memory` keeps alive and in place; the extent is not given
        // back to the free list before `self` drops; the caller excludes
        // writers.
        unsafe {
            std::slice::from_raw_parts(
                self.memory.as_ptr().add(self.base as usize),
                self.desc.len as usize,
            )
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        self.revoke();
        self.free
            .lock()
            .give_back(self.desc.offset, self.extent_len);
    }
}

/// A region's own registration with the data-plane fabric.
#[derive(Debug)]
struct Registration {
    fabric: Arc<dyn Fabric>,
    desc: o3_transport::RegionDesc,
    revoked: AtomicBool,
}

impl Registration {
    fn revoke(&self) {
        if self.revoked.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(e) = self.fabric.deregister(&self.desc) {
            // Nothing to undo: the region is gone from the table either way,
            // and a registration that refuses to go only keeps its memory.
            tracing::warn!(region = self.desc.region, error = %e, "cannot deregister a released region");
        }
    }
}

/// Where the regions' bytes live.
#[derive(Debug)]
enum Backing {
    /// Windows of one block.
    Block(Arc<RegionMemory>),
    /// A registration per region.
    Fabric(Arc<dyn Fabric>),
}

#[derive(Debug, Default)]
struct RegionTable {
    regions: HashMap<RegionId, Arc<Region>>,
    next_id: u64,
}

/// The pool and its region table. `Send + Sync`; every method may be called
/// from any request-handler thread.
#[derive(Debug)]
pub struct Pool {
    backing: Backing,
    capacity: u64,
    free: Arc<Mutex<FreeList>>,
    table: Mutex<RegionTable>,
}

impl Pool {
    /// A pool over `memory` (e.g. a region a transport backend registered);
    /// its capacity is the memory's length rounded down to 4 KiB.
    pub fn new(memory: Arc<RegionMemory>) -> Pool {
        let capacity = memory.len() as u64 / ALIGN * ALIGN;
        Pool::over(Backing::Block(memory), capacity)
    }

    /// A pool of `capacity` bytes (rounded down to 4 KiB) whose regions are
    /// each registered with `fabric` when allocated; the pool holds no
    /// memory itself.
    pub fn registered(capacity: u64, fabric: Arc<dyn Fabric>) -> Pool {
        Pool::over(Backing::Fabric(fabric), capacity / ALIGN * ALIGN)
    }

    fn over(backing: Backing, capacity: u64) -> Pool {
        Pool {
            backing,
            capacity,
            free: Arc::new(Mutex::new(FreeList::new(capacity))),
            table: Mutex::new(RegionTable::default()),
        }
    }

    /// A pool of `pool_size` zeroed bytes on the heap.
    pub fn with_capacity(pool_size: u64) -> Result<Pool> {
        let memory = RegionMemory::heap(pool_size)
            .map_err(|e| Error::InvalidRequest(format!("pool of {pool_size} bytes: {e}")))?;
        Ok(Pool::new(Arc::new(memory)))
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Carve a region of `bytes` bytes for `owner` (first fit, 4 KiB aligned).
    pub fn allocate(&self, owner: OwnerId, bytes: u64) -> Result<RegionDesc> {
        if bytes == 0 {
            return Err(Error::EmptyRequest { owner });
        }
        let too_large = || Error::RequestTooLarge {
            owner,
            requested: bytes,
            capacity: self.capacity,
        };
        let extent_len = round_up(bytes).ok_or_else(too_large)?;
        if extent_len > self.capacity {
            return Err(too_large());
        }
        let offset = {
            let mut free = self.free.lock();
            free.take(extent_len).ok_or_else(|| Error::PoolExhausted {
                owner,
                requested: bytes,
                largest_free: free.largest(),
            })?
        };
        let (memory, base, registration) = match &self.backing {
            Backing::Block(memory) => (Arc::clone(memory), offset, None),
            Backing::Fabric(fabric) => match fabric.register(bytes, RegionAccess::READ_WRITE) {
                Ok(local) => {
                    let registration = Registration {
                        fabric: Arc::clone(fabric),
                        desc: local.desc().clone(),
                        revoked: AtomicBool::new(false),
                    };
                    (Arc::clone(local.memory()), 0, Some(registration))
                }
                Err(source) => {
                    self.free.lock().give_back(offset, extent_len);
                    return Err(Error::Register {
                        owner,
                        bytes,
                        source,
                    });
                }
            },
        };
        let mut table = self.table.lock();
        table.next_id += 1;
        let desc = RegionDesc {
            region: RegionId(table.next_id),
            owner,
            offset,
            len: bytes,
            key: rand::random(),
        };
        let region = Arc::new(Region {
            desc,
            extent_len,
            memory,
            base,
            registration,
            free: Arc::clone(&self.free),
            state: RwLock::new(RegionState::Open),
        });
        table.regions.insert(desc.region, region);
        Ok(desc)
    }

    /// The live region `desc` names, checked against `owner` and the key.
    pub(crate) fn region(&self, owner: OwnerId, desc: &RegionDesc) -> Result<Arc<Region>> {
        let table = self.table.lock();
        let region = checked(&table, owner, desc)?;
        Ok(Arc::clone(region))
    }

    /// Remove `desc`'s region from the table (after the same checks as
    /// every access) and return it; its extent is freed when the last
    /// holder drops it.
    pub(crate) fn remove(&self, owner: OwnerId, desc: &RegionDesc) -> Result<Arc<Region>> {
        let mut table = self.table.lock();
        checked(&table, owner, desc)?;
        table
            .regions
            .remove(&desc.region)
            .ok_or(Error::UnknownRegion {
                owner,
                region: desc.region,
            })
    }

    /// Remove every region of `owner` from the table and return them.
    pub(crate) fn remove_all(&self, owner: OwnerId) -> Vec<Arc<Region>> {
        let mut table = self.table.lock();
        let ids: Vec<RegionId> = table
            .regions
            .iter()
            .filter(|(_, r)| r.desc.owner == owner)
            .map(|(&id, _)| id)
            .collect();
        ids.iter()
            .filter_map(|id| table.regions.remove(id))
            .collect()
    }

    /// Copy `data` into `desc`'s region at `offset` (the owner's local write
    /// path; the data plane's one-sided writes land in the same bytes).
    pub fn write(&self, owner: OwnerId, desc: &RegionDesc, offset: u64, data: &[u8]) -> Result<()> {
        let region = self.region(owner, desc)?;
        let state = writable(&region)?;
        let at = region.base + in_region(desc, offset, data.len())?;
        let copied = region.memory.copy_in(at, data);
        drop(state);
        outside_memory(copied, desc, offset, data.len())
    }

    /// Copy bytes of `desc`'s region at `offset` into `buf`.
    pub fn read(
        &self,
        owner: OwnerId,
        desc: &RegionDesc,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<()> {
        let region = self.region(owner, desc)?;
        let _state = region.state.read();
        let at = region.base + in_region(desc, offset, buf.len())?;
        outside_memory(region.memory.copy_out(at, buf), desc, offset, buf.len())
    }

    pub fn stats(&self) -> PoolStats {
        let mut regions_per_owner = BTreeMap::new();
        for region in self.table.lock().regions.values() {
            *regions_per_owner.entry(region.desc.owner).or_insert(0) += 1;
        }
        let free = self.free.lock();
        let (free_bytes, largest_free) = (free.free(), free.largest());
        let fragmentation = if free_bytes == 0 {
            0.0
        } else {
            1.0 - largest_free as f64 / free_bytes as f64
        };
        PoolStats {
            capacity: self.capacity,
            used: self.capacity - free_bytes,
            free: free_bytes,
            largest_free,
            free_extents: free.extent_count(),
            fragmentation,
            regions_per_owner,
        }
    }
}

fn checked<'t>(
    table: &'t RegionTable,
    owner: OwnerId,
    desc: &RegionDesc,
) -> Result<&'t Arc<Region>> {
    let region = table
        .regions
        .get(&desc.region)
        .ok_or(Error::UnknownRegion {
            owner,
            region: desc.region,
        })?;
    if region.desc.owner != owner {
        return Err(Error::WrongOwner {
            owner,
            region: desc.region,
        });
    }
    if region.desc != *desc {
        return Err(Error::BadDescriptor {
            owner,
            region: desc.region,
        });
    }
    Ok(region)
}

/// The region's state, held shared, if the region may be written.
fn writable(region: &Region) -> Result<RwLockReadGuard<'_, RegionState>> {
    let state = region.state.read();
    match *state {
        RegionState::Open => Ok(state),
        RegionState::Published(image) => Err(Error::RegionPublished {
            region: region.desc.region,
            image,
        }),
        RegionState::Released => Err(Error::UnknownRegion {
            owner: region.desc.owner,
            region: region.desc.region,
        }),
    }
}

/// `offset` again, if `[offset, offset + len)` lies inside the region.
fn in_region(desc: &RegionDesc, offset: u64, len: usize) -> Result<u64> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= desc.len => Ok(offset),
        _ => Err(Error::OutOfBounds {
            region: desc.region,
            offset,
            len: len as u64,
            region_len: desc.len,
        }),
    }
}

/// The extent lies inside the memory, so a copy cannot fail; if it ever did,
/// it failed without copying and says so rather than panicking.
fn outside_memory(copied: bool, desc: &RegionDesc, offset: u64, len: usize) -> Result<()> {
    if copied {
        return Ok(());
    }
    Err(Error::OutOfBounds {
        region: desc.region,
        offset,
        len: len as u64,
        region_len: desc.len,
    })
}
