//! Reads the exception registers of whichever level Belfry runs at.

use super::cpu;
use super::vectors::ExceptionState;
use aarch64_cpu::registers::{Readable, ELR_EL1, ELR_EL2, ESR_EL1, ESR_EL2, FAR_EL1, FAR_EL2, SPSR_EL1, SPSR_EL2};
use stage2::syndrome::Esr;

/// ESR, ELR, FAR and SPSR of the current exception level.
pub fn read() -> ExceptionState {
    if cpu::at_el2() {
        ExceptionState { esr: Esr(ESR_EL2.get()), elr: ELR_EL2.get(), far: FAR_EL2.get(), spsr: SPSR_EL2.get() }
    } else {
        ExceptionState { esr: Esr(ESR_EL1.get()), elr: ELR_EL1.get(), far: FAR_EL1.get(), spsr: SPSR_EL1.get() }
    }
}
