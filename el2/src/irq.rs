//! Belfry's own use of the physical GIC: SGI 0 wakes an idle CPU. Interrupts stay masked in
//! PSTATE at EL2; an idle CPU sleeps in WFI, which a pending interrupt ends regardless of the
//! mask, and then acknowledges and ends whatever woke it.

use crate::arch::aarch64::{cpu, gic_cpu};
use crate::machine::{GicDescription, MAX_CPUS};
use crate::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use gic::regs::{CpuInterfaceV2, DistributorV2, DistributorV3, RedistributorSgiV3, RedistributorV3};
use gic::sgi;
use tock_registers::interfaces::{Readable, Writeable};

/// The SGI that wakes an idle CPU.
pub const WAKE_SGI: u32 = 0;
/// The virtual interface's maintenance interrupt: PPI 9 (INTID 25) on every board here.
pub const MAINTENANCE_INTID: u32 = 25;
/// SGIs Belfry configures (0..=7; 8..=15 stay with the secure world's conventions).
const SGIS: u32 = 8;

enum Controller {
    V2 { gicd: &'static DistributorV2, gicc: &'static CpuInterfaceV2 },
    V3 { redistributors: usize },
}

/// The controller, shared by every CPU.
struct Shared(Controller);

// SAFETY: the registers Belfry touches from several CPUs are either banked per CPU (GICC, the
// CPU's own redistributor, ITARGETSR0) or single 32-bit writes the GIC serialises (GICD_SGIR);
// distributor setup happens once, on the boot CPU, before the others use it.
unsafe impl Sync for Shared {}
// SAFETY: as above; the references point at MMIO that outlives every CPU's use of it.
unsafe impl Send for Shared {}

static CONTROLLER: spin::Once<Shared> = spin::Once::new();
/// Whether `CONTROLLER` is a GICv3: asked on every guest entry and exit, so a flag (set with
/// it, before any other CPU starts) rather than the `Once`'s state check and a match.
static GICV3: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
/// Each logical CPU's MPIDR (GICv3 SGI routing) and GICv2 CPU-interface mask.
static MPIDR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static MASK_V2: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];
/// This module's part of each CPU's [`cpu::PerCpu`] block.
pub(crate) struct IrqCpu {
    /// What `set_virtual_timer_ppi` last made of the CPU's PPI (a [`TimerPpi`] as `u8`; 0:
    /// nothing yet).
    timer_ppi_state: AtomicU8,
    /// The CPU's GICv3 redistributor SGI/PPI frame (0 before it is found).
    sgi_frame_v3: AtomicU64,
}

impl IrqCpu {
    pub(crate) const fn new() -> Self {
        Self { timer_ppi_state: AtomicU8::new(0), sgi_frame_v3: AtomicU64::new(0) }
    }
}

/// The EL2 physical timer's PPI (CNTHP): the scheduler's deadlines and time slices.
pub const HYP_TIMER_INTID: u32 = 26;
/// The virtual timer's PPI: a guest's timer expiring while it runs makes it exit.
pub const VIRTUAL_TIMER_INTID: u32 = 27;

/// Boot CPU: sets up the distributor.
///
/// # Safety
/// The description's frames must be mapped as Device memory and used by nobody else.
pub unsafe fn init_boot(description: &GicDescription) {
    CONTROLLER.call_once(|| {
        Shared(match *description {
            GicDescription::V2 { distributor, cpu_interface, hyp_interface, virtual_cpu } => {
                if let (Some(gich), Some(gicv)) = (hyp_interface, virtual_cpu) {
                    GICV2_VIRTUAL.call_once(|| (gich.raw(), gicv.raw()));
                }
                // SAFETY: per the contract, the frames are mapped Device memory, ours alone.
                let (gicd, gicc) = unsafe {
                    (&*(distributor.raw() as *const DistributorV2), &*(cpu_interface.raw() as *const CpuInterfaceV2))
                };
                sgi::v2_init_distributor(gicd);
                Controller::V2 { gicd, gicc }
            }
            GicDescription::V3 { distributor, redistributors } => {
                // SAFETY: as above.
                let gicd = unsafe { &*(distributor.raw() as *const DistributorV3) };
                sgi::v3_init_distributor(gicd);
                GICV3.store(true, core::sync::atomic::Ordering::Release);
                Controller::V3 { redistributors: redistributors.raw() as usize }
            }
        })
    });
}

/// Every CPU, once: this CPU's interface (and redistributor) for SGIs. Returns `false` when
/// the GIC has no redistributor for this CPU.
pub fn init_cpu(index: usize) -> bool {
    let Some(Shared(controller)) = CONTROLLER.get() else { return false };
    let Some(slot) = MPIDR.get(index) else { return false };
    slot.store(cpu::mpidr(), Ordering::Release);
    match controller {
        Controller::V2 { gicd, gicc } => {
            let mask = sgi::v2_init_cpu(gicd, gicc, SGIS);
            gicd.isenabler[0].set((1 << MAINTENANCE_INTID) | (1 << HYP_TIMER_INTID));
            gicd.ipriorityr[(VIRTUAL_TIMER_INTID / 4) as usize].set(u32::from_le_bytes([sgi::SGI_PRIORITY; 4]));
            MASK_V2[index].store(mask, Ordering::Release);
            mask != 0
        }
        Controller::V3 { redistributors, .. } => {
            let frame = |offset: usize| {
                // SAFETY: the redistributor region is mapped Device memory; the walk stops at the
                // frame marked Last, inside the region the description gives.
                unsafe { &*((redistributors + offset) as *const RedistributorV3) }
            };
            let Some(offset) = sgi::v3_find_redistributor(cpu::mpidr(), frame, 64) else { return false };
            // SAFETY: the SGI frame follows this CPU's RD_base frame.
            let sgi_frame = unsafe { &*((redistributors + offset + 0x10000) as *const RedistributorSgiV3) };
            sgi::v3_init_redistributor(frame(offset), sgi_frame, SGIS);
            sgi_frame.igroupr0.set(sgi_frame.igroupr0.get() | (1 << MAINTENANCE_INTID));
            sgi_frame.igroupr0.set(sgi_frame.igroupr0.get() | (1 << HYP_TIMER_INTID));
            sgi_frame.isenabler0.set((1 << MAINTENANCE_INTID) | (1 << HYP_TIMER_INTID));
            sgi_frame.igroupr0.set(sgi_frame.igroupr0.get() | (1 << VIRTUAL_TIMER_INTID));
            sgi_frame.ipriorityr[(VIRTUAL_TIMER_INTID / 4) as usize].set(u32::from_le_bytes([sgi::SGI_PRIORITY; 4]));
            if let Some(block) = cpu::all().get(index) {
                block.irq.sgi_frame_v3.store(sgi_frame as *const RedistributorSgiV3 as u64, Ordering::Release);
            }
            gic_cpu::init();
            true
        }
    }
}

/// Sends the wake SGI to logical CPU `index`.
pub fn wake(index: usize) {
    let Some(Shared(controller)) = CONTROLLER.get() else {
        cpu::send_event();
        return;
    };
    match controller {
        Controller::V2 { gicd, .. } => {
            if let Some(mask) = MASK_V2.get(index) {
                // SAFETY: a barrier; the run-queue push must be visible before the SGI.
                unsafe { core::arch::asm!("dsb ishst", options(nostack, preserves_flags)) };
                sgi::v2_send_sgi(gicd, WAKE_SGI, mask.load(Ordering::Acquire));
            }
        }
        Controller::V3 { .. } => {
            if let Some(mpidr) = MPIDR.get(index) {
                gic_cpu::send_sgi1r(sgi::v3_sgi1r(WAKE_SGI, mpidr.load(Ordering::Acquire)));
            }
        }
    }
}

/// Acknowledges and ends every interrupt pending at this CPU's interface; returns how many.
/// The virtual timer's PPI is level-triggered and stays asserted until its guest handles the
/// timer, so it is also disabled here (guest entry enables it again when the timer is armed
/// and has not fired); otherwise it would be pending again the moment it is ended.
pub fn drain() -> usize {
    let Some(Shared(controller)) = CONTROLLER.get() else { return 0 };
    let mut count = 0;
    match controller {
        Controller::V2 { gicc, .. } => {
            while let Some(iar) = sgi::v2_acknowledge(gicc) {
                if iar & 0x3ff == VIRTUAL_TIMER_INTID {
                    set_virtual_timer_ppi(TimerPpi::Masked, false);
                    // A masked PPI no longer brings the guest out when it fires: the next entry
                    // must look at the timer (no resumed entry).
                    crate::arch::aarch64::guest::forget_resume();
                }
                if iar & 0x3ff == HYP_TIMER_INTID {
                    // The scheduler re-arms it for the next deadline.
                    crate::arch::aarch64::timer::hyp_timer_fired();
                }
                sgi::v2_end(gicc, iar);
                count += 1;
            }
        }
        Controller::V3 { .. } => {
            while let Some(intid) = gic_cpu::acknowledge() {
                if intid == VIRTUAL_TIMER_INTID {
                    set_virtual_timer_ppi(TimerPpi::Masked, false);
                    // As above.
                    crate::arch::aarch64::guest::forget_resume();
                }
                if intid == HYP_TIMER_INTID {
                    crate::arch::aarch64::timer::hyp_timer_fired();
                }
                gic_cpu::end(intid);
                count += 1;
            }
        }
    }
    count
}

/// The GICv2 virtual interface control frame (GICH) and virtual CPU interface frame (GICV),
/// when the machine has a GICv2 with virtualization extensions.
pub fn gicv2_virtual_interface() -> Option<(&'static gic::regs::VirtualInterfaceControlV2, u64)> {
    let (gich, gicv) = *GICV2_VIRTUAL.get()?;
    // SAFETY: the GICH frame is a Device window of the identity map, banked per CPU.
    Some((unsafe { &*(gich as *const gic::regs::VirtualInterfaceControlV2) }, gicv))
}

/// Set by `init_boot` on a GICv2 with GICH and GICV frames.
static GICV2_VIRTUAL: spin::Once<(u64, u64)> = spin::Once::new();

/// Whether the machine's GIC is a GICv3.
pub fn is_gicv3() -> bool {
    GICV3.load(core::sync::atomic::Ordering::Acquire)
}

/// What the virtual timer's physical PPI is on this CPU while a guest runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TimerPpi {
    /// Enabled and inactive: the guest's timer has not fired, its expiry exits the guest.
    Armed = 1,
    /// Disabled: the timer fired and its interrupt waits outside the list registers, or sits
    /// in a software one (whose end brings EOI maintenance); the level-triggered PPI must not
    /// exit the guest again and again meanwhile.
    Masked = 2,
    /// Enabled and active: the interrupt sits in a hardware-forwarded list register, and the
    /// guest's deactivation of it deactivates the PPI, which signals again only if the timer
    /// still holds its level.
    Forwarded = 3,
}

impl TimerPpi {
    /// (enabled, active) of the PPI in this state.
    fn bits(self) -> (bool, bool) {
        match self {
            TimerPpi::Armed => (true, false),
            TimerPpi::Masked => (false, false),
            TimerPpi::Forwarded => (true, true),
        }
    }

    fn from_u8(value: u8) -> Option<Self> {
        [TimerPpi::Armed, TimerPpi::Masked, TimerPpi::Forwarded].into_iter().find(|state| *state as u8 == value)
    }
}

/// Sets the virtual timer's physical PPI on this CPU to `state`, writing only what differs
/// from what this CPU last wrote. `placed`: the interrupt was just put in a hardware-forwarded
/// register, so the PPI's active state is written whatever was last written (the guest's
/// deactivation of an earlier one cleared it behind EL2's back).
pub fn set_virtual_timer_ppi(state: TimerPpi, placed: bool) {
    let last = &cpu::local().irq.timer_ppi_state;
    // Only this CPU touches its slot, with interrupts masked: no read-modify-write needed.
    let before = TimerPpi::from_u8(last.load(Ordering::Relaxed));
    if before == Some(state) && !placed {
        return;
    }
    last.store(state as u8, Ordering::Relaxed);
    let (enable, active) = state.bits();
    // Nothing written yet on this CPU: both to write.
    let now = before.map(TimerPpi::bits);
    let write_enable = now.is_none_or(|(enabled, _)| enabled != enable);
    let write_active = placed || now.is_none_or(|(_, was_active)| was_active != active);
    // The PPI's set-enable, clear-enable, set-active and clear-active registers (banked per CPU).
    let registers = match CONTROLLER.get() {
        Some(Shared(Controller::V2 { gicd, .. })) => {
            (&gicd.isenabler[0], &gicd.icenabler[0], &gicd.isactiver[0], &gicd.icactiver[0])
        }
        Some(Shared(Controller::V3 { .. })) => {
            let frame = cpu::local().irq.sgi_frame_v3.load(Ordering::Acquire);
            if frame == 0 {
                return;
            }
            // SAFETY: the address was stored by this CPU's `init_cpu`: its own mapped SGI frame.
            let frame = unsafe { &*(frame as *const RedistributorSgiV3) };
            (&frame.isenabler0, &frame.icenabler0, &frame.isactiver0, &frame.icactiver0)
        }
        None => return,
    };
    let (set_enable, clear_enable, set_active, clear_active) = registers;
    let bit = 1 << VIRTUAL_TIMER_INTID;
    // Disabled before it is made inactive, active before it is enabled: never a signal of the
    // PPI in between.
    if write_enable && !enable {
        clear_enable.set(bit);
    }
    if write_active {
        if active {
            set_active.set(bit);
        } else {
            clear_active.set(bit);
        }
    }
    if write_enable && enable {
        set_enable.set(bit);
    }
}
