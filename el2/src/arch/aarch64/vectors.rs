//! EL2's exception vector table (also used at EL1 when there is no EL2).
//!
//! The current-EL entries save x0..x30 into an [`ExceptionFrame`] on the current stack and call
//! `belfry_exception` with the entry's index. No exception is expected there: any is reported
//! with its decoded syndrome and stops the machine (see [`crate::report`]).
//! The lower-EL entries are guest exits: they go back to the world switch (`world.rs`).

use super::{cpu, vectors_regs};
use crate::machine::MAX_CPUS;

/// Bytes of each CPU's emergency stack: what a fatal report runs on (the stack that faulted
/// may have overflowed into its guard page).
const EMERGENCY_STACK_SIZE: usize = 8 * 1024;

const _: () = assert!(MAX_CPUS.is_power_of_two(), "the vector masks the CPU index with MAX_CPUS - 1");

#[repr(C, align(16))]
struct EmergencyStacks([[u8; EMERGENCY_STACK_SIZE]; MAX_CPUS]);

/// One emergency stack per CPU, in `.bss`; touched only by the vector code below.
static mut EMERGENCY_STACKS: EmergencyStacks = EmergencyStacks([[0; EMERGENCY_STACK_SIZE]; MAX_CPUS]);
use core::arch::global_asm;
use core::mem::{offset_of, size_of};
use stage2::syndrome::Esr;

/// General registers at the time of the exception.
#[repr(C)]
pub struct ExceptionFrame {
    /// x0..x30.
    pub x: [u64; 31],
    /// The stack pointer when the exception was taken.
    pub sp: u64,
}

const _: () = assert!(size_of::<ExceptionFrame>().is_multiple_of(16), "SP must stay 16-byte aligned");

global_asm!(
    r#"
    .section .text.vectors, "ax"
    .balign 0x800
    .global belfry_vectors
belfry_vectors:
    // Belfry's own level: every exception is fatal. The report runs on this CPU's emergency
    // stack, since the current one may be the cause (an overflow into its guard page). x0 and
    // x1 are parked in SP_EL0 and TPIDRRO_EL0, which hold no EL2 state (a guest's values there
    // are saved in its VCPU whenever EL2 code runs, except in the world switch's few
    // instructions, where a fault is fatal anyway).
    .irp kind, 0,1,2,3,4,5,6,7
    .org    belfry_vectors + \kind * 0x80   // (an error if the entry before outgrew its 0x80 bytes)
    msr     sp_el0, x0
    msr     tpidrro_el0, x1
    mrs     x0, currentel
    cmp     x0, #8
    b.ne    1f
    mrs     x0, tpidr_el2
    b       2f
1:
    .if \kind == 4
    // At EL1 (no EL2), a synchronous exception on Belfry's own stack: the one expected is
    // `cpu::index`'s `mrs Xt, TPIDR_EL2`, UNDEFINED here (EC 0), emulated below.
    mrs     x0, esr_el1
    lsr     x0, x0, #26
    cbnz    x0, 3f
    mrs     x0, elr_el1
    ldr     w0, [x0]
    ldr     w1, belfry_mrs_tpidr_el2
    eor     w0, w0, w1              // Rt, if only the Rt field differs
    cmp     w0, #31
    b.ls    belfry_el1_index
3:
    .endif
    mrs     x0, tpidr_el1
2:  ldr     x0, [x0]                // the CPU's index, first in its PerCpu block
    and     x0, x0, #{cpu_mask}
    add     x0, x0, #1
    adrp    x1, {emergency}
    add     x1, x1, :lo12:{emergency}
    add     x0, x1, x0, lsl #{emergency_shift}
    mov     x1, sp                  // the faulting SP, for the report
    mov     sp, x0
    sub     sp, sp, #{frame_size}
    str     x1, [sp, #{sp_offset}]
    mrs     x0, sp_el0
    mrs     x1, tpidrro_el0
    stp     x0, x1, [sp, #({x} + 0 * 8)]
    mov     x0, #\kind
    b       belfry_exception_save
    .endr
    // From a guest (lower EL): back to the world switch; a synchronous exception from AArch64
    // has its own entry, where the short exit is tried first.
    .balign 0x80
    stp     x0, x1, [sp, #-16]!
    b       belfry_guest_sync
    .irp kind, 9,10,11,12,13,14,15
    .balign 0x80
    stp     x0, x1, [sp, #-16]!
    mov     x0, #\kind
    b       belfry_guest_exit
    .endr

    // `mrs Xt, TPIDR_EL2` at EL1 (`cpu::index`; x0 = Rt, the caller's x0 and x1 parked in
    // SP_EL0 and TPIDRRO_EL0): Xt gets TPIDR_EL1, where the boot code put the CPU's block at
    // EL1, and the instruction is stepped over. Nothing else changes: `eret` restores the flags.
belfry_el1_index:
    adr     x1, 4f
    add     x1, x1, x0, lsl #3      // two instructions per register
    br      x1
4:  mrs     x0, tpidr_el1
    b       5f
    mrs     x1, tpidr_el1
    b       6f
    .irp rt, 2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30
    mrs     x\rt, tpidr_el1
    b       8f
    .endr
    nop                             // Rt 31: XZR, nothing to write
    b       8f
5:  msr     sp_el0, x0              // Rt 0 and 1: the parked values are the results
    b       8f
6:  msr     tpidrro_el0, x1
8:  mrs     x0, elr_el1
    add     x0, x0, #4
    msr     elr_el1, x0
    mrs     x0, sp_el0
    mrs     x1, tpidrro_el0
    eret

    .balign 4
belfry_mrs_tpidr_el2:
    .word   {mrs_tpidr_el2}

belfry_exception_save:
    stp     x2, x3, [sp, #({x} + 2 * 8)]
    stp     x4, x5, [sp, #({x} + 4 * 8)]
    stp     x6, x7, [sp, #({x} + 6 * 8)]
    stp     x8, x9, [sp, #({x} + 8 * 8)]
    stp     x10, x11, [sp, #({x} + 10 * 8)]
    stp     x12, x13, [sp, #({x} + 12 * 8)]
    stp     x14, x15, [sp, #({x} + 14 * 8)]
    stp     x16, x17, [sp, #({x} + 16 * 8)]
    stp     x18, x19, [sp, #({x} + 18 * 8)]
    stp     x20, x21, [sp, #({x} + 20 * 8)]
    stp     x22, x23, [sp, #({x} + 22 * 8)]
    stp     x24, x25, [sp, #({x} + 24 * 8)]
    stp     x26, x27, [sp, #({x} + 26 * 8)]
    stp     x28, x29, [sp, #({x} + 28 * 8)]
    str     x30, [sp, #({x} + 30 * 8)]
    mov     x1, x0                  // entry index
    mov     x0, sp                  // &mut ExceptionFrame
    bl      belfry_exception        // never returns: the report stops the machine
    b       .
"#,
    frame_size = const size_of::<ExceptionFrame>(),
    x = const offset_of!(ExceptionFrame, x),
    sp_offset = const offset_of!(ExceptionFrame, sp),
    emergency = sym EMERGENCY_STACKS,
    emergency_shift = const EMERGENCY_STACK_SIZE.trailing_zeros(),
    cpu_mask = const MAX_CPUS - 1,
    mrs_tpidr_el2 = const MRS_TPIDR_EL2,
);

/// `mrs x0, tpidr_el2` (op0 3, op1 4, CRn 13, CRm 0, op2 2); the register field, bits 4..0,
/// is the only one that varies. The one instruction the EL1 vector emulates (see
/// [`cpu::local`]).
pub(crate) const MRS_TPIDR_EL2: u32 = 0xd53c_d040;

/// Where an exception came from, by vector table quarter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum Origin {
    CurrentElSp0,
    CurrentElSpx,
    LowerElAarch64,
    LowerElAarch32,
}

/// What kind of exception, by position within a quarter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum Kind {
    Synchronous,
    Irq,
    Fiq,
    SError,
}

/// Decodes a vector table entry index (0..16).
pub fn decode_entry(index: u64) -> (Origin, Kind) {
    let origin = match (index >> 2) & 3 {
        0 => Origin::CurrentElSp0,
        1 => Origin::CurrentElSpx,
        2 => Origin::LowerElAarch64,
        _ => Origin::LowerElAarch32,
    };
    let kind = match index & 3 {
        0 => Kind::Synchronous,
        1 => Kind::Irq,
        2 => Kind::Fiq,
        _ => Kind::SError,
    };
    (origin, kind)
}

/// The exception registers of the level Belfry runs at.
#[derive(Clone, Copy, Debug)]
pub struct ExceptionState {
    pub esr: Esr,
    pub elr: u64,
    pub far: u64,
    pub spsr: u64,
}

/// Called by the vector table.
#[unsafe(no_mangle)]
extern "C" fn belfry_exception(frame: &mut ExceptionFrame, index: u64) {
    let (origin, kind) = decode_entry(index);
    let state = vectors_regs::read();
    crate::report::unexpected_exception(cpu::index(), origin, kind, &state, frame)
}
