// Copyright 2019 Octavian Oncescu

#![no_std]

//! A drop-in global allocator wrapper around the [mimalloc](https://github.com/microsoft/mimalloc) allocator.
//! Mimalloc is a general purpose, performance oriented allocator built by Microsoft.
//!
//! ## Usage
//! ```rust,ignore
//! use mimalloc::MiMalloc;
//!
//! #[global_allocator]
//! static GLOBAL: MiMalloc = MiMalloc;
//! ```
//!
//! ## Usage with secure mode
//! Using secure mode adds guard pages,
//! randomized allocation, encrypted free lists, etc. The performance penalty is usually
//! around 10% according to [mimalloc's](https://github.com/microsoft/mimalloc)
//! own benchmarks.
//!
//! To enable secure mode, put in `Cargo.toml`:
//! ```toml
//! [dependencies]
//! mimalloc = { version = "*", features = ["secure"] }
//! ```

extern crate libmimalloc_sys as ffi;

#[cfg(feature = "extended")]
mod extended;

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;
use ffi::*;

/// Drop-in mimalloc global allocator.
///
/// ## Usage
/// ```rust,ignore
/// use mimalloc::MiMalloc;
///
/// #[global_allocator]
/// static GLOBAL: MiMalloc = MiMalloc;
/// ```
pub struct MiMalloc;

// Switchyard patch: every mimalloc block is aligned to at least a word (its size classes
// are whole words and its pages start aligned), so a layout aligned to 8 bytes or less
// needs only the plain `mi_malloc` family. The `_aligned` entry points take mimalloc
// v3's generic path, an over-allocation that misses the size-class fast path, for every
// block over 1 KiB whose size class is not a power of two and for every small one whose
// page has no free block left. Blocks of 24, 40 or 56 bytes are not 16-aligned, so
// larger alignments keep the `_aligned` entry points.
const WORD: usize = core::mem::size_of::<usize>();

#[inline]
fn plain(align: usize) -> bool {
    align <= WORD
}

unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if plain(layout.align()) {
            mi_malloc(layout.size()) as *mut u8
        } else {
            mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if plain(layout.align()) {
            mi_zalloc(layout.size()) as *mut u8
        } else {
            mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi_free(ptr as *mut c_void);
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if plain(layout.align()) {
            mi_realloc(ptr as *mut c_void, new_size) as *mut u8
        } else {
            mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_frees_allocated_memory() {
        unsafe {
            let layout = Layout::from_size_align(8, 8).unwrap();
            let alloc = MiMalloc;

            let ptr = alloc.alloc(layout);
            alloc.dealloc(ptr, layout);
        }
    }

    #[test]
    fn it_frees_allocated_big_memory() {
        unsafe {
            let layout = Layout::from_size_align(1 << 20, 32).unwrap();
            let alloc = MiMalloc;

            let ptr = alloc.alloc(layout);
            alloc.dealloc(ptr, layout);
        }
    }

    #[test]
    fn it_frees_zero_allocated_memory() {
        unsafe {
            let layout = Layout::from_size_align(8, 8).unwrap();
            let alloc = MiMalloc;

            let ptr = alloc.alloc_zeroed(layout);
            alloc.dealloc(ptr, layout);
        }
    }

    #[test]
    fn it_frees_zero_allocated_big_memory() {
        unsafe {
            let layout = Layout::from_size_align(1 << 20, 32).unwrap();
            let alloc = MiMalloc;

            let ptr = alloc.alloc_zeroed(layout);
            alloc.dealloc(ptr, layout);
        }
    }

    #[test]
    fn it_frees_reallocated_memory() {
        unsafe {
            let layout = Layout::from_size_align(8, 8).unwrap();
            let alloc = MiMalloc;

            let ptr = alloc.alloc(layout);
            let ptr = alloc.realloc(ptr, layout, 16);
            alloc.dealloc(ptr, layout);
        }
    }

    #[test]
    fn it_frees_reallocated_big_memory() {
        unsafe {
            let layout = Layout::from_size_align(1 << 20, 32).unwrap();
            let alloc = MiMalloc;

            let ptr = alloc.alloc(layout);
            let ptr = alloc.realloc(ptr, layout, 2 << 20);
            alloc.dealloc(ptr, layout);
        }
    }

    // Switchyard patch: every layout gets a block aligned as it asks, through the plain
    // and the aligned entry points both, fresh, zeroed and reallocated; sizes that are
    // and are not multiples of the alignment; many of each so pages fill up and the
    // allocator's slower paths are taken too.
    #[test]
    fn every_layout_is_aligned_as_asked() {
        unsafe {
            let alloc = MiMalloc;
            for align in [1usize, 2, 4, 8, 16, 32, 64, 128, 4096] {
                let mut size = 1;
                while size <= 70_000 {
                    let layout = Layout::from_size_align(size, align).unwrap();
                    let mut held = [core::ptr::null_mut::<u8>(); 48];
                    for (i, slot) in held.iter_mut().enumerate() {
                        let p = if i % 2 == 0 {
                            alloc.alloc(layout)
                        } else {
                            alloc.alloc_zeroed(layout)
                        };
                        assert!(!p.is_null());
                        assert_eq!(p as usize % align, 0, "size {} align {}", size, align);
                        if i % 2 == 1 {
                            assert!((0..size).all(|o| *p.add(o) == 0), "zeroed {}", size);
                        }
                        *slot = p;
                    }
                    let grown = size * 3 / 2 + 1;
                    for p in held.iter_mut() {
                        let q = alloc.realloc(*p, layout, grown);
                        assert_eq!(q as usize % align, 0, "realloc {} align {}", grown, align);
                        alloc.dealloc(q, Layout::from_size_align(grown, align).unwrap());
                    }
                    size = if size < 300 { size + 1 } else { size * 5 / 4 + 7 };
                }
            }
        }
    }
}
