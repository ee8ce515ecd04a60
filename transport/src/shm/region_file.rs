//! A shared-memory region file: a 4 KiB header followed by the region's
//! bytes, mapped by the owner and by every requester on the host.
//!
//! Header (little-endian u64 words, each accessed atomically):
//!
//! | offset | field  | meaning |
//! |--------|--------|---------|
//! | 0      | magic  | `O3SHMRG1` |
//! | 8      | region | region id |
//! | 16     | len    | data length in bytes |
//! | 24     | rkey   | access key |
//! | 32     | state  | 1 = live, 2 = deregistered (written last on creation) |
//! | 40     | access | [`RegionAccess::bits`]: bit 0 remote read, bit 1 remote write |
//!
//! Requesters check `rkey`, `state` and `access` before every access, so
//! setting `state` to deregistered revokes every mapping at once without any
//! code running in the requesters. `access` never changes after creation; a
//! requester maps a region without remote write read-only, so even a write
//! that slipped past the check would fault instead of changing a byte. A
//! file that is too short for its header or its stated length is rejected,
//! never mapped past its end.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use crate::access::RegionAccess;
use crate::error::{Error, Result};
use crate::region::RegionMemory;
use crate::verbs::NodeId;

/// Bytes before the region data (one page keeps the data page-aligned).
pub const HEADER_LEN: u64 = 4096;
/// Version 2 added `access`; a version-1 file is refused (bad magic).
const MAGIC: u64 = u64::from_le_bytes(*b"O3SHMRG2");
const LIVE: u64 = 1;
const GONE: u64 = 2;

const MAGIC_AT: usize = 0;
const REGION_AT: usize = 8;
const LEN_AT: usize = 16;
const RKEY_AT: usize = 24;
const STATE_AT: usize = 32;
const ACCESS_AT: usize = 40;

/// A mapped region file.
#[derive(Debug)]
pub struct RegionFile {
    map: Arc<MmapRaw>,
    pub region: u64,
    pub len: u64,
    pub rkey: u64,
    pub access: RegionAccess,
}

impl RegionFile {
    /// Create and map the file of a new region (owner side).
    pub fn create(
        path: &Path,
        region: u64,
        len: u64,
        rkey: u64,
        access: RegionAccess,
    ) -> Result<Self> {
        let ctx = |what: &str| format!("{what} {}", path.display());
        let total = len
            .checked_add(HEADER_LEN)
            .ok_or_else(|| Error::InvalidArgument(format!("region length {len} too large")))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io(ctx("create"), e))?;
        file.set_len(total).map_err(|e| Error::io(ctx("size"), e))?;
        let map = MmapOptions::new()
            .map_raw(&file)
            .map_err(|e| Error::io(ctx("map"), e))?;
        let created = RegionFile {
            map: Arc::new(map),
            region,
            len,
            rkey,
            access,
        };
        created.word(MAGIC_AT).store(MAGIC, Ordering::Relaxed);
        created.word(REGION_AT).store(region, Ordering::Relaxed);
        created.word(LEN_AT).store(len, Ordering::Relaxed);
        created.word(RKEY_AT).store(rkey, Ordering::Relaxed);
        created
            .word(ACCESS_AT)
            .store(access.bits(), Ordering::Relaxed);
        created.word(STATE_AT).store(LIVE, Ordering::Release);
        Ok(created)
    }

    /// Map an existing region file (requester side), writable only when
    /// its access flags grant remote writes. A missing file means the region
    /// is gone.
    pub fn open(path: &Path, region: u64, owner: &NodeId) -> Result<Self> {
        let opened = Self::open_mapped(path, region, owner, false)?;
        if opened.access.remote_write {
            return Self::open_mapped(path, region, owner, true);
        }
        Ok(opened)
    }

    fn open_mapped(path: &Path, region: u64, owner: &NodeId, writable: bool) -> Result<Self> {
        let file = match OpenOptions::new().read(true).write(writable).open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::RegionGone { region });
            }
            Err(e) => return Err(Error::io(format!("open {}", path.display()), e)),
        };
        let size = file_len(&file, path)?;
        if size < HEADER_LEN {
            return Err(Error::protocol(
                owner,
                format!("{}: {size} bytes, shorter than its header", path.display()),
            ));
        }
        let map = if writable {
            MmapOptions::new().map_raw(&file)
        } else {
            MmapOptions::new().map_raw_read_only(&file)
        }
        .map_err(|e| Error::io(format!("map {}", path.display()), e))?;
        let mut opened = RegionFile {
            map: Arc::new(map),
            region,
            len: 0,
            rkey: 0,
            access: RegionAccess::NONE,
        };
        let bad = |reason: String| Error::protocol(owner, format!("{}: {reason}", path.display()));
        if opened.word(STATE_AT).load(Ordering::Acquire) != LIVE {
            return Err(Error::RegionGone { region });
        }
        if opened.word(MAGIC_AT).load(Ordering::Relaxed) != MAGIC {
            return Err(bad("bad magic".into()));
        }
        let stored = opened.word(REGION_AT).load(Ordering::Relaxed);
        if stored != region {
            return Err(bad(format!("holds region {stored}, expected {region}")));
        }
        opened.len = opened.word(LEN_AT).load(Ordering::Relaxed);
        if opened
            .len
            .checked_add(HEADER_LEN)
            .is_none_or(|end| end > size)
        {
            return Err(bad(format!(
                "states length {} but the file has {size} bytes",
                opened.len
            )));
        }
        opened.rkey = opened.word(RKEY_AT).load(Ordering::Relaxed);
        let bits = opened.word(ACCESS_AT).load(Ordering::Relaxed);
        opened.access =
            RegionAccess::from_bits(bits).ok_or_else(|| bad(format!("access flags {bits:#x}")))?;
        Ok(opened)
    }

    fn word(&self, at: usize) -> &AtomicU64 {
        // SAFETY: every header offset is 8-byte aligned, inside the
        // HEADER_LEN bytes every mapped file has (checked on open, set on
        // create), and the page-aligned mapping lives as long as `self`.
        // Read-only mappings are only loaded from (`mark_gone` and the
        // stores of `create` run on the owner's writable mapping).
        unsafe { &*(self.map.as_mut_ptr().add(at) as *const AtomicU64) }
    }

    /// True while the owner has not deregistered the region.
    pub fn is_live(&self) -> bool {
        self.word(STATE_AT).load(Ordering::Acquire) == LIVE
    }

    /// Revoke the region for every requester (owner side).
    pub fn mark_gone(&self) {
        self.word(STATE_AT).store(GONE, Ordering::Release);
    }

    /// The region's data bytes.
    pub fn memory(&self) -> Result<RegionMemory> {
        let len = usize::try_from(self.len)
            .map_err(|_| Error::InvalidArgument(format!("region length {}", self.len)))?;
        // SAFETY: the mapping is at least HEADER_LEN + len bytes (checked on
        // open, sized on create), so the data pointer is in bounds and
        // non-null.
        let data = unsafe { self.map.as_mut_ptr().add(HEADER_LEN as usize) };
        let ptr =
            NonNull::new(data).ok_or_else(|| Error::InvalidArgument("null mapping".into()))?;
        // SAFETY: `len` bytes at `ptr` are valid for reads and writes while
        // the mapping (kept alive by the keepalive Arc) exists; the data
        // starts one page into a page-aligned mapping, so it is 8-byte
        // aligned; nothing takes Rust references to it.
        Ok(unsafe { RegionMemory::from_raw(ptr, len, Box::new(Arc::clone(&self.map))) })
    }
}

fn file_len(file: &File, path: &Path) -> Result<u64> {
    Ok(file
        .metadata()
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
        .len())
}

/// Map `len` bytes of the file at `path` as plain shared memory (no
/// header): a new file when `create` (it must not exist), else an existing
/// one that must be at least `len` long. Used for connection mailboxes.
pub fn map_shared(path: &Path, len: u64, create: bool) -> Result<RegionMemory> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(create)
        .open(path)
        .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    if create {
        file.set_len(len)
            .map_err(|e| Error::io(format!("size {}", path.display()), e))?;
    } else if file_len(&file, path)? < len {
        return Err(Error::InvalidArgument(format!(
            "{} is shorter than {len} bytes",
            path.display()
        )));
    }
    let map = MmapOptions::new()
        .len(len as usize)
        .map_raw(&file)
        .map_err(|e| Error::io(format!("map {}", path.display()), e))?;
    let ptr = NonNull::new(map.as_mut_ptr())
        .ok_or_else(|| Error::InvalidArgument("null mapping".into()))?;
    // SAFETY: the mapping is `len` bytes, page-aligned, lives as long as the
    // keepalive, and is only accessed through copies and atomics.
    Ok(unsafe { RegionMemory::from_raw(ptr, len as usize, Box::new(Arc::new(map))) })
}
