//! Belfry's product image for this board: it boots the VMs of the user's bundle and carries
//! no test scenario (see `belfry-virt-test` for the test firmware).
#![no_std]
#![no_main]

use el2::boot::Board;

static BOARD: Board = belfry_virt::board(None);

/// Called by the boot code on every CPU.
#[unsafe(no_mangle)]
extern "C" fn belfry_main(dtb: usize, cpu: usize, boot_cpu: bool) -> ! {
    belfry_virt::main(&BOARD, dtb, cpu, boot_cpu)
}
