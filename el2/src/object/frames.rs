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

/// A zeroed page, or `None` when memory is exhausted.
pub fn alloc_zeroed() -> Option<PhysAddr> {
    imp::alloc_zeroed()
}

/// Returns a page from [`alloc_zeroed`].
pub fn free(page: PhysAddr) {
    imp::free(page)
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
