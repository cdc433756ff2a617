//! Switching between EL2 threads: saves the callee-saved registers and the stack pointer of
//! the running thread and loads those of the next. Everything else is caller-saved, so the
//! Rust call to `switch_context` has already spilled it.

use core::arch::global_asm;
use core::mem::offset_of;

/// What a thread that is not running keeps of its CPU state.
#[repr(C)]
#[derive(Debug, Default)]
pub struct SwitchContext {
    /// x19..x28.
    pub callee_saved: [u64; 10],
    /// x29.
    pub frame_pointer: u64,
    /// x30: where `switch_context` returns to in this thread.
    pub link: u64,
    pub sp: u64,
}

global_asm!(
    r#"
    .section .text.switch, "ax"
    .global belfry_switch_context
    // x0 = &mut SwitchContext of the running thread, x1 = &SwitchContext of the next.
belfry_switch_context:
    stp     x19, x20, [x0, #({regs} + 0 * 8)]
    stp     x21, x22, [x0, #({regs} + 2 * 8)]
    stp     x23, x24, [x0, #({regs} + 4 * 8)]
    stp     x25, x26, [x0, #({regs} + 6 * 8)]
    stp     x27, x28, [x0, #({regs} + 8 * 8)]
    str     x29, [x0, #{fp}]
    str     x30, [x0, #{lr}]
    mov     x9, sp
    str     x9, [x0, #{sp}]
    ldp     x19, x20, [x1, #({regs} + 0 * 8)]
    ldp     x21, x22, [x1, #({regs} + 2 * 8)]
    ldp     x23, x24, [x1, #({regs} + 4 * 8)]
    ldp     x25, x26, [x1, #({regs} + 6 * 8)]
    ldp     x27, x28, [x1, #({regs} + 8 * 8)]
    ldr     x29, [x1, #{fp}]
    ldr     x30, [x1, #{lr}]
    ldr     x9, [x1, #{sp}]
    mov     sp, x9
    ret

    .global belfry_thread_trampoline
    // A new thread starts here: x19 holds the argument for `belfry_thread_start`.
belfry_thread_trampoline:
    mov     x0, x19
    bl      belfry_thread_start
    brk     #0x1                    // belfry_thread_start never returns
"#,
    regs = const offset_of!(SwitchContext, callee_saved),
    fp = const offset_of!(SwitchContext, frame_pointer),
    lr = const offset_of!(SwitchContext, link),
    sp = const offset_of!(SwitchContext, sp),
);

unsafe extern "C" {
    fn belfry_switch_context(from: *mut SwitchContext, to: *const SwitchContext);
    fn belfry_thread_trampoline();
}

/// Saves the running thread into `from` and resumes the thread saved in `to`; returns when
/// some CPU switches back to `from`.
///
/// # Safety
/// `to` must hold a context saved by this function or made by [`initial_context`], whose stack
/// is alive; `from` must stay valid until the thread is resumed.
pub unsafe fn switch_context(from: *mut SwitchContext, to: *const SwitchContext) {
    // SAFETY: per the contract; the assembly saves and restores exactly the AAPCS64
    // callee-saved state and returns normally.
    unsafe { belfry_switch_context(from, to) }
}

/// The context of a thread that has not run yet: it will enter `belfry_thread_start(argument)`
/// on the stack whose top is `stack_top`.
pub fn initial_context(stack_top: u64, argument: u64) -> SwitchContext {
    let mut context = SwitchContext { sp: stack_top & !0xf, ..Default::default() };
    context.callee_saved[0] = argument;
    context.link = belfry_thread_trampoline as *const () as u64;
    context
}
