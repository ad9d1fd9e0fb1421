//! The process's allocator: mimalloc, asked for an alignment only when an allocation needs more
//! than mimalloc's own.
//!
//! The `mimalloc` crate's allocator passes every layout to `mi_malloc_aligned`. Its fast path
//! costs more than `mi_malloc`'s, and a block over 1 KiB whose size class is not a power of two
//! takes its over-allocating path, even at an alignment of 8. A proxied request makes some 44
//! allocations, 3 or 4 of them that large. Rust's own `System` allocator draws the same line over
//! libc's malloc.

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc, mi_zalloc_aligned,
};
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// The alignment every `mi_malloc` block of at least this size has: C's `max_align_t`, which a
/// malloc must honour. mimalloc keeps small blocks in multiples of two words, and every page's
/// first block at 16 bytes (`MI_MAX_ALIGN_SIZE`).
const PLAIN_ALIGN: usize = 16;

/// mimalloc, as the global allocator.
pub struct Mimalloc;

/// Whether a block of `size` bytes from the plain calls is aligned for `align`. A block smaller
/// than the alignment asked is not promised it (an 8-byte block is aligned to 8 only).
#[inline(always)]
fn plain(size: usize, align: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

// SAFETY: every pointer returned comes from mimalloc, aligned as the layout asks: by mimalloc's
// malloc contract where `plain` holds, by its aligned calls otherwise; `mi_free` and
// `mi_realloc` take a block from either kind of call.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if plain(layout.size(), layout.align()) {
            mi_malloc(layout.size()).cast()
        } else {
            mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if plain(layout.size(), layout.align()) {
            mi_zalloc(layout.size()).cast()
        } else {
            mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi_free(ptr.cast::<c_void>());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if plain(new_size, layout.align()) {
            mi_realloc(ptr.cast::<c_void>(), new_size).cast()
        } else {
            mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALIGNS: [usize; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 4096];

    fn sizes() -> impl Iterator<Item = usize> {
        (1..=160).chain([200, 255, 256, 257, 1000, 1024, 1025, 1500, 3000, 4096, 5000, 70_000, 1 << 20])
    }

    fn fill(ptr: *mut u8, len: usize, seed: u8) {
        for i in 0..len {
            // SAFETY: `ptr` is a live block of at least `len` bytes.
            unsafe { ptr.add(i).write(seed.wrapping_add(i as u8)) };
        }
    }

    fn holds(ptr: *const u8, len: usize, seed: u8) -> bool {
        // SAFETY: `ptr` is a live block of at least `len` bytes, all written by `fill`.
        (0..len).all(|i| unsafe { ptr.add(i).read() } == seed.wrapping_add(i as u8))
    }

    #[test]
    fn every_block_is_aligned_as_its_layout_asks_and_keeps_what_is_written() {
        for align in ALIGNS {
            for size in sizes() {
                let layout = Layout::from_size_align(size, align).expect("layout");
                // SAFETY: the layout's size is not zero; each block is freed once, with its layout.
                unsafe {
                    let ptr = Mimalloc.alloc(layout);
                    assert!(!ptr.is_null());
                    assert_eq!(ptr as usize % align, 0, "size {size}, align {align}");
                    fill(ptr, size, 7);
                    assert!(holds(ptr, size, 7));
                    Mimalloc.dealloc(ptr, layout);

                    let zeroed = Mimalloc.alloc_zeroed(layout);
                    assert_eq!(zeroed as usize % align, 0, "zeroed: size {size}, align {align}");
                    assert!((0..size).all(|i| zeroed.add(i).read() == 0), "zeroed: size {size}, align {align}");
                    Mimalloc.dealloc(zeroed, layout);
                }
            }
        }
    }

    #[test]
    fn a_block_grown_or_shrunk_keeps_its_alignment_and_its_bytes() {
        let news = [1, 7, 8, 15, 16, 17, 33, 100, 1025, 1500, 9000, 300_000];
        for align in ALIGNS {
            for size in [1, 5, 8, 16, 24, 100, 1500, 4096] {
                for new_size in news {
                    let layout = Layout::from_size_align(size, align).expect("layout");
                    // SAFETY: as above; `realloc` gets the block's own layout and a size that is
                    // not zero, and the block it answers is freed with the new size's layout.
                    unsafe {
                        let ptr = Mimalloc.alloc(layout);
                        fill(ptr, size, 3);
                        let moved = Mimalloc.realloc(ptr, layout, new_size);
                        assert!(!moved.is_null());
                        assert_eq!(moved as usize % align, 0, "{size} -> {new_size}, align {align}");
                        assert!(holds(moved, size.min(new_size), 3), "{size} -> {new_size}, align {align}");
                        fill(moved, new_size, 5);
                        Mimalloc.dealloc(moved, Layout::from_size_align(new_size, align).expect("layout"));
                    }
                }
            }
        }
    }

    #[test]
    fn the_plain_calls_are_taken_only_where_their_alignment_covers_the_layout() {
        assert!(plain(16, 16) && plain(1500, 8) && plain(1, 1) && plain(24, 8));
        assert!(!plain(4, 8), "a block smaller than its alignment");
        assert!(!plain(4096, 32) && !plain(256, 128), "past what malloc promises");
    }
}
