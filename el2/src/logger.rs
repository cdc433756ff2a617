//! The defmt global logger: rzcobs frames on the board's PL011.
//!
//! One lock serialises frames from every CPU so they never interleave; interrupts are masked
//! while a CPU holds it. The lock remembers its owner: when a CPU faults *while logging* and
//! its fatal report logs again, the report takes the lock over (ending the broken frame with a
//! delimiter) instead of deadlocking against itself.
//!
//! Frames go into a ring in memory ([`RING`] bytes, the policy in [`crate::logring`]), and the
//! ring into the UART only as fast as its FIFO takes bytes: no CPU waits for the UART while it
//! logs (at 115 200 baud a line takes milliseconds). Every log call, and [`pump`] (the idle loop
//! and the console poll), moves what the FIFO has room for. A guest's console output
//! ([`droppable`]) may fill only half the ring: beyond that its line is dropped and counted
//! ([`take_dropped`]), so a guest flooding its console slows nobody and cannot crowd out
//! Belfry's own frames, which always have the other half. Should Belfry's own frames fill the
//! ring, the logging CPU waits for the UART: they are never lost.
//!
//! Every line carries the CPU index and a timestamp from the generic counter.

use crate::arch::aarch64::{cpu, timer};
use crate::logring::{Ring, Sink};
use crate::machine::MAX_CPUS;
use arm_pl011_uart::{DataBits, LineConfig, PL011Registers, Parity, StopBits, Uart, UniqueMmioPointer};
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use stage2::PhysAddr;

defmt::timestamp!("cpu{=usize} {=u64:us}", cpu::index(), timer::micros());

/// No CPU holds the lock.
const FREE: usize = usize::MAX;

static OWNER: AtomicUsize = AtomicUsize::new(FREE);

/// Bytes of log the ring holds.
pub const RING: usize = 16 * 1024;

struct State {
    uart: Option<Uart<'static>>,
    encoder: defmt::Encoder,
    saved_daif: u64,
    ring: Ring<RING>,
}

/// The board's UART as the ring's sink (absent before `init`: bytes are dropped).
struct Port<'a>(&'a mut Option<Uart<'static>>);

impl Sink for Port<'_> {
    fn full(&self) -> bool {
        self.0.as_ref().is_some_and(|uart| uart.is_tx_fifo_full())
    }

    fn write(&mut self, byte: u8) {
        if let Some(uart) = self.0 {
            uart.write_word(byte);
        }
    }
}

struct Shared(UnsafeCell<State>);

// SAFETY: `State` is only touched by the CPU that holds `OWNER` (or, in `init`, by the boot
// CPU before any other CPU runs).
unsafe impl Sync for Shared {}

static STATE: Shared =
    Shared(UnsafeCell::new(State { uart: None, encoder: defmt::Encoder::new(), saved_daif: 0, ring: Ring::new() }));

/// Per CPU: the frames this CPU logs now are a guest's console output ([`droppable`]).
static DROPPABLE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Sets up the UART at `base` (115200 8N1 from a `clock_hz` reference clock) and starts
/// logging. Frames logged before this are dropped.
///
/// # Safety
/// Boot CPU only, once, with the MMU on and `base` mapped as Device memory; nothing else may
/// drive that UART.
pub unsafe fn init(base: PhysAddr, clock_hz: u32) {
    let config = LineConfig { data_bits: DataBits::Bits8, parity: Parity::None, stop_bits: StopBits::One };
    // SAFETY: the caller guarantees the PL011 block at `base` is mapped and ours alone.
    let registers = unsafe { UniqueMmioPointer::new(NonNull::new_unchecked(base.raw() as *mut PL011Registers)) };
    let mut uart = Uart::new(registers);
    // A clock that cannot produce the rate still leaves QEMU's UART usable; keep going.
    let _ = uart.enable(config, 115_200, clock_hz);
    let daif = cpu::mask_interrupts();
    take_lock();
    // SAFETY: we hold the lock.
    unsafe { (*STATE.0.get()).uart = Some(uart) };
    OWNER.store(FREE, Ordering::Release);
    cpu::restore_interrupts(daif);
    crate::early::logger_ready();
}

fn take_lock() -> bool {
    let me = cpu::index();
    loop {
        match OWNER.compare_exchange_weak(FREE, me, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => return false,
            Err(owner) if owner == me => return true,
            Err(_) => core::hint::spin_loop(),
        }
    }
}

/// Runs `log` with the frames this CPU logs marked as a guest's console output: dropped, and
/// counted, when the log ring is half full (see the module documentation).
pub fn droppable<R>(log: impl FnOnce() -> R) -> R {
    let daif = cpu::mask_interrupts();
    let flag = DROPPABLE.get(cpu::index());
    if let Some(flag) = flag {
        flag.store(true, Ordering::Relaxed);
    }
    let result = log();
    if let Some(flag) = flag {
        flag.store(false, Ordering::Relaxed);
    }
    cpu::restore_interrupts(daif);
    result
}

/// Runs `operation` on the state if no CPU is logging (never waits).
fn try_with_state<R>(operation: impl FnOnce(&mut State) -> R) -> Option<R> {
    let daif = cpu::mask_interrupts();
    let mut result = None;
    if OWNER.compare_exchange(FREE, cpu::index(), Ordering::Acquire, Ordering::Relaxed).is_ok() {
        // SAFETY: we hold the lock.
        result = Some(operation(unsafe { &mut *STATE.0.get() }));
        OWNER.store(FREE, Ordering::Release);
    }
    cpu::restore_interrupts(daif);
    result
}

/// Guest console frames dropped since the last call (the caller reports them); 0 while
/// another CPU logs (they are counted next time).
pub fn take_dropped() -> u64 {
    try_with_state(|state| state.ring.take_dropped()).unwrap_or(0)
}

/// Moves what the UART has room for out of the ring, unless another CPU is logging.
pub fn pump() {
    try_with_state(|state| state.ring.send(&mut Port(&mut state.uart), false));
}

#[defmt::global_logger]
struct Logger;

// SAFETY: acquire/release bracket every frame and exclude other CPUs through `OWNER`;
// re-entry on the same CPU only happens from a fatal exception report, which never returns to
// the interrupted frame.
unsafe impl defmt::Logger for Logger {
    fn acquire() {
        let daif = cpu::mask_interrupts();
        let reentered = take_lock();
        // SAFETY: we hold the lock.
        let state = unsafe { &mut *STATE.0.get() };
        let droppable = DROPPABLE.get(cpu::index()).is_some_and(|f| f.load(Ordering::Relaxed));
        if reentered {
            // The interrupted frame is lost; a zero byte ends it so the decoder resynchronises.
            state.ring.begin(false);
            state.ring.put(&mut Port(&mut state.uart), &[0]);
            state.ring.end();
            state.encoder = defmt::Encoder::new();
        } else {
            state.saved_daif = daif;
        }
        let State { uart, encoder, ring, .. } = state;
        ring.begin(droppable && !reentered);
        encoder.start_frame(|bytes| ring.put(&mut Port(uart), bytes));
    }

    unsafe fn flush() {
        // SAFETY: called between acquire and release, so we hold the lock.
        let state = unsafe { &mut *STATE.0.get() };
        state.ring.send(&mut Port(&mut state.uart), true);
        if let Some(uart) = &state.uart {
            while uart.is_busy() {
                core::hint::spin_loop();
            }
        }
    }

    unsafe fn release() {
        // SAFETY: called after acquire, so we hold the lock.
        let state = unsafe { &mut *STATE.0.get() };
        let State { uart, encoder, saved_daif, ring } = state;
        encoder.end_frame(|bytes| ring.put(&mut Port(uart), bytes));
        ring.end();
        ring.send(&mut Port(uart), false);
        let daif = *saved_daif;
        OWNER.store(FREE, Ordering::Release);
        cpu::restore_interrupts(daif);
    }

    unsafe fn write(bytes: &[u8]) {
        // SAFETY: called between acquire and release, so we hold the lock.
        let state = unsafe { &mut *STATE.0.get() };
        let State { uart, encoder, ring, .. } = state;
        encoder.write(bytes, |bytes| ring.put(&mut Port(uart), bytes));
    }
}

/// Moves bytes the board's UART has received (the user's keystrokes, from `cargo xtask run` or a
/// serial terminal) into `buffer`; returns how many. Never waits: an empty FIFO gives 0. A
/// receive error (framing, parity, break, overrun) drops that byte.
pub fn read_input(buffer: &mut [u8]) -> usize {
    let daif = cpu::mask_interrupts();
    let reentered = take_lock();
    // SAFETY: we hold the lock.
    let state = unsafe { &mut *STATE.0.get() };
    if !reentered {
        state.ring.send(&mut Port(&mut state.uart), false);
    }
    let mut count = 0;
    if let Some(uart) = &mut state.uart {
        while count < buffer.len() {
            match uart.read_word() {
                Ok(Some(byte)) => {
                    buffer[count] = byte;
                    count += 1;
                }
                Ok(None) => break,
                Err(_) => continue,
            }
        }
    }
    if !reentered {
        OWNER.store(FREE, Ordering::Release);
    }
    cpu::restore_interrupts(daif);
    count
}

/// Waits until every logged byte has left the UART (before ending the emulation).
pub fn drain() {
    // SAFETY: flush only needs the lock to be taken, which acquire/release bracket.
    defmt::flush();
}
