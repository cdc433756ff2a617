//! Exceptions Belfry delivers to a guest's own EL1, as the hardware would take them there.
//!
//! Where a real board would abort or UNDEF (a fetch from a device page, an access Belfry cannot
//! emulate), Belfry does not kill the guest: it builds the exception the guest's EL1 would have
//! taken (ESR_EL1, FAR_EL1, ELR_EL1, SPSR_EL1, the new PSTATE and the vector address) and the
//! next entry starts the guest in its own handler. Pure arithmetic on the guest's saved state,
//! host-tested.

/// A synchronous exception for the guest's EL1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestException {
    /// An undefined instruction (EC 0x00).
    Undefined,
    /// A synchronous external abort on an instruction fetch at virtual address `far`.
    PrefetchAbort { far: u64 },
    /// A synchronous external abort on a data access at virtual address `far`.
    DataAbort { far: u64, write: bool },
}

/// The guest's state the exception entry changes, before and after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub esr: u64,
    /// `None`: FAR_EL1 is left as it was (UNDEF does not write it).
    pub far: Option<u64>,
    pub elr: u64,
    pub spsr: u64,
    pub pc: u64,
    pub pstate: u64,
}

/// Fault status code: synchronous external abort, not on a translation table walk.
pub const FSC_EXTERNAL: u64 = 0x10;
const IL: u64 = 1 << 25;
const DAIF: u64 = 0b1111 << 6;
const MODE_EL1H: u64 = 0b0101;
/// PSTATE.nRW: the interrupted code was AArch32 (necessarily EL0: EL1 is AArch64 for guests).
const AARCH32: u64 = 1 << 4;

/// The entry into the guest's EL1 for `exception` taken at `pc` with `pstate` (SPSR_EL2's view),
/// vectors at `vbar`; `thumb_or_16bit` when the instruction was 16 bits (IL clear).
pub fn entry(exception: GuestException, pc: u64, pstate: u64, vbar: u64, sixteen_bit: bool) -> Entry {
    let mode = pstate & 0b1111;
    let from_el0 = pstate & AARCH32 != 0 || mode == 0;
    let offset = if pstate & AARCH32 != 0 {
        0x600
    } else if from_el0 {
        0x400
    } else if mode & 1 == 1 {
        0x200
    } else {
        0x000
    };
    let il = if sixteen_bit { 0 } else { IL };
    let (class, iss, far) = match exception {
        GuestException::Undefined => (0x00, 0, None),
        GuestException::PrefetchAbort { far } => (if from_el0 { 0x20 } else { 0x21 }, FSC_EXTERNAL, Some(far)),
        GuestException::DataAbort { far, write } => {
            (if from_el0 { 0x24 } else { 0x25 }, FSC_EXTERNAL | (u64::from(write) << 6), Some(far))
        }
    };
    // The new PSTATE: EL1h, every exception masked, the condition flags kept as the hardware
    // does not change them; SS, IL and the AArch32 state bits cleared.
    let pstate_after = (pstate & (0b1111 << 28)) | DAIF | MODE_EL1H;
    Entry {
        esr: (class << 26) | il | iss,
        far,
        elr: pc,
        spsr: pstate,
        pc: (vbar & !0x7ff).wrapping_add(offset),
        pstate: pstate_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefetch_abort_at_el1h_uses_the_current_el_spx_vector() {
        let e = entry(GuestException::PrefetchAbort { far: 0xffe000 }, 0xffe000, 0x3c5, 0x800, false);
        assert_eq!(
            e,
            Entry { esr: 0x8600_0010, far: Some(0xffe000), elr: 0xffe000, spsr: 0x3c5, pc: 0xa00, pstate: 0x3c5 }
        );
    }

    #[test]
    fn a_data_abort_from_el0_uses_the_lower_el_vector_and_keeps_wnr() {
        let e = entry(GuestException::DataAbort { far: 0x1234, write: true }, 0x4000, 0x6000_0000, 0x10_0000, false);
        assert_eq!((e.esr, e.pc, e.pstate, e.spsr), (0x9200_0050, 0x10_0400, 0x6000_03c5, 0x6000_0000));
    }

    #[test]
    fn aarch32_el0_uses_the_aarch32_vector_and_16_bit_instructions_clear_il() {
        let e = entry(GuestException::Undefined, 0x8002, 0x30, 0x2000, true);
        assert_eq!((e.esr, e.far, e.pc), (0, None, 0x2600));
        let e = entry(GuestException::DataAbort { far: 8, write: false }, 0x8000, 0x10, 0x2000, false);
        assert_eq!((e.esr, e.pc), (0x9200_0010, 0x2600));
    }

    #[test]
    fn el1t_uses_the_sp0_vector() {
        let e = entry(GuestException::Undefined, 0x100, 0x3c4, 0x8000, false);
        assert_eq!((e.esr, e.pc), (0x0200_0000, 0x8000));
    }
}
