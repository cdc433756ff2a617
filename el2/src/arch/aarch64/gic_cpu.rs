//! The GICv3 CPU interface: system registers (`ICC_*`). Belfry uses the EL1 names from EL2,
//! which `ICC_SRE_EL2.SRE` allows.

use super::cpu;

macro_rules! sysreg_write {
    ($name:literal, $value:expr) => {
        // SAFETY: writes a GIC CPU-interface register of the current CPU; no memory effects.
        unsafe { core::arch::asm!(concat!("msr ", $name, ", {0}"), "isb", in(reg) $value, options(nostack, preserves_flags)) }
    };
}

macro_rules! sysreg_read {
    ($name:literal) => {{
        let value: u64;
        // SAFETY: reads a GIC CPU-interface register of the current CPU; `IAR` reads acknowledge
        // an interrupt, which is what the callers want.
        unsafe { core::arch::asm!(concat!("mrs {0}, ", $name), out(reg) value, options(nostack, preserves_flags)) };
        value
    }};
}

/// Enables the system-register interface and group 1 on this CPU, unmasks every priority.
pub fn init() {
    const SRE: u64 = 1 << 0;
    const ENABLE_LOWER: u64 = 1 << 3;
    if cpu::at_el2() {
        let sre = sysreg_read!("icc_sre_el2");
        sysreg_write!("icc_sre_el2", sre | SRE | ENABLE_LOWER);
    } else {
        let sre = sysreg_read!("icc_sre_el1");
        sysreg_write!("icc_sre_el1", sre | SRE);
    }
    sysreg_write!("icc_pmr_el1", 0xffu64);
    sysreg_write!("icc_bpr1_el1", 0u64);
    sysreg_write!("icc_ctlr_el1", 0u64);
    sysreg_write!("icc_igrpen1_el1", 1u64);
}

/// Writes `ICC_SGI1R_EL1` (sends a group 1 SGI).
pub fn send_sgi1r(value: u64) {
    // SAFETY: the barrier orders earlier memory writes (a run-queue push) before the SGI.
    unsafe { core::arch::asm!("dsb ishst", options(nostack, preserves_flags)) };
    sysreg_write!("icc_sgi1r_el1", value);
}

/// Acknowledges the highest-priority pending group 1 interrupt; `None` if none (1023).
pub fn acknowledge() -> Option<u32> {
    let intid = (sysreg_read!("icc_iar1_el1") & 0xff_ffff) as u32;
    (intid != gic::sgi::SPURIOUS).then_some(intid)
}

/// Ends an interrupt from [`acknowledge`] (priority drop and deactivation, EOImode 0).
pub fn end(intid: u32) {
    sysreg_write!("icc_eoir1_el1", u64::from(intid));
}
