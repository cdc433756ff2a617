//! The GIC's virtual CPU interface for one VCPU: list registers, the virtual machine control
//! register and the active-priority register, switched with the VCPU. GICv3 uses the `ICH_*`
//! system registers, GICv2 the GICH frame.
//!
//! At entry, pending vectors move from the VCPU's pending set into free list registers (lowest
//! vector first); if some must wait, the no-pending maintenance interrupt (NPIE) brings the VCPU
//! out once the guest has taken those in the list registers, and the next entry refills them.
//! The guest acknowledges and ends its interrupts in the virtual interface: no exit.

use crate::object::signals::Signals;
use aarch64_cpu::registers::{
    Readable, Writeable, ICH_AP1R0_EL2, ICH_HCR_EL2, ICH_LR0_EL2, ICH_LR1_EL2, ICH_LR2_EL2, ICH_LR3_EL2, ICH_LR4_EL2,
    ICH_LR5_EL2, ICH_LR6_EL2, ICH_LR7_EL2, ICH_VMCR_EL2, ICH_VTR_EL2,
};

/// List registers Belfry uses at most (GICv3 has up to 16, the GIC-400 4).
const MAX_LRS: usize = 8;
/// Priority given to injected interrupts.
const PRIORITY: u64 = 0xa0;
/// ICH_HCR_EL2 / GICH_HCR: En, UIE, NPIE.
const HCR_EN: u64 = 1 << 0;
const HCR_UIE: u64 = 1 << 1;
const HCR_NPIE: u64 = 1 << 3;

/// See the module documentation.
#[derive(Debug)]
pub struct Vgic {
    lrs: [u64; MAX_LRS],
    count: usize,
    vmcr: u64,
    apr: u64,
    hcr: u64,
    v3: bool,
}

fn v3_lr_count() -> usize {
    gic::list_registers_v3(ICH_VTR_EL2.get()) as usize
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
        let (count, vmcr) = if v3 {
            // ICH_VMCR_EL2: VPMR = 0xff, VENG1.
            (v3_lr_count(), (0xff << 24) | (1 << 1))
        } else {
            let count =
                crate::irq::gicv2_virtual_interface().map_or(0, |(gich, _)| gic::list_registers_v2(gich) as usize);
            // GICH_VMCR: VMPriMask = 0x1f, VMGrp0En, VMGrp1En.
            (count, (0x1f << 27) | 0b11)
        };
        Self { lrs: [0; MAX_LRS], count: count.min(MAX_LRS), vmcr, apr: 0, hcr: 0, v3 }
    }

    fn state(&self, lr: u64) -> u64 {
        if self.v3 {
            (lr >> 62) & 0b11
        } else {
            (lr >> 28) & 0b11
        }
    }

    fn encode(&self, vector: u32) -> u64 {
        // The virtual timer's interrupt asks for an EOI maintenance interrupt: the guest ending
        // it is when its level-triggered physical PPI may be enabled again.
        let timer = vector == crate::irq::VIRTUAL_TIMER_INTID;
        if self.v3 {
            // State pending, Group 1, EOI, priority, vINTID.
            (0b01 << 62) | (1 << 60) | (u64::from(timer) << 41) | (PRIORITY << 48) | u64::from(vector)
        } else {
            // State pending, group 0, priority (5 bits), EOI, virtual ID.
            (0b01 << 28) | ((PRIORITY >> 3) << 23) | (u64::from(timer) << 19) | u64::from(vector & 0x3ff)
        }
    }

    /// Clears list registers whose interrupt is over, so an old EOI request cannot raise the
    /// maintenance interrupt again.
    fn forget_finished(&mut self) {
        for index in 0..self.count {
            if self.state(self.lrs[index]) == 0 {
                self.lrs[index] = 0;
            }
        }
    }

    fn vector_of(&self, lr: u64) -> u32 {
        if self.v3 {
            lr as u32
        } else {
            (lr & 0x3ff) as u32
        }
    }

    fn pending_bit(&self) -> u64 {
        if self.v3 {
            0b01 << 62
        } else {
            0b01 << 28
        }
    }

    /// Moves pending vectors into the list registers; asks for the maintenance interrupt when
    /// some still wait. A vector already in a list register is never given a second one (two
    /// list registers with one vINTID are UNPREDICTABLE): if it is pending there, the new one
    /// merges with it; if it is active, that register becomes active and pending.
    pub fn fill(&mut self, signals: &Signals) {
        let mut waiting = false;
        signals.take_pending(|vector| {
            let live = (0..self.count).find(|&i| self.state(self.lrs[i]) != 0 && self.vector_of(self.lrs[i]) == vector);
            if let Some(index) = live {
                self.lrs[index] |= self.pending_bit();
                return true;
            }
            match (0..self.count).find(|&i| self.state(self.lrs[i]) == 0) {
                Some(index) => {
                    self.lrs[index] = self.encode(vector);
                    true
                }
                None => {
                    waiting = true;
                    false
                }
            }
        });
        self.hcr = HCR_EN;
        if waiting {
            if self.has_pending() {
                // Refill once the guest has taken what is pending.
                self.hcr |= HCR_NPIE;
            } else {
                // Every list register holds an active interrupt: "no pending" holds already and
                // would exit the guest before it runs an instruction, forever. Exit instead when
                // the guest deactivates one of them (EOI maintenance), or is down to one.
                self.hcr |= HCR_UIE;
                let eoi = if self.v3 { 1 << 41 } else { 1 << 19 };
                for index in 0..self.count {
                    self.lrs[index] |= eoi;
                }
            }
        }
    }

    /// Whether a list register holds a pending interrupt (a WFI must not sleep).
    pub fn has_pending(&self) -> bool {
        self.lrs[..self.count].iter().any(|&lr| self.state(lr) & 0b01 != 0)
    }

    /// Loads the interface before entering the guest.
    pub fn load(&self) {
        if self.v3 {
            macro_rules! write_lrs {
                ($($index:literal => $register:ident),*) => {
                    $(if $index < self.count { $register.set(self.lrs[$index]); })*
                };
            }
            write_lrs!(0 => ICH_LR0_EL2, 1 => ICH_LR1_EL2, 2 => ICH_LR2_EL2, 3 => ICH_LR3_EL2, 4 => ICH_LR4_EL2, 5 => ICH_LR5_EL2, 6 => ICH_LR6_EL2, 7 => ICH_LR7_EL2);
            ICH_VMCR_EL2.set(self.vmcr);
            ICH_AP1R0_EL2.set(self.apr);
            ICH_HCR_EL2.set(self.hcr);
        } else if let Some((gich, _)) = crate::irq::gicv2_virtual_interface() {
            for (index, lr) in self.lrs[..self.count].iter().enumerate() {
                gich.lr[index].set(*lr as u32);
            }
            gich.vmcr.set(self.vmcr as u32);
            gich.apr.set(self.apr as u32);
            gich.hcr.set(self.hcr as u32);
        }
    }

    /// Saves the interface after the guest exits, and disables it.
    pub fn save(&mut self) {
        if self.v3 {
            macro_rules! read_lrs {
                ($($index:literal => $register:ident),*) => {
                    $(if $index < self.count { self.lrs[$index] = $register.get(); })*
                };
            }
            read_lrs!(0 => ICH_LR0_EL2, 1 => ICH_LR1_EL2, 2 => ICH_LR2_EL2, 3 => ICH_LR3_EL2, 4 => ICH_LR4_EL2, 5 => ICH_LR5_EL2, 6 => ICH_LR6_EL2, 7 => ICH_LR7_EL2);
            self.vmcr = ICH_VMCR_EL2.get();
            self.apr = ICH_AP1R0_EL2.get();
            ICH_HCR_EL2.set(0);
            self.forget_finished();
        } else if let Some((gich, _)) = crate::irq::gicv2_virtual_interface() {
            for index in 0..self.count {
                self.lrs[index] = u64::from(gich.lr[index].get());
            }
            self.vmcr = u64::from(gich.vmcr.get());
            self.apr = u64::from(gich.apr.get());
            gich.hcr.set(0);
            self.forget_finished();
        }
    }
}
