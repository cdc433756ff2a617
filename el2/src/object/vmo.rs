//! Virtual memory objects: memory whose pages are committed on first touch (lguest's lesson:
//! nothing is allocated until it is used), from the frame allocator.

use super::frames::{self, PAGE_SIZE};
use super::{Status, ZxResult};
use alloc::collections::BTreeMap;
use stage2::PhysAddr;

/// The largest VMO Belfry creates: the whole guest-physical space.
pub const MAX_VMO_SIZE: u64 = super::vmar::GUEST_PHYSICAL_SIZE;

/// See the module documentation.
#[derive(Debug)]
pub struct Vmo {
    size: u64,
    pages: spin::Mutex<BTreeMap<u64, PhysAddr>>,
    /// Every page was promised at creation ([`Vmo::new_charged`]).
    charged: bool,
}

impl Vmo {
    /// A VMO of `size` bytes rounded up to whole pages (`zx_vmo_create`).
    pub fn new(size: u64) -> ZxResult<Self> {
        let size = size.checked_next_multiple_of(PAGE_SIZE).ok_or(Status::OUT_OF_RANGE)?;
        if size > MAX_VMO_SIZE {
            return Err(Status::OUT_OF_RANGE);
        }
        Ok(Self { size, pages: spin::Mutex::new(BTreeMap::new()), charged: false })
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

    /// Pages committed so far.
    pub fn committed_pages(&self) -> usize {
        self.pages.lock().len()
    }

    /// The page backing byte `offset`, committing a zeroed one on first touch.
    pub fn commit(&self, offset: u64) -> ZxResult<PhysAddr> {
        if offset >= self.size {
            return Err(Status::OUT_OF_RANGE);
        }
        let index = offset / PAGE_SIZE;
        let mut pages = self.pages.lock();
        if let Some(page) = pages.get(&index) {
            return Ok(*page);
        }
        let page = frames::alloc_zeroed_for(self.charged).ok_or(Status::NO_MEMORY)?;
        pages.insert(index, page);
        Ok(page)
    }

    /// The page backing byte `offset` if it is committed.
    pub fn lookup(&self, offset: u64) -> Option<PhysAddr> {
        self.pages.lock().get(&(offset / PAGE_SIZE)).copied()
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
            match pages.get(&(at / PAGE_SIZE)) {
                Some(page) => {
                    // SAFETY: the page is committed to this VMO and stays so while we hold its lock.
                    let bytes = unsafe { frames::page_bytes(*page) };
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
        if self.charged {
            frames::release(self.size / PAGE_SIZE - pages.len() as u64);
        }
        for page in pages.values() {
            frames::free(*page);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn out_of_range() {
        let vmo = Vmo::new(PAGE_SIZE).unwrap();
        assert_eq!(vmo.write(PAGE_SIZE - 1, &[0, 0]), Err(Status::OUT_OF_RANGE));
        assert_eq!(vmo.read(u64::MAX, &mut [0]), Err(Status::OUT_OF_RANGE));
        assert_eq!(vmo.commit(PAGE_SIZE), Err(Status::OUT_OF_RANGE));
        assert_eq!(Vmo::new(u64::MAX).err(), Some(Status::OUT_OF_RANGE));
        assert_eq!(Vmo::new(MAX_VMO_SIZE + 1).err(), Some(Status::OUT_OF_RANGE));
    }
}
