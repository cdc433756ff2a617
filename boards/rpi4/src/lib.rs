//! # Belfry for the Raspberry Pi 4 (BCM2711)
//!
//! The Pi firmware (and QEMU's `raspi4b`) loads `kernel8.img` raw at 0x8_0000 and enters it at
//! EL2 with the device tree in x0; QEMU passes none without `-dtb`, so the board carries a
//! built-in description. The GIC-400 and the PL011 sit at fixed SoC addresses (the firmware's
//! device tree gives them as VideoCore bus addresses behind `ranges`, so they are taken from
//! here). Secondary cores wait on the spin table at 0xd8/0xe0/0xe8/0xf0.
#![no_std]

use el2::boot::{Board, CpuStart, TestKit};
use el2::machine::{DescriptionSource, GicDescription, Machine};
use el2::regions::Region;
use stage2::PhysAddr;

core::arch::global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    b       _start_primary
"#
);

const GIC: GicDescription = GicDescription::V2 {
    distributor: PhysAddr::new(0xff84_1000),
    cpu_interface: PhysAddr::new(0xff84_2000),
    hyp_interface: Some(PhysAddr::new(0xff84_4000)),
    virtual_cpu: Some(PhysAddr::new(0xff84_6000)),
};

/// The Pi 4 as QEMU's `raspi4b` models it when no device tree is passed: the first 960 MiB of
/// RAM (below the VideoCore's share), the loader's spin table and stub below the image
/// reserved, four Cortex-A72 cores.
fn builtin() -> Machine {
    let mut machine = Machine::empty("Raspberry Pi 4 Model B (built-in description)", DescriptionSource::BuiltIn);
    if let (Some(ram), Some(loader)) = (Region::new(0, 0x3c00_0000), Region::new(0, 0x8_0000)) {
        // Two regions never fill a list of 32.
        let _ = machine.ram.add(ram);
        let _ = machine.reserved.add(loader);
    }
    for core in 0..4 {
        machine.add_cpu(core);
    }
    machine.gic = Some(GIC);
    machine
}

/// The board, with the test kit in test firmware and without it in the product image.
pub const fn board(test_kit: Option<&'static TestKit>) -> Board {
    Board {
        name: "Raspberry Pi 4",
        uart: PhysAddr::new(0xfe20_1000),
        uart_clock_hz: 48_000_000,
        // The "low peripherals" window: 0xFC00_0000 up to 4 GiB, GIC-400 included.
        device_windows: &[(0xfc00_0000, 0x1_0000_0000)],
        builtin: Some(builtin),
        fixed_gic: Some(GIC),
        test_kit,
        run_bundle: Some(vmm::vm::run_bundle),
        watchdog: Some(0xfe10_0000),
        cpu_start: CpuStart::SpinTable(&[0xd8, 0xe0, 0xe8, 0xf0]),
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
