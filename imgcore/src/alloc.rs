//! Large pixel buffers: huge pages, and reuse instead of fresh page faults.
//!
//! A 12 MP photo goes through about 200 MB of buffers (decoded source, resampler scratch,
//! renditions). Fresh memory is a page fault per 4 KiB on first touch: ~50,000 faults per
//! photo, costing more than the resize itself on a VM. So buffers of `THRESHOLD` bytes and
//! more are mapped here, advised as transparent huge pages (THP "madvise" mode, the common
//! default), and, when freed, kept in a pool (`POOL_BYTES` at most, blocks of at most
//! `POOL_MAX_BLOCK`) for the next buffer of the same size class: the next photo's buffers
//! are already mapped and faulted in. Smaller allocations, and everything on other
//! systems, go to the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};

pub struct PixelAlloc;

#[cfg(all(test, target_os = "linux"))]
pub mod guard;

#[cfg(target_os = "linux")]
mod mapped {
    use std::alloc::Layout;
    use std::sync::Mutex;

    pub const THRESHOLD: usize = 1 << 20;
    // Photos of different sizes each leave their own size classes behind: cycling through
    // the benchmark's nine photos keeps about 270 MB pooled. With 256 MB in 24 slots, a
    // third of the buffers were fresh mappings again (7,000 faults per round, orientation
    // twice as slow); with these limits about a hundred. The worker has 4 GiB.
    const POOL_BYTES: usize = 512 << 20;
    const POOL_MAX_BLOCK: usize = 64 << 20;
    const SLOTS: usize = 64;

    /// Freed mappings kept for reuse: (address, mapped length); a zero length is an empty slot.
    struct Pool {
        slots: [(usize, usize); SLOTS],
        bytes: usize,
    }

    static POOL: Mutex<Pool> = Mutex::new(Pool {
        slots: [(0, 0); SLOTS],
        bytes: 0,
    });

    /// The pool, unless another thread holds it: then the caller maps or unmaps directly.
    /// Never waiting also means a child forked while some thread held the lock cannot
    /// deadlock on it.
    fn pool() -> Option<std::sync::MutexGuard<'static, Pool>> {
        match POOL.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Whether `layout` is served by a mapping of its own.
    pub fn owns(layout: Layout) -> bool {
        layout.size() >= THRESHOLD && layout.align() <= 4096
    }

    /// The mapped length for `size` bytes: size classes an eighth of a power of two apart
    /// (so at most 12.5 % above the request), each block reused by any request of its class.
    pub fn class(size: usize) -> usize {
        let floor_power = 1usize << (usize::BITS - 1 - size.max(1).leading_zeros());
        let step = (floor_power / 8).max(64 << 10);
        size.div_ceil(step) * step
    }

    fn take(len: usize) -> Option<*mut u8> {
        let mut p = pool()?;
        let slot = p.slots.iter_mut().find(|s| s.1 == len)?;
        let addr = std::mem::take(slot).0;
        p.bytes -= len;
        Some(addr as *mut u8)
    }

    fn keep(ptr: *mut u8, len: usize) -> bool {
        if len > POOL_MAX_BLOCK {
            return false;
        }
        let Some(mut p) = pool() else {
            return false;
        };
        if p.bytes + len > POOL_BYTES {
            return false;
        }
        match p.slots.iter_mut().find(|s| s.1 == 0) {
            Some(slot) => {
                *slot = (ptr as usize, len);
                p.bytes += len;
                true
            }
            None => false,
        }
    }

    /// A page-aligned block of at least `size` bytes (zeroed when `zeroed`), or null.
    pub unsafe fn alloc(size: usize, zeroed: bool) -> *mut u8 {
        let len = class(size);
        if let Some(p) = take(len) {
            if zeroed {
                // SAFETY: the pooled block is `len >= size` writable bytes owned by nobody.
                unsafe { std::ptr::write_bytes(p, 0, size) };
            }
            return p;
        }
        // SAFETY: an anonymous private mapping touches no existing memory; it starts zeroed.
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
        // off it fails harmlessly and the block uses normal pages.
        unsafe { libc::madvise(p, len, libc::MADV_HUGEPAGE) };
        p.cast()
    }

    /// Returns a block from `alloc(size, _)` to the pool, or to the system when it is full.
    pub unsafe fn free(ptr: *mut u8, size: usize) {
        let len = class(size);
        if !keep(ptr, len) {
            // SAFETY: the caller passes a block that `alloc` returned for `size`.
            unsafe { libc::munmap(ptr.cast(), len) };
        }
    }
}

#[cfg(target_os = "linux")]
// SAFETY: every pointer is freed by the same path that allocated it, because the choice
// depends only on the layout, which Rust passes unchanged to `dealloc`.
unsafe impl GlobalAlloc for PixelAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        #[cfg(test)]
        if let Some(p) = guard::alloc(layout, false) {
            return p;
        }
        if mapped::owns(layout) {
            // SAFETY: a block of at least `layout.size()` bytes, page aligned.
            unsafe { mapped::alloc(layout.size(), false) }
        } else {
            // SAFETY: forwarded with the caller's non-zero layout.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        #[cfg(test)]
        if let Some(p) = guard::alloc(layout, true) {
            return p;
        }
        if mapped::owns(layout) {
            // SAFETY: as in `alloc`, zeroed.
            unsafe { mapped::alloc(layout.size(), true) }
        } else {
            // SAFETY: as in `alloc`.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        #[cfg(test)]
        if guard::owns(ptr) {
            // SAFETY: `ptr` is a guarded block, allocated for this layout.
            unsafe { guard::free(ptr, layout) };
            return;
        }
        if mapped::owns(layout) {
            // SAFETY: `ptr` came from `mapped::alloc(layout.size(), _)`.
            unsafe { mapped::free(ptr, layout.size()) }
        } else {
            // SAFETY: `ptr` came from `System` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `new_size` is non-zero and does not overflow when rounded to `align`, as
        // `GlobalAlloc::realloc` requires of its caller.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // A guarded block moves to a new one, and so does any block grown while guarding.
        #[cfg(test)]
        if guard::owns(ptr) || guard::active() {
            // SAFETY: `ptr` is a live block of `layout`, as `realloc` requires.
            return unsafe { self.moved(ptr, layout, new) };
        }
        match (mapped::owns(layout), mapped::owns(new)) {
            // SAFETY: both layouts belong to the system allocator.
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            // The block already spans the new size's class.
            (true, true) if mapped::class(layout.size()) == mapped::class(new_size) => ptr,
            // SAFETY: `ptr` is a live block of `layout`, as `realloc` requires.
            _ => unsafe { self.moved(ptr, layout, new) },
        }
    }
}

#[cfg(target_os = "linux")]
impl PixelAlloc {
    /// `realloc` by allocating `new`, copying what both blocks hold and freeing the old one.
    ///
    /// # Safety
    /// `ptr` is a live block of `layout` from this allocator; `new` has a non-zero size.
    unsafe fn moved(&self, ptr: *mut u8, layout: Layout, new: Layout) -> *mut u8 {
        // SAFETY: as the caller guarantees.
        unsafe {
            let out = self.alloc(new);
            if !out.is_null() {
                std::ptr::copy_nonoverlapping(ptr, out, layout.size().min(new.size()));
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
    use super::mapped::{class, THRESHOLD};

    fn pattern(v: &mut [u8]) {
        v.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i % 251) as u8);
    }

    fn has_pattern(v: &[u8]) -> bool {
        v.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8)
    }

    #[test]
    fn size_classes_cover_the_request_within_an_eighth() {
        for size in [THRESHOLD, THRESHOLD + 1, 3 << 20, (5 << 20) + 7, 100 << 20] {
            let c = class(size);
            assert!(
                c >= size && c - size <= size / 8 + (64 << 10),
                "{size} -> {c}"
            );
            assert_eq!(class(c), c);
        }
    }

    #[test]
    fn large_buffers_are_zeroed_even_when_reused_and_keep_bytes_across_growth() {
        for round in 0..3 {
            let n = THRESHOLD + 12_345 * round;
            let mut v = vec![0u8; n];
            assert!(v.iter().all(|&b| b == 0), "round {round}");
            pattern(&mut v);
            v.extend_from_slice(&[7; 3 << 20]);
            assert!(has_pattern(&v[..n]));
            assert_eq!(v[n..], [7; 3 << 20]);
            v.truncate(1000);
            v.shrink_to_fit();
            assert!(has_pattern(&v));
        }
        // A buffer from the pool that was dirtied before must come back zeroed.
        let mut dirty = vec![0u8; 4 << 20];
        pattern(&mut dirty);
        drop(dirty);
        assert!(vec![0u8; 4 << 20].iter().all(|&b| b == 0));
    }
}
