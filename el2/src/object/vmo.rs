//! Virtual memory objects: memory whose pages are committed on first touch (lguest's lesson:
//! nothing is allocated until it is used), from the frame allocator.
//!
//! A charged VMO (its every page promised at creation) commits whole 2 MiB blocks where it
//! can: the memory is the VM's either way, one zeroed block costs less than 512 page faults, and
//! stage 2 then maps it with one descriptor. A block is taken when the 2 MiB window lies wholly
//! inside the VMO, none of its pages is committed yet, and the frame allocator has an aligned
//! block free; otherwise the page alone is committed.

use super::frames::{self, BLOCK_PAGES, BLOCK_SIZE, PAGE_SIZE};
use super::{Status, ZxResult};
use alloc::boxed::Box;
use alloc::collections::btree_map::Entry;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use stage2::PhysAddr;

/// The largest VMO Belfry creates: the whole guest-physical space.
pub const MAX_VMO_SIZE: u64 = super::vmar::GUEST_PHYSICAL_SIZE;

/// What [`Vmo::commit_with_block`] found or committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commit {
    /// The page backing the offset.
    pub page: PhysAddr,
    /// The 2 MiB block that backs the offset's whole window, if one does.
    pub block: Option<PhysAddr>,
    /// This call committed the page (or its block): zeroed and cleaned to the point of
    /// coherency by the frame allocator, and not written since.
    pub fresh: bool,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Vmo {
    size: u64,
    pages: spin::Mutex<Pages>,
    /// Every page was promised at creation ([`Vmo::new_charged`]).
    charged: bool,
}

/// What backs a VMO: 2 MiB blocks by block index, and single pages by the 2 MiB window they
/// lie in ([`Window`]).
///
/// Single pages are kept per window, not per page: a commit searches the (small) map of
/// windows once, then indexes the window, and "does this window hold single pages" (which
/// rules a block out) is the same search. A window's table is one heap page (512 entries), so
/// the heap cost is a page per window with any single page: at most 1/512 of the VMO's size,
/// and less per page than a map entry once a window holds more than about 200 pages.
#[derive(Debug, Default)]
struct Pages {
    windows: BTreeMap<u64, Window>,
    /// Single pages committed, over every window.
    singles: usize,
    blocks: BTreeMap<u64, PhysAddr>,
}

/// The single pages of one 2 MiB window, by page within it: the frame's address with bit 0
/// set (frames are page-aligned; any address, 0 included, can be a frame), or 0 for none.
#[derive(Debug)]
struct Window(Box<[u64]>);

impl Window {
    /// An empty window; `NO_MEMORY` when the heap cannot hold its table.
    fn new() -> ZxResult<Self> {
        let mut frames = Vec::new();
        frames.try_reserve_exact(BLOCK_PAGES as usize).map_err(|_| Status::NO_MEMORY)?;
        frames.resize(BLOCK_PAGES as usize, 0);
        Ok(Self(frames.into_boxed_slice()))
    }

    /// The frame of page `index` (0..512), if committed.
    fn get(&self, index: usize) -> Option<PhysAddr> {
        self.0.get(index).filter(|&&entry| entry & 1 != 0).map(|&entry| PhysAddr::new(entry & !1))
    }

    /// Every frame in the window.
    fn frames(&self) -> impl Iterator<Item = PhysAddr> + '_ {
        self.0.iter().filter(|&&entry| entry & 1 != 0).map(|&entry| PhysAddr::new(entry & !1))
    }
}

impl Pages {
    /// The frame backing the page at `offset`, if committed.
    fn frame(&self, offset: u64) -> Option<PhysAddr> {
        let index = offset / BLOCK_SIZE;
        if let Some(block) = self.blocks.get(&index) {
            return Some(PhysAddr::new(block.raw() + ((offset % BLOCK_SIZE) & !(PAGE_SIZE - 1))));
        }
        self.windows.get(&index)?.get(page_in_window(offset))
    }

    /// Whether any single page of the block at `index` is committed.
    fn has_pages_in_block(&self, index: u64) -> bool {
        self.windows.contains_key(&index)
    }

    /// The frame of the single page at `offset`, committing `allocate()`'s when there is none:
    /// (frame, whether it was committed now). The window's table is made on its first page.
    fn single(&mut self, offset: u64, allocate: impl FnOnce() -> ZxResult<PhysAddr>) -> ZxResult<(PhysAddr, bool)> {
        let key = offset / BLOCK_SIZE;
        let (window, new) = match self.windows.entry(key) {
            Entry::Occupied(window) => (window.into_mut(), false),
            Entry::Vacant(slot) => (slot.insert(Window::new()?), true),
        };
        let index = page_in_window(offset);
        if let Some(page) = window.get(index) {
            return Ok((page, false));
        }
        let page = match allocate() {
            Ok(page) => page,
            Err(status) => {
                // No window is left without pages: an empty one would still rule a block out.
                if new {
                    self.windows.remove(&key);
                }
                return Err(status);
            }
        };
        if let Some(entry) = window.0.get_mut(index) {
            *entry = page.raw() | 1;
        }
        self.singles += 1;
        Ok((page, true))
    }
}

/// The index of the page holding `offset` within its 2 MiB window.
fn page_in_window(offset: u64) -> usize {
    ((offset % BLOCK_SIZE) / PAGE_SIZE) as usize
}

impl Vmo {
    /// A VMO of `size` bytes rounded up to whole pages (`zx_vmo_create`).
    pub fn new(size: u64) -> ZxResult<Self> {
        let size = size.checked_next_multiple_of(PAGE_SIZE).ok_or(Status::OUT_OF_RANGE)?;
        if size > MAX_VMO_SIZE {
            return Err(Status::OUT_OF_RANGE);
        }
        Ok(Self { size, pages: spin::Mutex::new(Pages::default()), charged: false })
    }

    /// A VMO whose every page is charged now (Belfry's `BELFRY_VMO_CHARGED`): `NO_MEMORY` when
    /// the frames are not there, and once created its commits never fail for want of frames.
    /// Pages are still committed (and zeroed) on first touch.
    pub fn new_charged(size: u64) -> ZxResult<Self> {
        let mut vmo = Self::new(size)?;
        frames::reserve(vmo.size / PAGE_SIZE)?;
        vmo.charged = true;
        Ok(vmo)
    }

    /// Size in bytes (a whole number of pages).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Pages committed so far (a block counts its 512).
    pub fn committed_pages(&self) -> usize {
        let pages = self.pages.lock();
        pages.singles + pages.blocks.len() * BLOCK_PAGES as usize
    }

    /// The page backing byte `offset`, committing a zeroed one (or, in a charged VMO, its
    /// whole 2 MiB block) on first touch.
    pub fn commit(&self, offset: u64) -> ZxResult<PhysAddr> {
        self.commit_with_block(offset).map(|commit| commit.page)
    }

    /// [`Vmo::commit`], and the 2 MiB block the page lies in when one block backs all of its
    /// window (stage 2 may then map the window with one descriptor), and whether this call
    /// committed it.
    pub fn commit_with_block(&self, offset: u64) -> ZxResult<Commit> {
        if offset >= self.size {
            return Err(Status::OUT_OF_RANGE);
        }
        let index = offset / BLOCK_SIZE;
        let in_block = |block: PhysAddr| PhysAddr::new(block.raw() + ((offset % BLOCK_SIZE) & !(PAGE_SIZE - 1)));
        let mut pages = self.pages.lock();
        let pages = &mut *pages;
        if let Some(&block) = pages.blocks.get(&index) {
            return Ok(Commit { page: in_block(block), block: Some(block), fresh: false });
        }
        let whole_window = (index + 1) * BLOCK_SIZE <= self.size;
        if self.charged && whole_window && !pages.has_pages_in_block(index) {
            if let Some(block) = frames::alloc_block_zeroed_for(true) {
                pages.blocks.insert(index, block);
                return Ok(Commit { page: in_block(block), block: Some(block), fresh: true });
            }
        }
        // One search of the windows, whether the page is there or not.
        let charged = self.charged;
        let (page, fresh) = pages.single(offset, || frames::alloc_zeroed_for(charged).ok_or(Status::NO_MEMORY))?;
        Ok(Commit { page, block: None, fresh })
    }

    /// The page backing byte `offset` if it is committed.
    pub fn lookup(&self, offset: u64) -> Option<PhysAddr> {
        self.pages.lock().frame(offset)
    }

    fn check_range(&self, offset: u64, len: usize) -> ZxResult {
        let end = offset.checked_add(len as u64).ok_or(Status::OUT_OF_RANGE)?;
        if end > self.size {
            return Err(Status::OUT_OF_RANGE);
        }
        Ok(())
    }

    /// Copies `data` into the VMO at `offset` (`zx_vmo_write`).
    pub fn write(&self, offset: u64, data: &[u8]) -> ZxResult {
        self.check_range(offset, data.len())?;
        let mut done = 0;
        while done < data.len() {
            let at = offset + done as u64;
            let page = self.commit(at)?;
            let in_page = (at % PAGE_SIZE) as usize;
            let n = (PAGE_SIZE as usize - in_page).min(data.len() - done);
            let _pages = self.pages.lock();
            // SAFETY: the page is committed to this VMO and stays so while we hold its lock.
            let bytes = unsafe { frames::page_bytes(page) };
            bytes[in_page..in_page + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        Ok(())
    }

    /// Copies `len` bytes at `source_offset` of `source` to `offset` of this VMO, page to page,
    /// with no copy in between (Belfry's `vmo_transfer`); untouched source pages read as zero.
    /// `source` may be this VMO (ranges may overlap: the copy is a move per piece).
    pub fn copy_from(&self, offset: u64, source: &Vmo, source_offset: u64, len: u64) -> ZxResult {
        let n = usize::try_from(len).map_err(|_| Status::OUT_OF_RANGE)?;
        self.check_range(offset, n)?;
        source.check_range(source_offset, n)?;
        let same = core::ptr::eq(self, source);
        let mut done = 0;
        while done < len {
            let (at, from) = (offset + done, source_offset + done);
            let piece = (PAGE_SIZE - at % PAGE_SIZE).min(PAGE_SIZE - from % PAGE_SIZE).min(len - done);
            let page = self.commit(at)?;
            // Both page locks, in address order (a copy each way between two VMOs at once
            // must not deadlock); one when it is the same VMO.
            let (first, second) =
                if (self as *const Vmo) < (source as *const Vmo) { (self, source) } else { (source, self) };
            let first_pages = first.pages.lock();
            let second_pages = (!same).then(|| second.pages.lock());
            let source_pages = match &second_pages {
                Some(pages) if !core::ptr::eq(first, source) => pages,
                _ => &first_pages,
            };
            let source_page = source_pages.frame(from);
            let target = (page.raw() + at % PAGE_SIZE) as *mut u8;
            match source_page {
                // SAFETY: both pages are committed to their VMOs and stay so while we hold their
                // locks; `piece` stays inside each page; `copy` allows the pages to be one.
                Some(source_page) => unsafe {
                    core::ptr::copy((source_page.raw() + from % PAGE_SIZE) as *const u8, target, piece as usize)
                },
                // SAFETY: as above, for the target page alone.
                None => unsafe { core::ptr::write_bytes(target, 0, piece as usize) },
            }
            done += piece;
        }
        Ok(())
    }

    /// Copies bytes at `offset` into `buffer` (`zx_vmo_read`); untouched pages read as zero
    /// without being committed.
    pub fn read(&self, offset: u64, buffer: &mut [u8]) -> ZxResult {
        self.check_range(offset, buffer.len())?;
        let mut done = 0;
        while done < buffer.len() {
            let at = offset + done as u64;
            let in_page = (at % PAGE_SIZE) as usize;
            let n = (PAGE_SIZE as usize - in_page).min(buffer.len() - done);
            let pages = self.pages.lock();
            match pages.frame(at) {
                Some(page) => {
                    // SAFETY: the page is committed to this VMO and stays so while we hold its lock.
                    let bytes = unsafe { frames::page_bytes(page) };
                    buffer[done..done + n].copy_from_slice(&bytes[in_page..in_page + n]);
                }
                None => buffer[done..done + n].fill(0),
            }
            done += n;
        }
        Ok(())
    }
}

impl Drop for Vmo {
    fn drop(&mut self) {
        let pages = self.pages.get_mut();
        let committed = pages.singles as u64 + pages.blocks.len() as u64 * BLOCK_PAGES;
        if self.charged {
            frames::release(self.size / PAGE_SIZE - committed);
        }
        for page in pages.windows.values().flat_map(Window::frames) {
            frames::free(page);
        }
        for block in pages.blocks.values() {
            frames::free_block(*block);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_commit_that_takes_a_page_calls_it_fresh() {
        // A fresh page is one nothing but the frame allocator has written (zeroed and cleaned):
        // the fault path skips its cache clean for it and only for it.
        let vmo = Vmo::new(2 * PAGE_SIZE).unwrap();
        let first = vmo.commit_with_block(8).unwrap();
        assert!(first.fresh);
        assert_eq!(first.block, None);
        let again = vmo.commit_with_block(16).unwrap();
        assert_eq!((again.page, again.fresh), (first.page, false));
        vmo.write(PAGE_SIZE, &[1]).unwrap();
        let written = vmo.commit_with_block(PAGE_SIZE).unwrap();
        assert!(!written.fresh, "committed by the write, and written since");
        let charged = Vmo::new_charged(BLOCK_SIZE).unwrap();
        let block = charged.commit_with_block(PAGE_SIZE).unwrap();
        assert!(block.fresh && block.block.is_some());
        assert!(!charged.commit_with_block(0).unwrap().fresh, "the block was committed whole");
    }

    #[test]
    fn pages_are_committed_on_first_touch() {
        let vmo = Vmo::new(3 * PAGE_SIZE - 5).unwrap();
        assert_eq!(vmo.size(), 3 * PAGE_SIZE);
        assert_eq!(vmo.committed_pages(), 0);
        let mut buffer = [0xffu8; 16];
        vmo.read(PAGE_SIZE - 8, &mut buffer).unwrap();
        assert_eq!(buffer, [0; 16]);
        assert_eq!(vmo.committed_pages(), 0, "reads of untouched pages commit nothing");
        vmo.write(PAGE_SIZE - 4, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        assert_eq!(vmo.committed_pages(), 2);
        vmo.read(PAGE_SIZE - 8, &mut buffer).unwrap();
        assert_eq!(buffer, [0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0]);
        assert_eq!(vmo.commit(0).unwrap(), vmo.commit(8).unwrap());
        assert_eq!(vmo.lookup(2 * PAGE_SIZE), None);
    }

    #[test]
    fn a_charged_vmo_holds_its_pages() {
        // Other tests allocate concurrently: the exact accounting is `Ledger`'s unit test.
        let vmo = Vmo::new_charged(8 * PAGE_SIZE).unwrap();
        vmo.write(0, &[1]).unwrap();
        assert_eq!(vmo.committed_pages(), 1);
        assert_eq!(Vmo::new_charged(MAX_VMO_SIZE).err(), Some(Status::NO_MEMORY), "more than the host's 4 GiB");
        drop(vmo);
    }

    #[test]
    fn a_charged_vmo_commits_whole_blocks_where_they_fit() {
        // 2 MiB and 12 KiB: one whole window, then a window the VMO covers only in part.
        let vmo = Vmo::new_charged(BLOCK_SIZE + 3 * PAGE_SIZE).unwrap();
        let Commit { page, block, .. } = vmo.commit_with_block(0x1_2345).unwrap();
        let block = block.expect("the first window is one block");
        assert!(block.is_aligned(BLOCK_SIZE));
        assert_eq!(page.raw(), block.raw() + 0x1_2000);
        assert_eq!(vmo.committed_pages(), 512);
        vmo.write(BLOCK_SIZE - 2, &[7, 8, 9, 10]).unwrap();
        let mut back = [0u8; 4];
        vmo.read(BLOCK_SIZE - 2, &mut back).unwrap();
        assert_eq!(back, [7, 8, 9, 10], "a write across the block's end");
        assert_eq!(vmo.committed_pages(), 513, "the partial window is committed by pages");
        assert_eq!(vmo.commit_with_block(BLOCK_SIZE).unwrap().block, None);
        assert_eq!(vmo.lookup(BLOCK_SIZE - 1).map(|p| p.raw()), Some(block.raw() + BLOCK_SIZE - PAGE_SIZE));
        // An uncharged VMO commits pages only (nothing is promised to it).
        let plain = Vmo::new(BLOCK_SIZE).unwrap();
        assert_eq!(plain.commit_with_block(0).unwrap().block, None);
        assert_eq!(plain.committed_pages(), 1);
        // A window with a page in it already stays by pages.
        let charged = Vmo::new_charged(2 * BLOCK_SIZE).unwrap();
        charged.pages.lock().single(BLOCK_SIZE, || Ok(frames::alloc_zeroed_for(true).unwrap())).unwrap();
        assert_eq!(charged.commit_with_block(BLOCK_SIZE + PAGE_SIZE).unwrap().block, None);
        assert!(charged.commit_with_block(0).unwrap().block.is_some());
    }

    #[test]
    fn single_pages_are_kept_by_window() {
        let vmo = Vmo::new(3 * BLOCK_SIZE).unwrap();
        let a = vmo.commit_with_block(BLOCK_SIZE + 5 * PAGE_SIZE + 3).unwrap();
        let b = vmo.commit_with_block(BLOCK_SIZE + 6 * PAGE_SIZE).unwrap();
        let c = vmo.commit_with_block(2 * BLOCK_SIZE + PAGE_SIZE - 1).unwrap();
        assert!(a.fresh && b.fresh && c.fresh);
        assert_eq!(vmo.committed_pages(), 3);
        assert_eq!(vmo.lookup(BLOCK_SIZE + 5 * PAGE_SIZE), Some(a.page));
        assert_eq!(vmo.lookup(BLOCK_SIZE + 6 * PAGE_SIZE + 100), Some(b.page));
        assert_eq!(vmo.lookup(2 * BLOCK_SIZE), Some(c.page));
        assert_eq!(vmo.lookup(BLOCK_SIZE + 7 * PAGE_SIZE), None, "a window's other pages stay absent");
        assert_eq!(vmo.lookup(0), None, "an untouched window has no table");
        assert_eq!(
            vmo.commit_with_block(BLOCK_SIZE + 5 * PAGE_SIZE).unwrap(),
            Commit { page: a.page, block: None, fresh: false }
        );
        assert_eq!(vmo.pages.lock().windows.len(), 2);
        // An allocation that fails leaves no empty window behind.
        let mut pages = vmo.pages.lock();
        assert_eq!(pages.single(0, || Err(Status::NO_MEMORY)), Err(Status::NO_MEMORY));
        assert!(!pages.has_pages_in_block(0));
        assert_eq!(pages.singles, 3);
    }

    #[test]
    fn copies_between_vmos_page_to_page() {
        let a = Vmo::new(3 * PAGE_SIZE).unwrap();
        let b = Vmo::new(3 * PAGE_SIZE).unwrap();
        let data: Vec<u8> = (0..PAGE_SIZE as usize + 300).map(|i| i as u8).collect();
        a.write(PAGE_SIZE - 100, &data).unwrap();
        // Across a page boundary on both sides, at different offsets within the pages.
        b.copy_from(50, &a, PAGE_SIZE - 100, data.len() as u64).unwrap();
        let mut back = vec![0u8; data.len()];
        b.read(50, &mut back).unwrap();
        assert_eq!(back, data);
        // Untouched source pages read as zero; the target is overwritten.
        b.copy_from(0, &a, 2 * PAGE_SIZE + 500, 16).unwrap();
        let mut zeros = [0xffu8; 16];
        b.read(0, &mut zeros).unwrap();
        assert_eq!(zeros, [0; 16]);
        // Within one VMO, overlapping.
        a.copy_from(PAGE_SIZE - 90, &a, PAGE_SIZE - 100, 20).unwrap();
        let mut moved = [0u8; 20];
        a.read(PAGE_SIZE - 90, &mut moved).unwrap();
        assert_eq!(&moved[..], &data[..20]);
        assert_eq!(b.copy_from(3 * PAGE_SIZE - 4, &a, 0, 8), Err(Status::OUT_OF_RANGE));
        assert_eq!(b.copy_from(0, &a, 3 * PAGE_SIZE - 4, 8), Err(Status::OUT_OF_RANGE));
        assert_eq!(b.copy_from(0, &a, u64::MAX, 8), Err(Status::OUT_OF_RANGE));
    }

    #[test]
    fn out_of_range() {
        let vmo = Vmo::new(PAGE_SIZE).unwrap();
        assert_eq!(vmo.write(PAGE_SIZE - 1, &[0, 0]), Err(Status::OUT_OF_RANGE));
        assert_eq!(vmo.read(u64::MAX, &mut [0]), Err(Status::OUT_OF_RANGE));
        assert_eq!(vmo.commit(PAGE_SIZE), Err(Status::OUT_OF_RANGE));
        assert_eq!(Vmo::new(u64::MAX).err(), Some(Status::OUT_OF_RANGE));
        assert_eq!(Vmo::new(MAX_VMO_SIZE + 1).err(), Some(Status::OUT_OF_RANGE));
    }
}
