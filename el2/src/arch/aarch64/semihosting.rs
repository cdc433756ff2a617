//! Arm semihosting: how Belfry, under QEMU, reads its command line and ends the run with an
//! exit code.
//!
//! On real hardware `HLT #0xF000` is an undefined instruction. The exception vector recognises
//! it (see [`super::vectors`]), marks semihosting unavailable and skips the instruction, so the
//! same image runs on a board with no debugger attached: exits then park the CPUs instead.

use core::sync::atomic::{AtomicU8, Ordering};

/// The encoding of `HLT #0xF000`, the AArch64 semihosting trap.
pub const HLT_SEMIHOSTING: u32 = 0xd45e_0000;

const SYS_GET_CMDLINE: u64 = 0x15;
const SYS_EXIT: u64 = 0x18;
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x2_0026;

const UNKNOWN: u8 = 0;
const PRESENT: u8 = 1;
const ABSENT: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Called by the exception vector when `HLT #0xF000` was undefined: there is no host.
pub fn mark_absent() {
    STATE.store(ABSENT, Ordering::Relaxed);
}

/// Whether a semihosting host answered (or has not been asked yet).
pub fn present() -> bool {
    STATE.load(Ordering::Relaxed) != ABSENT
}

fn call(operation: u64, parameter: u64) -> Option<u64> {
    if !present() {
        return None;
    }
    let result: u64;
    // SAFETY: the semihosting trap reads the parameter block `parameter` points to (callers
    // pass a live one) and writes only what the operation defines into it and x0. When no
    // host exists, the vector skips the instruction and sets x0 to u64::MAX.
    unsafe { core::arch::asm!("hlt #0xf000", inout("x0") operation => result, in("x1") parameter, options(nostack)) };
    if present() {
        STATE.store(PRESENT, Ordering::Relaxed);
        Some(result)
    } else {
        None
    }
}

/// Copies the host's command line into `buffer`; returns its length, or `None` without a host.
pub fn command_line(buffer: &mut [u8]) -> Option<usize> {
    let mut block = [buffer.as_mut_ptr() as u64, buffer.len() as u64];
    let status = call(SYS_GET_CMDLINE, block.as_mut_ptr() as u64)?;
    (status == 0).then(|| (block[1] as usize).min(buffer.len()))
}

/// Ends the emulation with `code` as the host process's exit status. Returns only when there
/// is no semihosting host.
pub fn exit(code: u32) {
    let block = [ADP_STOPPED_APPLICATION_EXIT, u64::from(code)];
    call(SYS_EXIT, block.as_ptr() as u64);
}
