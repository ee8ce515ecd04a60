//! Software prefetch: a hint that lets the CPU start loading a cache line
//! while the caller does independent work, so that several misses of one
//! lookup (a bloom line, an index group, a block handle) overlap instead of
//! following one another.

/// Cache line size assumed when stepping through a slice.
const LINE: usize = 64;

/// Hint the CPU to load the cache line holding `ptr`; a no-op where no
/// prefetch instruction is wired up. Any address is allowed: a prefetch
/// reads nothing architecturally and cannot fault.
#[inline(always)]
pub(crate) fn prefetch_ptr(ptr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is a hint; it dereferences nothing and cannot
    // fault whatever the address.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(ptr.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

/// Prefetch every cache line `items` occupies.
#[inline(always)]
pub(crate) fn prefetch_slice<T>(items: &[T]) {
    let bytes = std::mem::size_of_val(items);
    if bytes == 0 {
        return;
    }
    let start = items.as_ptr().cast::<u8>();
    let first_line = start as usize & !(LINE - 1);
    let last_line = (start as usize + bytes - 1) & !(LINE - 1);
    let mut line = first_line;
    while line <= last_line {
        // The address only needs to fall inside the line; step from the
        // slice start so the pointer keeps its provenance.
        prefetch_ptr(start.wrapping_add(line.wrapping_sub(start as usize)));
        line += LINE;
    }
}
