//! The machine every guest sees: QEMU `virt`'s, on every board (DESIGN.md section 7), so a guest
//! built for `qemu-system-aarch64 -M virt` runs unchanged on a Pi 4. This module is the single
//! source of its numbers: the guest device tree, the traps and the loader all read them here.
//!
//! ```text
//!  guest-physical           what                            interrupt (GIC INTID)
//!  0x0800_0000  +64 KiB     GIC distributor (GICD)          -
//!  0x0801_0000  +8 KiB      GICv2 CPU interface (GICV page)  maintenance PPI 9 (25)
//!  0x080a_0000  +128 KiB/n  GICv3 redistributors, one each  -
//!  0x0900_0000  +4 KiB      PL011 UART, 24 MHz clock        SPI 1 (33), level
//!  0x0a00_0000  +512 B/n    virtio-mmio slots (32)          SPI 16 + n (48 + n), edge
//!  0x4000_0000  +memory     RAM: kernel at its text_offset  -
//!  RAM end - 2 MiB          device tree (at most 2 MiB)     -
//!  below it                 initrd, page-aligned            -
//!  PPIs: virtual timer 11 (27), EL1 physical timer 14 (30), secure 13 (29), hyp 10 (26)
//!  PSCI 1.1 over HVC and SMC.
//! ```

/// Guest RAM starts here.
pub const RAM_BASE: u64 = 0x4000_0000;
/// Guest RAM ends at most here (Belfry's guest-physical space is 64 GiB).
pub const RAM_LIMIT: u64 = el2::object::vmar::GUEST_PHYSICAL_SIZE;
/// The GIC distributor.
pub const GICD: u64 = 0x0800_0000;
/// Bytes of the GICv3 distributor's frame (GICv2: one 4 KiB page).
pub const GICD_SIZE_V3: u64 = 0x1_0000;
pub const GICD_SIZE_V2: u64 = 0x1000;
/// The GICv2 CPU interface: Belfry maps the host's virtual CPU interface (GICV) here.
pub const GICC: u64 = 0x0801_0000;
pub const GICC_SIZE: u64 = 0x2000;
/// The GICv3 redistributors, one [`GICR_STRIDE`] frame pair per VCPU.
pub const GICR: u64 = 0x080a_0000;
pub const GICR_STRIDE: u64 = 0x2_0000;
/// The PL011 UART and its reference clock.
pub const UART: u64 = 0x0900_0000;
pub const UART_SIZE: u64 = 0x1000;
pub const UART_CLOCK_HZ: u32 = 24_000_000;
/// The UART's SPI number (INTID 32 + 1).
pub const UART_SPI: u32 = 1;
/// The virtio-mmio slots.
pub const VIRTIO_BASE: u64 = 0x0a00_0000;
pub const VIRTIO_STRIDE: u64 = 0x200;
pub const VIRTIO_SLOTS: u32 = 32;
pub const VIRTIO_SPI_BASE: u32 = 16;
/// Timer PPIs as the device tree numbers them (INTID - 16): secure, non-secure physical,
/// virtual, hypervisor.
pub const TIMER_PPIS: [u32; 4] = [13, 14, 11, 10];
/// The GIC maintenance interrupt's PPI.
pub const MAINTENANCE_PPI: u32 = 9;
/// SPIs the guest's distributor model implements.
pub const SPIS: u32 = 64;
/// The device tree's slot: the top 2 MiB of RAM (booting.rst: at most 2 MiB, 8-byte aligned,
/// not sharing a 2 MiB block with memory of other attributes).
pub const DTB_SLOT: u64 = 2 << 20;
/// Alignment of the kernel's base (booting.rst).
pub const KERNEL_ALIGN: u64 = 2 << 20;
/// Guest pages.
pub const PAGE: u64 = 0x1000;

/// The guest device tree's phandle of the GIC.
pub const GIC_PHANDLE: u32 = 1;
/// The phandle of the UART's fixed clock.
pub const CLOCK_PHANDLE: u32 = 2;

const _: () = assert!(GICR + GICR_STRIDE * bundle::fit::MAX_VCPUS as u64 <= UART, "redistributors below the UART");
const _: () = assert!(GICC + GICC_SIZE <= GICR);
