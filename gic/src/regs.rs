//! MMIO register layouts (Arm IHI 0048B for GICv2, IHI 0069 for GICv3).
//!
//! Only the registers Belfry uses are named; the gaps are padding so that the offsets of the
//! named ones are checked by `register_structs!` at compile time.

use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_structs! {
    /// GICv2 distributor (GICD), one 4 KiB frame.
    pub DistributorV2 {
        (0x000 => pub ctlr: ReadWrite<u32>),
        (0x004 => pub typer: ReadOnly<u32>),
        (0x008 => pub iidr: ReadOnly<u32>),
        (0x00c => _reserved0),
        (0x080 => pub igroupr: [ReadWrite<u32>; 32]),
        (0x100 => pub isenabler: [ReadWrite<u32>; 32]),
        (0x180 => pub icenabler: [ReadWrite<u32>; 32]),
        (0x200 => _reserved1),
        (0x300 => pub isactiver: [ReadWrite<u32>; 32]),
        (0x380 => pub icactiver: [ReadWrite<u32>; 32]),
        (0x400 => pub ipriorityr: [ReadWrite<u32>; 255]),
        (0x7fc => _reserved2),
        (0x800 => pub itargetsr: [ReadWrite<u32>; 255]),
        (0xbfc => _reserved3),
        (0xf00 => pub sgir: WriteOnly<u32>),
        (0xf04 => _reserved4),
        (0xfe8 => pub pidr2: ReadOnly<u32>),
        (0xfec => _reserved5),
        (0x1000 => @END),
    }
}

register_structs! {
    /// GICv2 CPU interface (GICC), banked per CPU.
    pub CpuInterfaceV2 {
        (0x000 => pub ctlr: ReadWrite<u32>),
        (0x004 => pub pmr: ReadWrite<u32>),
        (0x008 => pub bpr: ReadWrite<u32>),
        (0x00c => pub iar: ReadOnly<u32>),
        (0x010 => pub eoir: WriteOnly<u32>),
        (0x014 => _reserved0),
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
    /// GICv3 redistributor control frame (RD_base), 64 KiB.
    pub RedistributorV3 {
        (0x0000 => pub ctlr: ReadWrite<u32>),
        (0x0004 => pub iidr: ReadOnly<u32>),
        (0x0008 => pub typer: ReadOnly<u64>),
        (0x0010 => _reserved0),
        (0x0014 => pub waker: ReadWrite<u32>),
        (0x0018 => _reserved1),
        (0x10000 => @END),
    }
}

register_structs! {
    /// GICv3 redistributor SGI/PPI frame (SGI_base), 64 KiB, right after RD_base.
    pub RedistributorSgiV3 {
        (0x0000 => _reserved0),
        (0x0080 => pub igroupr0: ReadWrite<u32>),
        (0x0084 => _reserved1),
        (0x0100 => pub isenabler0: ReadWrite<u32>),
        (0x0104 => _reserved2),
        (0x0180 => pub icenabler0: ReadWrite<u32>),
        (0x0184 => _reserved3),
        (0x0300 => pub isactiver0: ReadWrite<u32>),
        (0x0304 => _reserved5),
        (0x0380 => pub icactiver0: ReadWrite<u32>),
        (0x0384 => _reserved6),
        (0x0400 => pub ipriorityr: [ReadWrite<u32>; 8]),
        (0x0420 => _reserved4),
        (0x10000 => @END),
    }
}

register_structs! {
    /// GICv2 virtual interface control (GICH), banked per CPU, one 4 KiB frame.
    pub VirtualInterfaceControlV2 {
        (0x000 => pub hcr: ReadWrite<u32>),
        (0x004 => pub vtr: ReadOnly<u32>),
        (0x008 => pub vmcr: ReadWrite<u32>),
        (0x00c => _reserved0),
        (0x010 => pub misr: ReadOnly<u32>),
        (0x014 => _reserved1),
        (0x020 => pub eisr0: ReadOnly<u32>),
        (0x024 => _reserved2),
        (0x030 => pub elrsr0: ReadOnly<u32>),
        (0x034 => _reserved3),
        (0x0f0 => pub apr: ReadWrite<u32>),
        (0x0f4 => _reserved4),
        (0x100 => pub lr: [ReadWrite<u32>; 64]),
        (0x200 => _reserved5),
        (0x1000 => @END),
    }
}
