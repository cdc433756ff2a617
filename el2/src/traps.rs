//! What a guest traps to EL2 for, and what Belfry does with a trapped system register access.
//!
//! The trap configuration (HCR_EL2, MDCR_EL2) is composed from named fields and pinned by a unit
//! test; the decision for a trapped `MRS`/`MSR`/system instruction (ESR_EL2.EC 0x18) is pure
//! logic on the syndrome, host-tested and fuzzed. The world switch (`arch::aarch64::guest`)
//! only carries the decision out.

use aarch64_cpu::registers::{HCR_EL2, MDCR_EL2};

/// HCR_EL2 while a guest runs: VM (stage 2), SWIO, FMO/IMO/AMO (physical FIQ, IRQ and SError
/// to EL2), FB and BSU = inner shareable (broadcast the guest's TLB and cache maintenance),
/// TWI and TWE (WFI/WFE trap), TSC (SMC traps), TSW (set/way cache maintenance traps), RW
/// (EL1 is AArch64), TACR (the implementation-defined ACTLR_EL1 is not the guest's), TLOR (the
/// LORegion registers are not switched: RAZ/WI, no regions) and TERR (the RAS error records are
/// the host's: RAZ/WI, no records).
pub const GUEST_HCR: u64 = HCR_EL2::VM::SET.value
    | HCR_EL2::SWIO::SET.value
    | HCR_EL2::FMO::SET.value
    | HCR_EL2::IMO::SET.value
    | HCR_EL2::AMO::SET.value
    | HCR_EL2::FB::SET.value
    | HCR_EL2::BSU::InnerShareable.value
    | HCR_EL2::TWI::SET.value
    | HCR_EL2::TWE::SET.value
    | HCR_EL2::TSC::SET.value
    | HCR_EL2::TSW::SET.value
    | HCR_EL2::TACR::SET.value
    | HCR_EL2::RW::EL1IsAarch64.value
    | HCR_EL2::TLOR::SET.value
    | HCR_EL2::TERR::SET.value;

/// MDCR_EL2 while a guest runs (besides the PMU partition bits Belfry's own counter needs):
/// TDA (debug registers), TDOSA (OS lock registers), TDRA (debug ROM address) trap to EL2,
/// which makes them RAZ/WI; TPM and TPMCR trap every PMU register (RAZ/WI: the PMU is not
/// switched per VCPU, and its last counter is Belfry's, which QEMU does not protect with HPMN).
pub const GUEST_MDCR: u64 = MDCR_EL2::TDA::SET.value
    | MDCR_EL2::TDOSA::SET.value
    | MDCR_EL2::TDRA::SET.value
    | MDCR_EL2::TPM::SET.value
    | MDCR_EL2::TPMCR::SET.value;

/// A trapped system register access or system instruction (ISS of EC 0x18), decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SystemAccess {
    pub op0: u8,
    pub op1: u8,
    pub crn: u8,
    pub crm: u8,
    pub op2: u8,
    /// The transfer register (31: XZR).
    pub rt: u8,
    /// `MRS` (a read) rather than `MSR`.
    pub read: bool,
}

impl SystemAccess {
    /// Decodes the ISS of EC 0x18 (Arm ARM D24.2.41, ISS encoding for an exception from MSR,
    /// MRS or a system instruction). Total: every 25-bit value decodes.
    pub const fn from_iss(iss: u32) -> Self {
        Self {
            op0: ((iss >> 20) & 0b11) as u8,
            op2: ((iss >> 17) & 0b111) as u8,
            op1: ((iss >> 14) & 0b111) as u8,
            crn: ((iss >> 10) & 0b1111) as u8,
            rt: ((iss >> 5) & 0b11111) as u8,
            crm: ((iss >> 1) & 0b1111) as u8,
            read: iss & 1 == 1,
        }
    }

    const fn is(&self, op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> bool {
        self.op0 == op0 && self.op1 == op1 && self.crn == crn && self.crm == crm && self.op2 == op2
    }
}

/// What Belfry does with a trapped system register access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemAction {
    /// A write of ICC_SGI1R_EL1: the guest sends an SGI (a VCPU INTERRUPT packet).
    SendSgi,
    /// Reads as zero, writes ignored (then the instruction is skipped).
    RazWi,
    /// Nothing Belfry serves.
    Unhandled,
}

/// Decides what to do with a trapped access.
pub fn system_action(access: SystemAccess) -> SystemAction {
    let a = access;
    if a.is(3, 0, 12, 11, 5) && !a.read {
        return SystemAction::SendSgi;
    }
    // DC ISW / CSW / CISW: the hardware keeps caches coherent for Belfry's own accesses, and
    // guest pages are cleaned and invalidated to the point of coherency when they are mapped,
    // so set/way maintenance has nothing left to do.
    let set_way = a.op0 == 1 && a.op1 == 0 && a.crn == 7 && a.op2 == 2 && matches!(a.crm, 6 | 10 | 14);
    // Debug and OS-lock registers (op0 = 2, trapped by MDCR_EL2).
    let debug = a.op0 == 2;
    // The PMU (MDCR_EL2.TPM): PMCR_EL0 and the c9 group, PMINTEN*_EL1 and PMMIR_EL1, the event
    // counters and types in c14.
    let pmu = a.op0 == 3
        && ((a.op1 == 3 && a.crn == 9 && matches!(a.crm, 12..=14))
            || (a.op1 == 0 && a.crn == 9 && a.crm == 14)
            || (a.op1 == 3 && a.crn == 14 && a.crm >= 8));
    // LORegions (HCR_EL2.TLOR) and RAS error records (HCR_EL2.TERR).
    let lor = a.op0 == 3 && a.op1 == 0 && a.crn == 10 && a.crm == 4;
    let ras = a.op0 == 3 && a.op1 == 0 && a.crn == 5 && matches!(a.crm, 3..=5);
    if set_way || debug || pmu || lor || ras {
        SystemAction::RazWi
    } else {
        SystemAction::Unhandled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iss(op0: u32, op1: u32, crn: u32, crm: u32, op2: u32, rt: u32, read: bool) -> u32 {
        (op0 << 20) | (op2 << 17) | (op1 << 14) | (crn << 10) | (rt << 5) | (crm << 1) | u32::from(read)
    }

    /// The composed trap configuration, bit by bit (Arm ARM D24.2.48 HCR_EL2: VM 0, SWIO 1,
    /// FMO 3, IMO 4, AMO 5, FB 9, BSU 11:10, TWI 13, TWE 14, TSC 19, TSW 22, TACR 21, RW 31,
    /// TLOR 35, TERR 36; D24.2.51 MDCR_EL2: TPMCR 5, TPM 6, TDOSA 10, TDA 9, TDRA 11).
    #[test]
    fn trap_configuration_is_pinned() {
        assert_eq!(GUEST_HCR, 0x0000_0018_8068_663b);
        assert_eq!(GUEST_MDCR, 0x0000_0000_0000_0e60);
    }

    #[test]
    fn decisions() {
        let decide = |op0, op1, crn, crm, op2, read| {
            system_action(SystemAccess::from_iss(iss(op0, op1, crn, crm, op2, 3, read)))
        };
        assert_eq!(decide(3, 0, 12, 11, 5, false), SystemAction::SendSgi);
        assert_eq!(decide(3, 0, 12, 11, 5, true), SystemAction::Unhandled);
        assert_eq!(decide(1, 0, 7, 6, 2, false), SystemAction::RazWi, "DC ISW");
        assert_eq!(decide(1, 0, 7, 14, 2, false), SystemAction::RazWi, "DC CISW");
        assert_eq!(decide(2, 0, 0, 2, 2, true), SystemAction::RazWi, "MDSCR_EL1");
        assert_eq!(decide(3, 3, 9, 12, 0, true), SystemAction::RazWi, "PMCR_EL0");
        assert_eq!(decide(3, 3, 9, 13, 0, false), SystemAction::RazWi, "PMCCNTR_EL0");
        assert_eq!(decide(3, 0, 9, 14, 1, false), SystemAction::RazWi, "PMINTENSET_EL1");
        assert_eq!(decide(3, 3, 14, 8, 0, true), SystemAction::RazWi, "PMEVCNTR0_EL0");
        assert_eq!(decide(3, 3, 14, 15, 7, false), SystemAction::RazWi, "PMCCFILTR_EL0");
        assert_eq!(decide(3, 0, 10, 4, 3, false), SystemAction::RazWi, "LORC_EL1");
        assert_eq!(decide(3, 0, 5, 3, 0, true), SystemAction::RazWi, "ERRIDR_EL1");
        // The timers are not in the PMU's c14 range.
        assert_eq!(decide(3, 3, 14, 2, 1, false), SystemAction::Unhandled, "CNTP_CTL_EL0");
        assert_eq!(decide(3, 0, 14, 1, 0, false), SystemAction::Unhandled, "CNTKCTL_EL1");
        assert_eq!(decide(3, 0, 1, 0, 1, false), SystemAction::Unhandled, "ACTLR_EL1");
    }

    #[test]
    fn every_syndrome_decodes() {
        let step = if cfg!(miri) { 1_000_003 } else { 7919 };
        for value in (0..1u32 << 25).step_by(step) {
            let access = SystemAccess::from_iss(value);
            let _ = system_action(access);
            assert_eq!(
                iss(
                    access.op0.into(),
                    access.op1.into(),
                    access.crn.into(),
                    access.crm.into(),
                    access.op2.into(),
                    access.rt.into(),
                    access.read
                ),
                value & 0x3f_fffe | (value & 1)
            );
        }
    }
}
