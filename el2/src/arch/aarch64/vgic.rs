//! The GIC's virtual CPU interface for one VCPU: list registers, the virtual machine control
//! register and the active-priority register, switched with the VCPU. GICv3 uses the `ICH_*`
//! system registers, GICv2 the GICH frame. Which interrupt goes into which list register is
//! decided by the hardware-free allocator in [`crate::vgic`]; this file moves its words in and
//! out of the hardware. The guest acknowledges and ends its interrupts in the virtual
//! interface: no exit.
//!
//! The hardware is touched only where something changed (issue 13's exit path):
//! - The control and active-priority registers ([`Interface`]) change only by the guest, and
//!   nothing at EL2 reads them: they follow the VCPU's EL1 registers, saved and loaded only
//!   when another VCPU takes the CPU (`guest.rs`'s `load_el1`).
//! - A list register holding nothing stays holding nothing while the guest runs (only EL2
//!   writes list registers): when none held anything at entry, the exit reads none, and the
//!   next entry writes none if none is to hold anything and the CPU's registers are known to
//!   hold nothing (`lrs_clear`, kept by every load, whichever VCPU made it: a switch between
//!   VCPUs with no interrupt in flight writes none). Otherwise all of them are moved, as
//!   comparing each costs more instructions than it saves.
//! - ICH_HCR_EL2 / GICH_HCR is per CPU (`hcr_loaded`): written at entry only when it differs;
//!   read and cleared at exit only when it asked for maintenance (its EOIcount matters only
//!   with spilled interrupts, which set LRENPIE). Left at En alone while EL2 handles the exit,
//!   it can raise nothing (no maintenance request); [`park`] clears it whenever EL2 runs
//!   another thread or sleeps.

use crate::irq::VIRTUAL_TIMER_INTID;
use crate::object::signals::Signals;
use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use crate::vgic::{Flavor, ListRegisters, HCR_EN};
use aarch64_cpu::registers::{
    Readable, Writeable, ICH_AP0R0_EL2, ICH_AP0R1_EL2, ICH_AP0R2_EL2, ICH_AP0R3_EL2, ICH_AP1R0_EL2, ICH_AP1R1_EL2,
    ICH_AP1R2_EL2, ICH_AP1R3_EL2, ICH_HCR_EL2, ICH_LR0_EL2, ICH_LR1_EL2, ICH_LR2_EL2, ICH_LR3_EL2, ICH_LR4_EL2,
    ICH_LR5_EL2, ICH_LR6_EL2, ICH_LR7_EL2, ICH_VMCR_EL2, ICH_VTR_EL2,
};
use alloc::boxed::Box;

/// This module's part of each CPU's [`super::cpu::PerCpu`] block.
pub(crate) struct VgicCpu {
    /// The control word ICH_HCR_EL2 / GICH_HCR holds now (0 after boot: disabled), with
    /// [`LR_MAINTENANCE`].
    hcr_loaded: AtomicU64,
    /// The list registers all hold 0, as the last `Vgic::load` on the CPU wrote them (false
    /// after boot: unknown).
    lrs_clear: AtomicBool,
}

impl VgicCpu {
    pub(crate) const fn new() -> Self {
        Self { hcr_loaded: AtomicU64::new(0), lrs_clear: AtomicBool::new(false) }
    }
}

/// Not a register bit (ICH_HCR_EL2's upper half is RES0, GICH_HCR is 32 bits): in
/// `hcr_loaded`, a list register asks for EOI maintenance. Its interrupt ended, the register
/// keeps signalling maintenance (EISR) while the interface is enabled, so the exit must then
/// disable the interface as for the control word's own requests.
const LR_MAINTENANCE: u64 = 1 << 63;

fn lrs_clear() -> &'static AtomicBool {
    &super::cpu::local().vgic.lrs_clear
}

fn hcr_loaded() -> &'static AtomicU64 {
    &super::cpu::local().vgic.hcr_loaded
}

fn write_hcr(v3: bool, hcr: u64) {
    if v3 {
        ICH_HCR_EL2.set(hcr);
    } else if let Some((gich, _)) = crate::irq::gicv2_virtual_interface() {
        gich.hcr.set(hcr as u32);
    }
}

/// Disables this CPU's virtual interface if a guest left it enabled: EL2 is about to run
/// another thread or sleep.
pub fn park() {
    super::guest::forget_resume();
    let loaded = hcr_loaded();
    if loaded.load(Ordering::Relaxed) != 0 {
        write_hcr(crate::irq::is_gicv3(), 0);
        loaded.store(0, Ordering::Relaxed);
    }
}

/// The virtual interface's registers that only the guest changes: the virtual machine
/// control register and the active priorities. Every one a guest can set is switched: a
/// guest that leaves group-0 priorities active (ICC_AP0R0_EL1 = ~0) must not mask the next
/// guest. Boxed in [`Vgic`], so the CPU's owner slot can name it by a stable address.
#[derive(Debug)]
pub struct Interface {
    vmcr: u64,
    /// GICv3 ICH_AP0Rn (group 0) and ICH_AP1Rn (group 1), `apr_count` of each; GICv2 GICH_APR
    /// in `ap1[0]`.
    ap0: [u64; 4],
    ap1: [u64; 4],
    apr_count: usize,
    v3: bool,
}

impl Interface {
    /// Reads the registers back from the CPU.
    pub fn save(&mut self) {
        if self.v3 {
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
        } else if let Some((gich, _)) = crate::irq::gicv2_virtual_interface() {
            self.vmcr = u64::from(gich.vmcr.get());
            self.ap1[0] = u64::from(gich.apr.get());
        }
    }

    /// Loads the registers into the CPU.
    pub fn restore(&self) {
        if self.v3 {
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
        } else if let Some((gich, _)) = crate::irq::gicv2_virtual_interface() {
            gich.vmcr.set(self.vmcr as u32);
            gich.apr.set(self.ap1[0] as u32);
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Vgic {
    regs: ListRegisters,
    /// No list register held anything at the last entry (so none does now: only EL2 writes
    /// them).
    hardware_empty: bool,
    interface: Box<Interface>,
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
            (ListRegisters::new(Flavor::V3, count).with_hardware(VIRTUAL_TIMER_INTID), (0xff << 24) | (1 << 1))
        } else {
            let count =
                crate::irq::gicv2_virtual_interface().map_or(0, |(gich, _)| gic::list_registers_v2(gich) as usize);
            // GICH_VMCR: VMPriMask = 0x1f, VMGrp0En, VMGrp1En.
            (ListRegisters::new(Flavor::V2, count).with_hardware(VIRTUAL_TIMER_INTID), (0x1f << 27) | 0b11)
        };
        let apr_count = if v3 { active_priority_registers(ICH_VTR_EL2.get()) } else { 1 };
        let interface = Box::new(Interface { vmcr, ap0: [0; 4], ap1: [0; 4], apr_count, v3 });
        Self { regs, hardware_empty: true, interface, v3 }
    }

    /// The registers that follow the VCPU's EL1 registers (see the module documentation).
    pub fn interface(&mut self) -> &mut Interface {
        &mut self.interface
    }

    /// Moves pending vectors into the list registers and sets the maintenance requests (the
    /// virtual timer's interrupt is hardware-forwarded, see `ListRegisters::with_hardware`).
    pub fn fill(&mut self, signals: &Signals) {
        self.regs.fill(signals);
    }

    /// Whether `vector` is in a list register.
    pub fn holds(&self, vector: u32) -> bool {
        self.regs.holds(vector)
    }

    /// Whether `vector` is in a hardware-forwarded list register (`Some(true)`), a software one
    /// (`Some(false)`) or none.
    pub fn forwarded(&self, vector: u32) -> Option<bool> {
        self.regs.forwarded(vector)
    }

    /// Whether the last `fill` newly placed the hardware-forwarded vector.
    pub fn hardware_placed(&self) -> bool {
        self.regs.hardware_placed()
    }

    /// Whether a list register holds a pending interrupt (a WFI must not sleep).
    pub fn has_pending(&self) -> bool {
        self.regs.has_pending()
    }

    /// Loads the list registers and the control word before entering the guest. The list
    /// registers are written unless they hold nothing and are to hold nothing; the control
    /// word when it differs or another VCPU had the CPU in between (`all`). Returns whether
    /// the list registers hold nothing.
    pub fn load(&mut self, all: bool) -> bool {
        let loaded = hcr_loaded();
        let hcr = self.regs.hcr;
        // Only the registers in use: the rest are never written (and stay 0).
        let empty = self.regs.all_clear();
        // The CPU's list registers hold nothing (`lrs_clear`): an empty set needs no writes,
        // whichever VCPU had the CPU last (only EL2 writes them; a guest's own acknowledge
        // and end change only a valid register's state).
        let clear = lrs_clear();
        if !(empty && clear.load(Ordering::Relaxed)) {
            let count = self.regs.count();
            let lrs = &self.regs.lrs;
            if self.v3 {
                macro_rules! write_lrs {
                    ($($index:literal => $register:ident),*) => {
                        $(if $index < count { $register.set(lrs[$index]); })*
                    };
                }
                write_lrs!(0 => ICH_LR0_EL2, 1 => ICH_LR1_EL2, 2 => ICH_LR2_EL2, 3 => ICH_LR3_EL2, 4 => ICH_LR4_EL2, 5 => ICH_LR5_EL2, 6 => ICH_LR6_EL2, 7 => ICH_LR7_EL2);
            } else if let Some((gich, _)) = crate::irq::gicv2_virtual_interface() {
                for (index, lr) in lrs[..count].iter().enumerate() {
                    gich.lr[index].set(*lr as u32);
                }
            }
        }
        clear.store(empty, Ordering::Relaxed);
        self.hardware_empty = empty;
        let wanted = if !empty && self.regs.wants_eoi_maintenance() { hcr | LR_MAINTENANCE } else { hcr };
        let now = loaded.load(Ordering::Relaxed);
        if all || now & !LR_MAINTENANCE != hcr {
            write_hcr(self.v3, hcr);
        }
        if now != wanted {
            loaded.store(wanted, Ordering::Relaxed);
        }
        empty
    }

    /// Reads back, after the guest exits, the list registers if they held something and, when
    /// it asked for maintenance, the control word (which is then cleared). Returns whether the
    /// CPU's interface is still as `load` left it (no maintenance was asked for, so the control
    /// word was not touched): then an entry that changes nothing may skip `load`.
    pub fn save(&mut self) -> bool {
        let loaded = hcr_loaded();
        let mut hcr = loaded.load(Ordering::Relaxed);
        if self.hardware_empty && hcr & !HCR_EN == 0 {
            // No register held anything, so none does, and no maintenance was asked for (no
            // spilled interrupt whose end EOIcount would count): nothing to read.
            self.regs.hcr = 0;
            return true;
        }
        if !self.hardware_empty {
            let count = self.regs.count();
            let lrs = &mut self.regs.lrs;
            if self.v3 {
                macro_rules! read_lrs {
                    ($($index:literal => $register:ident),*) => {
                        $(if $index < count { lrs[$index] = $register.get(); })*
                    };
                }
                read_lrs!(0 => ICH_LR0_EL2, 1 => ICH_LR1_EL2, 2 => ICH_LR2_EL2, 3 => ICH_LR3_EL2, 4 => ICH_LR4_EL2, 5 => ICH_LR5_EL2, 6 => ICH_LR6_EL2, 7 => ICH_LR7_EL2);
            } else if let Some((gich, _)) = crate::irq::gicv2_virtual_interface() {
                for (index, lr) in lrs[..count].iter_mut().enumerate() {
                    *lr = u64::from(gich.lr[index].get());
                }
            }
        }
        let intact = hcr & !HCR_EN == 0;
        if !intact {
            // A maintenance request (of the control word or of a list register).
            hcr = if self.v3 {
                ICH_HCR_EL2.get()
            } else {
                crate::irq::gicv2_virtual_interface().map_or(0, |(gich, _)| u64::from(gich.hcr.get()))
            };
            write_hcr(self.v3, 0);
            loaded.store(0, Ordering::Relaxed);
        }
        self.regs.saved(hcr);
        intact
    }
}
