//! The process's global allocator: the system allocator, except that very large blocks are
//! reserved address space instead of committed memory.
//!
//! Why: the Kafka message codec (`kafka-protocol`) reserves a whole array before it decodes an
//! element, from a count read off the wire (`Vec::with_capacity(n)`). A malformed or hostile
//! response of a few bytes can announce two billion elements; the system allocator then
//! refuses the terabyte-sized request, and Rust answers a refused allocation by aborting the
//! process. Served from `mmap(MAP_NORESERVE)`, the same request costs only address space: the
//! decoder fails at the first missing element, before it has touched more pages than the
//! frame's bytes could fill (the frame itself is bounded by `native::frame::MAX_FRAME`), and
//! the block is unmapped. The exporter never needs a block this large otherwise: its largest
//! buffers are a few MiB. (Under `vm.overcommit_memory=2` the kernel ignores `MAP_NORESERVE`
//! and the reservation can still be refused.)

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks of at least this size are reserved with `mmap`.
const RESERVE_THRESHOLD: usize = 1 << 30;

/// Page size assumed for alignment: `mmap` returns page-aligned memory, and no Rust type the
/// exporter allocates asks for more than 4 KiB alignment (larger alignments go to the system
/// allocator).
const PAGE: usize = 4096;

/// See the module documentation.
pub struct ReservingAllocator;

#[global_allocator]
static GLOBAL: ReservingAllocator = ReservingAllocator;

fn reserved(layout: &Layout) -> bool {
    cfg!(target_os = "linux") && layout.size() >= RESERVE_THRESHOLD && layout.align() <= PAGE
}

#[cfg(target_os = "linux")]
fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint touches no existing memory;
    // the result is checked for MAP_FAILED before use.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

#[cfg(target_os = "linux")]
fn unmap(ptr: *mut u8, size: usize) {
    // SAFETY: `ptr` and `size` are exactly a mapping made by `map` (GlobalAlloc passes back the
    // layout the block was allocated with), and the caller no longer uses it.
    unsafe {
        libc::munmap(ptr.cast(), size);
    }
}

#[cfg(not(target_os = "linux"))]
fn map(_: usize) -> *mut u8 {
    std::ptr::null_mut()
}

#[cfg(not(target_os = "linux"))]
fn unmap(_: *mut u8, _: usize) {}

// SAFETY: every block is either the system allocator's (small or over-aligned layouts, decided
// by the layout alone, so `dealloc` and `realloc` route it back the same way) or an anonymous
// mapping of exactly `layout.size()` bytes, page-aligned and zero-filled.
unsafe impl GlobalAlloc for ReservingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if reserved(&layout) {
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees (non-zero size layout).
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if reserved(&layout) {
            map(layout.size())
        } else {
            // SAFETY: as in `alloc`.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if reserved(&layout) {
            unmap(ptr, layout.size())
        } else {
            // SAFETY: the block came from `System` with this layout (see `alloc`).
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` is a valid size for `layout.align()`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !reserved(&layout) && !reserved(&new_layout) {
            // SAFETY: the block came from `System` with `layout`.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: `new_layout` has a non-zero size (at least one side is over the threshold or
        // the caller's `new_size` is non-zero).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller size and do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn a_reservation_larger_than_memory_is_served_and_released() {
        // 64 GiB of u64 capacity: more than a test machine has, never touched.
        let mut v: Vec<u64> = Vec::with_capacity(8 << 30);
        v.push(7);
        assert_eq!(v[0], 7);
        let mut small = vec![1u8; 1000];
        small.resize(2_000_000, 2);
        assert_eq!(small[1_999_999], 2);
    }
}
