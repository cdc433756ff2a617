//! The running CPU: exception level, logical index, interrupt masking, idling.

use aarch64_cpu::registers::{Readable, MPIDR_EL1};

/// The exception level Belfry runs at (2, or 1 when the loader gave no EL2).
///
/// Read with a `pure` `mrs` rather than through `aarch64-cpu` (whose reads are volatile): the
/// level never changes under running code, so the compiler may merge repeated reads. The
/// exit path asks "which CPU" a dozen times per VCPU switch, through inlined layers.
#[inline(always)]
pub fn current_el() -> u8 {
    let el: u64;
    // SAFETY: reading CurrentEL has no effects; it is constant while Belfry runs.
    unsafe { core::arch::asm!("mrs {0}, CurrentEL", out(reg) el, options(pure, nomem, nostack, preserves_flags)) };
    ((el >> 2) & 0b11) as u8
}

/// Whether Belfry runs at EL2, with virtualization available.
#[inline(always)]
pub fn at_el2() -> bool {
    current_el() == 2
}

/// Each CPU's own state that the exit and switch paths touch, in one block per CPU: TPIDR_EL2
/// holds the address of the CPU's block ([`local`]), so a function reaches every field from
/// one `mrs`, with no index to scale and no array address to form per field. Each module keeps
/// its part private; the block only places them side by side. Cache-line aligned: another
/// CPU's block is another CPU's writes.
#[repr(C, align(64))]
pub(crate) struct PerCpu {
    /// This CPU's logical index. First: the exception vector loads it from offset 0.
    index: usize,
    pub(crate) thread: crate::thread::ThreadCpu,
    pub(crate) guest: super::guest::GuestCpu,
    pub(crate) vgic: super::vgic::VgicCpu,
    pub(crate) timer: super::timer::TimerCpu,
    pub(crate) irq: crate::irq::IrqCpu,
}

const _: () = assert!(core::mem::offset_of!(PerCpu, index) == 0, "the vector reads the index at offset 0");

/// The CPUs' blocks, indexed by logical CPU; the boot code points each CPU's TPIDR_EL2 (at EL1,
/// TPIDR_EL1) at its own before any Rust runs.
pub(crate) static PER_CPU: [PerCpu; crate::machine::MAX_CPUS] = {
    let mut blocks = [const {
        PerCpu {
            index: 0,
            thread: crate::thread::ThreadCpu::new(),
            guest: super::guest::GuestCpu::new(),
            vgic: super::vgic::VgicCpu::new(),
            timer: super::timer::TimerCpu::new(),
            irq: crate::irq::IrqCpu::new(),
        }
    }; crate::machine::MAX_CPUS];
    let mut index = 0;
    while index < crate::machine::MAX_CPUS {
        blocks[index].index = index;
        index += 1;
    }
    blocks
};

/// This CPU's [`PerCpu`] block: one `mrs` of TPIDR_EL2.
///
/// At EL1 (the loader gave no EL2; Belfry runs no guests then) the boot code puts the address
/// in TPIDR_EL1 instead and this very instruction is UNDEFINED: the exception vector
/// recognizes it and emulates it with TPIDR_EL1's value ([`super::vectors`]), so every caller
/// reads it the same way, at a cost only where no guest runs.
///
/// A `pure` read, as [`current_el`]: a thread never leaves the CPU it was started on, and
/// nothing writes TPIDR_EL2 (or, at EL1, TPIDR_EL1) after boot, so within one function every
/// read gives the same value and the compiler may keep the first.
#[inline(always)]
pub(crate) fn local() -> &'static PerCpu {
    let block: usize;
    // SAFETY: reads only; at EL2 TPIDR_EL2 is Belfry's own, set once by the boot code; at EL1
    // the vector emulates this exact instruction (`mrs Xt, TPIDR_EL2`: one register written,
    // nothing else changed, flags included), which `super::vectors::MRS_TPIDR_EL2` encodes.
    unsafe {
        core::arch::asm!("mrs {b}, tpidr_el2", b = out(reg) block, options(pure, nomem, nostack, preserves_flags))
    };
    // SAFETY: the boot code set the register to this CPU's element of `PER_CPU` (a static)
    // before any Rust ran on the CPU, and nothing writes it after.
    unsafe { &*(block as *const PerCpu) }
}

/// Every CPU's block (for the rare look at other CPUs' state, as a VCPU's drop does).
pub(crate) fn all() -> &'static [PerCpu] {
    &PER_CPU
}

/// This CPU's logical index (from its `PerCpu` block).
#[inline(always)]
pub fn index() -> usize {
    local().index
}

/// This CPU's MPIDR affinity fields (Aff3..Aff0).
pub fn mpidr() -> u64 {
    MPIDR_EL1.get() & 0xff_00ff_ffff
}

/// Masks all interrupts and returns the previous DAIF, for [`restore_interrupts`].
pub fn mask_interrupts() -> u64 {
    let daif: u64;
    // SAFETY: reading DAIF and setting its mask bits has no memory effects; `nomem` would
    // let the compiler move memory accesses across the mask, so it is not claimed.
    unsafe { core::arch::asm!("mrs {0}, daif", "msr daifset, #0xf", out(reg) daif, options(nostack, preserves_flags)) };
    daif
}

/// Restores a DAIF value from [`mask_interrupts`].
pub fn restore_interrupts(daif: u64) {
    // SAFETY: writes back a DAIF value this CPU had before; no memory effects.
    unsafe { core::arch::asm!("msr daif, {0}", in(reg) daif, options(nostack, preserves_flags)) };
}

/// Waits for an event (SEV, an interrupt, or a spurious wake).
pub fn wait_for_event() {
    aarch64_cpu::asm::wfe();
}

/// Wakes every CPU waiting in [`wait_for_event`].
pub fn send_event() {
    aarch64_cpu::asm::sev();
}

/// Stops this CPU for good: interrupts masked, sleeping in WFI.
pub fn park() -> ! {
    mask_interrupts();
    loop {
        aarch64_cpu::asm::wfi();
    }
}

/// Cleans and invalidates the data cache line holding `address` to the point of coherency,
/// so that a CPU or loader running with its caches off sees what this CPU wrote.
pub fn clean_to_poc(address: usize) {
    // SAFETY: `dc civac` on any mapped address only writes back and drops a cache line; the
    // barrier orders it before what follows.
    unsafe { core::arch::asm!("dc civac, {0}", "dsb sy", in(reg) address, options(nostack, preserves_flags)) };
}

/// ICH_VTR_EL2, the GICv3 virtual interface's type register (EL2 only).
pub fn ich_vtr() -> u64 {
    aarch64_cpu::registers::ICH_VTR_EL2.get()
}
