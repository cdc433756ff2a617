//! The generic timer: the physical counter (timestamps, busy-wait delays) and the EL2 physical
//! timer, which wakes the scheduler for deadlines and ends a guest's time slice.

use aarch64_cpu::registers::{Readable, Writeable, CNTFRQ_EL0, CNTHP_CTL_EL2, CNTPCT_EL0};

/// Counter ticks since reset.
pub fn ticks() -> u64 {
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    CNTPCT_EL0.get()
}

/// Counter frequency in Hz (never 0: a firmware that forgot CNTFRQ is taken as 62.5 MHz, the
/// value QEMU uses, rather than dividing by zero).
pub fn frequency() -> u64 {
    match CNTFRQ_EL0.get() & 0xffff_ffff {
        0 => 62_500_000,
        hz => hz,
    }
}

/// Arms this CPU's EL2 physical timer (CNTHP, PPI 26) to fire at counter value `ticks`.
pub fn arm_hyp_timer(at: u64) {
    // SAFETY: CNTHP_CVAL_EL2 is this CPU's EL2 timer compare value, Belfry's alone; writing it
    // has no effect on memory.
    unsafe { core::arch::asm!("msr cnthp_cval_el2, {}", in(reg) at, options(nomem, nostack, preserves_flags)) };
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET + CNTHP_CTL_EL2::IMASK::CLEAR);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Stops this CPU's EL2 physical timer (its level-triggered interrupt deasserts).
pub fn disarm_hyp_timer() {
    CNTHP_CTL_EL2.set(0);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Counter ticks of `nanos` nanoseconds since reset (saturating).
pub fn ticks_at(nanos: i64) -> u64 {
    let ticks = u128::from(nanos.max(0) as u64) * u128::from(frequency()) / 1_000_000_000;
    ticks.min(u128::from(u64::MAX)) as u64
}

/// Microseconds since reset.
pub fn micros() -> u64 {
    (u128::from(ticks()) * 1_000_000 / u128::from(frequency())) as u64
}

/// A busy-waiting delay on the physical counter.
#[derive(Clone, Copy, Debug, Default)]
pub struct Delay;

impl embedded_hal::delay::DelayNs for Delay {
    fn delay_ns(&mut self, ns: u32) {
        let wait = (u128::from(ns) * u128::from(frequency())).div_ceil(1_000_000_000) as u64;
        let start = ticks();
        while ticks().wrapping_sub(start) < wait {
            core::hint::spin_loop();
        }
    }
}
