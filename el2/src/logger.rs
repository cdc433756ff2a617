//! The defmt global logger: rzcobs frames on the board's PL011.
//!
//! One lock serialises frames from every CPU so they never interleave; interrupts are masked
//! while a CPU holds it. The lock remembers its owner: when a CPU faults *while logging* and
//! its fatal report logs again, the report takes the lock over (ending the broken frame with a
//! delimiter) instead of deadlocking against itself.
//!
//! Every line carries the CPU index and a timestamp from the generic counter.

use crate::arch::aarch64::{cpu, timer};
use arm_pl011_uart::{DataBits, LineConfig, PL011Registers, Parity, StopBits, Uart, UniqueMmioPointer};
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use stage2::PhysAddr;

defmt::timestamp!("cpu{=usize} {=u64:us}", cpu::index(), timer::micros());

/// No CPU holds the lock.
const FREE: usize = usize::MAX;

static OWNER: AtomicUsize = AtomicUsize::new(FREE);

struct State {
    uart: Option<Uart<'static>>,
    encoder: defmt::Encoder,
    saved_daif: u64,
}

struct Shared(UnsafeCell<State>);

// SAFETY: `State` is only touched by the CPU that holds `OWNER` (or, in `init`, by the boot
// CPU before any other CPU runs).
unsafe impl Sync for Shared {}

static STATE: Shared = Shared(UnsafeCell::new(State { uart: None, encoder: defmt::Encoder::new(), saved_daif: 0 }));

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

fn write_bytes(uart: &mut Option<Uart<'static>>, bytes: &[u8]) {
    if let Some(uart) = uart {
        for &byte in bytes {
            while uart.is_tx_fifo_full() {
                core::hint::spin_loop();
            }
            uart.write_word(byte);
        }
    }
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
        if reentered {
            // The interrupted frame is lost; a zero byte ends it so the decoder resynchronises.
            write_bytes(&mut state.uart, &[0]);
            state.encoder = defmt::Encoder::new();
        } else {
            state.saved_daif = daif;
        }
        let State { uart, encoder, .. } = state;
        encoder.start_frame(|bytes| write_bytes(uart, bytes));
    }

    unsafe fn flush() {
        // SAFETY: called between acquire and release, so we hold the lock.
        let state = unsafe { &mut *STATE.0.get() };
        if let Some(uart) = &state.uart {
            while uart.is_busy() {
                core::hint::spin_loop();
            }
        }
    }

    unsafe fn release() {
        // SAFETY: called after acquire, so we hold the lock.
        let state = unsafe { &mut *STATE.0.get() };
        let State { uart, encoder, saved_daif } = state;
        encoder.end_frame(|bytes| write_bytes(uart, bytes));
        let daif = *saved_daif;
        OWNER.store(FREE, Ordering::Release);
        cpu::restore_interrupts(daif);
    }

    unsafe fn write(bytes: &[u8]) {
        // SAFETY: called between acquire and release, so we hold the lock.
        let state = unsafe { &mut *STATE.0.get() };
        let State { uart, encoder, .. } = state;
        encoder.write(bytes, |bytes| write_bytes(uart, bytes));
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
