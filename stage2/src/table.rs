//! Stage-2 translation tables: guest-physical (IPA) pages to host-physical frames.
//!
//! Geometry: 4 KiB granule, a 36-bit IPA space (VTCR_EL2.T0SZ = 28) walked from level 1, whose
//! table has 64 entries. Guest RAM is mapped as the guest first touches it (lguest's demand
//! paging): by 2 MiB level-2 blocks where the memory behind is one aligned block
//! ([`Stage2::map_block`]), otherwise by level-3 pages. The level-2 and level-3 tables appear
//! as needed and are freed with the address space. Unmapping or protecting any part of a block
//! removes the whole block: stage 2 only caches the guest's memory map, and the next access
//! faults it back in, by pages where the block no longer fits.
//!
//! Tables are addressed by physical address. On the board that is also their EL2 address (the
//! identity map); on the host the [`TableSource`] hands out host memory whose address stands
//! in for it, so the same code is unit-tested.

use crate::addr::{GuestPhysAddr, PhysAddr};

/// Bits of guest-physical address.
pub const IPA_BITS: u32 = 36;
/// Bytes in a page.
pub const PAGE_SIZE: u64 = 4096;
/// Bytes a level-2 block maps.
pub const BLOCK_SIZE: u64 = 1 << 21;
const ENTRIES: usize = 512;

const VALID: u64 = 1 << 0;
const TABLE_OR_PAGE: u64 = 1 << 1;
const MEMATTR_NORMAL_WB: u64 = 0b1111 << 2;
const MEMATTR_DEVICE_NGNRE: u64 = 0b0001 << 2;
const S2AP_READ: u64 = 1 << 6;
const S2AP_WRITE: u64 = 1 << 7;
const INNER_SHAREABLE: u64 = 0b11 << 8;
const ACCESS_FLAG: u64 = 1 << 10;
/// XN[1:0] = 0b10: not executable at EL1 or EL0 (the same meaning with and without FEAT_XNX).
const EXECUTE_NEVER: u64 = 0b10 << 53;
const OUTPUT_MASK: u64 = 0x0000_ffff_ffff_f000;

/// VTCR_EL2 for this geometry, with `pa_range` (ID_AA64MMFR0_EL1.PARange) as the output size.
pub const fn vtcr(pa_range: u64) -> u64 {
    let t0sz = 64 - IPA_BITS as u64;
    let sl0_level1 = 0b01 << 6;
    let inner_wbwa = 0b01 << 8;
    let outer_wbwa = 0b01 << 10;
    let inner_shareable = 0b11 << 12;
    let ps = (if pa_range > 0b101 { 0b101 } else { pa_range }) << 16;
    (1 << 31) | ps | inner_shareable | outer_wbwa | inner_wbwa | sl0_level1 | t0sz
}

/// VTTBR_EL2 for a root table and VMID.
pub const fn vttbr(root: PhysAddr, vmid: u8) -> u64 {
    ((vmid as u64) << 48) | root.raw()
}

/// Access a guest has to a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Permissions {
    pub read: bool,
    pub write: bool,
    pub execute: bool,
}

impl Permissions {
    pub const RWX: Permissions = Permissions { read: true, write: true, execute: true };
}

/// What kind of memory a page is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// Guest RAM: normal write-back cacheable (the guest's own attributes combine with it).
    Normal,
    /// A device frame passed through (e.g. the GICv2 GICV page): Device-nGnRE.
    Device,
}

fn page_descriptor(output: PhysAddr, permissions: Permissions, kind: MemoryKind) -> u64 {
    let mut descriptor = (output.raw() & OUTPUT_MASK) | VALID | TABLE_OR_PAGE | ACCESS_FLAG;
    descriptor |= match kind {
        MemoryKind::Normal => MEMATTR_NORMAL_WB | INNER_SHAREABLE,
        MemoryKind::Device => MEMATTR_DEVICE_NGNRE,
    };
    if permissions.read {
        descriptor |= S2AP_READ;
    }
    if permissions.write {
        descriptor |= S2AP_WRITE;
    }
    if !permissions.execute || kind == MemoryKind::Device {
        descriptor |= EXECUTE_NEVER;
    }
    descriptor
}

/// A level-2 block descriptor: a page descriptor with bit 1 clear.
fn block_descriptor(output: PhysAddr, permissions: Permissions, kind: MemoryKind) -> u64 {
    page_descriptor(output, permissions, kind) & !TABLE_OR_PAGE
}

fn is_block(descriptor: u64) -> bool {
    descriptor & (VALID | TABLE_OR_PAGE) == VALID
}

fn permissions_of(descriptor: u64) -> Permissions {
    Permissions {
        read: descriptor & S2AP_READ != 0,
        write: descriptor & S2AP_WRITE != 0,
        execute: descriptor & EXECUTE_NEVER == 0,
    }
}

/// Where table pages come from.
pub trait TableSource {
    /// A zeroed, page-aligned table page, or `None` when memory is exhausted.
    fn allocate(&mut self) -> Option<PhysAddr>;
    /// Returns a page from [`TableSource::allocate`].
    fn free(&mut self, table: PhysAddr);
}

/// Why a mapping failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage2Error {
    /// The address is beyond the IPA space or not page-aligned.
    BadAddress,
    /// A page was to be mapped inside a block that maps it elsewhere or with other
    /// permissions: the block must be unmapped first.
    Occupied,
    /// No memory for a table.
    OutOfMemory,
}

/// One guest's stage-2 tables.
pub struct Stage2<S: TableSource> {
    root: PhysAddr,
    source: S,
    tables: usize,
}

fn entries<'a>(table: PhysAddr) -> &'a mut [u64; ENTRIES] {
    // SAFETY: every table address comes from the `TableSource`, which hands out live, page-sized,
    // page-aligned memory addressable at that address, owned by this `Stage2` until `Drop`;
    // `Stage2` methods take `&mut self`, so no two references to one table are live at once.
    unsafe { &mut *(table.raw() as *mut [u64; ENTRIES]) }
}

const fn index(ipa: u64, level: u32) -> usize {
    ((ipa >> (12 + 9 * (3 - level))) & (ENTRIES as u64 - 1)) as usize
}

impl<S: TableSource> Stage2<S> {
    /// An empty address space.
    pub fn new(mut source: S) -> Result<Self, Stage2Error> {
        let root = source.allocate().ok_or(Stage2Error::OutOfMemory)?;
        Ok(Self { root, source, tables: 1 })
    }

    /// The root table, for VTTBR_EL2.
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// Tables in use (root included).
    pub fn table_count(&self) -> usize {
        self.tables
    }

    fn check(ipa: GuestPhysAddr) -> Result<u64, Stage2Error> {
        let raw = ipa.raw();
        if raw >= 1 << IPA_BITS || !raw.is_multiple_of(PAGE_SIZE) {
            return Err(Stage2Error::BadAddress);
        }
        Ok(raw)
    }

    /// The level-2 table covering `ipa`, created if `create` and missing.
    fn level2_table(&mut self, ipa: u64, create: bool) -> Result<Option<PhysAddr>, Stage2Error> {
        let slot = &mut entries(self.root)[index(ipa, 1)];
        if *slot & VALID == 0 {
            if !create {
                return Ok(None);
            }
            let next = self.source.allocate().ok_or(Stage2Error::OutOfMemory)?;
            self.tables += 1;
            *slot = next.raw() | VALID | TABLE_OR_PAGE;
        }
        Ok(Some(PhysAddr::new(*slot & OUTPUT_MASK)))
    }

    /// Maps the page at `ipa` to the frame `output`. Inside a block that already maps it so,
    /// nothing changes; inside a block that maps it otherwise, [`Stage2Error::Occupied`].
    pub fn map_page(
        &mut self,
        ipa: GuestPhysAddr,
        output: PhysAddr,
        permissions: Permissions,
        kind: MemoryKind,
    ) -> Result<(), Stage2Error> {
        let raw = Self::check(ipa)?;
        if !output.is_aligned(PAGE_SIZE) {
            return Err(Stage2Error::BadAddress);
        }
        let Some(level2) = self.level2_table(raw, true)? else { return Err(Stage2Error::OutOfMemory) };
        let slot = &mut entries(level2)[index(raw, 2)];
        if is_block(*slot) {
            let same = (*slot & OUTPUT_MASK) + (raw & (BLOCK_SIZE - 1)) == output.raw()
                && permissions_of(*slot) == permissions;
            return if same { Ok(()) } else { Err(Stage2Error::Occupied) };
        }
        if *slot & VALID == 0 {
            let next = self.source.allocate().ok_or(Stage2Error::OutOfMemory)?;
            self.tables += 1;
            *slot = next.raw() | VALID | TABLE_OR_PAGE;
        }
        let leaf = PhysAddr::new(*slot & OUTPUT_MASK);
        entries(leaf)[index(raw, 3)] = page_descriptor(output, permissions, kind);
        Ok(())
    }

    /// Maps the 2 MiB at `ipa` to the 2 MiB at `output` with one level-2 block. `Ok(false)`,
    /// and nothing changed, when pages are already mapped there (a level-3 table).
    pub fn map_block(
        &mut self,
        ipa: GuestPhysAddr,
        output: PhysAddr,
        permissions: Permissions,
        kind: MemoryKind,
    ) -> Result<bool, Stage2Error> {
        let raw = Self::check(ipa)?;
        if !raw.is_multiple_of(BLOCK_SIZE) || !output.is_aligned(BLOCK_SIZE) {
            return Err(Stage2Error::BadAddress);
        }
        let Some(level2) = self.level2_table(raw, true)? else { return Err(Stage2Error::OutOfMemory) };
        let slot = &mut entries(level2)[index(raw, 2)];
        if *slot & VALID != 0 && !is_block(*slot) {
            return Ok(false);
        }
        *slot = block_descriptor(output, permissions, kind);
        Ok(true)
    }

    /// The frame and permissions `ipa`'s page maps to (within a block: that page's part).
    pub fn lookup(&mut self, ipa: GuestPhysAddr) -> Option<(PhysAddr, Permissions)> {
        let raw = ipa.raw() & !(PAGE_SIZE - 1);
        if raw >= 1 << IPA_BITS {
            return None;
        }
        let level2 = self.level2_table(raw, false).ok()??;
        let slot = entries(level2)[index(raw, 2)];
        if is_block(slot) {
            return Some((PhysAddr::new((slot & OUTPUT_MASK) + (raw & (BLOCK_SIZE - 1))), permissions_of(slot)));
        }
        if slot & VALID == 0 {
            return None;
        }
        let descriptor = entries(PhysAddr::new(slot & OUTPUT_MASK))[index(raw, 3)];
        (descriptor & VALID != 0).then(|| (PhysAddr::new(descriptor & OUTPUT_MASK), permissions_of(descriptor)))
    }

    /// Calls `f(ipa, descriptor, block)` for every valid page or block descriptor that maps
    /// part of `[start, start + len)`; `f` may rewrite it. A block's `ipa` is its start.
    fn for_each_mapping(&mut self, start: u64, len: u64, mut f: impl FnMut(u64, &mut u64, bool)) {
        let end = start.saturating_add(len).min(1 << IPA_BITS);
        let mut ipa = start & !(PAGE_SIZE - 1);
        while ipa < end {
            let next_block = (ipa | (BLOCK_SIZE - 1)) + 1;
            let Ok(Some(level2)) = self.level2_table(ipa, false) else {
                // No level-2 table: skip its whole 1 GiB.
                ipa = (ipa | ((1 << 30) - 1)) + 1;
                continue;
            };
            let slot = &mut entries(level2)[index(ipa, 2)];
            if is_block(*slot) {
                f(ipa & !(BLOCK_SIZE - 1), slot, true);
                ipa = next_block;
            } else if *slot & VALID == 0 {
                ipa = next_block;
            } else {
                let page = &mut entries(PhysAddr::new(*slot & OUTPUT_MASK))[index(ipa, 3)];
                if *page & VALID != 0 {
                    f(ipa, page, false);
                }
                ipa += PAGE_SIZE;
            }
        }
    }

    /// Unmaps every page in `[start, start + len)`, and every block with a part in it; calls
    /// `invalidate(ipa)` for each page or block (its start) that was mapped (the caller
    /// invalidates the TLBs).
    pub fn unmap(&mut self, start: GuestPhysAddr, len: u64, mut invalidate: impl FnMut(GuestPhysAddr)) {
        self.for_each_mapping(start.raw(), len, |ipa, slot, _| {
            *slot = 0;
            invalidate(GuestPhysAddr::new(ipa));
        });
    }

    /// Changes the permissions of every mapped page in `[start, start + len)`; a block with a
    /// part in it is unmapped instead (it faults back in with the permissions of the moment).
    pub fn protect(
        &mut self,
        start: GuestPhysAddr,
        len: u64,
        permissions: Permissions,
        mut invalidate: impl FnMut(GuestPhysAddr),
    ) {
        self.for_each_mapping(start.raw(), len, |ipa, slot, block| {
            if block {
                *slot = 0;
                invalidate(GuestPhysAddr::new(ipa));
                return;
            }
            let kind =
                if *slot & MEMATTR_NORMAL_WB == MEMATTR_NORMAL_WB { MemoryKind::Normal } else { MemoryKind::Device };
            *slot = page_descriptor(PhysAddr::new(*slot & OUTPUT_MASK), permissions, kind);
            invalidate(GuestPhysAddr::new(ipa));
        });
    }

    fn free_level(&mut self, table: PhysAddr, level: u32) {
        if level < 3 {
            let children: [u64; ENTRIES] = *entries(table);
            for descriptor in children {
                if descriptor & (VALID | TABLE_OR_PAGE) == VALID | TABLE_OR_PAGE {
                    self.free_level(PhysAddr::new(descriptor & OUTPUT_MASK), level + 1);
                }
            }
        }
        self.source.free(table);
    }
}

impl<S: TableSource> Drop for Stage2<S> {
    fn drop(&mut self) {
        self.free_level(self.root, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{alloc_zeroed, dealloc, Layout};
    use std::collections::BTreeSet;

    /// Host memory standing in for frames; tracks what is live.
    #[derive(Default)]
    struct HostTables {
        live: BTreeSet<u64>,
        limit: Option<usize>,
    }

    fn layout() -> Layout {
        Layout::from_size_align(4096, 4096).unwrap()
    }

    impl TableSource for &mut HostTables {
        fn allocate(&mut self) -> Option<PhysAddr> {
            if self.limit.is_some_and(|limit| self.live.len() >= limit) {
                return None;
            }
            // SAFETY: non-zero size.
            let page = unsafe { alloc_zeroed(layout()) } as u64;
            self.live.insert(page);
            Some(PhysAddr::new(page))
        }

        fn free(&mut self, table: PhysAddr) {
            assert!(self.live.remove(&table.raw()), "double free");
            // SAFETY: allocated above with this layout.
            unsafe { dealloc(table.raw() as *mut u8, layout()) };
        }
    }

    fn gpa(raw: u64) -> GuestPhysAddr {
        GuestPhysAddr::new(raw)
    }

    #[test]
    fn map_lookup_and_descriptor_bits() {
        let mut host = HostTables::default();
        {
            let mut s2 = Stage2::new(&mut host).unwrap();
            s2.map_page(gpa(0x4000_1000), PhysAddr::new(0x8765_4000), Permissions::RWX, MemoryKind::Normal).unwrap();
            assert_eq!(s2.table_count(), 3);
            assert_eq!(s2.lookup(gpa(0x4000_1abc)), Some((PhysAddr::new(0x8765_4000), Permissions::RWX)));
            assert_eq!(s2.lookup(gpa(0x4000_2000)), None);
            assert_eq!(s2.lookup(gpa(0x1000)), None);
            // The neighbouring page shares the level-3 table.
            let read_only = Permissions { read: true, ..Default::default() };
            s2.map_page(gpa(0x4000_2000), PhysAddr::new(0x1000), read_only, MemoryKind::Device).unwrap();
            assert_eq!(s2.table_count(), 3);
            assert_eq!(s2.lookup(gpa(0x4000_2000)), Some((PhysAddr::new(0x1000), read_only)));
        }
        assert!(host.live.is_empty(), "every table is freed with the address space");
    }

    #[test]
    fn descriptors_match_the_architecture() {
        let normal = page_descriptor(PhysAddr::new(0x4000_0000), Permissions::RWX, MemoryKind::Normal);
        assert_eq!(normal, 0x4000_0000 | 0b11 | (0b1111 << 2) | (0b11 << 6) | (0b11 << 8) | (1 << 10));
        let device = page_descriptor(
            PhysAddr::new(0x0804_0000),
            Permissions { read: true, write: true, execute: false },
            MemoryKind::Device,
        );
        assert_eq!(device, 0x0804_0000 | 0b11 | (0b0001 << 2) | (0b11 << 6) | (1 << 10) | (1 << 54));
        assert_eq!(vtcr(0b010), (1 << 31) | (0b010 << 16) | (0b11 << 12) | (1 << 10) | (1 << 8) | (1 << 6) | 28);
        assert_eq!(vtcr(0b110) >> 16 & 0b111, 0b101);
        assert_eq!(vttbr(PhysAddr::new(0x4800_0000), 3), (3 << 48) | 0x4800_0000);
    }

    #[test]
    fn unmap_and_protect_report_each_page() {
        let mut host = HostTables::default();
        let mut s2 = Stage2::new(&mut host).unwrap();
        for page in 0..4 {
            s2.map_page(
                gpa(page * PAGE_SIZE),
                PhysAddr::new(0x10_0000 + page * PAGE_SIZE),
                Permissions::RWX,
                MemoryKind::Normal,
            )
            .unwrap();
        }
        let mut touched = Vec::new();
        s2.protect(gpa(PAGE_SIZE), 2 * PAGE_SIZE, Permissions { read: true, ..Default::default() }, |ipa| {
            touched.push(ipa.raw())
        });
        assert_eq!(touched, vec![0x1000, 0x2000]);
        assert!(!s2.lookup(gpa(0x1000)).unwrap().1.write);
        assert!(s2.lookup(gpa(0x3000)).unwrap().1.write);
        touched.clear();
        s2.unmap(gpa(0), 0x40_0000_0000, |ipa| touched.push(ipa.raw()));
        assert_eq!(touched, vec![0, 0x1000, 0x2000, 0x3000]);
        assert_eq!(s2.lookup(gpa(0)), None);
    }

    #[test]
    fn blocks_map_two_mebibytes_and_go_whole() {
        let mut host = HostTables::default();
        let mut s2 = Stage2::new(&mut host).unwrap();
        let rw = Permissions { read: true, write: true, execute: false };
        let (ipa, frame) = (0x4020_0000, PhysAddr::new(0x8060_0000));
        assert_eq!(s2.map_block(gpa(ipa), frame, rw, MemoryKind::Normal), Ok(true));
        // A root and one level-2 table: the block needs no level-3 table.
        assert_eq!(s2.table_count(), 2);
        let level2 = PhysAddr::new(entries(s2.root())[index(ipa, 1)] & OUTPUT_MASK);
        let descriptor = entries(level2)[index(ipa, 2)];
        assert_eq!(descriptor & 0b11, 0b01, "a block descriptor");
        assert_eq!(descriptor & OUTPUT_MASK, 0x8060_0000);
        assert_eq!(s2.lookup(gpa(ipa + 0x1_2345)), Some((PhysAddr::new(0x8061_2000), rw)));
        assert_eq!(s2.lookup(gpa(ipa + BLOCK_SIZE)), None);
        // A page the block already maps so: no change; otherwise: occupied.
        assert_eq!(s2.map_page(gpa(ipa + 0x3000), PhysAddr::new(0x8060_3000), rw, MemoryKind::Normal), Ok(()));
        assert_eq!(
            s2.map_page(gpa(ipa + 0x3000), PhysAddr::new(0x9000_0000), rw, MemoryKind::Normal),
            Err(Stage2Error::Occupied)
        );
        assert_eq!(s2.table_count(), 2);
        // Misaligned blocks are refused.
        assert_eq!(s2.map_block(gpa(ipa + 0x1000), frame, rw, MemoryKind::Normal), Err(Stage2Error::BadAddress));
        assert_eq!(
            s2.map_block(gpa(ipa), PhysAddr::new(0x8060_1000), rw, MemoryKind::Normal),
            Err(Stage2Error::BadAddress)
        );
        // Unmapping one page of it removes the block, reported once at its start.
        let mut seen = Vec::new();
        s2.unmap(gpa(ipa + 0x5000), 0x1000, |a| seen.push(a.raw()));
        assert_eq!(seen, [ipa]);
        assert_eq!(s2.lookup(gpa(ipa + 0x1_2345)), None);
        // Pages first: a block is not put over them.
        s2.map_page(gpa(ipa), PhysAddr::new(0x7000_0000), rw, MemoryKind::Normal).unwrap();
        assert_eq!(s2.map_block(gpa(ipa), frame, rw, MemoryKind::Normal), Ok(false));
        assert_eq!(s2.lookup(gpa(ipa)), Some((PhysAddr::new(0x7000_0000), rw)));
        // Protecting part of a block removes it too.
        let next = ipa + BLOCK_SIZE;
        s2.map_block(gpa(next), PhysAddr::new(0x80a0_0000), rw, MemoryKind::Normal).unwrap();
        let mut seen = Vec::new();
        s2.protect(gpa(next + BLOCK_SIZE - 0x1000), 0x1000, Permissions::RWX, |a| seen.push(a.raw()));
        assert_eq!(seen, [next]);
        assert_eq!(s2.lookup(gpa(next)), None);
        drop(s2);
        assert!(host.live.is_empty(), "every table freed");
    }

    #[test]
    fn bad_addresses_and_exhaustion() {
        let mut host = HostTables { limit: Some(2), ..Default::default() };
        let mut s2 = Stage2::new(&mut host).unwrap();
        assert_eq!(
            s2.map_page(gpa(1 << 36), PhysAddr::new(0), Permissions::RWX, MemoryKind::Normal),
            Err(Stage2Error::BadAddress)
        );
        assert_eq!(
            s2.map_page(gpa(0x1001), PhysAddr::new(0), Permissions::RWX, MemoryKind::Normal),
            Err(Stage2Error::BadAddress)
        );
        assert_eq!(
            s2.map_page(gpa(0x1000), PhysAddr::new(0x10), Permissions::RWX, MemoryKind::Normal),
            Err(Stage2Error::BadAddress)
        );
        assert_eq!(
            s2.map_page(gpa(0x1000), PhysAddr::new(0), Permissions::RWX, MemoryKind::Normal),
            Err(Stage2Error::OutOfMemory)
        );
        assert_eq!(s2.lookup(gpa(u64::MAX)), None);
    }
}
