//! Software-generated interrupts between physical CPUs: what Belfry uses to wake an idle CPU
//! (and, later, to kick a CPU running a guest).
//!
//! Only the memory-mapped half lives here; the GICv3 CPU interface is system registers, which
//! the caller drives. Interrupt groups are left as the firmware set them (with security
//! extensions the non-secure side cannot change them, without them everything is group 0 on
//! GICv2 and group 1 after [`v3_init_redistributor`] on GICv3).

use crate::regs::{CpuInterfaceV2, DistributorV2, DistributorV3, RedistributorSgiV3, RedistributorV3};
use tock_registers::interfaces::{Readable, Writeable};

/// Priority given to the SGIs Belfry uses (numerically lower is more urgent).
pub const SGI_PRIORITY: u8 = 0x80;
/// The interrupt ID a CPU interface returns when nothing is pending.
pub const SPURIOUS: u32 = 1023;

/// Enables forwarding of both groups from a GICv2 distributor.
pub fn v2_init_distributor(gicd: &DistributorV2) {
    gicd.ctlr.set(0b11);
}

/// Per CPU, GICv2: enables SGIs `0..count` at [`SGI_PRIORITY`] and the CPU interface; returns
/// this CPU's interface mask (`GICD_ITARGETSR0` reads back the calling CPU's own bit).
pub fn v2_init_cpu(gicd: &DistributorV2, gicc: &CpuInterfaceV2, count: u32) -> u8 {
    let enable = (1u32 << count.min(16)) - 1;
    gicd.isenabler[0].set(enable);
    for word in 0..count.div_ceil(4).min(4) as usize {
        gicd.ipriorityr[word].set(u32::from_le_bytes([SGI_PRIORITY; 4]));
    }
    gicc.pmr.set(0xff);
    gicc.bpr.set(0);
    gicc.ctlr.set(0b11);
    (gicd.itargetsr[0].get() & 0xff) as u8
}

/// The `GICD_SGIR` value sending SGI `intid` to the CPU interfaces in `targets`.
pub const fn v2_sgir(intid: u32, targets: u8) -> u32 {
    ((targets as u32) << 16) | (intid & 0xf)
}

/// Sends SGI `intid` to the CPU interfaces in `targets` (GICv2).
pub fn v2_send_sgi(gicd: &DistributorV2, intid: u32, targets: u8) {
    gicd.sgir.set(v2_sgir(intid, targets));
}

/// Acknowledges the highest-priority pending interrupt (GICv2); returns the raw IAR value
/// (which the EOI must echo, source CPU bits included), or `None` when nothing is pending.
pub fn v2_acknowledge(gicc: &CpuInterfaceV2) -> Option<u32> {
    let iar = gicc.iar.get();
    (iar & 0x3ff != SPURIOUS).then_some(iar)
}

/// Ends an interrupt acknowledged by [`v2_acknowledge`].
pub fn v2_end(gicc: &CpuInterfaceV2, iar: u32) {
    gicc.eoir.set(iar);
}

/// GICv3 distributor: affinity routing and group 1 forwarding. Waits for the write to take.
pub fn v3_init_distributor(gicd: &DistributorV3) {
    const RWP: u32 = 1 << 31;
    // ARE (bit 4) and EnableGrp1 (bit 1) in the single-security or non-secure view.
    gicd.ctlr.set(gicd.ctlr.get() | (1 << 4) | (1 << 1));
    while gicd.ctlr.get() & RWP != 0 {
        core::hint::spin_loop();
    }
}

/// Bytes between one CPU's redistributor and the next: two 64 KiB frames, four with the
/// GICv4 virtual-LPI frames (`GICR_TYPER.VLPIS`).
pub fn v3_redistributor_stride(typer: u64) -> usize {
    if typer & (1 << 1) != 0 {
        0x40000
    } else {
        0x20000
    }
}

/// The affinity value `GICR_TYPER` reports for an MPIDR (Aff3.Aff2.Aff1.Aff0).
pub const fn v3_affinity(mpidr: u64) -> u32 {
    (((mpidr >> 32) & 0xff) << 24 | (mpidr & 0xff_ffff)) as u32
}

/// Finds the redistributor of the CPU with affinity `mpidr` among the frames starting at
/// `base`, walking until the frame marked Last. `frame(offset)` returns the RD_base frame at
/// that byte offset from `base`.
pub fn v3_find_redistributor<'a>(
    mpidr: u64,
    frame: impl Fn(usize) -> &'a RedistributorV3,
    max_frames: usize,
) -> Option<usize> {
    let mut offset = 0;
    for _ in 0..max_frames {
        let typer = frame(offset).typer.get();
        if (typer >> 32) as u32 == v3_affinity(mpidr) {
            return Some(offset);
        }
        if typer & (1 << 4) != 0 {
            return None;
        }
        offset += v3_redistributor_stride(typer);
    }
    None
}

/// Wakes a CPU's redistributor and enables SGIs `0..count` as group 1 at [`SGI_PRIORITY`].
pub fn v3_init_redistributor(rd: &RedistributorV3, sgi: &RedistributorSgiV3, count: u32) {
    const PROCESSOR_SLEEP: u32 = 1 << 1;
    const CHILDREN_ASLEEP: u32 = 1 << 2;
    rd.waker.set(rd.waker.get() & !PROCESSOR_SLEEP);
    while rd.waker.get() & CHILDREN_ASLEEP != 0 {
        core::hint::spin_loop();
    }
    let mask = (1u32 << count.min(16)) - 1;
    sgi.igroupr0.set(sgi.igroupr0.get() | mask);
    for word in 0..count.div_ceil(4).min(4) as usize {
        sgi.ipriorityr[word].set(u32::from_le_bytes([SGI_PRIORITY; 4]));
    }
    sgi.isenabler0.set(mask);
}

/// The `ICC_SGI1R_EL1` value sending SGI `intid` to the CPU with affinity `mpidr`.
pub const fn v3_sgi1r(intid: u32, mpidr: u64) -> u64 {
    let aff0 = mpidr & 0xf;
    let aff1 = (mpidr >> 8) & 0xff;
    let aff2 = (mpidr >> 16) & 0xff;
    let aff3 = (mpidr >> 32) & 0xff;
    // Aff0 above 15 would need the range selector; the boards here have Aff0 < 16.
    (aff3 << 48) | (aff2 << 32) | (((intid & 0xf) as u64) << 24) | (aff1 << 16) | (1 << aff0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgi_encodings() {
        assert_eq!(v2_sgir(0, 0b0100), 0x0004_0000);
        assert_eq!(v2_sgir(15, 0b1000), 0x0008_000f);
        assert_eq!(v3_sgi1r(0, 0x3), 0x8);
        assert_eq!(v3_sgi1r(1, 0x0000_0001_0002_0105), (1 << 48) | (2 << 32) | (1 << 24) | (1 << 16) | (1 << 5));
        assert_eq!(v3_affinity(0x80000103), 0x103);
        assert_eq!(v3_affinity(0x01_0000_0000), 0x0100_0000);
        assert_eq!(v3_redistributor_stride(0), 0x20000);
        assert_eq!(v3_redistributor_stride(0b10), 0x40000);
    }
}
