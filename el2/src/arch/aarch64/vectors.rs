//! EL2's exception vector table (also used at EL1 when there is no EL2).
//!
//! The current-EL entries save x0..x30 into an [`ExceptionFrame`] on the current stack and call
//! [`belfry_exception`] with the entry's index. No exception is expected there: any is reported
//! with its decoded syndrome and stops the machine (see [`crate::report`]).
//! The lower-EL entries are guest exits: they go back to the world switch (`world.rs`).

use super::{cpu, vectors_regs};
use core::arch::global_asm;
use core::mem::{offset_of, size_of};
use stage2::syndrome::Esr;

/// General registers at the time of the exception.
#[repr(C)]
pub struct ExceptionFrame {
    /// x0..x30.
    pub x: [u64; 31],
    _pad: u64,
}

const _: () = assert!(size_of::<ExceptionFrame>().is_multiple_of(16), "SP must stay 16-byte aligned");

global_asm!(
    r#"
    .section .text.vectors, "ax"
    .balign 0x800
    .global belfry_vectors
belfry_vectors:
    .irp kind, 0,1,2,3,4,5,6,7
    .balign 0x80
    sub     sp, sp, #{frame_size}
    stp     x0, x1, [sp, #({x} + 0 * 8)]
    mov     x0, #\kind
    b       belfry_exception_save
    .endr
    // From a guest (lower EL): back to the world switch.
    .irp kind, 8,9,10,11,12,13,14,15
    .balign 0x80
    stp     x0, x1, [sp, #-16]!
    mov     x0, #\kind
    b       belfry_guest_exit
    .endr

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
    bl      belfry_exception
    ldp     x0, x1, [sp, #({x} + 0 * 8)]
    ldp     x2, x3, [sp, #({x} + 2 * 8)]
    ldp     x4, x5, [sp, #({x} + 4 * 8)]
    ldp     x6, x7, [sp, #({x} + 6 * 8)]
    ldp     x8, x9, [sp, #({x} + 8 * 8)]
    ldp     x10, x11, [sp, #({x} + 10 * 8)]
    ldp     x12, x13, [sp, #({x} + 12 * 8)]
    ldp     x14, x15, [sp, #({x} + 14 * 8)]
    ldp     x16, x17, [sp, #({x} + 16 * 8)]
    ldp     x18, x19, [sp, #({x} + 18 * 8)]
    ldp     x20, x21, [sp, #({x} + 20 * 8)]
    ldp     x22, x23, [sp, #({x} + 22 * 8)]
    ldp     x24, x25, [sp, #({x} + 24 * 8)]
    ldp     x26, x27, [sp, #({x} + 26 * 8)]
    ldp     x28, x29, [sp, #({x} + 28 * 8)]
    ldr     x30, [sp, #({x} + 30 * 8)]
    add     sp, sp, #{frame_size}
    eret
"#,
    frame_size = const size_of::<ExceptionFrame>(),
    x = const offset_of!(ExceptionFrame, x),
);

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
