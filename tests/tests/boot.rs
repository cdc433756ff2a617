//! Boot on every board: EL2, the machine description, memory, the GIC, all four CPUs, and a
//! clean exit; the EL1 fallback on QEMU `virt`.

use belfry_system_tests::*;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn expect_clean_boot(board: Board, outcome: &Outcome, el: u8) {
    expect_exit(outcome, exit_code::SUCCESS);
    let name = match board {
        Board::Virt | Board::VirtGicv2 => "QEMU virt",
        Board::Rpi4 => "Raspberry Pi 4",
    };
    expect_line(outcome, Some(0), &format!("Belfry {VERSION} on {name}"));
    for cpu in 1..4 {
        expect_line(outcome, Some(cpu), &format!("cpu{cpu} online: MPIDR {cpu:#x}, EL{el}"));
    }
    expect_line(outcome, Some(0), "4 of 4 CPUs online");
    expect_line(outcome, Some(0), "no guest bundle (/chosen has no linux,initrd-start): nothing to run");
    expect_line(outcome, Some(0), "boot complete");
    assert!(
        outcome.lines.iter().all(|l| l.cpu.is_some_and(|cpu| cpu < 4)),
        "a line without a CPU:\n{}",
        outcome.transcript()
    );
    assert!(!outcome.lines.iter().any(|l| l.level == "ERROR"), "errors in a clean boot:\n{}", outcome.transcript());
}

#[test]
fn virt_gicv3_boots_at_el2_on_four_cpus() {
    let outcome = boot(RunOptions::new(Board::Virt));
    expect_clean_boot(Board::Virt, &outcome, 2);
    expect_line(&outcome, Some(0), "running at EL2: virtualization available");
    expect_line(&outcome, Some(0), &format!("RAM: {} MiB in 1 region(s)", Board::VIRT_RAM_MIB));
    expect_line(&outcome, Some(0), "  RAM 0x040000000..0x080000000");
    expect_line(&outcome, Some(0), "GICv3: GICD 0x8000000, GICR 0x80a0000; ArchRev 3, 288 interrupt IDs");
    expect_line(&outcome, Some(0), "GICv3 virtual CPU interface: 4 list registers");
    expect_line(
        &outcome,
        Some(0),
        "VMM: hypervisor resource 0x7; guest_create with it: ZX_OK(0), with an MMIO resource: ZX_ERR_ACCESS_DENIED(-30)",
    );
    let tree = outcome.lines.iter().find(|l| l.message.starts_with("device tree at ")).expect("device tree line");
    assert!(tree.message.ends_with(": linux,dummy-virt"), "{}", tree.message);
}

#[test]
fn virt_gicv2_boots_at_el2_on_four_cpus() {
    let outcome = boot(RunOptions::new(Board::VirtGicv2));
    expect_clean_boot(Board::VirtGicv2, &outcome, 2);
    expect_line(&outcome, Some(0), &format!("RAM: {} MiB in 1 region(s)", Board::VIRT_RAM_MIB));
    expect_line(&outcome, Some(0), "GICv2: GICD 0x8000000, GICC 0x8010000; ArchRev 2, 288 interrupt IDs");
    expect_line(&outcome, Some(0), "GICv2 virtual interface (GICH 0x8030000): 4 list registers");
}

/// Without a device tree (QEMU `raspi4b` without `-dtb` leaves 0x100 in x0) there is no
/// command line either: Belfry boots, reports its exit line and parks; the harness stops the
/// run on that line.
#[test]
fn rpi4_boots_at_el2_from_its_built_in_description() {
    let outcome = boot(RunOptions {
        device_tree: false,
        stop_on: Some(format!("{}0", xtask::qemu::EXIT_LINE_PREFIX)),
        ..RunOptions::new(Board::Rpi4)
    });
    expect_clean_boot(Board::Rpi4, &outcome, 2);
    expect_line(&outcome, Some(0), "running at EL2: virtualization available");
    expect_line(
        &outcome,
        Some(0),
        "no device tree at 0x100 (x0 holds no valid FDT): using the built-in description of Raspberry Pi 4",
    );
    expect_line(&outcome, Some(0), "RAM: 960 MiB in 1 region(s)");
    expect_line(&outcome, Some(0), "  reserved 0x000000000..0x000080000");
    let image = outcome.lines.iter().find(|l| l.message.starts_with("  Belfry image ")).expect("image line");
    assert!(image.message.starts_with("  Belfry image 0x000080000.."), "{}", image.message);
    expect_line(&outcome, Some(0), "GICv2: GICD 0xff841000, GICC 0xff842000; ArchRev 2, 224 interrupt IDs");
    expect_line(&outcome, Some(0), "GICv2 virtual interface (GICH 0xff844000): 4 list registers");
}

#[test]
fn memory_comes_up_with_a_heap_and_frames() {
    let outcome = boot(RunOptions::new(Board::Virt));
    expect_exit(&outcome, exit_code::SUCCESS);
    let heap = outcome.lines.iter().find(|l| l.message.starts_with("heap: ")).expect("heap line");
    assert!(heap.message.starts_with("heap: 16384 KiB at 0x"), "{}", heap.message);
    assert!(heap.message.ends_with("MiB free"), "{}", heap.message);
    // The heap lies inside RAM and outside the image and the device tree.
    let at = hex_field(&outcome, "heap: ", "at").expect("heap address");
    assert!((0x4000_0000..0x8000_0000).contains(&at), "{at:#x}");
    let image_end = outcome
        .lines
        .iter()
        .find_map(|l| l.message.strip_prefix("  Belfry image "))
        .and_then(|range| range.split("..").nth(1))
        .and_then(|end| u64::from_str_radix(end.trim_start_matches("0x"), 16).ok())
        .expect("image range");
    assert!(at >= image_end, "heap {at:#x} overlaps the image ending {image_end:#x}");
}

#[test]
fn virt_without_el2_boots_at_el1_and_says_virtualization_is_unavailable() {
    for board in [Board::Virt, Board::VirtGicv2] {
        let outcome = boot(RunOptions { virtualization: false, ..RunOptions::new(board) });
        expect_clean_boot(board, &outcome, 1);
        expect_line(&outcome, Some(0), "entered at EL1: virtualization unavailable, guests cannot be created");
        expect_line(
            &outcome,
            Some(0),
            "VMM: hypervisor resource 0x7; guest_create with it: ZX_ERR_NOT_SUPPORTED(-2), with an MMIO resource: ZX_ERR_ACCESS_DENIED(-30)",
        );
        assert!(!outcome.lines.iter().any(|l| l.message.contains("list registers")), "{}", outcome.transcript());
    }
}

/// F11: the Pi 4 booted with its own device tree, edited by the loader the way libfdt edits
/// (QEMU's `raspi4b` replaces nodes with NOP tokens, as a real Pi's firmware edits its tree):
/// RAM, reservations and the command line come from it. (It used to panic before its first
/// line.) Every other `rpi4` run is booted this way too.
#[test]
fn rpi4_boots_from_the_pis_own_device_tree() {
    let outcome = boot(RunOptions::new(Board::Rpi4));
    expect_clean_boot(Board::Rpi4, &outcome, 2);
    let tree = outcome.lines.iter().find(|l| l.message.starts_with("device tree at 0x")).expect("device tree line");
    assert!(tree.message.ends_with(" bytes): Raspberry Pi 4 Model B"), "{}", tree.message);
    expect_line(&outcome, Some(0), "RAM: 960 MiB in 1 region(s)");
    expect_line(&outcome, Some(0), "  RAM 0x000000000..0x03c000000");
    expect_line(&outcome, Some(0), "  reserved 0x000000000..0x000001000");
    expect_line(&outcome, Some(0), "GICv2: GICD 0xff841000, GICC 0xff842000; ArchRev 2, 224 interrupt IDs");
}
