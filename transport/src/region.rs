//! Registered memory: the bytes behind a region and the owner's handle to it.
//!
//! Region memory is shared with agents the Rust compiler does not see (peers
//! writing through a shared mapping, a NIC, the tcp server thread), so it is
//! never exposed as a safe `&[u8]`/`&mut [u8]`: bytes move in and out with
//! raw copies, and 8-byte words are accessed as `AtomicU64`. As on RDMA,
//! concurrent unsynchronised writes to the same bytes leave unspecified
//! bytes there; coordination is the application's job (atomics, ownership
//! protocols such as "an image is immutable once published").

use std::any::Any;
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::verbs::RegionDesc;

/// A block of registered memory. The address is stable for its lifetime.
pub struct RegionMemory {
    ptr: NonNull<u8>,
    len: usize,
    /// Owns the storage `ptr` points into (a heap block, a mapping, ...).
    _keepalive: Box<dyn Any + Send + Sync>,
}

// SAFETY: the memory is only accessed through raw copies and atomics (see the
// module doc), never through references that assume exclusive access, and the
// keepalive that owns it is itself Send + Sync.
unsafe impl Send for RegionMemory {}
// SAFETY: as above.
unsafe impl Sync for RegionMemory {}

impl fmt::Debug for RegionMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegionMemory")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

impl RegionMemory {
    /// `len` zeroed bytes on the heap, 8-byte aligned.
    ///
    /// Allocated zeroed in one call (a large block comes as fresh zero pages
    /// from the OS, touched only when written), so registering a large
    /// region costs no pass over its bytes.
    pub fn heap(len: u64) -> Result<Self> {
        let too_large = || Error::InvalidArgument(format!("region length {len} too large"));
        let len = usize::try_from(len).map_err(|_| too_large())?;
        let words = zeroed_words(len.div_ceil(8)).ok_or_else(too_large)?;
        let ptr = NonNull::new(words.as_ptr() as *mut u8).unwrap_or(NonNull::dangling());
        // SAFETY: `words` owns `len.div_ceil(8) * 8 >= len` bytes at `ptr`,
        // is moved (not copied) into the keepalive so the address is stable,
        // and is 8-byte aligned.
        Ok(unsafe { Self::from_raw(ptr, len, Box::new(words)) })
    }

    /// Wrap memory owned by `keepalive`.
    ///
    /// # Safety
    /// `ptr..ptr + len` must be valid for reads and writes for as long as
    /// `keepalive` lives, must not move, must be 8-byte aligned, and must not
    /// be accessed through Rust references by anyone else.
    pub unsafe fn from_raw(
        ptr: NonNull<u8>,
        len: usize,
        keepalive: Box<dyn Any + Send + Sync>,
    ) -> Self {
        RegionMemory {
            ptr,
            len,
            _keepalive: keepalive,
        }
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length region.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Address of byte 0 (for RDMA registration and the descriptor's base).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    fn range(&self, offset: u64, len: usize) -> Option<usize> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(len)?;
        (end <= self.len).then_some(start)
    }

    /// Copy bytes at `offset` into `buf`; `false` (nothing copied) when the
    /// range is outside the memory.
    pub fn copy_out(&self, offset: u64, buf: &mut [u8]) -> bool {
        let Some(start) = self.range(offset, buf.len()) else {
            return false;
        };
        // SAFETY: `start + buf.len() <= self.len` (checked above), the memory
        // is valid for the keepalive's lifetime, and `buf` is a distinct Rust
        // allocation, so the ranges do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(start), buf.as_mut_ptr(), buf.len())
        };
        true
    }

    /// Copy `data` into the memory at `offset`; `false` (nothing copied) when
    /// the range is outside the memory.
    pub fn copy_in(&self, offset: u64, data: &[u8]) -> bool {
        let Some(start) = self.range(offset, data.len()) else {
            return false;
        };
        // SAFETY: as in `copy_out`, with the direction reversed.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(start), data.len())
        };
        true
    }

    /// The 8-byte word at `offset`, or `None` when misaligned or outside.
    pub fn word(&self, offset: u64) -> Option<&AtomicU64> {
        if !offset.is_multiple_of(8) {
            return None;
        }
        let start = self.range(offset, 8)?;
        // SAFETY: in bounds (checked), 8-byte aligned (base is aligned per the
        // constructor contract and offset % 8 == 0), valid while `self` lives;
        // all concurrent accesses to this word by this crate are atomic.
        Some(unsafe { &*(self.ptr.as_ptr().add(start) as *const AtomicU64) })
    }

    /// Execute a one-sided request against this memory after the requester's
    /// checks (`desc` is used only for error context). Shared by every
    /// backend that emulates the NIC in software.
    pub fn execute(
        &self,
        desc: &RegionDesc,
        request: &mut crate::verbs::WorkRequest<'_>,
    ) -> Result<crate::verbs::Completion> {
        use crate::verbs::{Completion, WorkRequest};
        let out_of_bounds = |offset: u64, len: usize| Error::OutOfBounds {
            region: desc.region,
            offset,
            len: len as u64,
            region_len: self.len as u64,
        };
        match request {
            WorkRequest::Read { offset, buf, .. } => {
                if !self.copy_out(*offset, buf) {
                    return Err(out_of_bounds(*offset, buf.len()));
                }
                Ok(Completion::Read { len: buf.len() })
            }
            WorkRequest::Write { offset, data, .. } => {
                if !self.copy_in(*offset, data) {
                    return Err(out_of_bounds(*offset, data.len()));
                }
                Ok(Completion::Write { len: data.len() })
            }
            WorkRequest::CompareAndSwap {
                offset,
                expected,
                new,
                ..
            } => {
                let word = self.atomic_word(desc, *offset)?;
                let old = match word.compare_exchange(
                    *expected,
                    *new,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                ) {
                    Ok(old) | Err(old) => old,
                };
                Ok(Completion::Atomic { old })
            }
            WorkRequest::FetchAdd { offset, add, .. } => {
                let word = self.atomic_word(desc, *offset)?;
                Ok(Completion::Atomic {
                    old: word.fetch_add(*add, Ordering::SeqCst),
                })
            }
        }
    }

    fn atomic_word(&self, desc: &RegionDesc, offset: u64) -> Result<&AtomicU64> {
        self.word(offset).ok_or(if !offset.is_multiple_of(8) {
            Error::Misaligned {
                region: desc.region,
                offset,
            }
        } else {
            Error::OutOfBounds {
                region: desc.region,
                offset,
                len: 8,
                region_len: self.len as u64,
            }
        })
    }
}

/// `count` zeroed words, or `None` when the size overflows or the
/// allocation fails.
fn zeroed_words(count: usize) -> Option<Box<[AtomicU64]>> {
    if count == 0 {
        return Some(Box::new([]));
    }
    let layout = std::alloc::Layout::array::<AtomicU64>(count).ok()?;
    // SAFETY: `layout` has a non-zero size (count > 0).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<AtomicU64>();
    if ptr.is_null() {
        return None;
    }
    // SAFETY: `ptr` was allocated by the global allocator with the layout
    // of `[AtomicU64; count]`, so the box may own and free it; all-zero
    // bytes are a valid `AtomicU64` (zero).
    Some(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, count)) })
}

/// The owner's handle to a registered region: its descriptor (to hand to
/// peers) and local access to its bytes. Cloning shares the same memory.
#[derive(Clone, Debug)]
pub struct LocalRegion {
    desc: RegionDesc,
    memory: Arc<RegionMemory>,
}

impl LocalRegion {
    /// Pair a descriptor with its memory (backends call this in `register`).
    pub fn new(desc: RegionDesc, memory: Arc<RegionMemory>) -> Self {
        LocalRegion { desc, memory }
    }

    /// The descriptor peers use to access this region.
    pub fn desc(&self) -> &RegionDesc {
        &self.desc
    }

    /// The region's memory.
    pub fn memory(&self) -> &Arc<RegionMemory> {
        &self.memory
    }

    /// The length in bytes.
    pub fn len(&self) -> u64 {
        self.desc.len
    }

    /// True for a zero-length region.
    pub fn is_empty(&self) -> bool {
        self.desc.len == 0
    }

    /// Copy bytes at `offset` into `buf`.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.desc.check_range(offset, buf.len() as u64)?;
        self.memory
            .copy_out(offset, buf)
            .then_some(())
            .ok_or_else(|| self.out_of_bounds(offset, buf.len()))
    }

    /// Copy `data` into the region at `offset`.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.desc.check_range(offset, data.len() as u64)?;
        self.memory
            .copy_in(offset, data)
            .then_some(())
            .ok_or_else(|| self.out_of_bounds(offset, data.len()))
    }

    /// The 8-byte word at `offset` (8-byte aligned), shared with remote
    /// atomics.
    pub fn word(&self, offset: u64) -> Result<&AtomicU64> {
        self.desc.check_atomic(offset)?;
        self.memory
            .word(offset)
            .ok_or_else(|| self.out_of_bounds(offset, 8))
    }

    /// View the region's bytes in place (e.g. to search a published memtable
    /// image without copying it).
    ///
    /// # Safety
    /// Nobody (local or remote) may write the region while the returned slice
    /// is alive.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: valid for `len` bytes while `self.memory` lives; the caller
        // guarantees there are no concurrent writers.
        unsafe { std::slice::from_raw_parts(self.memory.as_ptr(), self.memory.len()) }
    }

    fn out_of_bounds(&self, offset: u64, len: usize) -> Error {
        Error::OutOfBounds {
            region: self.desc.region,
            offset,
            len: len as u64,
            region_len: self.memory.len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verbs::{Completion, NodeId, WorkRequest};

    fn region(len: u64) -> LocalRegion {
        let memory = Arc::new(RegionMemory::heap(len).unwrap());
        let desc = RegionDesc {
            node: NodeId::from("n"),
            region: 1,
            base: memory.as_ptr() as u64,
            len,
            rkey: 7,
            access: crate::access::RegionAccess::READ_WRITE,
        };
        LocalRegion::new(desc, memory)
    }

    #[test]
    fn heap_memory_is_zeroed_and_round_trips() {
        let r = region(13);
        let mut buf = [1u8; 13];
        r.read(0, &mut buf).unwrap();
        assert_eq!(buf, [0u8; 13]);
        r.write(5, b"abcdefgh").unwrap();
        let mut out = [0u8; 8];
        r.read(5, &mut out).unwrap();
        assert_eq!(&out, b"abcdefgh");
    }

    #[test]
    fn out_of_range_copies_are_rejected() {
        let r = region(16);
        assert!(matches!(
            r.write(9, &[0u8; 8]),
            Err(Error::OutOfBounds {
                offset: 9,
                len: 8,
                ..
            })
        ));
        assert!(matches!(
            r.read(u64::MAX, &mut [0u8; 2]),
            Err(Error::OutOfBounds { .. })
        ));
        assert!(matches!(r.word(4), Err(Error::Misaligned { .. })));
        assert!(matches!(r.word(16), Err(Error::OutOfBounds { .. })));
    }

    #[test]
    fn execute_applies_atomics() {
        let r = region(16);
        let desc = r.desc().clone();
        let mut add = WorkRequest::FetchAdd {
            remote: &desc,
            offset: 8,
            add: 5,
        };
        assert_eq!(
            r.memory().execute(&desc, &mut add).unwrap(),
            Completion::Atomic { old: 0 }
        );
        let mut cas = WorkRequest::CompareAndSwap {
            remote: &desc,
            offset: 8,
            expected: 5,
            new: 9,
        };
        assert_eq!(
            r.memory().execute(&desc, &mut cas).unwrap(),
            Completion::Atomic { old: 5 }
        );
        assert_eq!(r.word(8).unwrap().load(Ordering::SeqCst), 9);
    }
}
