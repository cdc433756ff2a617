//! Ending a run: how Belfry powers the machine off when its command line asks it to.
//!
//! Under QEMU a run ends when Belfry says so, and only Belfry: it logs its structured final
//! line (`belfry: run ended, exit status N`, a defmt frame no guest can produce, since guests
//! reach no UART of Belfry's) and powers the machine off: PSCI SYSTEM_OFF on `virt`, a
//! watchdog reset on the Pi 4 (QEMU runs with `-no-reboot`, so either ends the process). There
//! is no semihosting: a guest's `HLT #0xF000` would reach the same host interface (it could
//! print on the host, read and write the host's files and end the run with a status of its
//! choosing), so Belfry does not enable it, and QEMU is started without it.
//!
//! Without `belfry.exit=poweroff` on the command line (a real board booted by its firmware),
//! the end of a run parks the CPU instead: the log stays on the serial line.

use core::sync::atomic::{AtomicU64, Ordering};

/// How the machine is powered off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerOff {
    /// PSCI SYSTEM_OFF through SMC.
    PsciSmc,
    /// PSCI SYSTEM_OFF through HVC (Belfry entered at EL1).
    PsciHvc,
    /// The BCM2835-family power manager's watchdog (Pi 4: 0xFE10_0000): a full reset, which
    /// QEMU's `-no-reboot` turns into the end of the process.
    Bcm2835Watchdog(u64),
}

/// 0: park; 1: PSCI SMC; 2: PSCI HVC; otherwise the watchdog's base address.
static MODE: AtomicU64 = AtomicU64::new(0);

/// Arms powering off at the end of the run (the command line asked for it).
pub fn arm(how: PowerOff) {
    let mode = match how {
        PowerOff::PsciSmc => 1,
        PowerOff::PsciHvc => 2,
        PowerOff::Bcm2835Watchdog(base) => base,
    };
    MODE.store(mode, Ordering::Release);
}

const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;
const PM_PASSWORD: u32 = 0x5a00_0000;
const PM_RSTC: u64 = 0x1c;
const PM_WDOG: u64 = 0x24;
const PM_RSTC_WRCFG_FULL_RESET: u32 = 0x20;

/// Logs the run's end with `code`, then powers off (when armed) or parks this CPU.
pub fn exit(code: u32) -> ! {
    if crate::early::is_logger_ready() {
        defmt::info!("belfry: run ended, exit status {=u32}", code);
        crate::logger::drain();
    } else {
        crate::early::line(format_args!("belfry: run ended, exit status {code}"));
    }
    match MODE.load(Ordering::Acquire) {
        0 => {}
        1 => {
            // SAFETY: PSCI SYSTEM_OFF does not return when it succeeds; nothing is lent to it.
            unsafe { core::arch::asm!("smc #0", inout("x0") PSCI_SYSTEM_OFF => _, options(nostack)) };
        }
        2 => {
            // SAFETY: as above, through the hypervisor call conduit.
            unsafe { core::arch::asm!("hvc #0", inout("x0") PSCI_SYSTEM_OFF => _, options(nostack)) };
        }
        base => {
            // SAFETY: the power manager's registers lie in the board's Device window, mapped by
            // Belfry's identity map; the writes reset the SoC, which is what is asked for.
            unsafe {
                core::ptr::write_volatile((base + PM_WDOG) as *mut u32, PM_PASSWORD | 10);
                core::ptr::write_volatile((base + PM_RSTC) as *mut u32, PM_PASSWORD | PM_RSTC_WRCFG_FULL_RESET);
            }
        }
    }
    super::cpu::park()
}
