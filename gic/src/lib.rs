//! # gic: Arm Generic Interrupt Controller drivers
//!
//! Belfry drives two GIC generations: GICv2 (the GIC-400 of the Raspberry Pi 4, QEMU `virt`
//! with `gic-version=2`) and GICv3 (QEMU `virt` default). This crate owns their MMIO register
//! layouts, declared with `tock-registers` `register_structs!` so that every offset is checked
//! by the compiler, and the logic that reads them.
//!
//! Today it identifies the controller (architecture revision from `GICD_PIDR2`, number of
//! interrupt lines from `GICD_TYPER`, list registers from `GICH_VTR` on GICv2); the virtual CPU
//! interface and the list-register allocator come with the vGIC.
//!
//! Invariants: the crate never maps memory; callers hand it references to register blocks
//! that are mapped as Device memory (EL2's identity map does so). It knows nothing of guests.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod regs;
pub mod sgi;

use regs::{DistributorV2, DistributorV3, VirtualInterfaceControlV2};
use tock_registers::interfaces::Readable;

/// The GIC architecture generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(target_os = "none", derive(defmt::Format))]
pub enum GicVersion {
    V2,
    V3,
}

/// What the hardware says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GicInfo {
    /// Architecture revision from `GICD_PIDR2.ArchRev` (2 for GICv2, 3 for GICv3, 4 for GICv4).
    pub arch_revision: u8,
    /// Number of interrupt IDs the distributor implements: `32 * (ITLinesNumber + 1)`.
    pub interrupt_lines: u32,
    /// `GICD_IIDR`: implementer and product.
    pub implementer: u32,
}

/// Why a probe failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeError {
    /// The distributor's ArchRev does not match the generation the description claimed.
    VersionMismatch { claimed: GicVersion, arch_revision: u8 },
}

fn info_from(pidr2: u32, typer: u32, iidr: u32) -> GicInfo {
    GicInfo { arch_revision: ((pidr2 >> 4) & 0xf) as u8, interrupt_lines: 32 * ((typer & 0x1f) + 1), implementer: iidr }
}

/// Identifies a GICv2 distributor.
pub fn probe_v2(gicd: &DistributorV2) -> Result<GicInfo, ProbeError> {
    let info = info_from(gicd.pidr2.get(), gicd.typer.get(), gicd.iidr.get());
    match info.arch_revision {
        1 | 2 => Ok(info),
        arch_revision => Err(ProbeError::VersionMismatch { claimed: GicVersion::V2, arch_revision }),
    }
}

/// Identifies a GICv3 (or GICv4) distributor.
pub fn probe_v3(gicd: &DistributorV3) -> Result<GicInfo, ProbeError> {
    let info = info_from(gicd.pidr2.get(), gicd.typer.get(), gicd.iidr.get());
    match info.arch_revision {
        3 | 4 => Ok(info),
        arch_revision => Err(ProbeError::VersionMismatch { claimed: GicVersion::V3, arch_revision }),
    }
}

/// Number of list registers of a GICv2 virtual interface: `GICH_VTR.ListRegs + 1`.
pub fn list_registers_v2(gich: &VirtualInterfaceControlV2) -> u32 {
    (gich.vtr.get() & 0x3f) + 1
}

/// Number of list registers from a GICv3 `ICH_VTR_EL2` value: `ListRegs + 1`.
pub const fn list_registers_v3(ich_vtr: u64) -> u32 {
    (ich_vtr & 0x1f) as u32 + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    fn boxed<T>() -> Box<T> {
        // SAFETY: the register blocks are plain `#[repr(C)]` collections of u32 cells, for which
        // all-zero bytes are a valid value.
        unsafe { Box::new_zeroed().assume_init() }
    }

    /// Plays the hardware: stores `value` into a read-only register of a fake block.
    fn poke<T>(block: &mut T, offset: usize, value: u32) {
        assert!(offset + 4 <= size_of::<T>() && offset.is_multiple_of(4));
        // SAFETY: the offset is in bounds and 4-aligned (checked above) within a block we own
        // exclusively; the cells are plain u32 storage.
        unsafe { (block as *mut T).cast::<u8>().add(offset).cast::<u32>().write_volatile(value) }
    }

    #[test]
    fn gic400_identifies_as_v2() {
        // Values of a GIC-400 (and QEMU's GICv2 model): PIDR2 0x2b, 256 lines, Arm's IIDR.
        let mut gicd = boxed::<DistributorV2>();
        poke(&mut *gicd, offset_of!(DistributorV2, pidr2), 0x2b);
        poke(&mut *gicd, offset_of!(DistributorV2, typer), 0x7);
        poke(&mut *gicd, offset_of!(DistributorV2, iidr), 0x0200_143b);
        let info = probe_v2(&gicd).unwrap();
        assert_eq!(info.arch_revision, 2);
        assert_eq!(info.interrupt_lines, 256);
        assert_eq!(info.implementer, 0x0200_143b);
        assert_eq!(
            probe_v3(&boxed::<DistributorV3>()),
            Err(ProbeError::VersionMismatch { claimed: GicVersion::V3, arch_revision: 0 })
        );
    }

    #[test]
    fn gicv3_identifies_and_rejects_a_v2_claim() {
        let mut gicd = boxed::<DistributorV3>();
        poke(&mut *gicd, offset_of!(DistributorV3, pidr2), 0x3b);
        poke(&mut *gicd, offset_of!(DistributorV3, typer), 0x8);
        assert_eq!(probe_v3(&gicd).unwrap().interrupt_lines, 288);
        let mut v2 = boxed::<DistributorV2>();
        poke(&mut *v2, offset_of!(DistributorV2, pidr2), 0x3b);
        assert_eq!(probe_v2(&v2), Err(ProbeError::VersionMismatch { claimed: GicVersion::V2, arch_revision: 3 }));
    }

    #[test]
    fn list_register_counts() {
        let mut gich = boxed::<VirtualInterfaceControlV2>();
        poke(&mut *gich, offset_of!(VirtualInterfaceControlV2, vtr), 0x9000_0003);
        assert_eq!(list_registers_v2(&gich), 4);
        assert_eq!(list_registers_v3(0x9000_0003), 4);
    }
}
