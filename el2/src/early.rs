//! The early console: how a fatal error before the logger is up still reaches the UART, in
//! words. Until `logger::init` (which needs the MMU on, hence a machine description), Belfry
//! can only write bytes straight to the board's PL011 data register. Those lines are framed so
//! the host's decoder tells them from defmt frames: [`MAGIC`], the text, a newline, a zero
//! (defmt's rzcobs frames never contain three zeros in a row). xtask turns them into log lines
//! of level `EARLY`.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What starts an early line.
pub const MAGIC: &[u8] = b"\0\0\0BELFRY-EARLY ";

static UART: AtomicU64 = AtomicU64::new(0);
static LOGGER_READY: AtomicBool = AtomicBool::new(false);

/// The board's PL011 (its physical address: identity-mapped, and used with the MMU off).
pub fn set_uart(base: u64) {
    UART.store(base, Ordering::Release);
}

/// The defmt logger is up: fatal reports use it from now on.
pub fn logger_ready() {
    LOGGER_READY.store(true, Ordering::Release);
}

/// Whether the defmt logger is up.
pub fn is_logger_ready() -> bool {
    LOGGER_READY.load(Ordering::Acquire)
}

struct Pl011(u64);

impl Pl011 {
    fn put(&self, byte: u8) {
        const DR: u64 = 0x00;
        const FR: u64 = 0x18;
        const TXFF: u32 = 1 << 5;
        // SAFETY: the board's PL011: its data and flag registers, identity-mapped (or physical
        // with the MMU off); the logger is not up, so nothing else drives it.
        unsafe {
            while core::ptr::read_volatile((self.0 + FR) as *const u32) & TXFF != 0 {
                core::hint::spin_loop();
            }
            core::ptr::write_volatile((self.0 + DR) as *mut u32, u32::from(byte));
        }
    }
}

impl Write for Pl011 {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        for byte in text.bytes().filter(|&b| b != 0 && b != b'\n') {
            self.put(byte);
        }
        Ok(())
    }
}

/// Writes one early line (nothing when no UART is known).
pub fn line(arguments: core::fmt::Arguments<'_>) {
    let base = UART.load(Ordering::Acquire);
    if base == 0 {
        return;
    }
    let mut uart = Pl011(base);
    for &byte in MAGIC {
        uart.put(byte);
    }
    let _ = uart.write_fmt(arguments);
    uart.put(b'\n');
    uart.put(0);
}
