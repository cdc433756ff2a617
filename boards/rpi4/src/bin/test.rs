//! Belfry's test firmware for this board: the product plus the test kit (scenarios chosen by
//! `scenario=NAME` on the command line, the deliberate fault paths, the benchmarks).
#![no_std]
#![no_main]

use el2::boot::Board;

static BOARD: Board = belfry_rpi4::board(Some(&testkit::TEST_KIT));

/// Called by the boot code on every CPU.
#[unsafe(no_mangle)]
extern "C" fn belfry_main(dtb: usize, cpu: usize, boot_cpu: bool) -> ! {
    belfry_rpi4::main(&BOARD, dtb, cpu, boot_cpu)
}
