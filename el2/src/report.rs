//! Fatal reports: an unexpected exception or a panic is logged with everything needed to find
//! it (CPU, exception class and its name, syndrome, fault address, return address), and then
//! the machine stops: under QEMU the run ends with a distinct exit code, on hardware the CPUs
//! park. A fatal report never hangs the run that produced it.

use crate::arch::aarch64::cpu;
use crate::arch::aarch64::vectors::{ExceptionFrame, ExceptionState, Kind, Origin};
use crate::exit_code;
use core::sync::atomic::{AtomicBool, Ordering};

/// Set once a CPU has begun stopping the machine; other CPUs' reports then just park.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Reports an exception nobody expected, then stops the machine.
pub fn unexpected_exception(
    cpu_index: usize,
    origin: Origin,
    kind: Kind,
    state: &ExceptionState,
    frame: &ExceptionFrame,
) -> ! {
    let esr = state.esr;
    let class = esr.class();
    if !crate::early::is_logger_ready() {
        crate::early::line(format_args!(
            "cpu{cpu_index}: unexpected {kind:?} exception ({origin:?}) before the log: EC {:#04x} ({}), ISS {:#x}, ELR {:#x}, FAR {:#x}",
            esr.class_bits(),
            class.name(),
            esr.iss(),
            state.elr,
            state.far
        ));
        stop(cpu_index, exit_code::FAULT)
    }
    defmt::error!("cpu{=usize}: unexpected {} exception ({})", cpu_index, kind, origin);
    if esr.data_abort().is_some() {
        match crate::arch::aarch64::mmu::guard_page_owner(state.far) {
            Some((true, cpu)) => {
                defmt::error!("  EL2 stack overflow: cpu{=usize}'s boot stack ran into its guard page", cpu)
            }
            Some((false, slot)) => {
                defmt::error!("  EL2 stack overflow: thread stack slot {=usize} ran into its guard page", slot)
            }
            None => {}
        }
    }
    defmt::error!(
        "  EC {=u8:#04x} ({=str}), IL {=bool}, ISS {=u32:#09x}",
        esr.class_bits(),
        class.name(),
        esr.is_32bit_instruction(),
        esr.iss()
    );
    if let Some(abort) = esr.data_abort() {
        let direction = if abort.write { "write" } else { "read" };
        let status = abort.status.name();
        match (abort.status.level(), abort.syndrome_valid) {
            (Some(level), true) => defmt::error!(
                "  data abort: {=str} at level {=u8}, {=str} of {=u8} bytes via register {=u8}, FAR {=u64:#x}",
                status,
                level,
                direction,
                abort.access_size,
                abort.register,
                state.far
            ),
            (Some(level), false) => defmt::error!(
                "  data abort: {=str} at level {=u8}, {=str}, FAR {=u64:#x}",
                status,
                level,
                direction,
                state.far
            ),
            (None, _) => defmt::error!("  data abort: {=str}, {=str}, FAR {=u64:#x}", status, direction, state.far),
        }
    } else if let Some(status) = esr.instruction_abort_status() {
        defmt::error!("  instruction abort: {=str}, FAR {=u64:#x}", status.name(), state.far);
    }
    defmt::error!(
        "  ELR {=u64:#x}, SPSR {=u64:#x}, FAR {=u64:#x}, x0 {=u64:#x}, x30 {=u64:#x}",
        state.elr,
        state.spsr,
        state.far,
        frame.x[0],
        frame.x[30]
    );
    stop(cpu_index, exit_code::FAULT)
}

/// Logs that this CPU stopped and ends the run with `code` (or parks, without a host).
pub fn stop(cpu_index: usize, code: u32) -> ! {
    if crate::early::is_logger_ready() {
        defmt::error!("cpu{=usize} stopped", cpu_index);
    } else {
        crate::early::line(format_args!("cpu{cpu_index} stopped"));
    }
    if !STOPPING.swap(true, Ordering::AcqRel) {
        crate::arch::aarch64::power::exit(code);
    }
    cpu::park()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let cpu_index = cpu::index();
    if !crate::early::is_logger_ready() {
        crate::early::line(format_args!("cpu{cpu_index} panicked before the log: {info}"));
        stop(cpu_index, exit_code::PANIC)
    }
    defmt::error!("cpu{=usize} panicked: {}", cpu_index, defmt::Display2Format(info));
    stop(cpu_index, exit_code::PANIC)
}
