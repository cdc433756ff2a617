//! Where VMO pages come from: the buddy frame allocator on the board, the host's allocator in
//! unit tests. Pages are handed out zeroed; the address is physical on the board and, on the
//! host, the page's own address (the host stands in for an identity map).

use stage2::PhysAddr;

pub use stage2::table::PAGE_SIZE;

#[cfg(target_os = "none")]
mod imp {
    use super::PAGE_SIZE;
    use stage2::PhysAddr;

    pub fn alloc_zeroed() -> Option<PhysAddr> {
        let page = crate::memory::alloc_frames(1)?;
        // SAFETY: the frame allocator just handed us this page of RAM, identity-mapped RW.
        unsafe { core::ptr::write_bytes(page.raw() as *mut u8, 0, PAGE_SIZE as usize) };
        Some(page)
    }

    pub fn free(page: PhysAddr) {
        crate::memory::free_frames(page, 1);
    }
}

#[cfg(not(target_os = "none"))]
mod imp {
    use super::PAGE_SIZE;
    use stage2::PhysAddr;
    use std::alloc::{dealloc, Layout};

    fn layout() -> Layout {
        Layout::from_size_align(PAGE_SIZE as usize, PAGE_SIZE as usize).expect("a page layout")
    }

    pub fn alloc_zeroed() -> Option<PhysAddr> {
        // SAFETY: the layout has a non-zero size.
        let page = unsafe { std::alloc::alloc_zeroed(layout()) };
        (!page.is_null()).then(|| PhysAddr::new(page as u64))
    }

    pub fn free(page: PhysAddr) {
        // SAFETY: `page` came from `alloc_zeroed` above with the same layout.
        unsafe { dealloc(page.raw() as *mut u8, layout()) };
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

    /// Takes one page: from a promise when `reserved`, otherwise only if one is available.
    pub fn take(&mut self, reserved: bool) -> bool {
        if reserved && self.promised > 0 && self.free > 0 {
            self.promised -= 1;
            self.free -= 1;
            true
        } else if !reserved && self.available() > 0 {
            self.free -= 1;
            true
        } else {
            false
        }
    }

    /// A page came back.
    pub fn give_back(&mut self) {
        self.free += 1;
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

/// A zeroed page, or `None` when no page is available (taken from a promise when `reserved`).
pub fn alloc_zeroed_for(reserved: bool) -> Option<PhysAddr> {
    if !LEDGER.lock().take(reserved) {
        return None;
    }
    let page = imp::alloc_zeroed();
    if page.is_none() {
        // The allocator disagrees with the account (it cannot, unless a page leaked): undo.
        let mut ledger = LEDGER.lock();
        ledger.give_back();
        if reserved {
            ledger.promised += 1;
        }
    }
    page
}

/// A zeroed page, or `None` when memory is exhausted or promised.
pub fn alloc_zeroed() -> Option<PhysAddr> {
    alloc_zeroed_for(false)
}

/// Returns a page from [`alloc_zeroed`] or [`alloc_zeroed_for`].
pub fn free(page: PhysAddr) {
    imp::free(page);
    LEDGER.lock().give_back();
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
            assert!(ledger.take(false));
        }
        assert!(!ledger.take(false), "the rest is promised");
        for _ in 0..6 {
            assert!(ledger.take(true), "a promised page is always there");
        }
        assert!(!ledger.take(true), "no promise left");
        ledger.give_back();
        assert!(ledger.reserve(1));
        ledger.release(1);
        assert_eq!(ledger.available(), 1);
    }
}
