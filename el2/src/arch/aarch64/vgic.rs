//! The GIC's virtual CPU interface for one VCPU: list registers, the virtual machine control
//! register and the active-priority register, switched with the VCPU. GICv3 uses the `ICH_*`
//! system registers, GICv2 the GICH frame. Which interrupt goes into which list register is
//! decided by the hardware-free allocator in [`crate::vgic`]; this file moves its words in and
//! out of the hardware. The guest acknowledges and ends its interrupts in the virtual
//! interface: no exit.

use crate::irq::VIRTUAL_TIMER_INTID;
use crate::object::signals::Signals;
use crate::vgic::{Flavor, ListRegisters};
use aarch64_cpu::registers::{
    Readable, Writeable, ICH_AP0R0_EL2, ICH_AP0R1_EL2, ICH_AP0R2_EL2, ICH_AP0R3_EL2, ICH_AP1R0_EL2, ICH_AP1R1_EL2,
    ICH_AP1R2_EL2, ICH_AP1R3_EL2, ICH_HCR_EL2, ICH_LR0_EL2, ICH_LR1_EL2, ICH_LR2_EL2, ICH_LR3_EL2, ICH_LR4_EL2,
    ICH_LR5_EL2, ICH_LR6_EL2, ICH_LR7_EL2, ICH_VMCR_EL2, ICH_VTR_EL2,
};

/// See the module documentation.
#[derive(Debug)]
pub struct Vgic {
    regs: ListRegisters,
    vmcr: u64,
    /// Active priorities: GICv3 ICH_AP0Rn (group 0) and ICH_AP1Rn (group 1), `apr_count` of
    /// each; GICv2 GICH_APR in `ap1[0]`. Every one a guest can set is switched: a guest that
    /// leaves group-0 priorities active (ICC_AP0R0_EL1 = ~0) must not mask the next guest.
    ap0: [u64; 4],
    ap1: [u64; 4],
    apr_count: usize,
    v3: bool,
}

/// How many ICH_AP0Rn/ICH_AP1Rn registers exist: one per 32 preemption levels (ICH_VTR_EL2.
/// PREbits + 1 = 5, 6 or 7 bits of preemption: 1, 2 or 4 registers).
pub fn active_priority_registers(ich_vtr: u64) -> usize {
    match (ich_vtr >> 26) & 0b111 {
        0..=4 => 1,
        5 => 2,
        _ => 4,
    }
}

impl Default for Vgic {
    fn default() -> Self {
        Self::new()
    }
}

impl Vgic {
    /// The interface of a VCPU that has taken no interrupt: group enabled and every priority
    /// unmasked, as Zircon starts its VCPUs.
    pub fn new() -> Self {
        let v3 = crate::irq::is_gicv3();
        let (regs, vmcr) = if v3 {
            // ICH_VMCR_EL2: VPMR = 0xff, VENG1.
            let count = gic::list_registers_v3(ICH_VTR_EL2.get()) as usize;
            (ListRegisters::new(Flavor::V3, count).with_eoi_on(VIRTUAL_TIMER_INTID), (0xff << 24) | (1 << 1))
        } else {
            let count =
                crate::irq::gicv2_virtual_interface().map_or(0, |(gich, _)| gic::list_registers_v2(gich) as usize);
            // GICH_VMCR: VMPriMask = 0x1f, VMGrp0En, VMGrp1En.
            (ListRegisters::new(Flavor::V2, count).with_eoi_on(VIRTUAL_TIMER_INTID), (0x1f << 27) | 0b11)
        };
        let apr_count = if v3 { active_priority_registers(ICH_VTR_EL2.get()) } else { 1 };
        Self { regs, vmcr, ap0: [0; 4], ap1: [0; 4], apr_count, v3 }
    }

    /// Moves pending vectors into the list registers and sets the maintenance requests (the
    /// virtual timer's interrupt asks for EOI maintenance, see `ListRegisters::with_eoi_on`).
    pub fn fill(&mut self, signals: &Signals) {
        self.regs.fill(signals);
    }

    /// Whether `vector` is in a list register.
    pub fn holds(&self, vector: u32) -> bool {
        self.regs.holds(vector)
    }

    /// Whether a list register holds a pending interrupt (a WFI must not sleep).
    pub fn has_pending(&self) -> bool {
        self.regs.has_pending()
    }

    /// Loads the interface before entering the guest.
    pub fn load(&self) {
        let count = self.regs.count();
        let lrs = &self.regs.lrs;
        if self.v3 {
            macro_rules! write_lrs {
                ($($index:literal => $register:ident),*) => {
                    $(if $index < count { $register.set(lrs[$index]); })*
                };
            }
            write_lrs!(0 => ICH_LR0_EL2, 1 => ICH_LR1_EL2, 2 => ICH_LR2_EL2, 3 => ICH_LR3_EL2, 4 => ICH_LR4_EL2, 5 => ICH_LR5_EL2, 6 => ICH_LR6_EL2, 7 => ICH_LR7_EL2);
            ICH_VMCR_EL2.set(self.vmcr);
            ICH_AP0R0_EL2.set(self.ap0[0]);
            ICH_AP1R0_EL2.set(self.ap1[0]);
            if self.apr_count > 1 {
                ICH_AP0R1_EL2.set(self.ap0[1]);
                ICH_AP1R1_EL2.set(self.ap1[1]);
            }
            if self.apr_count > 2 {
                ICH_AP0R2_EL2.set(self.ap0[2]);
                ICH_AP1R2_EL2.set(self.ap1[2]);
                ICH_AP0R3_EL2.set(self.ap0[3]);
                ICH_AP1R3_EL2.set(self.ap1[3]);
            }
            ICH_HCR_EL2.set(self.regs.hcr);
        } else if let Some((gich, _)) = crate::irq::gicv2_virtual_interface() {
            for (index, lr) in lrs[..count].iter().enumerate() {
                gich.lr[index].set(*lr as u32);
            }
            gich.vmcr.set(self.vmcr as u32);
            gich.apr.set(self.ap1[0] as u32);
            gich.hcr.set(self.regs.hcr as u32);
        }
    }

    /// Saves the interface after the guest exits, and disables it.
    pub fn save(&mut self) {
        let count = self.regs.count();
        let hcr;
        if self.v3 {
            let lrs = &mut self.regs.lrs;
            macro_rules! read_lrs {
                ($($index:literal => $register:ident),*) => {
                    $(if $index < count { lrs[$index] = $register.get(); })*
                };
            }
            read_lrs!(0 => ICH_LR0_EL2, 1 => ICH_LR1_EL2, 2 => ICH_LR2_EL2, 3 => ICH_LR3_EL2, 4 => ICH_LR4_EL2, 5 => ICH_LR5_EL2, 6 => ICH_LR6_EL2, 7 => ICH_LR7_EL2);
            self.vmcr = ICH_VMCR_EL2.get();
            self.ap0[0] = ICH_AP0R0_EL2.get();
            self.ap1[0] = ICH_AP1R0_EL2.get();
            if self.apr_count > 1 {
                self.ap0[1] = ICH_AP0R1_EL2.get();
                self.ap1[1] = ICH_AP1R1_EL2.get();
            }
            if self.apr_count > 2 {
                self.ap0[2] = ICH_AP0R2_EL2.get();
                self.ap1[2] = ICH_AP1R2_EL2.get();
                self.ap0[3] = ICH_AP0R3_EL2.get();
                self.ap1[3] = ICH_AP1R3_EL2.get();
            }
            hcr = ICH_HCR_EL2.get();
            ICH_HCR_EL2.set(0);
        } else if let Some((gich, _)) = crate::irq::gicv2_virtual_interface() {
            for index in 0..count {
                self.regs.lrs[index] = u64::from(gich.lr[index].get());
            }
            self.vmcr = u64::from(gich.vmcr.get());
            self.ap1[0] = u64::from(gich.apr.get());
            hcr = u64::from(gich.hcr.get());
            gich.hcr.set(0);
        } else {
            return;
        }
        self.regs.saved(hcr);
    }
}
