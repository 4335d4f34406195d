//! Tests only: every allocation a thread makes inside `with_guards` is placed against an
//! inaccessible page, so a kernel or FFI call that reads or writes one byte outside its
//! buffers faults at once instead of touching a neighbour, and new memory is filled with
//! `POISON`, so bytes handed out without being written show up in the results.
//!
//! Blocks come from one reserved `PROT_NONE` range, each made accessible on its own pages
//! with an inaccessible page in front, so whether a pointer is guarded is an address-range
//! check, whichever thread frees it. Freed blocks of up to `CACHED_BLOCK` bytes are kept
//! (still accessible) for the next block of the same length: fresh mappings cost about 20 us
//! each, and the resizer makes a hundred small allocations per call. Larger freed blocks
//! become inaccessible again.

use std::alloc::Layout;
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The byte fresh guarded memory holds.
pub const POISON: u8 = 0xA5;

/// Where a guarded block sits in its pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The block's last byte is followed by an inaccessible page: overruns fault.
    End,
    /// The block's first byte follows an inaccessible page: underruns fault.
    Start,
}

/// 1 TiB of address space, reserved but never committed: a few million blocks.
const ARENA: usize = 1 << 40;

thread_local! {
    static MODE: Cell<Option<Placement>> = const { Cell::new(None) };
}

static BASE: AtomicUsize = AtomicUsize::new(0);
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// Blocks whose pages are accessible, in use or kept.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Each accessible block is two mappings (its pages and the inaccessible page before them);
/// the kernel allows 65,530 per process by default.
const MAX_LIVE: usize = 20_000;

const CACHED_BLOCK: usize = 1 << 20;
const CACHE_SLOTS: usize = 1024;

/// Freed accessible blocks: (first page, length); a zero length is an empty slot.
static CACHE: Mutex<[(usize, usize); CACHE_SLOTS]> = Mutex::new([(0, 0); CACHE_SLOTS]);

fn cache() -> std::sync::MutexGuard<'static, [(usize, usize); CACHE_SLOTS]> {
    // Nothing panics while holding the lock; a poisoned one is still consistent.
    CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A kept block of `len` bytes of pages, if there is one.
fn take_cached(len: usize) -> Option<usize> {
    let mut slots = cache();
    let slot = slots.iter_mut().find(|s| s.1 == len)?;
    Some(std::mem::take(slot).0)
}

/// Keeps the block at `start` for reuse; false when there is no room.
fn keep(start: usize, len: usize) -> bool {
    if len > CACHED_BLOCK {
        return false;
    }
    let mut slots = cache();
    match slots.iter_mut().find(|s| s.1 == 0) {
        Some(slot) => {
            *slot = (start, len);
            true
        }
        None => false,
    }
}

/// Runs `f` with this thread's allocations guarded at `placement`.
pub fn with_guards<T>(placement: Placement, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Placement>);
    impl Drop for Restore {
        fn drop(&mut self) {
            MODE.set(self.0);
        }
    }
    let _restore = Restore(MODE.replace(Some(placement)));
    f()
}

/// Whether this thread is in `with_guards`.
pub fn active() -> bool {
    MODE.get().is_some()
}

fn page() -> usize {
    // SAFETY: sysconf only reads a configuration value.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// The reserved range's start, reserving it on first use; None if it cannot be reserved.
fn arena() -> Option<usize> {
    let base = BASE.load(Ordering::Acquire);
    if base != 0 {
        return Some(base);
    }
    // SAFETY: a fresh private inaccessible mapping touches no existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            ARENA,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    match BASE.compare_exchange(0, p as usize, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Some(p as usize),
        Err(theirs) => {
            // SAFETY: `p` is the mapping made above, which nobody else has seen.
            unsafe { libc::munmap(p, ARENA) };
            Some(theirs)
        }
    }
}

/// Pages holding `size` bytes.
fn data_len(size: usize) -> usize {
    size.max(1).div_ceil(page()) * page()
}

/// A guarded block for `layout` when this thread is in `with_guards`; None otherwise (or
/// when guarding is impossible: then the caller allocates as usual).
pub fn alloc(layout: Layout, zeroed: bool) -> Option<*mut u8> {
    let placement = MODE.get()?;
    // A panic's backtrace is resolved with many allocations; they need no guarding.
    if layout.align() > page() || std::thread::panicking() {
        return None;
    }
    let len = data_len(layout.size());
    let start = match take_cached(len) {
        Some(start) => {
            let fill = if zeroed { 0 } else { POISON };
            // SAFETY: a kept block's `len` bytes are accessible and belong to nobody.
            unsafe { std::ptr::write_bytes(start as *mut u8, fill, len) };
            start
        }
        None => fresh(len, zeroed)?,
    };
    let at = match placement {
        Placement::Start => start,
        Placement::End => (start + len - layout.size()) & !(layout.align() - 1),
    };
    Some(at as *mut u8)
}

/// `len` bytes of newly accessible pages after an inaccessible one, poisoned unless `zeroed`.
fn fresh(len: usize, zeroed: bool) -> Option<usize> {
    if LIVE.fetch_add(1, Ordering::Relaxed) >= MAX_LIVE {
        LIVE.fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    let start = arena().and_then(|base| {
        let offset = NEXT.fetch_add(page() + len, Ordering::Relaxed);
        (offset + page() + len <= ARENA).then_some(base + offset + page())
    });
    // SAFETY: `start..start + len` lies in the reserved range and belongs to this block
    // alone (the offset was taken atomically and is never handed out again).
    let rw = start.filter(|&start| unsafe {
        libc::mprotect(
            start as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
        ) == 0
    });
    let Some(start) = rw else {
        LIVE.fetch_sub(1, Ordering::Relaxed);
        return None;
    };
    if !zeroed {
        // SAFETY: the block's pages were just made writable; freshly reserved pages are zero.
        unsafe { std::ptr::write_bytes(start as *mut u8, POISON, len) };
    }
    Some(start)
}

/// Whether `ptr` is a guarded block.
pub fn owns(ptr: *mut u8) -> bool {
    let base = BASE.load(Ordering::Acquire);
    base != 0 && (base..base + ARENA).contains(&(ptr as usize))
}

/// Keeps a freed guarded block of `layout` for reuse, or makes it inaccessible again.
///
/// # Safety
/// `ptr` is a live block from `alloc(layout, _)`.
pub unsafe fn free(ptr: *mut u8, layout: Layout) {
    let len = data_len(layout.size());
    // Whatever the placement, the block's pages end at the first page end after its last byte.
    let end = (ptr as usize + layout.size().max(1)).div_ceil(page()) * page();
    let start = end - len;
    if keep(start, len) {
        return;
    }
    // SAFETY: the range is the block's own pages; mapping fresh inaccessible pages over them
    // drops their contents.
    unsafe {
        libc::mmap(
            start as *mut libc::c_void,
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
            -1,
            0,
        );
    }
    LIVE.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether reading `ptr` faults, asked of the kernel instead of by faulting: `write(2)`
    /// from an unreadable address fails with EFAULT.
    fn readable(ptr: *const u8) -> bool {
        let mut fds = [0; 2];
        // SAFETY: plain pipe syscalls on descriptors made and closed here.
        unsafe {
            assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
            let n = libc::write(fds[1], ptr.cast(), 1);
            libc::close(fds[0]);
            libc::close(fds[1]);
            n == 1
        }
    }

    #[test]
    fn vec_buffers_touch_an_inaccessible_page() {
        for size in [1usize, 3, 4095, 4096, 4097, 100_000, CACHED_BLOCK + 1] {
            let end = with_guards(Placement::End, || Vec::<u8>::with_capacity(size));
            let p = end.as_ptr();
            assert!(owns(p.cast_mut()));
            assert!(readable(p) && readable(p.wrapping_add(size - 1)));
            assert!(!readable(p.wrapping_add(size)), "{size}: past the end");

            let start = with_guards(Placement::Start, || vec![0u8; size]);
            let p = start.as_ptr();
            assert!(start.iter().all(|&b| b == 0), "zeroed stays zeroed");
            assert!(!readable(p.wrapping_sub(1)), "{size}: before the start");
            drop(start);
            if size > CACHED_BLOCK {
                assert!(!readable(p), "{size}: freed");
            }
        }
        let plain = Vec::<u8>::with_capacity(64);
        assert!(!owns(plain.as_ptr().cast_mut()));
    }

    /// Called directly rather than as the global allocator, `alloc`'s bytes are ones this
    /// program wrote, so reading them is defined.
    #[test]
    fn new_and_reused_blocks_are_poisoned() {
        for size in [1usize, 4096, 5000, CACHED_BLOCK + 1] {
            let layout = Layout::from_size_align(size, 1).unwrap();
            for round in 0..2 {
                let p = with_guards(Placement::End, || alloc(layout, false)).unwrap();
                // SAFETY: `alloc` returned `size` bytes it filled with the poison.
                let bytes = unsafe { std::slice::from_raw_parts_mut(p, size) };
                assert!(bytes.iter().all(|&b| b == POISON), "{size}, round {round}");
                bytes.fill(7);
                // SAFETY: the block came from `alloc(layout, _)` above.
                unsafe { free(p, layout) };
            }
        }
    }

    #[test]
    fn growth_keeps_contents_and_aligned_types_stay_aligned() {
        let v = with_guards(Placement::End, || {
            let mut v: Vec<u64> = Vec::new();
            v.extend(0..5000u64);
            v.shrink_to_fit();
            v
        });
        assert!(owns(v.as_ptr().cast_mut().cast()));
        assert_eq!(v.as_ptr() as usize % 8, 0);
        assert!(v.iter().copied().eq(0..5000));
    }
}
