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
/// LORegion registers are not switched: RAZ/WI, no regions), TERR (the RAS error records are
/// the host's: RAZ/WI, no records) and TID3 (the ID registers are emulated: the guest sees the
/// CPU Belfry gives it, [`guest_id_register`]).
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
    | HCR_EL2::TERR::SET.value
    | HCR_EL2::TID3::SET.value;

/// HCR_EL2 bits added when the CPU has pointer authentication: API and APK let the guest use it
/// without traps; its keys are part of the VCPU's state.
pub const GUEST_HCR_PAUTH: u64 = HCR_EL2::API::SET.value | HCR_EL2::APK::SET.value;

/// MDCR_EL2 while a guest runs (besides the PMU partition bits Belfry's own counter needs):
/// TDA (debug registers), TDOSA (OS lock registers), TDRA (debug ROM address) trap to EL2:
/// the breakpoint, watchpoint, MDSCR and OS lock registers are served from the VCPU's state
/// ([`crate::debug`]), the rest RAZ/WI; TDE stays clear, so the guest's EL1 takes its own
/// debug exceptions; TPM and TPMCR trap every PMU register (RAZ/WI: the PMU is not
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
    #[inline(always)]
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
    /// A read of an ID register (op0 3, op1 0, CRn 0, CRm 1..7): the value of
    /// [`guest_id_register`] for (CRm, op2).
    IdRegister { crm: u8, op2: u8 },
    /// A debug register switched per VCPU ([`crate::debug`]).
    Debug(crate::debug::DebugRegister),
    /// The EL1 physical timer's registers, emulated per VCPU ([`crate::ptimer`]).
    PhysicalTimer(crate::ptimer::Register),
    /// A pointer-authentication key register (HCR_EL2.APK clear): the VCPU's first use of
    /// pointer authentication, which makes its keys live; the access then runs again.
    PointerAuthKey,
    /// A register or instruction that does not exist for the guest: an UNDEF exception is
    /// injected, as on a CPU without it.
    Undefined,
}

/// Decides what to do with a trapped access.
pub fn system_action(access: SystemAccess) -> SystemAction {
    let a = access;
    if a.is(3, 0, 12, 11, 5) && !a.read {
        return SystemAction::SendSgi;
    }
    if a.op0 == 3 && a.op1 == 0 && a.crn == 0 && (1..=7).contains(&a.crm) {
        // The ID registers are read-only: a write is UNDEFINED.
        return if a.read { SystemAction::IdRegister { crm: a.crm, op2: a.op2 } } else { SystemAction::Undefined };
    }
    // CNTP_TVAL_EL0, CNTP_CTL_EL0, CNTP_CVAL_EL0 (CNTHCTL_EL2.EL1PCEN clear).
    if a.op0 == 3 && a.op1 == 3 && a.crn == 14 && a.crm == 2 {
        use crate::ptimer::Register;
        match a.op2 {
            0 => return SystemAction::PhysicalTimer(Register::Tval),
            1 => return SystemAction::PhysicalTimer(Register::Ctl),
            2 => return SystemAction::PhysicalTimer(Register::Cval),
            _ => {}
        }
    }
    // APIAKey, APIBKey (CRm 1), APDAKey, APDBKey (CRm 2), APGAKey (CRm 3, op2 0..1).
    if a.op0 == 3 && a.op1 == 0 && a.crn == 2 && (matches!(a.crm, 1 | 2) && a.op2 < 4 || a.crm == 3 && a.op2 < 2) {
        return SystemAction::PointerAuthKey;
    }
    if a.op0 == 2 {
        if let Some(register) = crate::debug::DebugRegister::decode(a.op1, a.crn, a.crm, a.op2) {
            return SystemAction::Debug(register);
        }
    }
    // ACTLR_EL1 (HCR_EL2.TACR): IMPLEMENTATION DEFINED, always present; RAZ/WI, as KVM gives.
    if a.is(3, 0, 1, 0, 1) {
        return SystemAction::RazWi;
    }
    // DC ISW / CSW / CISW: the hardware keeps caches coherent for Belfry's own accesses, and
    // guest pages are cleaned and invalidated to the point of coherency when they are mapped,
    // so set/way maintenance has nothing left to do.
    let set_way = a.op0 == 1 && a.op1 == 0 && a.crn == 7 && a.op2 == 2 && matches!(a.crm, 6 | 10 | 14);
    // The other debug registers (op0 = 2, trapped by MDCR_EL2): the debug communications
    // channel, claim tags, OSDLR, DBGPRCR, authentication status: nothing behind them.
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
        SystemAction::Undefined
    }
}

/// A 4-bit field at `shift`.
const fn field(shift: u32) -> u64 {
    0xf << shift
}

/// The ID register (CRm, op2) of op0 3, op1 0, CRn 0 as the guest sees it, from the CPU's own
/// value `real` (DESIGN.md section 7: a consistent CPU). A feature whose state Belfry does not
/// switch per VCPU, or that belongs to EL2 or EL3, is hidden (its field cleared: "not
/// implemented"); the rest is the CPU's own. Unallocated encodings are RAZ.
pub const fn guest_id_register(crm: u8, op2: u8, real: u64) -> u64 {
    match (crm, op2) {
        // ID_DFR0_EL1 (AArch32 debug): PerfMon [27:24], the trace fields [7:4], [11:8],
        // [23:20], [31:28] hidden (no PMU, no trace); the debug architecture stays.
        (1, 2) => real & (field(0) | field(12) | field(16)),
        // ID_DFR1_EL1: HPMN0 and MTPMU belong to the PMU.
        (3, 5) => 0,
        // The other AArch32 ID registers: the CPU's (EL0 may run AArch32 code).
        (1, _) | (2, _) | (3, 0..=2) | (3, 4) | (3, 6) => real,
        // ID_AA64PFR0_EL1: EL0, EL1, FP, AdvSIMD, GIC, DIT, CSV2, CSV3 kept; EL2, EL3 (the guest
        // has neither), RAS (records not switched), SVE, SEL2, MPAM, AMU and RME hidden.
        (4, 0) => real & (field(0) | field(4) | field(16) | field(20) | field(24) | field(48) | field(56) | field(60)),
        // ID_AA64PFR1_EL1: BT, SSBS and CSV2_frac kept; MTE, SME, NMI, GCS and the rest hidden.
        (4, 1) => real & (field(0) | field(4) | field(32)),
        // ID_AA64DFR0_EL1: DebugVer and the breakpoint, watchpoint and context-comparator counts
        // kept (the debug registers are the guest's); TraceVer, PMUVer, PMSVer (SPE), trace
        // filter and buffer, BRBE hidden; DoubleLock 0xF: not implemented.
        (5, 0) => (real & (field(0) | field(12) | field(20) | field(28))) | field(36),
        // ID_AA64ISAR0_EL1: instructions need no state: the CPU's.
        (6, 0) => real,
        // ID_AA64ISAR1_EL1: LS64 hidden (its accesses need HCRX_EL2); pointer authentication
        // shown, its keys are switched per VCPU.
        (6, 1) => real & !field(60),
        // ID_AA64ISAR2_EL1: MOPS (needs HCRX_EL2), SYSREG_128, SYSINSTR_128 and ATS1A hidden.
        (6, 2) => real & !(field(16) | field(32) | field(36) | field(60)),
        // ID_AA64MMFR0_EL1: FGT (an EL2 feature) hidden.
        (7, 0) => real & !field(56),
        // ID_AA64MMFR1_EL1: VH, LO, TWED, HCX and TIDCP1 (EL2's or not switched) hidden.
        (7, 1) => real & !(field(8) | field(16) | field(32) | field(40) | field(52)),
        // ID_AA64MMFR2_EL1: NV, FWB and EVT (EL2's) hidden.
        (7, 2) => real & !(field(24) | field(40) | field(56)),
        // Everything else: SVE's and SME's ID registers, PFR2, FPFR0, DFR1/2, AFR0/1,
        // ISAR3, MMFR3 (TCR2/PIE/POE registers are not switched), MMFR4 and the unallocated
        // encodings: zero.
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iss(op0: u32, op1: u32, crn: u32, crm: u32, op2: u32, rt: u32, read: bool) -> u32 {
        (op0 << 20) | (op2 << 17) | (op1 << 14) | (crn << 10) | (rt << 5) | (crm << 1) | u32::from(read)
    }

    /// The composed trap configuration, bit by bit (Arm ARM D24.2.48 HCR_EL2: VM 0, SWIO 1,
    /// FMO 3, IMO 4, AMO 5, FB 9, BSU 11:10, TWI 13, TWE 14, TID3 18, TSC 19, TSW 22, TACR 21,
    /// RW 31, TLOR 35, TERR 36, APK 40, API 41; D24.2.51 MDCR_EL2: TPMCR 5, TPM 6, TDOSA 10,
    /// TDA 9, TDRA 11).
    #[test]
    fn trap_configuration_is_pinned() {
        assert_eq!(GUEST_HCR, 0x0000_0018_806c_663b);
        assert_eq!(GUEST_HCR_PAUTH, 0x0000_0300_0000_0000);
        assert_eq!(GUEST_MDCR, 0x0000_0000_0000_0e60);
    }

    #[test]
    fn decisions() {
        let decide = |op0, op1, crn, crm, op2, read| {
            system_action(SystemAccess::from_iss(iss(op0, op1, crn, crm, op2, 3, read)))
        };
        assert_eq!(decide(3, 0, 12, 11, 5, false), SystemAction::SendSgi);
        assert_eq!(decide(3, 0, 12, 11, 5, true), SystemAction::Undefined, "ICC_SGI1R_EL1 is write-only");
        assert_eq!(decide(1, 0, 7, 6, 2, false), SystemAction::RazWi, "DC ISW");
        assert_eq!(decide(1, 0, 7, 14, 2, false), SystemAction::RazWi, "DC CISW");
        use crate::debug::DebugRegister;
        assert_eq!(decide(2, 0, 0, 2, 2, true), SystemAction::Debug(DebugRegister::Mdscr), "MDSCR_EL1");
        assert_eq!(
            decide(2, 0, 0, 5, 5, false),
            SystemAction::Debug(DebugRegister::BreakpointControl(5)),
            "DBGBCR5_EL1"
        );
        assert_eq!(decide(2, 0, 1, 0, 4, false), SystemAction::Debug(DebugRegister::OsLockAccess), "OSLAR_EL1");
        assert_eq!(decide(2, 0, 0, 2, 0, true), SystemAction::RazWi, "MDCCINT_EL1");
        assert_eq!(decide(2, 0, 1, 3, 4, false), SystemAction::RazWi, "OSDLR_EL1");
        assert_eq!(decide(3, 3, 9, 12, 0, true), SystemAction::RazWi, "PMCR_EL0");
        assert_eq!(decide(3, 3, 9, 13, 0, false), SystemAction::RazWi, "PMCCNTR_EL0");
        assert_eq!(decide(3, 0, 9, 14, 1, false), SystemAction::RazWi, "PMINTENSET_EL1");
        assert_eq!(decide(3, 3, 14, 8, 0, true), SystemAction::RazWi, "PMEVCNTR0_EL0");
        assert_eq!(decide(3, 3, 14, 15, 7, false), SystemAction::RazWi, "PMCCFILTR_EL0");
        assert_eq!(decide(3, 0, 10, 4, 3, false), SystemAction::RazWi, "LORC_EL1");
        assert_eq!(decide(3, 0, 5, 3, 0, true), SystemAction::RazWi, "ERRIDR_EL1");
        // The timers are not in the PMU's c14 range.
        use crate::ptimer::Register;
        assert_eq!(decide(3, 3, 14, 2, 1, false), SystemAction::PhysicalTimer(Register::Ctl), "CNTP_CTL_EL0");
        assert_eq!(decide(3, 3, 14, 2, 0, true), SystemAction::PhysicalTimer(Register::Tval), "CNTP_TVAL_EL0");
        assert_eq!(decide(3, 3, 14, 2, 2, true), SystemAction::PhysicalTimer(Register::Cval), "CNTP_CVAL_EL0");
        assert_eq!(decide(3, 0, 14, 1, 0, false), SystemAction::Undefined, "CNTKCTL_EL1");
        assert_eq!(decide(3, 0, 1, 0, 1, false), SystemAction::RazWi, "ACTLR_EL1");
        assert_eq!(decide(3, 0, 0, 4, 0, true), SystemAction::IdRegister { crm: 4, op2: 0 }, "ID_AA64PFR0_EL1");
        assert_eq!(decide(3, 0, 0, 4, 0, false), SystemAction::Undefined, "a write to an ID register");
        assert_eq!(decide(3, 0, 0, 7, 7, true), SystemAction::IdRegister { crm: 7, op2: 7 }, "unallocated: RAZ");
        assert_eq!(decide(3, 0, 1, 2, 0, true), SystemAction::Undefined, "ZCR_EL1");
        // The pointer-authentication keys (HCR_EL2.APK clear until a VCPU's first use).
        assert_eq!(decide(3, 0, 2, 1, 0, true), SystemAction::PointerAuthKey, "APIAKeyLo_EL1");
        assert_eq!(decide(3, 0, 2, 1, 3, false), SystemAction::PointerAuthKey, "APIBKeyHi_EL1");
        assert_eq!(decide(3, 0, 2, 2, 2, false), SystemAction::PointerAuthKey, "APDBKeyLo_EL1");
        assert_eq!(decide(3, 0, 2, 3, 1, true), SystemAction::PointerAuthKey, "APGAKeyHi_EL1");
        assert_eq!(decide(3, 0, 2, 3, 2, true), SystemAction::Undefined, "unallocated after APGAKey");
        assert_eq!(decide(3, 0, 2, 0, 2, true), SystemAction::Undefined, "TCR_EL1 is not a key (and never traps)");
    }

    /// What the guest's CPU shows, from `-cpu max`'s registers as QEMU 10 gives them.
    #[test]
    fn the_guest_cpu_hides_what_belfry_does_not_switch() {
        // ID_AA64PFR0_EL1 of -cpu max: EL0-3 AArch64, FP, AdvSIMD, GIC, RAS, SVE, SEL2, DIT, CSV2, CSV3.
        let pfr0 = 0x1101_0011_1111_2222u64 | (1 << 32) | (1 << 28) | (1 << 36);
        let guest = guest_id_register(4, 0, pfr0);
        assert_eq!((guest >> 32) & 0xf, 0, "no SVE");
        assert_eq!((guest >> 28) & 0xf, 0, "no RAS");
        assert_eq!((guest >> 8) & 0xff, 0, "no EL2, no EL3");
        assert_eq!(guest & 0xff, pfr0 & 0xff, "EL0 and EL1 as the CPU has them");
        assert_eq!((guest >> 16) & 0xff, (pfr0 >> 16) & 0xff, "FP and AdvSIMD kept");
        assert_eq!(guest_id_register(4, 4, u64::MAX), 0, "ID_AA64ZFR0_EL1");
        assert_eq!(guest_id_register(4, 5, u64::MAX), 0, "ID_AA64SMFR0_EL1");
        let pfr1 = guest_id_register(4, 1, u64::MAX);
        assert_eq!(pfr1, 0xf_0000_00ff, "BT, SSBS, CSV2_frac only: no MTE, no SME");
        let dfr0 = guest_id_register(5, 0, 0x0000_0000_f0f0_f1f6 | (1 << 32));
        assert_eq!((dfr0 >> 8) & 0xf, 0, "no PMU");
        assert_eq!((dfr0 >> 32) & 0xf, 0, "no SPE");
        assert_eq!(dfr0 & 0xf, 6, "DebugVer kept");
        assert_eq!(guest_id_register(6, 1, u64::MAX) >> 60, 0, "no LS64");
        assert_eq!(guest_id_register(6, 1, 0xff0) & 0xff0, 0xff0, "APA and API kept");
        assert_eq!(guest_id_register(7, 1, u64::MAX) >> 8 & 0xf, 0, "no VHE");
        assert_eq!(guest_id_register(1, 0, 0x1234), 0x1234, "ID_PFR0_EL1: the CPU's");
        assert_eq!(guest_id_register(7, 3, u64::MAX), 0, "ID_AA64MMFR3_EL1");
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
