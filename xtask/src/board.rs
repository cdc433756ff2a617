//! The boards Belfry runs on, and how QEMU models each.

use clap::ValueEnum;

/// A board configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum Board {
    /// QEMU `virt` with a GICv3 and 4 CPUs, entered at EL2.
    Virt,
    /// QEMU `virt` with a GICv2 (GICD, GICC, GICH, GICV) and 4 CPUs, entered at EL2.
    VirtGicv2,
    /// Raspberry Pi 4 Model B: QEMU `raspi4b` (GIC-400, 4 Cortex-A72, spin table).
    Rpi4,
}

impl Board {
    /// Every board, in the order tests and benches visit them.
    pub const ALL: [Board; 3] = [Board::Virt, Board::VirtGicv2, Board::Rpi4];

    /// The name used on the command line and in test names.
    pub fn name(self) -> &'static str {
        match self {
            Board::Virt => "virt",
            Board::VirtGicv2 => "virt-gicv2",
            Board::Rpi4 => "rpi4",
        }
    }

    /// The firmware crate (and binary) built for the board.
    pub fn firmware_crate(self) -> &'static str {
        match self {
            Board::Virt | Board::VirtGicv2 => "belfry-virt",
            Board::Rpi4 => "belfry-rpi4",
        }
    }

    /// QEMU's machine arguments. `virtualization = false` boots `virt` at EL1; `virt` gets
    /// `ram_mib` of RAM (the Pi 4 model's RAM is fixed at 2 GiB).
    pub fn machine_args(self, virtualization: bool, ram_mib: u64) -> Vec<String> {
        let virt = |gic: u8| {
            let mode = if virtualization { "on" } else { "off" };
            vec![
                "-M".into(),
                format!("virt,virtualization={mode},gic-version={gic}"),
                "-cpu".into(),
                "max".into(),
                "-smp".into(),
                "4".into(),
                "-m".into(),
                format!("{ram_mib}M"),
            ]
        };
        match self {
            Board::Virt => virt(3),
            Board::VirtGicv2 => virt(2),
            Board::Rpi4 => vec!["-M".into(), "raspi4b".into()],
        }
    }

    /// RAM QEMU gives `virt` (MiB) unless a bundle needs more.
    pub const VIRT_RAM_MIB: u64 = 1024;

    /// Whether the board can be started without EL2 (only `virt` can).
    pub fn has_el1_mode(self) -> bool {
        matches!(self, Board::Virt | Board::VirtGicv2)
    }
}
