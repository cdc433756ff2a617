//! A guest's stage-2 address space: its translation tables and VMID.
//!
//! Tables come from the frame allocator. VMIDs are 8-bit (VTCR_EL2.VS = 0); VMID 0 is never
//! given to a guest, so 255 guests can exist at once and the 256th `guest_create` is
//! NO_RESOURCES. Changing a mapping invalidates exactly the pages it changed, by IPA and VMID;
//! nothing flushes a whole TLB.

use super::frames;
use super::{Status, ZxResult};
use stage2::table::{vttbr, MemoryKind, Permissions, Stage2, Stage2Error, TableSource, PAGE_SIZE};
use stage2::{GuestPhysAddr, PhysAddr};

/// Table pages from the frame allocator.
#[derive(Debug, Default)]
pub struct FrameTables;

impl TableSource for FrameTables {
    fn allocate(&mut self) -> Option<PhysAddr> {
        frames::alloc_zeroed()
    }

    fn free(&mut self, table: PhysAddr) {
        frames::free(table);
    }
}

static VMIDS: spin::Mutex<[u64; 4]> = spin::Mutex::new([1, 0, 0, 0]);

fn allocate_vmid() -> Option<u8> {
    let mut used = VMIDS.lock();
    for (word_index, word) in used.iter_mut().enumerate() {
        if *word != u64::MAX {
            let bit = word.trailing_ones();
            *word |= 1 << bit;
            return Some((word_index * 64 + bit as usize) as u8);
        }
    }
    None
}

fn release_vmid(vmid: u8) {
    let mut used = VMIDS.lock();
    used[vmid as usize / 64] &= !(1 << (vmid % 64));
}

/// See the module documentation.
pub struct GuestSpace {
    stage2: Stage2<FrameTables>,
    vmid: u8,
}

impl GuestSpace {
    /// An empty space with a fresh VMID.
    pub fn new() -> ZxResult<Self> {
        let vmid = allocate_vmid().ok_or(Status::NO_RESOURCES)?;
        match Stage2::new(FrameTables) {
            Ok(mut stage2) => {
                if let Some((ipa, frame, len)) = crate::arch::guest_device_pages() {
                    let read_write = Permissions { read: true, write: true, execute: false };
                    for offset in (0..len).step_by(4096) {
                        let page = (GuestPhysAddr::new(ipa + offset), PhysAddr::new(frame + offset));
                        if stage2.map_page(page.0, page.1, read_write, MemoryKind::Device).is_err() {
                            release_vmid(vmid);
                            return Err(Status::NO_MEMORY);
                        }
                    }
                }
                Ok(Self { stage2, vmid })
            }
            Err(_) => {
                release_vmid(vmid);
                Err(Status::NO_MEMORY)
            }
        }
    }

    /// VTTBR_EL2 for this guest.
    pub fn vttbr(&self) -> u64 {
        vttbr(self.stage2.root(), self.vmid)
    }

    /// The VMID.
    pub fn vmid(&self) -> u8 {
        self.vmid
    }

    /// Maps one guest page. Inside a block that maps it otherwise (its mapping changed since),
    /// the block goes first.
    pub fn map(&mut self, ipa: u64, frame: PhysAddr, permissions: Permissions) -> ZxResult {
        let page = GuestPhysAddr::new(ipa);
        match self.stage2.map_page(page, frame, permissions, MemoryKind::Normal) {
            Err(Stage2Error::Occupied) => {
                self.unmap(ipa, PAGE_SIZE);
                self.stage2.map_page(page, frame, permissions, MemoryKind::Normal).map_err(|_| Status::NO_MEMORY)
            }
            other => other.map_err(|_| Status::NO_MEMORY),
        }
    }

    /// Maps the 2 MiB window at `ipa` to `block` with one descriptor; `false` when pages are
    /// mapped there already (the caller maps the page instead).
    pub fn map_block(&mut self, ipa: u64, block: PhysAddr, permissions: Permissions) -> ZxResult<bool> {
        self.stage2
            .map_block(GuestPhysAddr::new(ipa), block, permissions, MemoryKind::Normal)
            .map_err(|_| Status::NO_MEMORY)
    }

    /// The frame and permissions behind a guest page.
    pub fn lookup(&mut self, ipa: u64) -> Option<(PhysAddr, Permissions)> {
        self.stage2.lookup(GuestPhysAddr::new(ipa))
    }

    /// Unmaps `[start, start + len)` and invalidates what was mapped.
    pub fn unmap(&mut self, start: u64, len: u64) {
        let vttbr = self.vttbr();
        self.stage2.unmap(GuestPhysAddr::new(start), len, |ipa| crate::arch::invalidate_guest_page(vttbr, ipa.raw()));
    }

    /// Sets the permissions of the mapped pages in `[start, start + len)`.
    pub fn protect(&mut self, start: u64, len: u64, permissions: Permissions) {
        let vttbr = self.vttbr();
        self.stage2.protect(GuestPhysAddr::new(start), len, permissions, |ipa| {
            crate::arch::invalidate_guest_page(vttbr, ipa.raw())
        });
    }
}

impl Drop for GuestSpace {
    fn drop(&mut self) {
        crate::arch::invalidate_guest(self.vttbr());
        release_vmid(self.vmid);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn vmids_are_unique_and_reused() {
        let a = GuestSpace::new().unwrap();
        let b = GuestSpace::new().unwrap();
        assert_ne!(a.vmid(), b.vmid());
        assert_ne!(a.vmid(), 0);
        assert_eq!(a.vttbr() >> 48, u64::from(a.vmid()));
        let freed = a.vmid();
        drop(a);
        let c = GuestSpace::new().unwrap();
        assert!(c.vmid() == freed || c.vmid() != b.vmid());
    }
}
