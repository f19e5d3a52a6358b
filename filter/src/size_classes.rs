//! The module's allocator: blocks of up to 1 KiB come from one free list per power-of-two size,
//! so a request's allocations (the host's header buffer, the span's attributes and bytes) cost a
//! few instructions each instead of a general-purpose allocator's search and coalescing. Larger
//! blocks go to the allocator underneath.
//!
//! Small blocks are never returned to the allocator underneath: a class keeps what its peak
//! needed, which for this filter's steady per-request pattern is a handful of blocks, plus the
//! export queue's spans at its fullest.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ptr;

const SMALLEST: usize = 16;
const CLASSES: usize = 7;
const LARGEST: usize = SMALLEST << (CLASSES - 1);
/// Small blocks are carved from slabs this big.
const SLAB: usize = 16 * 1024;

pub struct SizeClasses<A> {
    underneath: A,
    state: UnsafeCell<State>,
}

struct State {
    /// Head of each class's free list; a free block's first word points to the next.
    free: [*mut u8; CLASSES],
    slab_next: *mut u8,
    slab_left: usize,
}

// SAFETY: a wasm32 module runs on one thread; natively, only the tests use an instance, each
// from one thread.
unsafe impl<A: Sync> Sync for SizeClasses<A> {}

impl<A> SizeClasses<A> {
    pub const fn new(underneath: A) -> Self {
        SizeClasses {
            underneath,
            state: UnsafeCell::new(State {
                free: [ptr::null_mut(); CLASSES],
                slab_next: ptr::null_mut(),
                slab_left: 0,
            }),
        }
    }
}

impl<A: GlobalAlloc> SizeClasses<A> {
    /// A new block for a class whose free list is empty, cut from the current slab. Out of line:
    /// the allocator is inlined wherever the module allocates, and this is the rare path.
    #[inline(never)]
    unsafe fn carve(&self, class: usize) -> *mut u8 {
        let state = &mut *self.state.get();
        let size = SMALLEST << class;
        if state.slab_left < size {
            // What is left of the old slab (less than a block of this class) is not reused.
            let slab = self
                .underneath
                .alloc(Layout::from_size_align_unchecked(SLAB, SMALLEST));
            if slab.is_null() {
                return slab;
            }
            state.slab_next = slab;
            state.slab_left = SLAB;
        }
        let block = state.slab_next;
        state.slab_next = block.add(size);
        state.slab_left -= size;
        block
    }
}

/// The class serving `layout`, or None for blocks left to the allocator underneath.
fn class_of(layout: Layout) -> Option<usize> {
    if layout.size() > LARGEST || layout.align() > SMALLEST {
        return None;
    }
    let size = layout.size().max(SMALLEST).next_power_of_two();
    Some((size.trailing_zeros() - SMALLEST.trailing_zeros()) as usize)
}

unsafe impl<A: GlobalAlloc> GlobalAlloc for SizeClasses<A> {
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            return self.underneath.alloc(layout);
        };
        let state = &mut *self.state.get();
        let head = state.free[class];
        if !head.is_null() {
            state.free[class] = *(head as *mut *mut u8);
            return head;
        }
        self.carve(class)
    }

    #[inline(never)]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match class_of(layout) {
            None => self.underneath.dealloc(block, layout),
            Some(class) => {
                let state = &mut *self.state.get();
                *(block as *mut *mut u8) = state.free[class];
                state.free[class] = block;
            }
        }
    }

    #[inline(never)]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        match (class_of(layout), class_of(new_layout)) {
            (None, None) => self.underneath.realloc(block, layout, new_size),
            (Some(old), Some(new)) if old == new => block,
            _ => {
                let moved = self.alloc(new_layout);
                if !moved.is_null() {
                    ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                    self.dealloc(block, layout);
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    #[test]
    fn sizes_map_to_power_of_two_classes() {
        let cases = [
            (1, 1, Some(0)),
            (16, 8, Some(0)),
            (17, 8, Some(1)),
            (512, 1, Some(5)),
            (1024, 8, Some(6)),
            (1025, 8, None),
            (8, 32, None),
        ];
        for (size, align, expected) in cases {
            let layout = Layout::from_size_align(size, align).unwrap();
            assert_eq!(class_of(layout), expected, "{size} aligned {align}");
        }
    }

    /// Blocks live at once never overlap, keep what was written, and come back once freed.
    #[test]
    fn blocks_are_distinct_reused_and_keep_their_bytes_through_growth() {
        let heap = SizeClasses::new(System);
        unsafe {
            let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
            for (n, size) in [3usize, 16, 40, 40, 200, 1000, 5000, 17, 64]
                .iter()
                .enumerate()
            {
                let layout = Layout::from_size_align(*size, 8).unwrap();
                let block = heap.alloc(layout);
                assert!(!block.is_null());
                assert_eq!(block as usize % 8, 0);
                ptr::write_bytes(block, n as u8 + 1, *size);
                live.push((block, layout, n as u8 + 1));
            }
            for (block, layout, fill) in &live {
                let bytes = std::slice::from_raw_parts(*block, layout.size());
                assert!(bytes.iter().all(|b| b == fill), "overlapping blocks");
            }
            // A freed block is the next one of its class handed out.
            let (block, layout, _) = live.remove(2);
            heap.dealloc(block, layout);
            assert_eq!(heap.alloc(layout), block);
            heap.dealloc(block, layout);
            // Growth within a class keeps the block; across classes and into the large ones it
            // moves, bytes intact.
            let (block, layout, fill) = live.remove(0);
            let same = heap.realloc(block, layout, 15);
            assert_eq!(same, block);
            let mut current = (same, Layout::from_size_align(15, 8).unwrap());
            for new_size in [100usize, 900, 3000, 2000, 20] {
                let grown = heap.realloc(current.0, current.1, new_size);
                assert!(!grown.is_null());
                let kept = current.1.size().min(new_size).min(3);
                let bytes = std::slice::from_raw_parts(grown, kept);
                assert!(bytes.iter().all(|b| *b == fill), "to {new_size}");
                current = (grown, Layout::from_size_align(new_size, 8).unwrap());
            }
            heap.dealloc(current.0, current.1);
            for (block, layout, _) in live {
                heap.dealloc(block, layout);
            }
        }
    }

    /// Many more blocks than one slab holds.
    #[test]
    fn slabs_are_added_as_classes_fill() {
        let heap = SizeClasses::new(System);
        let layout = Layout::from_size_align(1000, 8).unwrap();
        unsafe {
            let blocks: Vec<*mut u8> = (0..100).map(|_| heap.alloc(layout)).collect();
            let mut sorted = blocks.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 100);
            for pair in sorted.windows(2) {
                assert!(
                    pair[1] as usize - pair[0] as usize >= 1024,
                    "blocks overlap"
                );
            }
            for block in blocks {
                heap.dealloc(block, layout);
            }
        }
    }
}
