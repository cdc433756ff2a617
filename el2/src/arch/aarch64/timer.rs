//! The generic timer's physical counter: timestamps and busy-wait delays.

use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTPCT_EL0};

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
