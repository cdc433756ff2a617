//! # el2: the Belfry hypervisor kernel
//!
//! Everything that runs at EL2 and does not depend on a board: boot, the exception vectors,
//! Belfry's own MMU and memory, logging, and (in later work) the kernel objects, syscalls,
//! threads and exit handling. A board crate supplies a [`boot::Board`] and calls
//! [`boot::primary`] / [`boot::secondary`] from its `belfry_main`.
//!
//! The crate builds for two worlds. On the bare-metal target (`target_os = "none"`) it is the
//! hypervisor. On the host, only its pure logic compiles (machine description, regions, the
//! page-table builder, memory planning, command lines), and that is what the unit tests run.
//!
//! Invariants:
//! - Until a CPU's MMU and caches are on, it takes no lock and touches no data another CPU
//!   writes (see [`arch::aarch64::mmu`]).
//! - The boot CPU is logical CPU 0; logical indices are fixed at boot and stored in TPIDR_ELx.
//! - A panic means Belfry's own invariant broke; device tree or command-line problems are
//!   reported and end the run with an exit code instead.
//!
//! Lock order (outermost first): the logger lock, then the heap, then the frame allocator.
//! The logger masks interrupts while held and may be taken over by a fatal report on the
//! same CPU.
#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;

/// Logs at `level` (`error`, `warn`, ...) on the board (defmt); on the host the arguments are
/// only evaluated. Used where the same code runs in both worlds and the host tests assert on
/// statuses instead.
#[macro_export]
macro_rules! kernel_log {
    ($level:ident, $format:literal $(, $argument:expr)* $(,)?) => {{
        #[cfg(target_os = "none")]
        defmt::$level!($format $(, $argument)*);
        #[cfg(not(target_os = "none"))]
        {
            $(let _ = &$argument;)*
        }
    }};
}

/// [`kernel_log!`] at error level.
#[macro_export]
macro_rules! kernel_error {
    ($($tokens:tt)*) => { $crate::kernel_log!(error, $($tokens)*) };
}

/// [`kernel_log!`] at warning level.
#[macro_export]
macro_rules! kernel_warn {
    ($($tokens:tt)*) => { $crate::kernel_log!(warn, $($tokens)*) };
}

pub mod api;
pub mod arch;
pub mod debug;
pub mod exit_code;
pub mod fdt_check;
pub mod inject;
pub mod logring;
pub mod machine;
pub mod memory;
pub mod object;
pub mod pagetable;
pub mod ptimer;
pub mod regions;
pub mod sched;
pub mod sync;
#[cfg(target_os = "none")]
pub mod thread;
pub mod traps;
pub mod vgic;

#[cfg(target_os = "none")]
pub mod boot;
#[cfg(target_os = "none")]
pub mod early;
#[cfg(target_os = "none")]
pub mod irq;
#[cfg(target_os = "none")]
mod logger;

/// The board's console input: the user's keystrokes on the UART Belfry logs on.
#[cfg(target_os = "none")]
pub mod console {
    /// Moves received bytes into `buffer` without waiting; returns how many.
    pub fn read(buffer: &mut [u8]) -> usize {
        crate::logger::read_input(buffer)
    }

    /// Logs a guest's console output with `log`: dropped (and counted) rather than waited for
    /// when the log is backed up (see `logger`).
    pub fn guest_output<R>(log: impl FnOnce() -> R) -> R {
        crate::logger::droppable(log)
    }

    /// Guest console lines dropped since the last call.
    pub fn dropped() -> u64 {
        crate::logger::take_dropped()
    }

    /// Moves pending log bytes into the UART as far as it takes them, without waiting.
    pub fn pump() {
        crate::logger::pump()
    }
}
#[cfg(target_os = "none")]
pub mod report;
