//! The generic timer: the physical counter (timestamps, busy-wait delays) and the EL2 physical
//! timer, which wakes the scheduler for deadlines and ends a guest's time slice.

use aarch64_cpu::registers::{Readable, Writeable, CNTFRQ_EL0, CNTHP_CTL_EL2, CNTPCT_EL0};
use core::sync::atomic::{AtomicI64, AtomicU64, Ordering};

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

const DISARMED: u64 = u64::MAX;

/// This module's part of each CPU's [`super::cpu::PerCpu`] block.
pub(crate) struct TimerCpu {
    /// What the CPU's EL2 timer is set to (a counter value, or `DISARMED`): the scheduler asks
    /// for its timer each time it runs, and the registers are written only when that changes.
    hyp_timer: AtomicU64,
    /// The scheduler's and the running guest's wishes for the EL2 timer; it is set to the
    /// earlier of the two.
    scheduler_wants: AtomicU64,
    guest_wants: AtomicU64,
    /// The scheduler's last deadline, in nanoseconds as it asked (`i64::MAX`: none, which is
    /// also the state after boot and after the timer fired): asked the same again,
    /// [`set_scheduler_deadline`] does nothing.
    scheduler_asked: AtomicI64,
}

impl TimerCpu {
    pub(crate) const fn new() -> Self {
        Self {
            hyp_timer: AtomicU64::new(DISARMED),
            scheduler_wants: AtomicU64::new(DISARMED),
            guest_wants: AtomicU64::new(DISARMED),
            scheduler_asked: AtomicI64::new(i64::MAX),
        }
    }
}

fn this_cpu() -> &'static TimerCpu {
    &super::cpu::local().timer
}

/// Sets this CPU's EL2 timer for the scheduler's deadline `nanos` (`i64::MAX`: none). The
/// scheduler asks on every pass, mostly for the same deadline as before: that costs a compare.
/// Inline: the compare is in the scheduler's own pass; only a change is a call.
#[inline(always)]
pub fn set_scheduler_deadline(nanos: i64) {
    let asked = &this_cpu().scheduler_asked;
    if asked.load(Ordering::Relaxed) != nanos {
        change_scheduler_deadline(asked, nanos);
    }
}

/// [`set_scheduler_deadline`] for a deadline other than the last.
#[inline(never)]
fn change_scheduler_deadline(asked: &AtomicI64, nanos: i64) {
    asked.store(nanos, Ordering::Relaxed);
    set_hyp_timer((nanos != i64::MAX).then(|| ticks_at(nanos)));
}

/// Sets this CPU's EL2 physical timer (CNTHP, PPI 26) to fire at counter value `at`, or stops
/// it (`None`), for the scheduler; a guest deadline ([`set_guest_timer`]) may fire it earlier.
pub fn set_hyp_timer(at: Option<u64>) {
    let timer = this_cpu();
    timer.scheduler_wants.store(at.unwrap_or(DISARMED), Ordering::Relaxed);
    program(timer);
}

/// Asks for this CPU's EL2 timer to fire at counter value `at` while the current guest runs:
/// the deadline of its emulated physical timer (`None`: it has none).
pub fn set_guest_timer(at: Option<u64>) {
    let want = at.unwrap_or(DISARMED);
    // Only this CPU touches its slot, and EL2 runs with interrupts masked (they are drained,
    // never taken), so nothing comes between: a load and a store, not a swap.
    let timer = this_cpu();
    // Unchanged (the common case: no physical timer armed): nothing to program.
    if timer.guest_wants.load(Ordering::Relaxed) != want {
        timer.guest_wants.store(want, Ordering::Relaxed);
        program(timer);
    }
}

fn program(timer: &TimerCpu) {
    let want = timer.scheduler_wants.load(Ordering::Relaxed).min(timer.guest_wants.load(Ordering::Relaxed));
    if timer.hyp_timer.swap(want, Ordering::Relaxed) == want {
        return;
    }
    let at = (want != DISARMED).then_some(want);
    match at {
        Some(at) => {
            // SAFETY: CNTHP_CVAL_EL2 is this CPU's EL2 timer compare value, Belfry's alone;
            // writing it has no effect on memory.
            unsafe { core::arch::asm!("msr cnthp_cval_el2, {}", in(reg) at, options(nomem, nostack, preserves_flags)) };
            CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET + CNTHP_CTL_EL2::IMASK::CLEAR);
        }
        None => CNTHP_CTL_EL2.set(0),
    }
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// The EL2 timer's interrupt was taken: stop it (its level-triggered interrupt deasserts); the
/// scheduler sets it again for the next deadline.
pub fn hyp_timer_fired() {
    let timer = this_cpu();
    // Stopped: what asking for no deadline leaves (the guest's wish is dropped too).
    timer.scheduler_asked.store(i64::MAX, Ordering::Relaxed);
    for slot in [&timer.hyp_timer, &timer.scheduler_wants, &timer.guest_wants] {
        slot.store(DISARMED, Ordering::Relaxed);
    }
    CNTHP_CTL_EL2.set(0);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Fixed-point factors between counter ticks and nanoseconds, 32 fractional bits, both
/// rounded up: (nanoseconds per tick, ticks per nanosecond). Computed once; the exit and switch
/// paths then convert with a multiplication instead of a 128-bit division.
static FACTORS: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

fn factors() -> (u64, u64) {
    let ns_per_tick = FACTORS[0].load(Ordering::Relaxed);
    if ns_per_tick != 0 {
        return (ns_per_tick, FACTORS[1].load(Ordering::Relaxed));
    }
    let hz = u128::from(frequency());
    let ns_per_tick = ((1_000_000_000u128 << 32).div_ceil(hz)).min(u128::from(u64::MAX)) as u64;
    let ticks_per_ns = ((hz << 32).div_ceil(1_000_000_000)).min(u128::from(u64::MAX)) as u64;
    FACTORS[1].store(ticks_per_ns, Ordering::Relaxed);
    FACTORS[0].store(ns_per_tick, Ordering::Relaxed);
    (ns_per_tick, ticks_per_ns)
}

/// Nanoseconds of `ticks` counter ticks (never less than the exact value, at most a
/// nanosecond more per 2^32 ticks, so a deadline converted by [`ticks_at`] has always passed
/// when the counter reaches its tick).
pub fn ticks_to_ns(ticks: u64) -> u64 {
    ((u128::from(ticks) * u128::from(factors().0)) >> 32).min(u128::from(u64::MAX)) as u64
}

/// Counter ticks of `nanos` nanoseconds since reset, rounded up (saturating).
pub fn ticks_at(nanos: i64) -> u64 {
    let ticks = (u128::from(nanos.max(0) as u64) * u128::from(factors().1)).div_ceil(1 << 32);
    ticks.min(u128::from(u64::MAX)) as u64
}

/// Microseconds since reset.
pub fn micros() -> u64 {
    ticks_to_ns(ticks()) / 1000
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
