//! Where VMO pages come from: the buddy frame allocator on the board, the host's allocator in
//! unit tests. Pages are handed out zeroed; the address is physical on the board and, on the
//! host, the page's own address (the host stands in for an identity map).

use stage2::PhysAddr;

pub use stage2::table::{BLOCK_SIZE, PAGE_SIZE};

/// Pages in a 2 MiB block.
pub const BLOCK_PAGES: u64 = BLOCK_SIZE / PAGE_SIZE;

#[cfg(target_os = "none")]
mod imp {
    use super::PAGE_SIZE;
    use stage2::PhysAddr;

    /// `pages` zeroed contiguous pages, aligned to their size (a power of two).
    pub fn alloc_zeroed(pages: u64) -> Option<PhysAddr> {
        let first = crate::memory::alloc_frames(pages as usize)?;
        // SAFETY: the frame allocator just handed us these pages of RAM, identity-mapped RW,
        // aligned to their size.
        unsafe { crate::arch::zero_pages(first.raw(), (pages * PAGE_SIZE) as usize) };
        Some(first)
    }

    pub fn free(first: PhysAddr, pages: u64) {
        crate::memory::free_frames(first, pages as usize);
    }
}

#[cfg(not(target_os = "none"))]
mod imp {
    use super::PAGE_SIZE;
    use stage2::PhysAddr;
    use std::alloc::{dealloc, Layout};

    fn layout(pages: u64) -> Layout {
        let size = (pages * PAGE_SIZE) as usize;
        Layout::from_size_align(size, size).expect("a power-of-two run of pages")
    }

    pub fn alloc_zeroed(pages: u64) -> Option<PhysAddr> {
        // SAFETY: the layout has a non-zero size.
        let page = unsafe { std::alloc::alloc_zeroed(layout(pages)) };
        (!page.is_null()).then(|| PhysAddr::new(page as u64))
    }

    pub fn free(first: PhysAddr, pages: u64) {
        // SAFETY: `first` came from `alloc_zeroed` above with the same layout.
        unsafe { dealloc(first.raw() as *mut u8, layout(pages)) };
    }
}

/// The frame account (DESIGN.md section 7: memory is accounted, not overcommitted).
///
/// `free` counts the pages the allocator holds; `promised` the pages reserved for charged VMOs
/// and not yet committed. An unreserved allocation may take a page only while more pages are
/// free than promised, so a reserved commit always finds one: a running VM never fails a page
/// fault for want of frames, whatever else allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ledger {
    free: u64,
    promised: u64,
}

impl Ledger {
    /// An account of `free` pages, none promised.
    pub const fn new(free: u64) -> Self {
        Self { free, promised: 0 }
    }

    /// Pages neither allocated nor promised.
    pub fn available(&self) -> u64 {
        self.free - self.promised
    }

    /// Promises `pages`; `false` (and nothing promised) when fewer are available.
    pub fn reserve(&mut self, pages: u64) -> bool {
        let ok = self.available() >= pages;
        if ok {
            self.promised += pages;
        }
        ok
    }

    /// Withdraws a promise of `pages` that were never taken.
    pub fn release(&mut self, pages: u64) {
        debug_assert!(pages <= self.promised);
        self.promised -= pages.min(self.promised);
    }

    /// Takes `pages` pages: from a promise when `reserved`, otherwise only if they are
    /// available; all or none.
    pub fn take(&mut self, reserved: bool, pages: u64) -> bool {
        if reserved && self.promised >= pages && self.free >= pages {
            self.promised -= pages;
            self.free -= pages;
            true
        } else if !reserved && self.available() >= pages {
            self.free -= pages;
            true
        } else {
            false
        }
    }

    /// `pages` pages came back.
    pub fn give_back(&mut self, pages: u64) {
        self.free += pages;
    }
}

/// Pages the host stands in with in unit tests (4 GiB).
#[cfg(not(target_os = "none"))]
const HOST_PAGES: u64 = 1 << 20;
#[cfg(target_os = "none")]
const HOST_PAGES: u64 = 0;

static LEDGER: spin::Mutex<Ledger> = spin::Mutex::new(Ledger::new(HOST_PAGES));

/// Tells the account how many pages the frame allocator was given (boot, once).
pub fn set_capacity(pages: u64) {
    *LEDGER.lock() = Ledger::new(pages);
}

/// Pages neither allocated nor promised to a charged VMO.
pub fn available_pages() -> u64 {
    LEDGER.lock().available()
}

/// Promises `pages` to a charged VMO; `NO_MEMORY` when fewer are available.
pub fn reserve(pages: u64) -> super::ZxResult {
    if LEDGER.lock().reserve(pages) {
        Ok(())
    } else {
        Err(super::Status::NO_MEMORY)
    }
}

/// Withdraws an unused promise.
pub fn release(pages: u64) {
    LEDGER.lock().release(pages)
}

/// `pages` (1 or [`BLOCK_PAGES`]) zeroed contiguous pages aligned to their size, or `None`
/// when they are not available (taken from a promise when `reserved`) or, for a block, when
/// no aligned run is free.
fn alloc_run(reserved: bool, pages: u64) -> Option<PhysAddr> {
    if !LEDGER.lock().take(reserved, pages) {
        return None;
    }
    let first = imp::alloc_zeroed(pages);
    if first.is_none() {
        // No aligned run (fragmentation), or the allocator disagrees with the account (a page
        // leaked): undo.
        let mut ledger = LEDGER.lock();
        ledger.give_back(pages);
        if reserved {
            ledger.promised += pages;
        }
    }
    first
}

/// A zeroed page, or `None` when no page is available (taken from a promise when `reserved`).
pub fn alloc_zeroed_for(reserved: bool) -> Option<PhysAddr> {
    alloc_run(reserved, 1)
}

/// A zeroed 2 MiB block ([`BLOCK_PAGES`] pages, 2 MiB-aligned), or `None` when the pages are
/// not available or no aligned block is free (the caller then takes pages one by one).
pub fn alloc_block_zeroed_for(reserved: bool) -> Option<PhysAddr> {
    alloc_run(reserved, BLOCK_PAGES)
}

/// Returns a block from [`alloc_block_zeroed_for`].
pub fn free_block(block: PhysAddr) {
    imp::free(block, BLOCK_PAGES);
    LEDGER.lock().give_back(BLOCK_PAGES);
}

/// A zeroed page, or `None` when memory is exhausted or promised.
pub fn alloc_zeroed() -> Option<PhysAddr> {
    alloc_zeroed_for(false)
}

/// Returns a page from [`alloc_zeroed`] or [`alloc_zeroed_for`].
pub fn free(page: PhysAddr) {
    imp::free(page, 1);
    LEDGER.lock().give_back(1);
}

/// The bytes of a page this module handed out.
///
/// # Safety
/// `page` must come from [`alloc_zeroed`] and not be freed while the slice lives; callers
/// serialise access to it (VMOs do, under their page lock).
pub unsafe fn page_bytes<'a>(page: PhysAddr) -> &'a mut [u8] {
    // SAFETY: per the contract, the page is live, mapped and exclusively ours.
    unsafe { core::slice::from_raw_parts_mut(page.raw() as *mut u8, PAGE_SIZE as usize) }
}

#[cfg(test)]
mod tests {
    use super::Ledger;

    #[test]
    fn promises_are_kept() {
        let mut ledger = Ledger::new(10);
        assert!(ledger.reserve(6));
        assert!(!ledger.reserve(5), "4 available");
        assert_eq!(ledger.available(), 4);
        for _ in 0..4 {
            assert!(ledger.take(false, 1));
        }
        assert!(!ledger.take(false, 1), "the rest is promised");
        assert!(!ledger.take(true, 7), "more than the promise: nothing taken");
        assert!(ledger.take(true, 4), "a run from the promise");
        for _ in 0..2 {
            assert!(ledger.take(true, 1), "a promised page is always there");
        }
        assert!(!ledger.take(true, 1), "no promise left");
        ledger.give_back(1);
        assert!(ledger.reserve(1));
        ledger.release(1);
        assert_eq!(ledger.available(), 1);
    }
}
