//! The guest-physical address space (the VMAR `zx_guest_create` returns): VMOs mapped at
//! guest-physical addresses with read/write/execute permissions.
//!
//! Mappings never overlap; `unmap` and `protect` split them at the range boundaries. The
//! stage-2 tables that make a mapping visible to the guest are filled lazily from here on the
//! first fault of each page, so changing a mapping only has to invalidate what was filled.

use super::frames::{BLOCK_SIZE, PAGE_SIZE};
use super::space::GuestSpace;
use super::trap::TrapMap;
use super::vmo::Vmo;
use super::{Rights, Status, ZxResult};
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use stage2::table::Permissions;
use stage2::PhysAddr;

/// Size of every guest's physical address space: 64 GiB, the 36-bit IPA size every Armv8-A
/// CPU supports.
pub const GUEST_PHYSICAL_SIZE: u64 = 1 << 36;

/// `ZX_VM_PERM_READ`.
pub const VM_PERM_READ: u32 = 1 << 0;
/// `ZX_VM_PERM_WRITE`.
pub const VM_PERM_WRITE: u32 = 1 << 1;
/// `ZX_VM_PERM_EXECUTE`.
pub const VM_PERM_EXECUTE: u32 = 1 << 2;
/// `ZX_VM_SPECIFIC`: map at `vmar_offset` exactly.
pub const VM_SPECIFIC: u32 = 1 << 4;
/// `ZX_VM_MAP_RANGE`: commit the pages now (accepted; Belfry commits on first touch anyway).
pub const VM_MAP_RANGE: u32 = 1 << 10;

const PERMS: u32 = VM_PERM_READ | VM_PERM_WRITE | VM_PERM_EXECUTE;

/// One mapping.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub size: u64,
    pub vmo: Arc<Vmo>,
    pub vmo_offset: u64,
    /// Current `VM_PERM_*` bits.
    pub perms: u32,
    /// What `protect` may raise the permissions to: what the VMO handle allowed at map time.
    pub max_perms: u32,
}

/// What [`Vmar::translate_extent`] finds: the VMO, the offset in it, the permissions and the
/// `[start, end)` of the mapping.
type Translation = (Arc<Vmo>, u64, u32, (u64, u64));

/// See the module documentation.
#[derive(Default)]
pub struct Vmar {
    mappings: spin::Mutex<BTreeMap<u64, Mapping>>,
    /// The stage-2 tables behind a guest's VMAR (lock order: mappings, then space).
    space: Option<spin::Mutex<GuestSpace>>,
}

impl core::fmt::Debug for Vmar {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Vmar").field("guest", &self.space.is_some()).finish_non_exhaustive()
    }
}

/// What a stage-2 fault on guest memory came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The page is now mapped; the guest retries the access.
    Mapped,
    /// No mapping covers the address.
    Unmapped,
    /// A mapping covers it, without the permission the access needs.
    Denied,
    /// Memory ran out while committing the page or a table.
    NoMemory,
}

fn stage2_permissions(perms: u32) -> Permissions {
    Permissions {
        read: perms & VM_PERM_READ != 0,
        write: perms & VM_PERM_WRITE != 0,
        execute: perms & VM_PERM_EXECUTE != 0,
    }
}

/// The permissions a set of handle rights allows.
pub fn perms_allowed_by(rights: Rights) -> u32 {
    let mut perms = 0;
    if rights.contains(Rights::READ) {
        perms |= VM_PERM_READ;
    }
    if rights.contains(Rights::WRITE) {
        perms |= VM_PERM_WRITE;
    }
    if rights.contains(Rights::EXECUTE) {
        perms |= VM_PERM_EXECUTE;
    }
    perms
}

fn page_aligned(value: u64) -> bool {
    value.is_multiple_of(PAGE_SIZE)
}

impl Vmar {
    /// An empty address space without stage-2 tables (unit tests of the mapping rules).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty guest-physical address space with its stage-2 tables and VMID.
    pub fn for_guest() -> ZxResult<Self> {
        Ok(Self { mappings: spin::Mutex::new(BTreeMap::new()), space: Some(spin::Mutex::new(GuestSpace::new()?)) })
    }

    /// VTTBR_EL2 for this guest (0 without stage-2 tables).
    pub fn vttbr(&self) -> u64 {
        self.space.as_ref().map_or(0, |space| space.lock().vttbr())
    }

    /// Handles a stage-2 fault at `address`: maps the page from its VMO (committing it on first
    /// touch) if a mapping allows the access. Where one VMO block backs the whole 2 MiB window
    /// around `address`, the mapping covers the window with one VMO offset and no trap of
    /// `traps` lies in it, the window is mapped with one block instead.
    pub fn fault(&self, address: u64, write: bool, execute: bool, traps: &TrapMap) -> Fault {
        let Some(space) = &self.space else { return Fault::Unmapped };
        let Some((vmo, offset, perms, (start, end))) = self.translate_extent(address) else { return Fault::Unmapped };
        let needed = if execute {
            VM_PERM_EXECUTE
        } else if write {
            VM_PERM_WRITE
        } else {
            VM_PERM_READ
        };
        if perms & needed == 0 {
            return Fault::Denied;
        }
        let page = offset & !(PAGE_SIZE - 1);
        let Ok(commit) = vmo.commit_with_block(page) else { return Fault::NoMemory };
        let (frame, block) = (commit.page, commit.block);
        // A guest with its MMU off reads memory uncached: what EL2 wrote must reach it, and a
        // guest must not fetch what an instruction cache holds of the frame's earlier owner. A
        // page (or block) committed just now was zeroed and cleaned in one pass; one committed
        // earlier may have been written since (`zx_vmo_write`, a device), so it is cleaned.
        let prepare = |address: PhysAddr, len: u64| {
            if commit.fresh {
                crate::arch::invalidate_instruction_cache();
            } else {
                crate::arch::clean_for_guest(address.raw(), len as usize);
            }
        };
        let window = address & !(BLOCK_SIZE - 1);
        if let Some(block) = block {
            // The VMO offset of the window's start (only meaningful when the mapping covers it).
            let window_offset = offset.checked_sub(address - window);
            let fits = window >= start
                && window + BLOCK_SIZE <= end
                && window_offset.is_some_and(|o| o.is_multiple_of(BLOCK_SIZE))
                && traps.check(window, BLOCK_SIZE).is_ok();
            if fits {
                prepare(block, BLOCK_SIZE);
                match space.lock().map_block(window, block, stage2_permissions(perms)) {
                    Ok(true) => return Fault::Mapped,
                    Ok(false) => {}
                    Err(_) => return Fault::NoMemory,
                }
            }
        }
        prepare(frame, PAGE_SIZE);
        match space.lock().map(address & !(PAGE_SIZE - 1), frame, stage2_permissions(perms)) {
            Ok(()) => Fault::Mapped,
            Err(_) => Fault::NoMemory,
        }
    }

    /// Removes `[start, start + len)` from stage 2 only (the mappings stay): the next access to
    /// those pages faults again (a trap was set there).
    pub fn evict(&self, start: u64, len: u64) {
        if let Some(space) = &self.space {
            space.lock().unmap(start, len);
        }
    }

    /// The frame and stage-2 permissions behind a guest page, if it is mapped in stage 2.
    pub fn stage2_lookup(&self, address: u64) -> Option<(stage2::PhysAddr, Permissions)> {
        self.space.as_ref()?.lock().lookup(address & !(PAGE_SIZE - 1))
    }

    /// `zx_vmar_map`: maps `len` bytes of `vmo` from `vmo_offset`. `vmar_rights` and
    /// `vmo_rights` are the rights of the handles used. Returns the guest-physical address.
    #[allow(clippy::too_many_arguments)] // zx_vmar_map's arguments, plus the two handles' rights
    pub fn map(
        &self,
        vmar_rights: Rights,
        options: u32,
        vmar_offset: u64,
        vmo: Arc<Vmo>,
        vmo_rights: Rights,
        vmo_offset: u64,
        len: u64,
    ) -> ZxResult<u64> {
        if options & !(PERMS | VM_SPECIFIC | VM_MAP_RANGE) != 0 {
            return Err(Status::INVALID_ARGS);
        }
        if options & VM_SPECIFIC == 0 && vmar_offset != 0 {
            return Err(Status::INVALID_ARGS);
        }
        if len == 0 || !page_aligned(vmar_offset) || !page_aligned(vmo_offset) {
            return Err(Status::INVALID_ARGS);
        }
        let size = len.checked_next_multiple_of(PAGE_SIZE).ok_or(Status::OUT_OF_RANGE)?;
        let vmo_end = vmo_offset.checked_add(size).ok_or(Status::OUT_OF_RANGE)?;
        let perms = options & PERMS;
        if !vmo_rights.contains(Rights::MAP) {
            return Err(Status::ACCESS_DENIED);
        }
        let max_perms = perms_allowed_by(vmo_rights) & perms_allowed_by(vmar_rights);
        if perms & !max_perms != 0 {
            return Err(Status::ACCESS_DENIED);
        }
        if vmo_end > vmo.size() {
            return Err(Status::OUT_OF_RANGE);
        }
        let mut mappings = self.mappings.lock();
        let address = if options & VM_SPECIFIC != 0 {
            let end = vmar_offset.checked_add(size).ok_or(Status::INVALID_ARGS)?;
            if end > GUEST_PHYSICAL_SIZE {
                return Err(Status::INVALID_ARGS);
            }
            if Self::overlapping(&mappings, vmar_offset, end).next().is_some() {
                return Err(Status::ALREADY_EXISTS);
            }
            vmar_offset
        } else {
            Self::first_fit(&mappings, size).ok_or(Status::NO_RESOURCES)?
        };
        mappings.insert(address, Mapping { size, vmo, vmo_offset, perms, max_perms });
        Ok(address)
    }

    /// `zx_vmar_unmap`: removes every mapped page in `[addr, addr + len)`.
    pub fn unmap(&self, addr: u64, len: u64) -> ZxResult {
        let end = Self::check_range(addr, len)?;
        let mut mappings = self.mappings.lock();
        let hit: Vec<u64> = Self::overlapping(&mappings, addr, end).map(|(start, _)| start).collect();
        if hit.is_empty() {
            return Err(Status::NOT_FOUND);
        }
        for start in hit {
            if let Some(mapping) = mappings.remove(&start) {
                for (piece_start, piece) in Self::outside(start, &mapping, addr, end) {
                    mappings.insert(piece_start, piece);
                }
            }
        }
        if let Some(space) = &self.space {
            space.lock().unmap(addr, len);
        }
        Ok(())
    }

    /// `zx_vmar_protect`: sets the permissions of `[addr, addr + len)`, which must be mapped
    /// throughout, to `options`.
    pub fn protect(&self, vmar_rights: Rights, options: u32, addr: u64, len: u64) -> ZxResult {
        if options & !PERMS != 0 {
            return Err(Status::INVALID_ARGS);
        }
        let end = Self::check_range(addr, len)?;
        let mut mappings = self.mappings.lock();
        // Covered throughout, with permission to raise to `options` everywhere?
        let mut cursor = addr;
        for (start, mapping) in Self::overlapping(&mappings, addr, end) {
            if start > cursor {
                return Err(Status::NOT_FOUND);
            }
            if options & !(mapping.max_perms & perms_allowed_by(vmar_rights)) != 0 {
                return Err(Status::ACCESS_DENIED);
            }
            cursor = start + mapping.size;
        }
        if cursor < end {
            return Err(Status::NOT_FOUND);
        }
        let hit: Vec<u64> = Self::overlapping(&mappings, addr, end).map(|(start, _)| start).collect();
        for start in hit {
            if let Some(mapping) = mappings.remove(&start) {
                for (piece_start, piece) in Self::outside(start, &mapping, addr, end) {
                    mappings.insert(piece_start, piece);
                }
                let inner_start = start.max(addr);
                let inner_end = (start + mapping.size).min(end);
                let inner = Mapping {
                    size: inner_end - inner_start,
                    vmo_offset: mapping.vmo_offset + (inner_start - start),
                    perms: options,
                    ..mapping
                };
                mappings.insert(inner_start, inner);
            }
        }
        if let Some(space) = &self.space {
            space.lock().protect(addr, len, stage2_permissions(options));
        }
        Ok(())
    }

    /// The mapping that covers `address`: the VMO, the offset of `address` in it, and the
    /// permissions.
    pub fn translate(&self, address: u64) -> Option<(Arc<Vmo>, u64, u32)> {
        self.translate_extent(address).map(|(vmo, offset, perms, _)| (vmo, offset, perms))
    }

    /// [`Vmar::translate`], and the `[start, end)` of the mapping that holds `address`.
    fn translate_extent(&self, address: u64) -> Option<Translation> {
        let mappings = self.mappings.lock();
        let (start, mapping) = mappings.range(..=address).next_back()?;
        (address < start + mapping.size).then(|| {
            (mapping.vmo.clone(), mapping.vmo_offset + (address - start), mapping.perms, (*start, start + mapping.size))
        })
    }

    /// Copies of the current mappings, in address order.
    pub fn mappings(&self) -> Vec<(u64, Mapping)> {
        self.mappings.lock().iter().map(|(start, m)| (*start, m.clone())).collect()
    }

    fn check_range(addr: u64, len: u64) -> ZxResult<u64> {
        if len == 0 || !page_aligned(addr) || !page_aligned(len) {
            return Err(Status::INVALID_ARGS);
        }
        addr.checked_add(len).ok_or(Status::INVALID_ARGS)
    }

    fn overlapping(mappings: &BTreeMap<u64, Mapping>, start: u64, end: u64) -> impl Iterator<Item = (u64, &Mapping)> {
        let before = mappings.range(..start).next_back().filter(|(s, m)| **s + m.size > start);
        before.into_iter().chain(mappings.range(start..end)).map(|(s, m)| (*s, m))
    }

    /// The parts of `mapping` (at `start`) outside `[hole_start, hole_end)`.
    fn outside(start: u64, mapping: &Mapping, hole_start: u64, hole_end: u64) -> Vec<(u64, Mapping)> {
        let end = start + mapping.size;
        let mut pieces = Vec::new();
        if start < hole_start {
            pieces.push((start, Mapping { size: hole_start - start, ..mapping.clone() }));
        }
        if hole_end < end {
            let offset = hole_end - start;
            pieces.push((
                hole_end,
                Mapping { size: end - hole_end, vmo_offset: mapping.vmo_offset + offset, ..mapping.clone() },
            ));
        }
        pieces
    }

    fn first_fit(mappings: &BTreeMap<u64, Mapping>, size: u64) -> Option<u64> {
        let mut candidate = 0u64;
        for (start, mapping) in mappings {
            if candidate.checked_add(size)? <= *start {
                return Some(candidate);
            }
            candidate = candidate.max(start + mapping.size);
        }
        (candidate.checked_add(size)? <= GUEST_PHYSICAL_SIZE).then_some(candidate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RWX: u32 = VM_PERM_READ | VM_PERM_WRITE | VM_PERM_EXECUTE;

    fn vmo(pages: u64) -> Arc<Vmo> {
        Arc::new(Vmo::new(pages * PAGE_SIZE).unwrap())
    }

    fn map(vmar: &Vmar, addr: u64, vmo: &Arc<Vmo>, pages: u64) -> ZxResult<u64> {
        vmar.map(
            Rights::GUEST_VMAR,
            RWX | VM_SPECIFIC,
            addr,
            vmo.clone(),
            Rights::DEFAULT_VMO | Rights::EXECUTE,
            0,
            pages * PAGE_SIZE,
        )
    }

    #[test]
    fn map_translate_and_overlap() {
        let vmar = Vmar::new();
        let memory = vmo(4);
        assert_eq!(map(&vmar, 0x10000, &memory, 4), Ok(0x10000));
        let (found, offset, perms) = vmar.translate(0x12345).unwrap();
        assert!(Arc::ptr_eq(&found, &memory));
        assert_eq!((offset, perms), (0x2345, RWX));
        assert!(vmar.translate(0x14000).is_none());
        assert_eq!(map(&vmar, 0x13000, &memory, 1), Err(Status::ALREADY_EXISTS));
        assert_eq!(map(&vmar, 0x14000, &memory, 1), Ok(0x14000), "adjacent is fine");
        // Without SPECIFIC the first hole that fits is used.
        let anywhere = vmar.map(Rights::GUEST_VMAR, VM_PERM_READ, 0, memory.clone(), Rights::DEFAULT_VMO, 0, PAGE_SIZE);
        assert_eq!(anywhere, Ok(0));
    }

    #[test]
    fn map_argument_errors() {
        let vmar = Vmar::new();
        let memory = vmo(2);
        let rights = Rights::DEFAULT_VMO & !Rights::EXECUTE;
        let m = |options, offset, vmo_offset, len, vmo_rights| {
            vmar.map(Rights::GUEST_VMAR, options, offset, memory.clone(), vmo_rights, vmo_offset, len)
        };
        assert_eq!(m(VM_PERM_READ, 0x1000, 0, PAGE_SIZE, rights), Err(Status::INVALID_ARGS), "offset without SPECIFIC");
        assert_eq!(m(VM_PERM_READ | VM_SPECIFIC, 0x1001, 0, PAGE_SIZE, rights), Err(Status::INVALID_ARGS));
        assert_eq!(m(VM_PERM_READ | VM_SPECIFIC, 0x1000, 0, 0, rights), Err(Status::INVALID_ARGS));
        assert_eq!(m(VM_PERM_READ | VM_SPECIFIC, 0x1000, 1, PAGE_SIZE, rights), Err(Status::INVALID_ARGS));
        assert_eq!(m(VM_PERM_READ | (1 << 20), 0, 0, PAGE_SIZE, rights), Err(Status::INVALID_ARGS));
        assert_eq!(m(VM_PERM_READ, 0, u64::MAX - 0xfff, PAGE_SIZE, rights), Err(Status::OUT_OF_RANGE));
        assert_eq!(m(VM_PERM_READ, 0, 0, 3 * PAGE_SIZE, rights), Err(Status::OUT_OF_RANGE), "beyond the VMO");
        assert_eq!(m(VM_PERM_EXECUTE, 0, 0, PAGE_SIZE, rights), Err(Status::ACCESS_DENIED), "VMO without EXECUTE");
        assert_eq!(m(VM_PERM_READ, 0, 0, PAGE_SIZE, Rights::READ), Err(Status::ACCESS_DENIED), "VMO without MAP");
        assert_eq!(
            m(VM_PERM_READ | VM_SPECIFIC, GUEST_PHYSICAL_SIZE - PAGE_SIZE, 0, 2 * PAGE_SIZE, rights),
            Err(Status::INVALID_ARGS),
            "beyond the guest-physical space"
        );
        let read_only_vmar = vmar.map(Rights::READ, VM_PERM_WRITE, 0, memory.clone(), rights, 0, PAGE_SIZE);
        assert_eq!(read_only_vmar, Err(Status::ACCESS_DENIED));
    }

    #[test]
    fn unmap_splits() {
        let vmar = Vmar::new();
        let memory = vmo(4);
        map(&vmar, 0, &memory, 4).unwrap();
        vmar.unmap(PAGE_SIZE, PAGE_SIZE).unwrap();
        let layout: Vec<(u64, u64, u64)> = vmar.mappings().iter().map(|(s, m)| (*s, m.size, m.vmo_offset)).collect();
        assert_eq!(layout, vec![(0, PAGE_SIZE, 0), (2 * PAGE_SIZE, 2 * PAGE_SIZE, 2 * PAGE_SIZE)]);
        assert_eq!(vmar.unmap(PAGE_SIZE, PAGE_SIZE), Err(Status::NOT_FOUND));
        assert_eq!(vmar.unmap(0, 0), Err(Status::INVALID_ARGS));
        assert_eq!(vmar.unmap(1, PAGE_SIZE), Err(Status::INVALID_ARGS));
        vmar.unmap(0, 4 * PAGE_SIZE).unwrap();
        assert!(vmar.mappings().is_empty());
    }

    #[test]
    fn faults_map_pages_on_demand_and_follow_unmap_and_protect() {
        let vmar = Vmar::for_guest().unwrap();
        let memory = vmo(4);
        map(&vmar, 0x10000, &memory, 4).unwrap();
        assert_eq!(vmar.stage2_lookup(0x11000), None);
        assert_eq!(vmar.fault(0x11008, true, false, &TrapMap::default()), Fault::Mapped);
        let (frame, permissions) = vmar.stage2_lookup(0x11000).unwrap();
        assert_eq!(frame, memory.lookup(0x1000).unwrap());
        assert_eq!(permissions, Permissions::RWX);
        assert_eq!(memory.committed_pages(), 1, "only the touched page is committed");
        assert_eq!(vmar.fault(0x20000, false, false, &TrapMap::default()), Fault::Unmapped);
        vmar.protect(Rights::GUEST_VMAR, VM_PERM_READ, 0x11000, PAGE_SIZE).unwrap();
        assert!(!vmar.stage2_lookup(0x11000).unwrap().1.write);
        assert_eq!(vmar.fault(0x11000, true, false, &TrapMap::default()), Fault::Denied);
        assert_eq!(vmar.fault(0x11000, false, true, &TrapMap::default()), Fault::Denied);
        vmar.unmap(0x10000, 4 * PAGE_SIZE).unwrap();
        assert_eq!(vmar.stage2_lookup(0x11000), None);
        assert_eq!(vmar.fault(0x11000, false, false, &TrapMap::default()), Fault::Unmapped);
    }

    /// A charged VMO's 2 MiB block is mapped whole only where the mapping covers the window at
    /// a block-aligned VMO offset and no trap lies in it; elsewhere by pages.
    #[test]
    fn blocks_where_they_fit_pages_elsewhere() {
        let traps = TrapMap::default();
        let aligned = Vmar::for_guest().unwrap();
        let memory = Arc::new(Vmo::new_charged(3 * BLOCK_SIZE).unwrap());
        let size = 3 * BLOCK_SIZE / PAGE_SIZE;
        map(&aligned, 0x4000_0000, &memory, size).unwrap();
        assert_eq!(aligned.fault(0x4000_1008, true, false, &traps), Fault::Mapped);
        let (last, _) = aligned.stage2_lookup(0x401f_f000).expect("the whole window mapped by one fault");
        assert_eq!(last.raw(), memory.lookup(BLOCK_SIZE - PAGE_SIZE).unwrap().raw());
        // A trap in the second window: that window goes by pages.
        let mut trapped = TrapMap::default();
        trapped
            .insert(super::super::trap::Trap::new(super::super::trap::TrapKind::Mem, 0x4030_0000, PAGE_SIZE, 0, None))
            .unwrap();
        assert_eq!(aligned.fault(0x4020_0000, false, false, &trapped), Fault::Mapped);
        assert!(aligned.stage2_lookup(0x4020_0000).is_some());
        assert_eq!(aligned.stage2_lookup(0x4020_1000), None, "one page, not the block");
        // A mapping that starts mid-window: pages, and no arithmetic on offsets before it.
        let unaligned = Vmar::for_guest().unwrap();
        map(&unaligned, 0x4010_0000, &memory, size).unwrap();
        assert_eq!(unaligned.fault(0x4010_0000, false, false, &traps), Fault::Mapped);
        assert_eq!(unaligned.stage2_lookup(0x4010_1000), None);
        assert_eq!(unaligned.fault(0x4020_0000, false, false, &traps), Fault::Mapped);
        assert_eq!(unaligned.stage2_lookup(0x4020_1000), None, "the VMO offset is not block-aligned there");
    }

    #[test]
    fn protect_changes_permissions_within_limits() {
        let vmar = Vmar::new();
        let memory = vmo(3);
        map(&vmar, 0, &memory, 3).unwrap();
        vmar.protect(Rights::GUEST_VMAR, VM_PERM_READ, PAGE_SIZE, PAGE_SIZE).unwrap();
        assert_eq!(vmar.translate(PAGE_SIZE).unwrap().2, VM_PERM_READ);
        assert_eq!(vmar.translate(0).unwrap().2, RWX);
        assert_eq!(vmar.translate(2 * PAGE_SIZE).unwrap().2, RWX);
        assert_eq!(vmar.mappings().len(), 3);
        assert_eq!(vmar.protect(Rights::GUEST_VMAR, RWX, 0, 4 * PAGE_SIZE), Err(Status::NOT_FOUND));
        assert_eq!(vmar.protect(Rights::GUEST_VMAR, 1 << 4, 0, PAGE_SIZE), Err(Status::INVALID_ARGS));
        assert_eq!(vmar.protect(Rights::READ, VM_PERM_WRITE, 0, PAGE_SIZE), Err(Status::ACCESS_DENIED));
        // A mapping made read-only through the VMO's rights cannot be raised to write.
        let read_only = vmo(1);
        vmar.map(
            Rights::GUEST_VMAR,
            VM_PERM_READ | VM_SPECIFIC,
            0x10_0000,
            read_only,
            Rights::READ | Rights::MAP,
            0,
            PAGE_SIZE,
        )
        .unwrap();
        assert_eq!(vmar.protect(Rights::GUEST_VMAR, VM_PERM_WRITE, 0x10_0000, PAGE_SIZE), Err(Status::ACCESS_DENIED));
    }
}
