//! The device tree a VM boots with, generated from [`crate::layout`] with `vm-fdt` (unless the
//! bundle carries its own): memory, CPUs started with PSCI over HVC, the GIC of the host's
//! generation, the architected timer, the PL011 with its clock, and `/chosen` with the command
//! line, the initrd and the console. The tree describes exactly the machine the VMM serves.

use crate::layout::*;
use alloc::format;
use alloc::vec::Vec;
use vm_fdt::{Error, FdtWriter};

/// What the tree describes beyond the fixed layout.
#[derive(Clone, Copy, Debug)]
pub struct Description<'a> {
    pub vcpus: u32,
    pub memory: u64,
    pub gic_v3: bool,
    pub cmdline: &'a str,
    /// The initrd's guest-physical `[start, end)`.
    pub initrd: Option<(u64, u64)>,
    /// virtio-mmio slots in use (slot n at `VIRTIO_BASE + n * VIRTIO_STRIDE`, SPI
    /// `VIRTIO_SPI_BASE + n`): the first `virtio_slots`.
    pub virtio_slots: u32,
}

/// GIC interrupt specifier cells: SPI or PPI, number, flags.
const SPI: u32 = 0;
const PPI: u32 = 1;
const LEVEL_HIGH: u32 = 4;

/// The device tree for `d`.
pub fn generate(d: &Description<'_>) -> Result<Vec<u8>, Error> {
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_string("compatible", "linux,dummy-virt")?;
    fdt.property_string("model", "Belfry virt")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_u32("interrupt-parent", GIC_PHANDLE)?;

    let chosen = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", d.cmdline)?;
    fdt.property_string("stdout-path", &format!("/pl011@{UART:x}"))?;
    if let Some((start, end)) = d.initrd {
        fdt.property_u64("linux,initrd-start", start)?;
        fdt.property_u64("linux,initrd-end", end)?;
    }
    fdt.end_node(chosen)?;

    let memory = fdt.begin_node(&format!("memory@{RAM_BASE:x}"))?;
    fdt.property_string("device_type", "memory")?;
    fdt.property_array_u64("reg", &[RAM_BASE, d.memory])?;
    fdt.end_node(memory)?;

    let cpus = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 1)?;
    fdt.property_u32("#size-cells", 0)?;
    for cpu in 0..d.vcpus {
        let node = fdt.begin_node(&format!("cpu@{cpu:x}"))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_string("compatible", "arm,armv8")?;
        fdt.property_u32("reg", cpu)?;
        fdt.property_string("enable-method", "psci")?;
        fdt.end_node(node)?;
    }
    fdt.end_node(cpus)?;

    let psci = fdt.begin_node("psci")?;
    fdt.property("compatible", b"arm,psci-1.0\0arm,psci-0.2\0")?;
    fdt.property_string("method", "hvc")?;
    fdt.end_node(psci)?;

    let gic = fdt.begin_node(&format!("intc@{GICD:x}"))?;
    if d.gic_v3 {
        fdt.property_string("compatible", "arm,gic-v3")?;
        fdt.property_array_u64("reg", &[GICD, GICD_SIZE_V3, GICR, GICR_STRIDE * u64::from(d.vcpus)])?;
        fdt.property_u32("#redistributor-regions", 1)?;
    } else {
        fdt.property_string("compatible", "arm,cortex-a15-gic")?;
        fdt.property_array_u64("reg", &[GICD, GICD_SIZE_V2, GICC, GICC_SIZE])?;
    }
    fdt.property_u32("#interrupt-cells", 3)?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_array_u32("interrupts", &[PPI, MAINTENANCE_PPI, ppi_flags(d)])?;
    fdt.property_phandle(GIC_PHANDLE)?;
    fdt.end_node(gic)?;

    let timer = fdt.begin_node("timer")?;
    fdt.property_string("compatible", "arm,armv8-timer")?;
    let cells: Vec<u32> = TIMER_PPIS.iter().flat_map(|&ppi| [PPI, ppi, ppi_flags(d)]).collect();
    fdt.property_array_u32("interrupts", &cells)?;
    fdt.property_null("always-on")?;
    fdt.end_node(timer)?;

    let clock = fdt.begin_node("apb-pclk")?;
    fdt.property_string("compatible", "fixed-clock")?;
    fdt.property_u32("#clock-cells", 0)?;
    fdt.property_u32("clock-frequency", UART_CLOCK_HZ)?;
    fdt.property_string("clock-output-names", "clk24mhz")?;
    fdt.property_phandle(CLOCK_PHANDLE)?;
    fdt.end_node(clock)?;

    let uart = fdt.begin_node(&format!("pl011@{UART:x}"))?;
    fdt.property("compatible", b"arm,pl011\0arm,primecell\0")?;
    fdt.property_array_u64("reg", &[UART, UART_SIZE])?;
    fdt.property_array_u32("interrupts", &[SPI, UART_SPI, LEVEL_HIGH])?;
    fdt.property_array_u32("clocks", &[CLOCK_PHANDLE, CLOCK_PHANDLE])?;
    fdt.property("clock-names", b"uartclk\0apb_pclk\0")?;
    fdt.end_node(uart)?;

    for slot in 0..d.virtio_slots.min(VIRTIO_SLOTS) {
        let base = VIRTIO_BASE + u64::from(slot) * VIRTIO_STRIDE;
        let node = fdt.begin_node(&format!("virtio_mmio@{base:x}"))?;
        fdt.property_string("compatible", "virtio,mmio")?;
        fdt.property_array_u64("reg", &[base, VIRTIO_STRIDE])?;
        fdt.property_array_u32("interrupts", &[SPI, VIRTIO_SPI_BASE + slot, LEVEL_HIGH])?;
        fdt.property_null("dma-coherent")?;
        fdt.end_node(node)?;
    }

    fdt.end_node(root)?;
    fdt.finish()
}

/// A PPI's flags: level-high, and on GICv2 the mask of CPUs it is wired to.
fn ppi_flags(d: &Description<'_>) -> u32 {
    if d.gic_v3 {
        LEVEL_HIGH
    } else {
        LEVEL_HIGH | ((1u32 << d.vcpus.min(8)) - 1) << 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(value: &[u8]) -> Vec<u32> {
        value.chunks(4).map(|c| u32::from_be_bytes(c.try_into().unwrap())).collect()
    }

    #[test]
    fn the_tree_describes_the_layout() {
        let d = Description {
            vcpus: 2,
            memory: 64 << 20,
            gic_v3: true,
            cmdline: "console=ttyAMA0",
            initrd: Some((0x4100_0000, 0x4100_1234)),
            virtio_slots: 2,
        };
        let blob = generate(&d).unwrap();
        let tree = fdt::Fdt::new(&blob).unwrap();
        assert_eq!(tree.chosen().bootargs(), Some("console=ttyAMA0"));
        assert_eq!(tree.chosen().stdout().map(|s| s.name), Some("pl011@9000000"));
        let memory = tree.memory().regions().next().unwrap();
        assert_eq!((memory.starting_address as u64, memory.size), (RAM_BASE, Some(64 << 20)));
        assert_eq!(tree.cpus().count(), 2);
        let gic = tree.find_node("/intc@8000000").unwrap();
        assert_eq!(gic.compatible().unwrap().first(), "arm,gic-v3");
        let reg: Vec<_> = gic.reg().unwrap().map(|r| (r.starting_address as u64, r.size)).collect();
        assert_eq!(reg, [(GICD, Some(0x1_0000)), (GICR, Some(0x4_0000))]);
        let uart = tree.find_node("/pl011@9000000").unwrap();
        assert_eq!(cells(uart.property("interrupts").unwrap().value), [0, 1, 4]);
        let virtio = tree.find_node("/virtio_mmio@a000200").unwrap();
        assert_eq!(virtio.compatible().unwrap().first(), "virtio,mmio");
        assert_eq!(cells(virtio.property("interrupts").unwrap().value), [0, 17, 4], "slot 1: SPI 17, level");
        let reg: Vec<_> = virtio.reg().unwrap().map(|r| (r.starting_address as u64, r.size)).collect();
        assert_eq!(reg, [(0x0a00_0200, Some(0x200))]);
        assert!(tree.find_node("/virtio_mmio@a000400").is_none(), "only the slots in use");
        let initrd = tree.find_node("/chosen").unwrap();
        assert_eq!(initrd.property("linux,initrd-start").unwrap().as_usize(), Some(0x4100_0000));
        let v2 = generate(&Description { gic_v3: false, initrd: None, ..d }).unwrap();
        let tree = fdt::Fdt::new(&v2).unwrap();
        let gic = tree.find_node("/intc@8000000").unwrap();
        assert_eq!(gic.compatible().unwrap().first(), "arm,cortex-a15-gic");
        let timer = tree.find_node("/timer").unwrap();
        assert_eq!(
            &cells(timer.property("interrupts").unwrap().value)[..3],
            &[1, 13, 0x304],
            "GICv2 PPIs name their CPUs"
        );
        assert!(tree.chosen().bootargs().is_some());
    }
}
