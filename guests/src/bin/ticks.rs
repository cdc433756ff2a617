//! `ticks`: a static Linux program in `ticks.S` (the Linux initramfs's boot mark).
#![no_std]
#![no_main]

core::arch::global_asm!(include_str!("../../ticks.S"));

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
