//! # Belfry for QEMU `virt`
//!
//! The image is an arm64 Linux `Image`: QEMU recognises the header, loads it 2 MiB into RAM
//! (0x4020_0000, which the linker script assumes) and enters it at EL2 (with
//! `virtualization=on`) or EL1, with the device tree address in x0. The same image serves
//! `gic-version=3` and `gic-version=2`: the GIC is whatever the device tree describes.
//! Secondary CPUs start through PSCI CPU_ON on the conduit the device tree names.
#![no_std]

use el2::boot::{Board, CpuStart, TestKit};
use stage2::PhysAddr;

// The arm64 Image header (Linux Documentation/arch/arm64/booting.rst): a branch, text_offset 0,
// the image size including bss (so a loader keeps it free), flags = little-endian, 4 KiB pages,
// and the "ARM\x64" magic.
core::arch::global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    b       _start_primary      // code0
    .long   0                   // code1
    .quad   0                   // text_offset
    .quad   __image_size        // image_size
    .quad   0x2                 // flags: LE, 4 KiB pages, 2 MiB-aligned base
    .quad   0                   // res2
    .quad   0                   // res3
    .quad   0                   // res4
    .ascii  "ARM\x64"           // magic
    .long   0                   // res5
"#
);

/// The board, with the test kit in test firmware and without it in the product image.
pub const fn board(test_kit: Option<&'static TestKit>) -> Board {
    Board {
        name: "QEMU virt",
        uart: PhysAddr::new(0x0900_0000),
        uart_clock_hz: 24_000_000,
        // Everything below RAM: flash, GIC, UART, RTC, virtio-mmio, PCIe windows.
        device_windows: &[(0, 0x4000_0000)],
        builtin: None,
        fixed_gic: None,
        test_kit,
        run_bundle: Some(vmm::vm::run_bundle),
        watchdog: None,
        cpu_start: CpuStart::Psci,
    }
}

/// The entry from the boot code on every CPU, for `board`.
pub fn main(board: &'static Board, dtb: usize, cpu: usize, boot_cpu: bool) -> ! {
    if boot_cpu {
        el2::boot::primary(board, dtb)
    } else {
        el2::boot::secondary(cpu)
    }
}
