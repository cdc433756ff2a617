//! The `virtio_bad` test guest: all of it is in `common.S` and `virtio_bad.S`.
#![no_std]
#![no_main]

core::arch::global_asm!(include_str!("../../common.S"), include_str!("../../virtio_bad.S"));

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
