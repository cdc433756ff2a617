//! Exception syndrome (ESR_ELx) decoding.
//!
//! Layout (Arm ARM D24.2 "ESR_EL2"): EC in bits 31:26, IL in bit 25, ISS in bits 24:0.
//! For data aborts the ISS carries the instruction syndrome (ISV, SAS, SSE, SRT, SF, AR), the
//! write-not-read bit and the fault status code (DFSC). Every decoder is total: unknown
//! encodings map to an `Other` variant, never to a panic.

/// A raw exception syndrome register value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Esr(pub u64);

impl Esr {
    /// The exception class, bits 31:26.
    #[inline(always)]
    pub const fn class(self) -> ExceptionClass {
        ExceptionClass::from_bits(((self.0 >> 26) & 0x3f) as u8)
    }

    /// The raw exception class number.
    #[inline(always)]
    pub const fn class_bits(self) -> u8 {
        ((self.0 >> 26) & 0x3f) as u8
    }

    /// The instruction-specific syndrome, bits 24:0.
    #[inline(always)]
    pub const fn iss(self) -> u32 {
        (self.0 & 0x01ff_ffff) as u32
    }

    /// IL: the trapped instruction was 32 bits long (always set for AArch64 instructions).
    pub const fn is_32bit_instruction(self) -> bool {
        self.0 & (1 << 25) != 0
    }

    /// The data abort view of the ISS, when this is a data abort.
    pub const fn data_abort(self) -> Option<DataAbort> {
        match self.class() {
            ExceptionClass::DataAbortLowerEl | ExceptionClass::DataAbortSameEl => Some(DataAbort::from_iss(self.iss())),
            _ => None,
        }
    }

    /// The fault status of an instruction abort, when this is one.
    pub const fn instruction_abort_status(self) -> Option<FaultStatus> {
        match self.class() {
            ExceptionClass::InstructionAbortLowerEl | ExceptionClass::InstructionAbortSameEl => {
                Some(FaultStatus::from_bits((self.iss() & 0x3f) as u8))
            }
            _ => None,
        }
    }
}

/// Exception classes (ESR_ELx.EC) that Belfry names. Anything else is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionClass {
    Unknown,
    WfiWfe,
    FpAccess,
    IllegalExecutionState,
    SvcAarch32,
    HvcAarch32,
    SmcAarch32,
    SvcAarch64,
    HvcAarch64,
    SmcAarch64,
    SystemRegister,
    InstructionAbortLowerEl,
    InstructionAbortSameEl,
    PcAlignment,
    DataAbortLowerEl,
    DataAbortSameEl,
    SpAlignment,
    FpExceptionAarch64,
    SError,
    BreakpointLowerEl,
    BreakpointSameEl,
    SoftwareStepLowerEl,
    SoftwareStepSameEl,
    WatchpointLowerEl,
    WatchpointSameEl,
    Brk,
    Other(u8),
}

impl ExceptionClass {
    /// Decodes a 6-bit EC value.
    #[inline(always)]
    pub const fn from_bits(ec: u8) -> Self {
        match ec {
            0x00 => Self::Unknown,
            0x01 => Self::WfiWfe,
            0x07 => Self::FpAccess,
            0x0e => Self::IllegalExecutionState,
            0x11 => Self::SvcAarch32,
            0x12 => Self::HvcAarch32,
            0x13 => Self::SmcAarch32,
            0x15 => Self::SvcAarch64,
            0x16 => Self::HvcAarch64,
            0x17 => Self::SmcAarch64,
            0x18 => Self::SystemRegister,
            0x20 => Self::InstructionAbortLowerEl,
            0x21 => Self::InstructionAbortSameEl,
            0x22 => Self::PcAlignment,
            0x24 => Self::DataAbortLowerEl,
            0x25 => Self::DataAbortSameEl,
            0x26 => Self::SpAlignment,
            0x2c => Self::FpExceptionAarch64,
            0x2f => Self::SError,
            0x30 => Self::BreakpointLowerEl,
            0x31 => Self::BreakpointSameEl,
            0x32 => Self::SoftwareStepLowerEl,
            0x33 => Self::SoftwareStepSameEl,
            0x34 => Self::WatchpointLowerEl,
            0x35 => Self::WatchpointSameEl,
            0x3c => Self::Brk,
            other => Self::Other(other),
        }
    }

    /// The 6-bit EC value.
    pub const fn bits(self) -> u8 {
        match self {
            Self::Unknown => 0x00,
            Self::WfiWfe => 0x01,
            Self::FpAccess => 0x07,
            Self::IllegalExecutionState => 0x0e,
            Self::SvcAarch32 => 0x11,
            Self::HvcAarch32 => 0x12,
            Self::SmcAarch32 => 0x13,
            Self::SvcAarch64 => 0x15,
            Self::HvcAarch64 => 0x16,
            Self::SmcAarch64 => 0x17,
            Self::SystemRegister => 0x18,
            Self::InstructionAbortLowerEl => 0x20,
            Self::InstructionAbortSameEl => 0x21,
            Self::PcAlignment => 0x22,
            Self::DataAbortLowerEl => 0x24,
            Self::DataAbortSameEl => 0x25,
            Self::SpAlignment => 0x26,
            Self::FpExceptionAarch64 => 0x2c,
            Self::SError => 0x2f,
            Self::BreakpointLowerEl => 0x30,
            Self::BreakpointSameEl => 0x31,
            Self::SoftwareStepLowerEl => 0x32,
            Self::SoftwareStepSameEl => 0x33,
            Self::WatchpointLowerEl => 0x34,
            Self::WatchpointSameEl => 0x35,
            Self::Brk => 0x3c,
            Self::Other(bits) => bits,
        }
    }

    /// A human name for logs and kill messages.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Unknown => "unknown reason (undefined instruction)",
            Self::WfiWfe => "WFI/WFE",
            Self::FpAccess => "FP/SIMD access",
            Self::IllegalExecutionState => "illegal execution state",
            Self::SvcAarch32 => "SVC (AArch32)",
            Self::HvcAarch32 => "HVC (AArch32)",
            Self::SmcAarch32 => "SMC (AArch32)",
            Self::SvcAarch64 => "SVC",
            Self::HvcAarch64 => "HVC",
            Self::SmcAarch64 => "SMC",
            Self::SystemRegister => "MSR/MRS/system instruction",
            Self::InstructionAbortLowerEl => "instruction abort from a lower EL",
            Self::InstructionAbortSameEl => "instruction abort, same EL",
            Self::PcAlignment => "PC alignment fault",
            Self::DataAbortLowerEl => "data abort from a lower EL",
            Self::DataAbortSameEl => "data abort, same EL",
            Self::SpAlignment => "SP alignment fault",
            Self::FpExceptionAarch64 => "FP exception",
            Self::SError => "SError",
            Self::BreakpointLowerEl => "breakpoint from a lower EL",
            Self::BreakpointSameEl => "breakpoint, same EL",
            Self::SoftwareStepLowerEl => "software step from a lower EL",
            Self::SoftwareStepSameEl => "software step, same EL",
            Self::WatchpointLowerEl => "watchpoint from a lower EL",
            Self::WatchpointSameEl => "watchpoint, same EL",
            Self::Brk => "BRK instruction",
            Self::Other(bits) => other_class_name(bits),
        }
    }
}

/// The name of every other exception class the architecture defines (Arm ARM D24.2.41,
/// ESR_ELx.EC), so no syndrome is ever logged without one.
const fn other_class_name(bits: u8) -> &'static str {
    match bits {
        0x03 => "MCR/MRC (coprocessor 0b1111, AArch32)",
        0x04 => "MCRR/MRRC (coprocessor 0b1111, AArch32)",
        0x05 => "MCR/MRC (coprocessor 0b1110, AArch32)",
        0x06 => "LDC/STC (AArch32)",
        0x08 => "VMRS (ID group trap, AArch32)",
        0x09 => "pointer authentication instruction",
        0x0a => "LD64B/ST64B",
        0x0c => "MRRC (coprocessor 0b1110, AArch32)",
        0x0d => "branch target exception",
        0x14 => "MSRR/MRRS/SYSP (128-bit system register)",
        0x19 => "SVE access",
        0x1a => "ERET/ERETAA/ERETAB (nested virtualization)",
        0x1b => "TSTART (transactional memory)",
        0x1c => "pointer authentication failure",
        0x1d => "SME access",
        0x1e => "granule protection check",
        0x1f => "implementation defined (to EL3)",
        0x27 => "memory operation (MOPS)",
        0x28 => "FP exception (AArch32)",
        0x2d => "guarded control stack",
        0x38 => "BKPT (AArch32)",
        0x3a => "vector catch (AArch32)",
        0x3d => "profiling exception",
        _ => "reserved exception class",
    }
}

/// The fault status code of an abort (DFSC / IFSC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultStatus {
    AddressSize { level: u8 },
    Translation { level: u8 },
    AccessFlag { level: u8 },
    Permission { level: u8 },
    SynchronousExternal,
    Alignment,
    TlbConflict,
    Other(u8),
}

impl FaultStatus {
    /// Decodes a 6-bit fault status code.
    pub const fn from_bits(code: u8) -> Self {
        let level = code & 0b11;
        match code & 0x3f {
            0b00_0000..=0b00_0011 => Self::AddressSize { level },
            0b00_0100..=0b00_0111 => Self::Translation { level },
            0b00_1000..=0b00_1011 => Self::AccessFlag { level },
            0b00_1100..=0b00_1111 => Self::Permission { level },
            0b01_0000 => Self::SynchronousExternal,
            0b10_0001 => Self::Alignment,
            0b11_0000 => Self::TlbConflict,
            other => Self::Other(other),
        }
    }

    /// A human name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::AddressSize { .. } => "address size fault",
            Self::Translation { .. } => "translation fault",
            Self::AccessFlag { .. } => "access flag fault",
            Self::Permission { .. } => "permission fault",
            Self::SynchronousExternal => "synchronous external abort",
            Self::Alignment => "alignment fault",
            Self::TlbConflict => "TLB conflict abort",
            Self::Other(_) => "other fault",
        }
    }

    /// The translation table level the fault was taken at, when the code has one.
    pub const fn level(self) -> Option<u8> {
        match self {
            Self::AddressSize { level }
            | Self::Translation { level }
            | Self::AccessFlag { level }
            | Self::Permission { level } => Some(level),
            _ => None,
        }
    }
}

/// The data abort ISS, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataAbort {
    /// Instruction syndrome valid: the fields below up to `acquire_release` describe the access.
    pub syndrome_valid: bool,
    /// Access size in bytes (1, 2, 4 or 8), from SAS.
    pub access_size: u8,
    /// SSE: the load sign-extends.
    pub sign_extend: bool,
    /// SRT: the transfer register (31 means XZR for loads and stores).
    pub register: u8,
    /// SF: the register is 64 bits wide (X), otherwise 32 (W).
    pub sixty_four_bit_register: bool,
    /// AR: acquire/release semantics.
    pub acquire_release: bool,
    /// FnV: FAR is not valid.
    pub far_not_valid: bool,
    /// S1PTW: the fault happened on a stage-1 table walk (stage-2 faults only).
    pub stage1_walk: bool,
    /// WnR: the access was a write.
    pub write: bool,
    /// The fault status code.
    pub status: FaultStatus,
}

impl DataAbort {
    /// Decodes a data abort ISS.
    pub const fn from_iss(iss: u32) -> Self {
        Self {
            syndrome_valid: iss & (1 << 24) != 0,
            access_size: 1 << ((iss >> 22) & 0b11),
            sign_extend: iss & (1 << 21) != 0,
            register: ((iss >> 16) & 0x1f) as u8,
            sixty_four_bit_register: iss & (1 << 15) != 0,
            acquire_release: iss & (1 << 14) != 0,
            far_not_valid: iss & (1 << 10) != 0,
            stage1_walk: iss & (1 << 7) != 0,
            write: iss & (1 << 6) != 0,
            status: FaultStatus::from_bits((iss & 0x3f) as u8),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_abort_same_el_translation_fault_on_a_load() {
        // `ldr x1, [x0]` at EL2 to an unmapped address: EC 0x25, IL, ISV, SAS=3, SF, SRT=1,
        // DFSC = translation fault level 0 (0b000100).
        let esr = Esr(0x9600_0004 | (1 << 24) | (3 << 22) | (1 << 16) | (1 << 15));
        assert_eq!(esr.class(), ExceptionClass::DataAbortSameEl);
        assert_eq!(esr.class_bits(), 0x25);
        assert!(esr.is_32bit_instruction());
        let abort = esr.data_abort().expect("a data abort");
        assert!(abort.syndrome_valid);
        assert_eq!(abort.access_size, 8);
        assert_eq!(abort.register, 1);
        assert!(abort.sixty_four_bit_register);
        assert!(!abort.write);
        assert_eq!(abort.status, FaultStatus::Translation { level: 0 });
        assert_eq!(abort.status.name(), "translation fault");
        assert_eq!(abort.status.level(), Some(0));
    }

    #[test]
    fn write_permission_fault_from_a_lower_el() {
        let esr = Esr((0x24 << 26) | (1 << 25) | (1 << 6) | 0b00_1111);
        let abort = esr.data_abort().expect("a data abort");
        assert!(abort.write);
        assert!(!abort.syndrome_valid);
        assert_eq!(abort.status, FaultStatus::Permission { level: 3 });
        assert_eq!(esr.class().name(), "data abort from a lower EL");
    }

    #[test]
    fn classes_that_are_not_aborts_have_no_abort_view() {
        let hvc = Esr((0x16 << 26) | (1 << 25) | 0x1234);
        assert_eq!(hvc.class(), ExceptionClass::HvcAarch64);
        assert_eq!(hvc.iss(), 0x1234);
        assert_eq!(hvc.data_abort(), None);
        assert_eq!(hvc.instruction_abort_status(), None);
        let undef = Esr(1 << 25);
        assert_eq!(undef.class(), ExceptionClass::Unknown);
    }

    #[test]
    fn instruction_abort_status() {
        let esr = Esr((0x21 << 26) | (1 << 25) | 0b00_0110);
        assert_eq!(esr.instruction_abort_status(), Some(FaultStatus::Translation { level: 2 }));
    }

    #[test]
    fn every_syndrome_decodes_without_panicking() {
        for ec in 0..64u64 {
            for low in [0u64, 0x3f, 0x1ff_ffff, 0x21, 0x30, 0x10] {
                let esr = Esr((ec << 26) | low | (0xffff_ffff << 32));
                let _ = esr.class().name();
                if let Some(abort) = esr.data_abort() {
                    assert!(matches!(abort.access_size, 1 | 2 | 4 | 8));
                    let _ = abort.status.name();
                }
            }
        }
        assert_eq!(ExceptionClass::from_bits(0x3f), ExceptionClass::Other(0x3f));
        for ec in 0..64u8 {
            assert_eq!(ExceptionClass::from_bits(ec).bits(), ec);
        }
        assert_eq!(FaultStatus::from_bits(0x22), FaultStatus::Other(0x22));
    }
}

#[cfg(test)]
mod class_name_tests {
    use super::*;

    /// F10: every exception class has a name; those the issue found unnamed are named.
    #[test]
    fn every_class_is_named() {
        assert_eq!(ExceptionClass::from_bits(0x09).name(), "pointer authentication instruction");
        assert_eq!(ExceptionClass::from_bits(0x19).name(), "SVE access");
        assert_eq!(ExceptionClass::from_bits(0x1c).name(), "pointer authentication failure");
        assert_eq!(ExceptionClass::from_bits(0x1d).name(), "SME access");
        for bits in 0..64u8 {
            let name = ExceptionClass::from_bits(bits).name();
            assert!(!name.is_empty() && name != "unrecognised exception class", "{bits:#x}");
        }
    }
}
