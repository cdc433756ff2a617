//! Turning on Belfry's own stage-1 MMU and caches.
//!
//! The boot CPU builds the identity map (see [`crate::pagetable`]) into a static pool with
//! the MMU off, invalidates any stale cache lines over the image and the tables, and enables
//! translation; every other CPU then enables the same tables. Until then a CPU touches
//! nothing shared: its writes would bypass the caches the others already use.
//!
//! W^X: Belfry's text is read-only and executable, its read-only data read-only, and every
//! other mapping (data, bss, stacks, heap, RAM, devices) is never executable; SCTLR.WXN
//! enforces it in hardware as well.

use crate::pagetable::{IdentityMap, MapError, Memory, Regime, Table, MAIR_VALUE, PAGE_SIZE, VA_BITS};
use aarch64_cpu::registers::{
    ReadWriteable, Readable, Writeable, ID_AA64MMFR0_EL1, MAIR_EL1, MAIR_EL2, SCTLR_EL1, SCTLR_EL2, TCR_EL1, TCR_EL2,
    TTBR0_EL1, TTBR0_EL2,
};
use core::cell::UnsafeCell;

use super::boot::STACK_SIZE;
use super::cpu;

/// Tables in the pool: the root, a few level-2 tables for RAM and device gigabytes, and the
/// level-3 tables of the image.
const POOL_TABLES: usize = 32;

struct Pool(UnsafeCell<[Table; POOL_TABLES]>);

// SAFETY: the pool is written only by the boot CPU in `build`, before any other CPU runs and
// before the MMU is on; afterwards only the table walkers read it.
unsafe impl Sync for Pool {}

static POOL: Pool = Pool(UnsafeCell::new([Table::EMPTY; POOL_TABLES]));

/// A guard page: the lowest page of every EL2 stack is left unmapped, so an overflow faults
/// (and is reported on the CPU's emergency stack) instead of overwriting what lies below.
pub const GUARD_SIZE: u64 = PAGE_SIZE;
/// Stack slots for EL2 threads (their number bounds how many threads exist at once).
pub const THREAD_SLOTS: usize = 128;
/// One thread's slot: a guard page and 16 KiB of stack.
pub const THREAD_SLOT_SIZE: usize = 20 * 1024;
/// The `.stacks` section: boot stacks, then thread slots (the linker script's `@STACKS@`,
/// `boards/link.rs`).
pub const STACKS_SIZE: usize = crate::machine::MAX_CPUS * STACK_SIZE + THREAD_SLOTS * THREAD_SLOT_SIZE;

/// Where the stacks lie in the image.
#[derive(Clone, Copy, Debug)]
pub struct StackLayout {
    pub boot: u64,
    pub threads: u64,
}

/// The stack layout inside `.stacks`.
pub fn stack_layout() -> StackLayout {
    let boot = image_layout().stacks_start;
    StackLayout { boot, threads: boot + (crate::machine::MAX_CPUS * STACK_SIZE) as u64 }
}

/// Whose guard page `address` lies in: `Some((true, cpu))` for a CPU's boot stack,
/// `Some((false, slot))` for a thread slot.
pub fn guard_page_owner(address: u64) -> Option<(bool, usize)> {
    let layout = stack_layout();
    let in_guard = |base: u64, size: u64, count: usize| {
        let offset = address.checked_sub(base)?;
        let index = usize::try_from(offset / size).ok().filter(|&i| i < count)?;
        (offset % size < GUARD_SIZE).then_some(index)
    };
    in_guard(layout.boot, STACK_SIZE as u64, crate::machine::MAX_CPUS)
        .map(|cpu| (true, cpu))
        .or_else(|| in_guard(layout.threads, THREAD_SLOT_SIZE as u64, THREAD_SLOTS).map(|slot| (false, slot)))
}

/// The bounds of Belfry's image, from the linker script.
#[derive(Clone, Copy, Debug)]
pub struct ImageLayout {
    pub start: u64,
    pub text_end: u64,
    pub rodata_end: u64,
    pub stacks_start: u64,
    pub stacks_end: u64,
    pub end: u64,
}

unsafe extern "C" {
    static __image_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __stacks_start: u8;
    static __stacks_end: u8;
    static __image_end: u8;
}

/// The image bounds the linker placed.
pub fn image_layout() -> ImageLayout {
    ImageLayout {
        start: (&raw const __image_start) as u64,
        text_end: (&raw const __text_end) as u64,
        rodata_end: (&raw const __rodata_end) as u64,
        stacks_start: (&raw const __stacks_start) as u64,
        stacks_end: (&raw const __stacks_end) as u64,
        end: (&raw const __image_end) as u64,
    }
}

/// Builds the identity map: `normal` ranges as read-write RAM, `device` ranges as Device
/// memory, then Belfry's image with its W^X permissions. Returns the root table address and
/// the number of tables used.
///
/// # Safety
/// Boot CPU only, once, with the MMU off and no other CPU running.
pub unsafe fn build(
    normal: impl Iterator<Item = (u64, u64)>,
    device: impl Iterator<Item = (u64, u64)>,
) -> Result<(u64, usize), MapError> {
    let regime = if cpu::at_el2() { Regime::El2 } else { Regime::El1 };
    // SAFETY: per the contract, nothing else accesses the pool now.
    let pool = unsafe { &mut *POOL.0.get() };
    let base = pool.as_ptr() as u64;
    let mut map = IdentityMap::new(pool, base, regime)?;
    let page_out = |(start, end): (u64, u64)| (start & !(PAGE_SIZE - 1), end.next_multiple_of(PAGE_SIZE));
    for range in normal.map(page_out) {
        map.map(range.0, range.1, Memory::ReadWrite)?;
    }
    for range in device.map(page_out) {
        map.map(range.0, range.1, Memory::Device)?;
    }
    let image = image_layout();
    map.map(image.start, image.text_end, Memory::Executable)?;
    map.map(image.text_end, image.rodata_end, Memory::ReadOnly)?;
    map.map(image.rodata_end, image.end, Memory::ReadWrite)?;
    if image.stacks_end - image.stacks_start != STACKS_SIZE as u64 {
        return Err(MapError::StackLayout);
    }
    let stacks = stack_layout();
    for cpu in 0..crate::machine::MAX_CPUS {
        let guard = stacks.boot + (cpu * STACK_SIZE) as u64;
        map.unmap(guard, guard + GUARD_SIZE)?;
    }
    for slot in 0..THREAD_SLOTS {
        let guard = stacks.threads + (slot * THREAD_SLOT_SIZE) as u64;
        map.unmap(guard, guard + GUARD_SIZE)?;
    }
    let used = map.tables_used();
    // Everything so far was written with the caches off; drop any stale line that could hide
    // it once they are on. No CPU has dirty lines yet, so invalidation loses nothing.
    invalidate_range(image.start, image.end);
    invalidate_range(base, base + (POOL_TABLES as u64) * PAGE_SIZE);
    Ok((base, used))
}

/// The root table address, for CPUs that join after [`build`].
pub fn root() -> u64 {
    POOL.0.get() as u64
}

/// Enables translation and caches on this CPU with the tables at `root`.
///
/// # Safety
/// `root` must be the root of a complete identity map covering the code, stack and data this
/// CPU uses, built by [`build`].
pub unsafe fn enable(root: u64) {
    let pa_range = ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange).min(0b101);
    let t0sz = u64::from(64 - VA_BITS);
    if cpu::at_el2() {
        MAIR_EL2.set(MAIR_VALUE);
        TCR_EL2.write(
            TCR_EL2::T0SZ.val(t0sz)
                + TCR_EL2::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
                + TCR_EL2::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
                + TCR_EL2::SH0::Inner
                + TCR_EL2::TG0::KiB_4
                + TCR_EL2::PS.val(pa_range),
        );
        TTBR0_EL2.set(root);
        // SAFETY: invalidates this CPU's EL2 TLB entries and instruction cache before the new
        // tables take effect; no memory is written.
        unsafe {
            core::arch::asm!(
                "dsb ish",
                "isb",
                "tlbi alle2",
                "ic iallu",
                "dsb ish",
                "isb",
                options(nostack, preserves_flags)
            )
        };
        SCTLR_EL2.modify(
            SCTLR_EL2::M::Enable
                + SCTLR_EL2::C::Cacheable
                + SCTLR_EL2::I::Cacheable
                + SCTLR_EL2::WXN::Enable
                + SCTLR_EL2::SA::Enable,
        );
    } else {
        MAIR_EL1.set(MAIR_VALUE);
        TCR_EL1.write(
            TCR_EL1::T0SZ.val(t0sz)
                + TCR_EL1::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
                + TCR_EL1::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
                + TCR_EL1::SH0::Inner
                + TCR_EL1::TG0::KiB_4
                + TCR_EL1::EPD1::DisableTTBR1Walks
                + TCR_EL1::IPS.val(pa_range),
        );
        TTBR0_EL1.set(root);
        // SAFETY: as above, for the EL1&0 regime.
        unsafe {
            core::arch::asm!(
                "dsb ish",
                "isb",
                "tlbi vmalle1",
                "ic iallu",
                "dsb ish",
                "isb",
                options(nostack, preserves_flags)
            )
        };
        SCTLR_EL1.modify(
            SCTLR_EL1::M::Enable
                + SCTLR_EL1::C::Cacheable
                + SCTLR_EL1::I::Cacheable
                + SCTLR_EL1::WXN::Enable
                + SCTLR_EL1::SA::Enable,
        );
    }
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Invalidates this CPU's own stack from every cache before it turns its caches on: the
/// stack was written with them off, and another CPU may have pulled stale lines in
/// speculatively. Only this CPU's stack: invalidating shared data would discard other CPUs'
/// dirty lines.
pub fn invalidate_own_stack(cpu_index: usize) {
    let start = image_layout().stacks_start + (cpu_index * STACK_SIZE) as u64;
    invalidate_range(start, start + STACK_SIZE as u64);
}

fn invalidate_range(start: u64, end: u64) {
    const LINE: u64 = 64;
    let mut line = start & !(LINE - 1);
    while line < end {
        // SAFETY: `dc ivac` drops the cache line holding `line`; callers guarantee memory holds
        // the only valid copy (no CPU has dirtied it with caches on).
        unsafe { core::arch::asm!("dc ivac, {0}", in(reg) line, options(nostack, preserves_flags)) };
        line += LINE;
    }
    // SAFETY: a barrier; orders the maintenance before what follows.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}
