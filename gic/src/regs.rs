//! MMIO register layouts (Arm IHI 0048B for GICv2, IHI 0069 for GICv3).
//!
//! Only the registers Belfry reads are named; the gaps are padding so that the offsets of the
//! named ones are checked by `register_structs!` at compile time.

use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_structs! {
    /// GICv2 distributor (GICD), one 4 KiB frame.
    pub DistributorV2 {
        (0x000 => pub ctlr: ReadWrite<u32>),
        (0x004 => pub typer: ReadOnly<u32>),
        (0x008 => pub iidr: ReadOnly<u32>),
        (0x00c => _reserved0),
        (0xfe8 => pub pidr2: ReadOnly<u32>),
        (0xfec => _reserved1),
        (0x1000 => @END),
    }
}

register_structs! {
    /// GICv3 distributor (GICD), one 64 KiB frame.
    pub DistributorV3 {
        (0x0000 => pub ctlr: ReadWrite<u32>),
        (0x0004 => pub typer: ReadOnly<u32>),
        (0x0008 => pub iidr: ReadOnly<u32>),
        (0x000c => _reserved0),
        (0xffe8 => pub pidr2: ReadOnly<u32>),
        (0xffec => _reserved1),
        (0x10000 => @END),
    }
}

register_structs! {
    /// GICv2 virtual interface control (GICH), one 4 KiB frame (the non-banked view is 0x200).
    pub VirtualInterfaceControlV2 {
        (0x000 => pub hcr: ReadWrite<u32>),
        (0x004 => pub vtr: ReadOnly<u32>),
        (0x008 => _reserved0),
        (0x1000 => @END),
    }
}
