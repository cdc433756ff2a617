//! Belfry's own performance counter: the last PMU event counter, reserved for EL2
//! (MDCR_EL2.HPMN = N - 1, enabled by MDCR_EL2.HPME) and counting INST_RETIRED (event 0x08)
//! at EL2 only (PMEVTYPER: P and U exclude EL1 and EL0, NSH includes EL2). A guest sees the
//! other N - 1 counters and cannot read, reset or stop this one. `cargo xtask bench` reads it
//! around each exit path; under QEMU `-icount` it counts exactly the instructions Belfry runs.

use core::sync::atomic::{AtomicU64, Ordering};

/// MDCR_EL2.HPME: counters HPMN and above count (the guest's PMCR_EL0.E does not stop them).
const MDCR_HPME: u64 = 1 << 7;
/// PMEVTYPER: P (no EL1), U (no EL0), NSH (EL2), event INST_RETIRED.
const EL2_INSTRUCTIONS: u64 = (1 << 31) | (1 << 30) | (1 << 27) | 0x08;

/// The number of event counters the PMU implements (PMCR_EL0.N); 0 without a PMU.
fn counters() -> u64 {
    if !super::cpu::at_el2() {
        return 0;
    }
    let pmcr: u64;
    // SAFETY: reads PMCR_EL0 (aarch64-cpu has no accessor for it); no memory is touched.
    unsafe { core::arch::asm!("mrs {}, pmcr_el0", out(reg) pmcr, options(nomem, nostack, preserves_flags)) };
    // PMCR_EL0.N, bits [15:11].
    (pmcr >> 11) & 0x1f
}

/// The MDCR_EL2 bits that reserve the last counter for EL2, to be part of every MDCR_EL2 value
/// Belfry writes (0 without a PMU).
fn mdcr_bits() -> u64 {
    match counters() {
        0 => 0,
        n => MDCR_HPME | (n - 1),
    }
}

/// `mdcr_bits`, as `init_cpu` found them (the same on every CPU).
static MDCR_BITS: AtomicU64 = AtomicU64::new(0);

/// The MDCR_EL2 bits a guest entry must keep (read once at boot, not per entry).
pub fn guest_mdcr_bits() -> u64 {
    MDCR_BITS.load(Ordering::Relaxed)
}

/// Runs `operation` with PMSELR_EL0 selecting Belfry's counter, then restores the guest's
/// selection (PMSELR_EL0 is not in the switched guest state).
fn with_selected<T>(operation: impl FnOnce() -> T) -> Option<T> {
    let n = counters();
    if n == 0 {
        return None;
    }
    let saved: u64;
    // SAFETY: reads and writes of this CPU's PMU selection register; no memory is touched.
    unsafe {
        core::arch::asm!("mrs {saved}, pmselr_el0", "msr pmselr_el0, {index}", "isb",
            saved = out(reg) saved, index = in(reg) n - 1, options(nomem, nostack, preserves_flags));
    }
    let result = operation();
    // SAFETY: as above.
    unsafe { core::arch::asm!("msr pmselr_el0, {}", in(reg) saved, options(nomem, nostack, preserves_flags)) };
    Some(result)
}

/// Every CPU at boot, at EL2: reserves and starts the counter.
pub fn init_cpu() {
    let bits = mdcr_bits();
    if bits == 0 {
        return;
    }
    MDCR_BITS.store(bits, Ordering::Relaxed);
    // SAFETY: MDCR_EL2 is Belfry's; the HPMN/HPME fields only partition the PMU counters.
    unsafe {
        let mdcr: u64;
        core::arch::asm!("mrs {}, mdcr_el2", out(reg) mdcr, options(nomem, nostack, preserves_flags));
        // HPMN [4:0] and HPME [7] replaced.
        let mdcr = (mdcr & !0x9f) | bits;
        core::arch::asm!("msr mdcr_el2, {}", "isb", in(reg) mdcr, options(nomem, nostack, preserves_flags));
    }
    with_selected(|| {
        // SAFETY: programs and enables Belfry's own counter (selected), which no guest can
        // reach; no memory is touched.
        unsafe {
            core::arch::asm!("msr pmxevtyper_el0, {ty}", "msr pmxevcntr_el0, xzr", "msr pmcntenset_el0, {en}", "isb",
                ty = in(reg) EL2_INSTRUCTIONS, en = in(reg) 1u64 << (counters() - 1),
                options(nomem, nostack, preserves_flags));
        }
    });
}

/// The instructions counted between two readings of [`el2_instructions`]. An event counter
/// overflows at 32 bits (PMCR_EL0.LP is clear), so the difference is taken modulo 2^32.
pub fn counted(from: u64, to: u64) -> u64 {
    to.wrapping_sub(from) & 0xffff_ffff
}

/// Instructions this CPU has retired at EL2 since `init_cpu` (None without a PMU); compare two
/// readings with [`counted`].
pub fn el2_instructions() -> Option<u64> {
    with_selected(|| {
        let value: u64;
        // SAFETY: reads the selected counter; no memory is touched.
        unsafe {
            core::arch::asm!("isb", "mrs {}, pmxevcntr_el0", out(reg) value, options(nomem, nostack, preserves_flags))
        };
        value
    })
}

/// Each CPU's EL2 instructions since boot outside its idle waits, widened to 64 bits, as of its
/// last [`publish`].
static TOTALS: [AtomicU64; crate::machine::MAX_CPUS] = [const { AtomicU64::new(0) }; crate::machine::MAX_CPUS];
/// Each CPU's counter reading at its last [`publish`] or [`idle_end`].
static LAST: [AtomicU64; crate::machine::MAX_CPUS] = [const { AtomicU64::new(0) }; crate::machine::MAX_CPUS];

/// Adds this CPU's instructions since its last publication to its total. Called before each
/// idle wait (often enough that the 32-bit counter cannot wrap twice in between) and by
/// [`all_cpus`].
pub fn publish() {
    let Some(now) = el2_instructions() else { return };
    let cpu = super::cpu::index();
    let (Some(last), Some(total)) = (LAST.get(cpu), TOTALS.get(cpu)) else { return };
    let before = last.swap(now, Ordering::Relaxed);
    total.fetch_add(counted(before, now), Ordering::Relaxed);
}

/// After an idle wait: what the counter advanced meanwhile is not this CPU's work. (Under
/// QEMU `-icount` the counter follows the global instruction count while the CPU sits at EL2,
/// so a waiting CPU would otherwise be charged every other CPU's instructions.)
pub fn idle_end() {
    let Some(now) = el2_instructions() else { return };
    if let Some(last) = LAST.get(super::cpu::index()) {
        last.store(now, Ordering::Relaxed);
    }
}

/// EL2 instructions on every CPU since boot, outside idle waits: this CPU's now, the others'
/// as of their last idle wait (exact for a CPU that is idle). `None` without a PMU. Under QEMU
/// with several CPUs busy at once a CPU's count also includes instructions the others ran
/// while it stayed at EL2 (see [`idle_end`]); with one busy CPU it is exact.
pub fn all_cpus() -> Option<u64> {
    el2_instructions()?;
    publish();
    Some(TOTALS.iter().map(|t| t.load(Ordering::Relaxed)).sum())
}
