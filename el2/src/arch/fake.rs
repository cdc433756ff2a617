//! The host's stand-in for the world switch: a scripted guest. Tests queue the exits the
//! "guest" will take; with nothing queued the guest spins (each `run` returns `Interrupted`
//! after yielding), which is what a guest looping in place looks like to `enter`.

use crate::object::exit::Exit;
use crate::object::vcpu::Context;
use std::collections::VecDeque;

/// Per-VCPU state of the scripted guest.
#[derive(Debug, Default)]
pub struct VcpuArch {
    /// Exits the guest will take, in order.
    pub script: VecDeque<Exit>,
    /// Instructions skipped after emulation, for tests to check.
    pub skipped: usize,
    /// Exceptions delivered to the guest's EL1, for tests to check.
    pub injected: Vec<crate::inject::GuestException>,
}

impl VcpuArch {
    pub fn new(_id: usize, _vttbr: u64) -> Self {
        Self::default()
    }
}

/// Runs the scripted guest until its next exit.
pub fn run(context: &mut Context, _signals: &crate::object::signals::Signals) -> Exit {
    if context.skip_instruction {
        context.skip_instruction = false;
        context.pc = context.pc.wrapping_add(4);
        context.arch.skipped += 1;
        if let Some((register, delta)) = context.writeback.take() {
            let base = match context.state.x.get_mut(usize::from(register)) {
                Some(x) => x,
                None => &mut context.state.sp,
            };
            *base = base.wrapping_add_signed(delta);
        }
    }
    match context.arch.script.pop_front() {
        Some(exit) => exit,
        None => {
            std::thread::yield_now();
            Exit::Interrupted
        }
    }
}

/// Delivers `exception` to the scripted guest: recorded for the tests; the instruction is not
/// skipped.
pub fn inject(context: &mut Context, exception: crate::inject::GuestException) {
    context.skip_instruction = false;
    context.arch.injected.push(exception);
}

/// The scripted guest's stack pointer (it runs at EL1h).
pub fn stack_pointer(context: &mut Context) -> u64 {
    context.state.sp
}

/// The scripted guest runs with its MMU off: virtual addresses are guest-physical.
pub fn translate_data(_context: &mut Context, address: u64) -> Option<u64> {
    Some(address)
}

/// Host builds have no TLB to invalidate.
pub fn invalidate_guest_page(_vttbr: u64, _ipa: u64) {}

/// Host builds have no TLB to invalidate.
pub fn invalidate_guest(_vttbr: u64) {}

/// Host builds have no caches to maintain.
pub fn clean_for_guest(_address: u64, _len: usize) {}

/// Host builds have no instruction caches to invalidate.
pub fn invalidate_instruction_cache() {}

/// The host's scripted guests spin through `run`, which re-checks kicks: nothing to interrupt.
pub fn interrupt_cpu(_cpu: usize) {}

/// Host threads are not pinned to CPUs.
pub fn current_cpu() -> usize {
    0
}

/// Host guests get no device pages.
pub fn guest_device_pages() -> Option<(u64, u64, u64)> {
    None
}
