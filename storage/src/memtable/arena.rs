//! The live memtable's byte arena: one zeroed anonymous mapping of fixed
//! capacity that never grows or moves, so offsets (and slices handed to
//! readers) stay valid for the memtable's lifetime. The mapping starts on a
//! page boundary, so an offset's position within its cache line is known
//! from the offset alone (the writer uses it to place nodes, and the bytes
//! it writes do not depend on where the mapping landed).
//!
//! Access discipline, which makes sharing it between one writer and many
//! readers sound:
//! - skiplist links are only ever accessed as `AtomicU32` (4-aligned, see
//!   `node.rs`), with Release stores that publish a node and Acquire loads
//!   that follow it;
//! - every other byte is written exactly once with plain writes, by the single
//!   writer, *before* anything that makes it reachable (a link to its node, or
//!   the `sealed` flag for the header), and is only read after that.
//!
//! So plain reads never race with plain writes.

use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;

use memmap2::MmapMut;

/// A fixed-size zeroed mapping, accessed only through raw pointers.
#[derive(Debug)]
pub(crate) struct Arena {
    base: NonNull<u8>,
    capacity: usize,
    /// The mapping `base` points into; unmapped when the arena drops. Never
    /// touched through its own API after `new`.
    _map: MmapMut,
}

// SAFETY: the arena is plain memory owned by this value; the access rules in
// the module doc (atomic links, write-once-before-publish bytes) are what make
// concurrent use from several threads free of data races.
unsafe impl Send for Arena {}
// SAFETY: as above; `&Arena` only offers unsafe accessors whose contracts
// carry those rules.
unsafe impl Sync for Arena {}

impl Arena {
    /// Map `capacity` zeroed bytes (`capacity > 0`); `None` when the system
    /// refuses the mapping. Pages are only backed as they are first written.
    pub fn new(capacity: usize) -> Option<Arena> {
        if capacity == 0 {
            return None;
        }
        let mut map = MmapMut::map_anon(capacity).ok()?;
        advise_huge_pages(&map);
        let base = NonNull::new(map.as_mut_ptr())?;
        Some(Arena {
            base,
            capacity,
            _map: map,
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Hint the CPU to load the cache line holding byte `at` (`at` within
    /// the arena); a no-op where no prefetch instruction is wired up.
    #[inline]
    pub fn prefetch(&self, at: usize) {
        debug_assert!(at < self.capacity());
        crate::prefetch::prefetch_ptr(self.base.as_ptr().wrapping_add(at));
    }

    /// Copy `bytes` into the arena at `at`.
    ///
    /// # Safety
    /// `[at, at + bytes.len())` lies inside the arena, holds no link, and no
    /// other thread reads it until this write is published (happens-before)
    /// to that thread.
    pub unsafe fn write(&self, at: usize, bytes: &[u8]) {
        debug_assert!(at + bytes.len() <= self.capacity());
        // SAFETY: in bounds and unobserved by the caller's contract; `bytes`
        // cannot overlap the arena because no `&mut` to it is ever handed out.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.as_ptr().add(at), bytes.len())
        }
    }

    /// The arena bytes `[at, at + len)`.
    ///
    /// # Safety
    /// The range lies inside the arena, every plain byte in it was written
    /// (and published to this thread) before the call, and no plain write
    /// touches it while the slice lives. Links inside the range may still be
    /// loaded atomically by others, but must not be stored to while the slice
    /// lives.
    pub unsafe fn slice(&self, at: usize, len: usize) -> &[u8] {
        debug_assert!(at + len <= self.capacity());
        // SAFETY: in bounds, initialised (the allocation is zeroed) and not
        // written concurrently, by the caller's contract.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(at), len) }
    }

    /// The link at `pos`.
    ///
    /// # Safety
    /// `pos` is 4-aligned, `pos + 4` is inside the arena, and the four bytes
    /// are a link: they are never accessed non-atomically while another
    /// thread may store to them.
    pub unsafe fn link(&self, pos: usize) -> &AtomicU32 {
        debug_assert!(pos.is_multiple_of(4) && pos + 4 <= self.capacity());
        // SAFETY: aligned, in bounds, valid for the arena's lifetime, and only
        // accessed atomically while shared, by the caller's contract.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(pos).cast::<u32>()) }
    }
}

/// Ask the kernel to back the arena with transparent huge pages. Inserts
/// walk the skiplist through random offsets of the whole arena; with 4 KiB
/// pages nearly every step beyond the cached top levels also misses the TLB.
/// Pages are still only faulted in as the arena fills (2 MiB at a time), so
/// resident memory grows with use as before. Advice only: a kernel without
/// THP (or with it disabled) ignores it, and its failure changes nothing but
/// speed.
fn advise_huge_pages(map: &MmapMut) {
    #[cfg(target_os = "linux")]
    if let Err(e) = map.advise(memmap2::Advice::HugePage) {
        tracing::debug!("memtable arena: no transparent huge pages: {e}");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = map;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn starts_zeroed_and_round_trips_bytes_and_links() {
        let a = Arena::new(64).unwrap();
        assert_eq!(a.capacity(), 64);
        // SAFETY: single-threaded test, ranges in bounds, link bytes disjoint
        // from plain bytes.
        unsafe {
            assert!(a.slice(0, 64).iter().all(|&b| b == 0));
            a.write(8, b"hello");
            assert_eq!(a.slice(8, 5), b"hello");
            a.link(16).store(0x0403_0201, Ordering::Release);
            assert_eq!(a.slice(16, 4), &[1, 2, 3, 4]);
        }
        assert!(Arena::new(0).is_none());
    }
}
