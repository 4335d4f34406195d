//! Large pixel buffers on transparent huge pages.
//!
//! A 12 MP photo goes through about 200 MB of fresh buffers (decoded source, resampler
//! scratch, renditions). With 4 KiB pages every one of them is a page fault on first touch:
//! ~50,000 faults per photo, which cost more than the resize itself on a VM. glibc serves
//! buffers below its largest mmap threshold (32 MiB) from its heap, where they are reused
//! without faulting; larger ones are mapped fresh each time. Those are mapped here instead
//! and advised as huge pages (THP in "madvise" mode, the common default), so the kernel
//! faults them in 2 MiB at a time: 12 MP photos resize about a third faster. Smaller
//! allocations, and everything on other systems, go to the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};

pub struct PixelAlloc;

#[cfg(target_os = "linux")]
mod huge {
    use std::alloc::Layout;

    /// glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems.
    pub const THRESHOLD: usize = 32 << 20;
    const HUGE_PAGE: usize = 2 << 20;

    /// Whether `layout` is served by a mapping of its own.
    pub fn owns(layout: Layout) -> bool {
        layout.size() >= THRESHOLD && layout.align() <= 4096
    }

    fn mapped_len(size: usize) -> usize {
        size.div_ceil(HUGE_PAGE) * HUGE_PAGE
    }

    /// A zeroed, page-aligned mapping of at least `size` bytes, or null.
    pub unsafe fn map(size: usize) -> *mut u8 {
        let len = mapped_len(size);
        // SAFETY: an anonymous private mapping touches no existing memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return std::ptr::null_mut();
        }
        // SAFETY: `p..p+len` is the mapping just made. The advice is only a hint: when THP is
        // off it fails harmlessly and the buffer uses normal pages.
        unsafe { libc::madvise(p, len, libc::MADV_HUGEPAGE) };
        p.cast()
    }

    /// Releases a mapping made by `map(size)`.
    pub unsafe fn unmap(ptr: *mut u8, size: usize) {
        // SAFETY: the caller passes a pointer and size that `map` returned and received.
        unsafe { libc::munmap(ptr.cast(), mapped_len(size)) };
    }
}

#[cfg(target_os = "linux")]
// SAFETY: every pointer is freed by the same path that allocated it, because the choice
// depends only on the layout, which Rust passes unchanged to `dealloc`.
unsafe impl GlobalAlloc for PixelAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if huge::owns(layout) {
            // SAFETY: a fresh mapping of at least `layout.size()` bytes, page aligned.
            unsafe { huge::map(layout.size()) }
        } else {
            // SAFETY: forwarded with the caller's non-zero layout.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if huge::owns(layout) {
            // SAFETY: anonymous mappings are already zero.
            unsafe { huge::map(layout.size()) }
        } else {
            // SAFETY: as in `alloc`.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if huge::owns(layout) {
            // SAFETY: `ptr` came from `huge::map(layout.size())`.
            unsafe { huge::unmap(ptr, layout.size()) }
        } else {
            // SAFETY: `ptr` came from `System` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `new_size` is non-zero and does not overflow when rounded to `align`, as
        // `GlobalAlloc::realloc` requires of its caller.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !huge::owns(layout) && !huge::owns(new) {
            // SAFETY: both layouts belong to the system allocator.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: allocate, copy what both blocks hold, free the old block.
        unsafe {
            let out = self.alloc(new);
            if !out.is_null() {
                std::ptr::copy_nonoverlapping(ptr, out, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            out
        }
    }
}

#[cfg(not(target_os = "linux"))]
// SAFETY: forwards everything to the system allocator.
unsafe impl GlobalAlloc for PixelAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn large_buffers_are_zeroed_grow_and_shrink_keeping_their_bytes() {
        let n = super::huge::THRESHOLD + 12_345;
        let mut v = vec![0u8; n];
        assert!(v.iter().all(|&b| b == 0));
        v.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i % 251) as u8);
        v.extend_from_slice(&[7; 3 << 20]);
        assert!(v[..n]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (i % 251) as u8));
        assert_eq!(v[n..], [7; 3 << 20]);
        v.truncate(1000);
        v.shrink_to_fit();
        assert!(v.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    }
}
