//! The `flood` test guest: all of it is in `common.S` and `flood.S`.
#![no_std]
#![no_main]

core::arch::global_asm!(include_str!("../../common.S"), include_str!("../../flood.S"));

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
