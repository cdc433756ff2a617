//! The kick / interrupt / WFI handshake of one VCPU, on its own so the model checker can
//! explore it.
//!
//! `kick` and `interrupt` may come from any thread at any moment; the VCPU's thread consumes a
//! kick at most once (`take_kick`) and sleeps in `wait_for_interrupt` only while nothing is
//! pending and no kick is outstanding. The event count makes "check, then sleep" race-free: a
//! kick or interrupt that lands between the check and the sleep bumps the count and the sleep
//! returns at once.

use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
// The priorities are plain atomics even under loom: they take no part in the handshake.
use crate::sync::{self, Deadline, WaitQueue};
use core::sync::atomic::AtomicU8;

/// Interrupt IDs a VCPU accepts: the GIC's SGIs, PPIs and SPIs, 0..=1019 (1020..1023 are
/// special IDs, LPIs are not injected this way).
pub const NUM_INTERRUPTS: u32 = 1020;

const WORDS: usize = NUM_INTERRUPTS.div_ceil(64) as usize;

/// The priority of a vector the guest has not configured (the middle of the range, as the
/// Zircon VMM's interrupts have).
pub const DEFAULT_PRIORITY: u8 = 0xa0;

/// See the module documentation. Each vector also carries the priority the guest gave it in
/// its (emulated) distributor, which orders delivery.
#[derive(Debug)]
pub struct Signals {
    kicked: AtomicBool,
    pending: [AtomicU64; WORDS],
    /// Bit n: word n of `pending` may be non-zero (set by every raise after its word; cleared
    /// only by the VCPU's thread when it finds the word empty, see [`Signals::retire`]), so the
    /// list-register fill looks at the words in use, not all of them.
    summary: AtomicU64,
    priority: [AtomicU8; NUM_INTERRUPTS as usize],
    /// For each SGI, the sending VCPUs (bit n: VCPU n) whose SGI is pending (GICv2: one
    /// pending SGI per source, and the list register names the source). An SGI raised without
    /// a source counts as from VCPU 0.
    sgi_sources: [AtomicU8; 16],
    wake: WaitQueue,
}

impl Default for Signals {
    fn default() -> Self {
        Self::new()
    }
}

impl Signals {
    pub fn new() -> Self {
        Self {
            kicked: AtomicBool::new(false),
            pending: core::array::from_fn(|_| AtomicU64::new(0)),
            summary: AtomicU64::new(0),
            priority: core::array::from_fn(|_| AtomicU8::new(DEFAULT_PRIORITY)),
            sgi_sources: core::array::from_fn(|_| AtomicU8::new(0)),
            wake: WaitQueue::default(),
        }
    }

    /// Any thread: the priority `vector` is delivered with from now on (lower is more urgent).
    /// Vectors out of range are ignored (callers check the range).
    pub fn set_priority(&self, vector: u32, priority: u8) {
        if let Some(slot) = self.priority.get(vector as usize) {
            slot.store(priority, Ordering::Relaxed);
        }
    }

    /// The priority of `vector`.
    pub fn priority(&self, vector: u32) -> u8 {
        self.priority.get(vector as usize).map_or(0xff, |slot| slot.load(Ordering::Relaxed))
    }

    /// Any thread: the current or next `enter` must return CANCELED.
    pub fn kick(&self) {
        // A read-modify-write rather than a store: it orders against `take_kick`'s swap in
        // the modification order, which is also what the loom model checks.
        self.kicked.swap(true, Ordering::AcqRel);
        self.wake.notify_all();
    }

    /// The VCPU's thread: consumes an outstanding kick. A plain load first: every entry asks,
    /// and a kick is rare; only a kick seen is consumed, by the swap (a kick that lands between
    /// the two is consumed with it: one kick and the next are the same CANCELED).
    #[inline]
    pub fn take_kick(&self) -> bool {
        self.kicked.load(Ordering::Acquire) && self.kicked.swap(false, Ordering::AcqRel)
    }

    /// Whether a kick is outstanding.
    pub fn is_kicked(&self) -> bool {
        self.kicked.load(Ordering::Acquire)
    }

    /// Any thread: marks `vector` pending (callers check the range) and wakes the VCPU.
    pub fn raise(&self, vector: u32) {
        if self.mark(vector) {
            self.wake.notify_all();
        }
    }

    /// The VCPU's own thread (inside `enter`, raising its own timer's interrupt): as `raise`,
    /// without the wake-up, since the only thread that ever waits for these signals is this one.
    pub fn raise_here(&self, vector: u32) {
        self.mark(vector);
    }

    /// Sets `vector`'s bit, then its word's summary bit; whether `vector` is in range.
    fn mark(&self, vector: u32) -> bool {
        let Some(word) = self.pending.get((vector / 64) as usize) else { return false };
        word.fetch_or(1 << (vector % 64), Ordering::AcqRel);
        self.summary.fetch_or(1 << (vector / 64), Ordering::AcqRel);
        true
    }

    /// Any thread: SGI `vector` (0..16) from VCPU `source` (0..8) is pending (GICv2).
    pub fn raise_sgi(&self, vector: u32, source: u8) {
        if let (Some(sources), true) = (self.sgi_sources.get(vector as usize), source < 8) {
            sources.fetch_or(1 << source, Ordering::AcqRel);
            self.raise(vector);
        }
    }

    /// The VCPU's thread: the sources of pending SGI `vector` (bit n: VCPU n; 0 when it was
    /// raised without one).
    pub fn sgi_sources(&self, vector: u32) -> u8 {
        self.sgi_sources.get(vector as usize).map_or(0, |s| s.load(Ordering::Acquire))
    }

    /// The VCPU's thread: SGI `vector` from `source` went into a list register.
    pub fn take_sgi_source(&self, vector: u32, source: u8) {
        if let (Some(sources), true) = (self.sgi_sources.get(vector as usize), source < 8) {
            sources.fetch_and(!(1 << source), Ordering::AcqRel);
        }
    }

    /// Whether `vector` is pending.
    pub fn is_pending(&self, vector: u32) -> bool {
        self.pending.get((vector / 64) as usize).is_some_and(|w| w.load(Ordering::Acquire) & (1 << (vector % 64)) != 0)
    }

    /// The best pending vector that `skip` does not exclude, with its priority: the lowest
    /// priority value, then the lowest vector.
    pub fn best_pending(&self, skip: impl Fn(u32) -> bool) -> Option<(u32, u8)> {
        let mut best: Option<(u32, u8)> = None;
        let mut words = self.summary.load(Ordering::Acquire);
        while words != 0 {
            let index = words.trailing_zeros() as usize;
            words &= words - 1;
            let Some(word) = self.pending.get(index) else { break };
            let mut bits = word.load(Ordering::Acquire);
            if bits == 0 {
                self.retire(index);
                continue;
            }
            while bits != 0 {
                let vector = index as u32 * 64 + bits.trailing_zeros();
                bits &= bits - 1;
                let priority = self.priority(vector);
                if best.is_none_or(|(_, p)| priority < p) && !skip(vector) {
                    best = Some((vector, priority));
                }
            }
        }
        best
    }

    /// The VCPU's thread: word `index` was found empty: its summary bit goes, unless a raise
    /// filled it meanwhile. A raise sets its word before the summary, both with read-modify-
    /// writes: if this clear comes after the raise's summary update in the summary's
    /// modification order, it synchronises with the raise and the re-check sees the word; if
    /// before, the raise sets the bit again. Either way no pending vector loses its bit (loom
    /// model `a_raise_racing_a_retire_is_never_lost`).
    fn retire(&self, index: usize) {
        let bit = 1u64 << index;
        self.summary.fetch_and(!bit, Ordering::AcqRel);
        if self.pending.get(index).is_some_and(|word| word.load(Ordering::Acquire) != 0) {
            self.summary.fetch_or(bit, Ordering::AcqRel);
        }
    }

    /// The VCPU's thread: `vector` is no longer pending (it went into a list register).
    pub fn clear(&self, vector: u32) {
        if let Some(word) = self.pending.get((vector / 64) as usize) {
            word.fetch_and(!(1 << (vector % 64)), Ordering::AcqRel);
        }
    }

    /// Whether no word is marked as holding a pending interrupt: one load. After `fill` this
    /// is exact (a word found empty is retired); a raise marks its word (after setting the
    /// vector's bit, with a read-modify-write), so a `true` read after the VCPU published where
    /// it runs (the fence in `Vcpu::enter_writing`, behind `enter_into` and
    /// `enter_with_register`) means any later raise interrupts that CPU.
    pub fn quiet(&self) -> bool {
        self.summary.load(Ordering::Acquire) == 0
    }

    /// Whether any interrupt is pending.
    pub fn any_pending(&self) -> bool {
        let mut words = self.summary.load(Ordering::Acquire);
        while words != 0 {
            let index = words.trailing_zeros() as usize;
            words &= words - 1;
            if self.pending.get(index).is_some_and(|word| word.load(Ordering::Acquire) != 0) {
                return true;
            }
        }
        false
    }

    /// The VCPU's thread, after a guest WFI: sleeps until an interrupt is pending, a kick is
    /// outstanding, or `deadline` (the guest's timer) passes.
    pub fn wait_for_interrupt(&self, deadline: Deadline) {
        // Alone on its CPU, the VCPU idles in place: every raise and kick from elsewhere also
        // interrupts the CPU it runs on (see `thread::idle_in_place`).
        if sync::idle_in_place(deadline, || self.any_pending() || self.is_kicked()) {
            return;
        }
        loop {
            let ticket = self.wake.ticket();
            if self.any_pending() || self.is_kicked() {
                return;
            }
            if !self.wake.wait(ticket, deadline) {
                return;
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_best_pending_vector_is_the_most_urgent_then_the_lowest() {
        let signals = Signals::new();
        for vector in [1019, 33, 32, 64] {
            signals.raise(vector);
        }
        assert_eq!(signals.best_pending(|_| false), Some((32, DEFAULT_PRIORITY)));
        signals.set_priority(1019, 0x10);
        signals.set_priority(2000, 0x00);
        assert_eq!(signals.best_pending(|_| false), Some((1019, 0x10)));
        assert_eq!(signals.best_pending(|v| v == 1019), Some((32, DEFAULT_PRIORITY)));
        signals.clear(1019);
        signals.clear(32);
        assert_eq!(signals.best_pending(|_| false), Some((33, DEFAULT_PRIORITY)));
        assert!(signals.is_pending(64) && !signals.is_pending(32));
        assert!(signals.any_pending());
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::INFINITE;
    use loom::sync::Arc;

    /// A VCPU in WFI and a kick from another thread: the VCPU always wakes and sees the kick
    /// exactly once.
    #[test]
    fn kick_versus_wfi() {
        loom::model(|| {
            let signals = Arc::new(Signals::new());
            let vcpu = {
                let signals = signals.clone();
                loom::thread::spawn(move || {
                    signals.wait_for_interrupt(INFINITE);
                    (signals.take_kick(), signals.take_kick())
                })
            };
            signals.kick();
            assert_eq!(vcpu.join().unwrap(), (true, false));
        });
    }

    /// A kick racing with the start of `enter`: it is consumed by this enter or left for the
    /// next one, never lost and never doubled.
    #[test]
    fn kick_versus_enter() {
        loom::model(|| {
            let signals = Arc::new(Signals::new());
            let kicker = {
                let signals = signals.clone();
                loom::thread::spawn(move || signals.kick())
            };
            let this_enter = signals.take_kick();
            kicker.join().unwrap();
            let next_enter = signals.take_kick();
            assert!(this_enter ^ next_enter, "exactly one enter is canceled: {this_enter} {next_enter}");
        });
    }

    /// A raise on another thread racing with the VCPU finding the same word empty (and retiring
    /// its summary bit): the vector is found by the next look, never lost.
    #[test]
    fn a_raise_racing_a_retire_is_never_lost() {
        loom::model(|| {
            let signals = Arc::new(Signals::new());
            // A stale summary bit: vector 70 raised and taken before.
            signals.raise(70);
            signals.clear(70);
            let raiser = {
                let signals = signals.clone();
                loom::thread::spawn(move || signals.raise(71))
            };
            let first = signals.best_pending(|_| false);
            raiser.join().unwrap();
            assert!(first.is_none() || first == Some((71, DEFAULT_PRIORITY)));
            assert_eq!(signals.best_pending(|_| false), Some((71, DEFAULT_PRIORITY)));
            assert!(signals.any_pending());
        });
    }

    /// A VCPU idling in place after its WFI (`thread::idle_in_place`) registers nowhere: it
    /// relies on every raise and kick from another thread also interrupting the CPU it runs on.
    /// `enter` publishes that CPU and fences (`Vcpu::enter_writing`); `Vcpu::interrupt` and
    /// `Vcpu::kick` set their flag, fence and read it. Modelled with those same orderings: the
    /// VCPU's look before its WFI sees each flag, or the flag's sender sees where the VCPU runs
    /// (and sends the wake SGI, which ends the WFI): never neither.
    #[test]
    fn a_raise_or_kick_reaches_a_vcpu_idling_in_place() {
        use loom::sync::atomic::{fence, AtomicUsize};
        loom::model(|| {
            let signals = Arc::new(Signals::new());
            let running_on = Arc::new(AtomicUsize::new(0));
            let vcpu = {
                let (signals, running_on) = (signals.clone(), running_on.clone());
                loom::thread::spawn(move || {
                    running_on.store(1, Ordering::Relaxed);
                    fence(Ordering::SeqCst);
                    (signals.any_pending(), signals.is_kicked())
                })
            };
            let kicker = {
                let (signals, running_on) = (signals.clone(), running_on.clone());
                loom::thread::spawn(move || {
                    signals.kick();
                    fence(Ordering::SeqCst);
                    running_on.load(Ordering::Relaxed) != 0
                })
            };
            signals.raise(32);
            fence(Ordering::SeqCst);
            let raise_interrupts = running_on.load(Ordering::Relaxed) != 0;
            let kick_interrupts = kicker.join().unwrap();
            let (saw_raise, saw_kick) = vcpu.join().unwrap();
            assert!(saw_raise || raise_interrupts, "a raise neither seen nor sent as an SGI");
            assert!(saw_kick || kick_interrupts, "a kick neither seen nor sent as an SGI");
        });
    }

    /// An interrupt raised from another thread wakes a VCPU in WFI.
    #[test]
    fn interrupt_versus_wfi() {
        loom::model(|| {
            let signals = Arc::new(Signals::new());
            let vcpu = {
                let signals = signals.clone();
                loom::thread::spawn(move || {
                    signals.wait_for_interrupt(INFINITE);
                    signals.is_pending(32)
                })
            };
            signals.raise(32);
            assert!(vcpu.join().unwrap());
        });
    }
}
