//! A counting global allocator: how many heap allocations (and bytes) a piece of code
//! makes.
//!
//! Each bench binary installs it with
//! `#[global_allocator] static GLOBAL: CountingAlloc = CountingAlloc;`, then reads
//! [`counts`] around its measured phase. The counters are process-wide statics rather than
//! fields of the allocator so that library code (the bench driver) can read them without
//! being handed the binary's static; [`installed`] tells whether a binary forgot to install
//! it (the counters would then read zero, which would look like a perfect result).
//!
//! Counters use relaxed atomics: they are statistics read by the same thread that does the
//! allocating, no other memory is published through them, and an uncontended relaxed
//! `fetch_add` is the cheapest way to count from a `&self` method.

// Why unsafe is allowed here, and only here: `GlobalAlloc` is an `unsafe trait` and its
// methods are `unsafe fn`s; forwarding them to `System` is the whole of this module. The
// workspace denies `unsafe_code` everywhere else.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static DEALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

/// `GlobalAlloc` over `System` that counts every call. A `realloc` counts as one
/// allocation of its new size: it is a call into the allocator on the path being measured,
/// whether or not it moves the block.
#[derive(Clone, Copy, Debug, Default)]
pub struct CountingAlloc;

#[inline]
fn count_alloc(size: usize) {
    ALLOCS.fetch_add(1, Ordering::Relaxed);
    BYTES.fetch_add(size as u64, Ordering::Relaxed);
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counting touches only atomics and never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: the caller's `layout` obligations are passed on to `System` unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        DEALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator, which got it from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_alloc(new_size);
        // SAFETY: `ptr` came from `System` (see `dealloc`); the size rules are the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// The counters at one moment. Subtract two with [`AllocCounts::since`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocCounts {
    /// Calls to `alloc`, `alloc_zeroed` and `realloc`.
    pub allocs: u64,
    /// Calls to `dealloc`.
    pub deallocs: u64,
    /// Bytes requested by those allocations (a realloc counts its new size).
    pub bytes: u64,
}

impl AllocCounts {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &AllocCounts) -> AllocCounts {
        // Counters only grow, so a wrap here would mean the snapshots were swapped.
        debug_assert!(self.allocs >= earlier.allocs && self.deallocs >= earlier.deallocs);
        AllocCounts {
            allocs: self.allocs.wrapping_sub(earlier.allocs),
            deallocs: self.deallocs.wrapping_sub(earlier.deallocs),
            bytes: self.bytes.wrapping_sub(earlier.bytes),
        }
    }
}

impl AllocCounts {
    /// The sum of two deltas.
    pub fn plus(&self, other: &AllocCounts) -> AllocCounts {
        AllocCounts {
            allocs: self.allocs + other.allocs,
            deallocs: self.deallocs + other.deallocs,
            bytes: self.bytes + other.bytes,
        }
    }
}

/// Current values of the process-wide counters.
#[inline]
pub fn counts() -> AllocCounts {
    AllocCounts {
        allocs: ALLOCS.load(Ordering::Relaxed),
        deallocs: DEALLOCS.load(Ordering::Relaxed),
        bytes: BYTES.load(Ordering::Relaxed),
    }
}

/// True when [`CountingAlloc`] is this process's global allocator: a real heap allocation
/// moves the counter. A bench that reports allocations must check this first.
pub fn installed() -> bool {
    let before = counts();
    // `black_box` keeps the optimiser from eliding the allocation.
    let boxed = std::hint::black_box(Box::new(std::hint::black_box(0x5eed_u64)));
    drop(boxed);
    counts().allocs > before.allocs
}

/// [`installed`] as a bench's start-up check: an error saying so when it is not.
pub fn require_installed() -> Result<(), String> {
    if installed() {
        Ok(())
    } else {
        Err("the counting allocator is not installed".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The lib's own test binary installs the allocator so the counting can be tested.
    #[global_allocator]
    static GLOBAL: CountingAlloc = CountingAlloc;

    #[test]
    fn counts_allocations_and_bytes() {
        assert!(installed());
        assert_eq!(require_installed(), Ok(()));
        let before = counts();
        let v: Vec<u8> = std::hint::black_box(Vec::with_capacity(4096));
        let mid = counts().since(&before);
        drop(v);
        let after = counts().since(&before);
        // Other test threads may allocate at the same time, so these are lower bounds.
        assert!(mid.allocs >= 1, "{mid:?}");
        assert!(mid.bytes >= 4096, "{mid:?}");
        assert!(after.deallocs >= 1, "{after:?}");
    }

    #[test]
    fn realloc_counts_as_allocation() {
        let mut v: Vec<u64> = Vec::with_capacity(1);
        v.push(1);
        let before = counts();
        // Growing past the capacity reallocates.
        v.reserve_exact(1 << 16);
        let delta = counts().since(&before);
        assert!(delta.allocs >= 1, "{delta:?}");
        assert!(delta.bytes >= (1 << 16) * 8, "{delta:?}");
        std::hint::black_box(&v);
    }

    #[test]
    fn since_subtracts() {
        let a = AllocCounts { allocs: 10, deallocs: 4, bytes: 100 };
        let b = AllocCounts { allocs: 15, deallocs: 9, bytes: 164 };
        assert_eq!(b.since(&a), AllocCounts { allocs: 5, deallocs: 5, bytes: 64 });
    }
}
