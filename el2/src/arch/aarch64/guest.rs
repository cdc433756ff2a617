//! Running a guest on this CPU: the world switch and the decoding of every exit.
//!
//! `run` loads the VCPU's EL1 context and the guest's stage-2 and trap configuration, enters
//! the guest with `eret` (`world.rs`), and on the next exception from the guest saves it all
//! back and says why the guest stopped, as an architecture-neutral [`Exit`].
//!
//! What the guest can handle itself never leaves it (lguest's lesson): with HCR_EL2 as set
//! here, SVCs, undefined instructions and the guest's own stage-1 faults go to its EL1 vectors.
//! Belfry traps what it must see: stage-2 faults, HVC and SMC, WFI/WFE, data-cache set/way
//! operations, the debug and OS-lock registers (RAZ/WI), physical interrupts, and FP/SIMD
//! while another VCPU's FP registers are live on this CPU (lazy switching).

use super::cpu;
use super::vgic::{Interface, Vgic};
use super::world::{self, El1State, FpState};
use crate::debug::DebugState;
use crate::inject::GuestException;
use crate::irq::TimerPpi;
use crate::object::exit::{Access, Exit, ExitCounts, ExitKind};
use crate::object::psci;
use crate::object::signals::Signals;
use crate::object::vcpu::{Context, TrapCache};
use aarch64_cpu::registers::{Readable, Writeable, ELR_EL2, ESR_EL2, FAR_EL2, HPFAR_EL2, SPSR_EL2};
use alloc::boxed::Box;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use stage2::syndrome::{DataAbort, Esr, ExceptionClass, FaultStatus};

use crate::traps::{system_action, SystemAccess, SystemAction, GUEST_HCR, GUEST_HCR_PAUTH, GUEST_MDCR};

/// CPTR_EL2: the RES1 bits, SVE and SME trapped; TFP (bit 10) set while another VCPU's FP
/// registers are live.
const CPTR_BASE: u64 = super::boot::CPTR_EL2_VALUE;
const CPTR_TFP: u64 = 1 << 10;
/// PSTATE.nRW (SPSR_EL2 bit 4): the guest was executing AArch32 code.
const AARCH32_STATE: u64 = 1 << 4;
/// The guest starts at EL1h with DAIF masked.
const INITIAL_PSTATE: u64 = 0x3c5;
/// SPSR_EL2.SS: the software-step state bit.
const SPSR_SS: u64 = 1 << 21;

/// The virtual timer's PPI.
const VIRTUAL_TIMER_INTID: u32 = crate::irq::VIRTUAL_TIMER_INTID;

/// Whether a virtual timer (CNTV_CTL_EL0, CNTV_CVAL_EL0) has fired: enabled, not masked,
/// CNTVCT >= CVAL (CNTVOFF_EL2 is 0, so the guest's virtual count is the physical count).
fn timer_fired((ctl, cval): (u64, u64)) -> bool {
    ctl & 0b11 == 0b01 && super::timer::ticks() >= cval
}

/// A counter value as a deadline on the monotonic clock (ns).
fn counter_to_ns(ticks: u64) -> i64 {
    super::timer::ticks_to_ns(ticks).min(i64::MAX as u64) as i64
}

/// Per CPU: whose lazily switched state the hardware holds, by the address of the (boxed,
/// so stable) state: the EL1 registers (with the VCPU's stage-2 and identity registers), the
/// FP/SIMD registers, the pointer-authentication keys. The same VCPU re-entering on the same
/// CPU loads none of them; whoever enters next saves the previous owner's first.
///
/// Only the CPU itself changes its slots to a new owner, and only for the VCPU its current
/// thread runs (threads never leave their CPU), so a VCPU that reads its own address there
/// is the owner until it runs another guest. The one other writer is a VCPU's drop, on any
/// CPU, clearing the slots it owns; `lock` keeps that from freeing a state while its CPU is
/// saving it (the CPU takes it around every change of owner, the drop around its clearing).
struct Loaded {
    lock: spin::Mutex<()>,
    el1: AtomicUsize,
    /// The VCPU (by its `el1` address) whose last exit, the CPU's last, was a trapped access
    /// that left the hardware as its entry had prepared it (no vGIC maintenance asked for), or
    /// 0. Such an exit sets it only when the VCPU's last `prepare` left its emulated physical
    /// timer off and its virtual timer's PPI not masked (`timers_resumable`). Its next entry
    /// skips `prepare` (and the writes of HCR_EL2, MDCR_EL2 and CPTR_EL2, which hold its
    /// values still) when, besides, no interrupt is pending for it: then nothing `prepare`
    /// looks at can have changed. Its debug state, timer deadline, pointer-authentication
    /// keys and DISR change only through other exits or other VCPUs' entries; its list
    /// registers only through `fill`, which pending interrupts would need, and `save`, which
    /// keeps them as the hardware holds them; a virtual timer that fired while the guest ran
    /// or fires while EL2 runs asserts its armed PPI, which exits the guest at the `eret` (a
    /// forwarded one is in a list register already). Cleared when EL2 sleeps (`vgic::park`,
    /// which disables the interface, and whose wake drains interrupts), by every other exit,
    /// when EL2 takes the virtual timer's PPI and masks it (`irq::drain`: it no longer brings
    /// the guest out), and when its EL1 registers are taken back from the CPU to be changed
    /// (`el1_mut`; another VCPU's `load_el1` is followed by that VCPU's exit, which sets this
    /// to itself or 0): so while it names the VCPU, the CPU holds its EL1 registers.
    resumable: AtomicUsize,
    /// The virtual GIC interface's control and active-priority registers: they change owner
    /// with `el1`, always together (so `el1` being ours says that they are ours too).
    gic: AtomicUsize,
    fp: AtomicUsize,
    pauth: AtomicUsize,
}

impl Loaded {
    const fn new() -> Self {
        Self {
            lock: spin::Mutex::new(()),
            el1: AtomicUsize::new(0),
            resumable: AtomicUsize::new(0),
            gic: AtomicUsize::new(0),
            fp: AtomicUsize::new(0),
            pauth: AtomicUsize::new(0),
        }
    }
}

/// This module's part of each CPU's [`cpu::PerCpu`] block.
pub(crate) struct GuestCpu {
    loaded: Loaded,
    /// The version of the debug state the CPU's hardware holds, 0 for none (see
    /// [`crate::debug`]).
    debug_loaded: AtomicU64,
}

impl GuestCpu {
    pub(crate) const fn new() -> Self {
        Self { loaded: Loaded::new(), debug_loaded: AtomicU64::new(0) }
    }
}

/// This CPU's [`Loaded`]: a slot always exists, so no caller has a "no slot" case to get
/// wrong.
#[inline(always)]
fn this_cpu_loaded() -> &'static Loaded {
    &cpu::local().guest.loaded
}

/// Per-VCPU architectural state.
pub struct VcpuArch {
    /// The guest's EL1 registers; boxed so the CPU's [`Loaded`] can name them by a stable
    /// address. While this CPU's `Loaded::el1` names them the CPU's registers are newer than
    /// these: read them through [`VcpuArch::el1_current`] and change them through
    /// [`VcpuArch::el1_mut`].
    el1: Box<El1State>,
    /// SPSR_EL2 while the guest is out: its PSTATE.
    pstate: u64,
    vttbr: u64,
    vmpidr: u64,
    /// Length of the instruction that caused the last exit (IL).
    instruction_len: u64,
    /// FP/SIMD registers; boxed so [`Loaded`] can name them by a stable address.
    fp: Box<FpState>,
    vgic: Vgic,
    /// The guest's DISR_EL1 (VDISR_EL2), switched when the CPU has FEAT_RAS.
    vdisr: u64,
    /// The guest's pointer-authentication keys, switched (lazily) when the CPU has FEAT_PAuth;
    /// boxed so [`Loaded`] can name them by a stable address.
    pauth: Box<world::PauthKeys>,
    /// The guest has used pointer authentication (an instruction or a key register): until it
    /// does, its entries leave HCR_EL2.API and APK clear, so its first use traps
    /// ([`first_pauth_use`]), and its keys are neither loaded nor saved.
    pauth_used: bool,
    /// HCR_EL2 for this VCPU's entries: [`GUEST_HCR`], with API and APK once `pauth_used`
    /// (kept here so an entry loads one word instead of building and choosing a constant).
    hcr: u64,
    /// Whether this VCPU's last full entry (`prepare`) left its timers as a resumed entry
    /// may: the emulated physical timer off and the virtual timer's PPI not masked. Only
    /// then does an exit make the next entry resumable ([`Loaded::resumable`]).
    timers_resumable: bool,
    /// The guest's EL1 physical timer, emulated.
    ptimer: crate::ptimer::PhysicalTimer,
    /// An UNDEF has been injected for a missing register and logged (once per VCPU).
    undef_logged: bool,
    /// The guest's breakpoints, watchpoints, MDSCR_EL1 and OS lock ([`crate::debug`]).
    debug: Box<DebugState>,
}

impl core::fmt::Debug for VcpuArch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VcpuArch").field("vmpidr", &self.vmpidr).finish_non_exhaustive()
    }
}

impl VcpuArch {
    /// A VCPU that starts with its MMU off, DAIF masked, at Aff0 = `id` of a guest whose
    /// stage-2 tables `vttbr` names.
    pub fn new(id: usize, vttbr: u64) -> Self {
        Self {
            el1: Box::new(El1State::reset()),
            pstate: INITIAL_PSTATE,
            vttbr,
            vmpidr: (1 << 31) | (id as u64 & 0xff),
            instruction_len: 4,
            fp: Box::default(),
            vgic: Vgic::new(),
            vdisr: 0,
            pauth: Box::default(),
            pauth_used: false,
            hcr: GUEST_HCR,
            timers_resumable: false,
            ptimer: crate::ptimer::PhysicalTimer::default(),
            undef_logged: false,
            debug: Box::default(),
        }
    }

    fn el1_address(&self) -> usize {
        &*self.el1 as *const El1State as usize
    }

    /// Whether this CPU's EL1 registers are this VCPU's (newer than `el1`).
    fn el1_live(&self) -> bool {
        this_cpu_loaded().el1.load(Ordering::Relaxed) == self.el1_address()
    }

    /// The guest's EL1 registers, brought up to date from the CPU when they are live there
    /// (they stay live).
    fn el1_current(&mut self) -> &El1State {
        if self.el1_live() {
            self.el1.save();
        }
        &self.el1
    }

    /// The guest's EL1 registers to change: brought up to date from the CPU, which gives them
    /// up, so the next entry loads the changed values.
    fn el1_mut(&mut self) -> &mut El1State {
        if self.el1_live() {
            self.el1.save();
            let slot = this_cpu_loaded();
            slot.el1.store(0, Ordering::Relaxed);
            // The next entry loads them: it is not a resumed one.
            slot.resumable.store(0, Ordering::Relaxed);
        }
        &mut self.el1
    }

    /// The guest's virtual timer (CNTV_CTL_EL0, CNTV_CVAL_EL0), from the CPU when it holds it.
    fn virtual_timer(&self) -> (u64, u64) {
        if self.el1_live() {
            world::read_virtual_timer()
        } else {
            (self.el1.cntv_ctl, self.el1.cntv_cval)
        }
    }

    /// Whether the guest's virtual timer has fired. Live in the CPU, its CNTV_CTL_EL0 says so
    /// alone (ISTATUS is the timer condition, kept by the hardware whether the guest runs or
    /// not): one register read, no counter read.
    fn virtual_timer_fired(&self) -> bool {
        if self.el1_live() {
            world::read_virtual_timer_control() & 0b111 == 0b101
        } else {
            timer_fired((self.el1.cntv_ctl, self.el1.cntv_cval))
        }
    }

    /// Makes the CPU's EL1 registers this VCPU's: saves the previous owner's, loads ours.
    /// Returns whether they were loaded (the VCPU's stage-2 registers must be too).
    fn load_el1(&mut self) -> bool {
        let slot = this_cpu_loaded();
        let me = self.el1_address();
        if slot.el1.load(Ordering::Relaxed) == me {
            return false;
        }
        let _guard = slot.lock.lock();
        let owner = slot.el1.load(Ordering::Relaxed) as *mut El1State;
        if !owner.is_null() {
            // SAFETY: a registered owner is a live `El1State` (its VCPU's drop clears the
            // registration under `lock`, which we hold) of a VCPU not running (its thread is on
            // this CPU, which runs us).
            unsafe { (*owner).save() };
        }
        let gic_owner = slot.gic.load(Ordering::Relaxed) as *mut Interface;
        if !gic_owner.is_null() {
            // SAFETY: as for `owner`: the same VCPU's boxed interface registers.
            unsafe { (*gic_owner).save() };
        }
        // SAFETY: EL2 between guest runs; our own registers.
        unsafe { self.el1.restore() };
        let interface = self.vgic.interface();
        interface.restore();
        slot.gic.store(interface as *mut Interface as usize, Ordering::Relaxed);
        slot.el1.store(me, Ordering::Relaxed);
        true
    }
}

impl Drop for VcpuArch {
    fn drop(&mut self) {
        let el1 = self.el1_address();
        let fp = &*self.fp as *const FpState as usize;
        let keys = &*self.pauth as *const world::PauthKeys as usize;
        let gic = self.vgic.interface() as *mut Interface as usize;
        for slot in cpu::all().iter().map(|block| &block.guest.loaded) {
            let _guard = slot.lock.lock();
            for (owner, me) in
                [(&slot.el1, el1), (&slot.resumable, el1), (&slot.gic, gic), (&slot.fp, fp), (&slot.pauth, keys)]
            {
                let _ = owner.compare_exchange(me, 0, Ordering::Relaxed, Ordering::Relaxed);
            }
        }
    }
}

/// Makes this VCPU's pointer-authentication keys the ones in the CPU: saves the previous
/// owner's, loads ours; nothing when they are already ours.
fn switch_pauth(context: &mut Context) {
    let slot = this_cpu_loaded();
    let me = &mut *context.arch.pauth as *mut world::PauthKeys;
    if slot.pauth.load(Ordering::Relaxed) == me as usize {
        return;
    }
    let _guard = slot.lock.lock();
    let owner = slot.pauth.load(Ordering::Relaxed) as *mut world::PauthKeys;
    if !owner.is_null() {
        // SAFETY: FEAT_PAuth is present (the caller checked); a registered owner is a live
        // `PauthKeys` (see `Loaded`) of a VCPU not running.
        unsafe { (*owner).save() };
    }
    // SAFETY: FEAT_PAuth is present; our own keys; EL2 signs no pointers.
    unsafe { (*me).load() };
    slot.pauth.store(me as usize, Ordering::Relaxed);
}

/// Before entering a VCPU: its debug state in the hardware if it is active (loaded unless the
/// CPU already holds that very version), otherwise the hardware disarmed (MDSCR_EL1 cleared)
/// if it holds another VCPU's.
fn prepare_debug(debug: &DebugState) {
    let slot = &cpu::local().guest.debug_loaded;
    let loaded = slot.load(Ordering::Relaxed);
    if debug.active() {
        if loaded != debug.version {
            let (breakpoints, watchpoints) = world::debug_points();
            world::load_debug(debug, breakpoints, watchpoints);
            slot.store(debug.version, Ordering::Relaxed);
        }
    } else if loaded != 0 {
        world::write_mdscr(0);
        slot.store(0, Ordering::Relaxed);
    }
}

/// Guest-physical address where a guest finds its GICv2 CPU interface (QEMU `virt`'s GICC).
pub const GUEST_GICC: u64 = 0x0801_0000;

/// Device pages every guest gets: on a GICv2, the physical GICV frame at [`GUEST_GICC`], so the
/// guest acknowledges and ends interrupts without exits. (ipa, physical address, bytes.)
pub fn guest_device_pages() -> Option<(u64, u64, u64)> {
    crate::irq::gicv2_virtual_interface().map(|(_, gicv)| (GUEST_GICC, gicv, 0x2000))
}

/// Runs the guest until its next exit.
///
/// An entry right after a MEM or BELL exit of the same VCPU on this CPU resumes: when nothing
/// that `prepare` would act on can have changed, it is skipped (see `Loaded::resumable`).
pub fn run(context: &mut Context, signals: &Signals) -> Exit {
    if context.skip_instruction {
        context.skip_instruction = false;
        context.pc = context.pc.wrapping_add(context.arch.instruction_len);
        if let Some((register, delta)) = context.writeback.take() {
            // Register 31 is the stack pointer PSTATE.SP selects: SP_EL1 in EL1h, else SP_EL0.
            let base = match context.state.x.get_mut(usize::from(register)) {
                Some(x) => x,
                None if context.arch.pstate & 0b1111 == 0b0101 => &mut context.state.sp,
                None => &mut context.arch.el1_mut().sp_el0,
            };
            *base = base.wrapping_add_signed(delta);
        }
        // The emulated instruction completed a software step: the step exception is due before
        // the next one (PSTATE.SS clear: active-pending), as after any instruction.
        context.arch.pstate &= !SPSR_SS;
    }
    let slot = this_cpu_loaded();
    let me = context.arch.el1_address();
    let pstate =
        (context.arch.pstate & !u64::from(crate::object::packet::CPSR_USER_MASK)) | u64::from(context.state.cpsr);
    let ras = world::has_ras();
    // The timers' conditions were looked at when the exit made the entry resumable.
    let resume = slot.resumable.load(Ordering::Relaxed) == me && signals.quiet();
    let loaded = !resume && prepare(context, signals, ras);
    let setup = world::EntrySetup {
        // A resumed entry follows this VCPU's own on this CPU, with nothing run in between that
        // changes them: its HCR only changes through another exit (`first_pauth_use`), MDCR's
        // PMU bits only at boot, CPTR's TFP only through an FP exit or another VCPU's entry.
        controls: (!resume).then(|| world::Controls {
            hcr: context.arch.hcr,
            mdcr: GUEST_MDCR | super::pmu::guest_mdcr_bits(),
            cptr: if slot.fp.load(Ordering::Relaxed) == &*context.arch.fp as *const FpState as usize {
                CPTR_BASE
            } else {
                CPTR_BASE | CPTR_TFP
            },
        }),
        sp_el1: context.state.sp,
        stage2: loaded.then_some(world::Stage2Setup { vttbr: context.arch.vttbr, vmpidr: context.arch.vmpidr }),
    };
    ELR_EL2.set(context.pc);
    SPSR_EL2.set(pstate);
    // SAFETY: `setup` describes this VCPU's guest, or the CPU holds its stage-2 configuration
    // already (`load_el1`; its stage-2 root and VMID are live while the guest object is); the
    // EL1 and general registers are this VCPU's.
    let (kind, sp_el1) = unsafe { world::enter(&setup, &mut context.state.x, &mut context.exits, &mut context.traps) };
    if ras {
        // SAFETY: FEAT_RAS is present.
        context.arch.vdisr = unsafe { world::save_vdisr() };
    }

    let intact = context.arch.vgic.save();
    context.state.sp = sp_el1;
    context.pc = ELR_EL2.get();
    let pstate = SPSR_EL2.get();
    context.arch.pstate = pstate;
    context.state.cpsr = (pstate as u32) & crate::object::packet::CPSR_USER_MASK;
    let exit = decode(context, kind, signals);
    // Only a trapped access (a MEM or BELL exit) leaves everything `prepare` set up as it was;
    // handling it changes nothing of it (an exception delivered instead gives up the EL1
    // registers: `el1_mut`).
    let resumable = intact && context.arch.timers_resumable && matches!(exit, Exit::Access { .. });
    slot.resumable.store(if resumable { me } else { 0 }, Ordering::Relaxed);
    exit
}

/// Everything an entry sets up besides the general registers, PC and PSTATE: the debug state,
/// the EL1 registers (whether loaded is returned: the stage-2 registers must be too), the
/// timers and their interrupts, the list registers, DISR and the pointer-authentication keys.
#[inline(never)]
fn prepare(context: &mut Context, signals: &Signals, ras: bool) -> bool {
    // Pointer authentication is the guest's once it has used it (`first_pauth_use`, which
    // marks only a CPU with FEAT_PAuth).
    let pauth = context.arch.pauth_used;
    prepare_debug(&context.arch.debug);
    let loaded = context.arch.load_el1();
    // The guest's virtual timer: fired while it was out, it is an interrupt to inject (and its
    // level-triggered PPI must not exit the guest again); armed, its expiry exits the guest.
    // Its interrupt is level-triggered: while it sits in a list register (pending or being
    // handled) the same expiry is not raised again (F12: raising it while active made it
    // active-and-pending, and a guest that exited inside its handler took one expiry twice).
    // The list register is hardware-forwarded, and the physical PPI kept active while it is
    // there: the guest's deactivation deactivates the PPI, with no exit; the PPI then signals
    // (and exits the guest) only if the timer still holds its level.
    let fired = context.arch.virtual_timer_fired();
    if fired && !context.arch.vgic.holds(VIRTUAL_TIMER_INTID) {
        signals.raise_here(VIRTUAL_TIMER_INTID);
    }
    // The emulated physical timer: raised like the virtual one; armed, Belfry's EL2 timer
    // brings the guest out at its deadline.
    if context.arch.ptimer.enabled() {
        let now = super::timer::ticks();
        if context.arch.ptimer.fired(now) && !context.arch.vgic.holds(crate::ptimer::INTID) {
            signals.raise_here(crate::ptimer::INTID);
        }
        super::timer::set_guest_timer(context.arch.ptimer.deadline(now));
    } else {
        super::timer::set_guest_timer(None);
    }
    context.arch.vgic.fill(signals);
    let empty = context.arch.vgic.load(loaded);
    let ppi = match if empty { None } else { context.arch.vgic.forwarded(VIRTUAL_TIMER_INTID) } {
        Some(true) => TimerPpi::Forwarded,
        Some(false) => TimerPpi::Masked,
        None if fired => TimerPpi::Masked,
        None => TimerPpi::Armed,
    };
    crate::irq::set_virtual_timer_ppi(ppi, context.arch.vgic.hardware_placed());
    context.arch.timers_resumable = ppi != TimerPpi::Masked && !context.arch.ptimer.enabled();
    if ras {
        // SAFETY: FEAT_RAS is present; EL2 is between guest runs.
        unsafe { world::load_vdisr(context.arch.vdisr) };
    }
    if pauth {
        switch_pauth(context);
    }
    loaded
}

/// EL2 is about to sleep or has taken interrupts outside a guest: the next entry on this CPU
/// prepares everything (`Loaded::resumable`).
pub fn forget_resume() {
    this_cpu_loaded().resumable.store(0, Ordering::Relaxed);
}

/// Says why the guest exited. A virtual timer that fired is raised by the next `prepare` (a
/// resumed entry needs none: see [`Loaded::resumable`]), and here only for a WFI, which must
/// not sleep past it.
fn decode(context: &mut Context, kind: u64, signals: &Signals) -> Exit {
    match kind & 3 {
        1 | 2 => {
            context.exits.count(ExitKind::Interrupt);
            crate::irq::drain();
            return Exit::Interrupted;
        }
        3 => {
            return Exit::Unhandled {
                class: ExceptionClass::SError.bits(),
                syndrome: ESR_EL2.get() as u32,
                pc: context.pc,
            }
        }
        _ => {}
    }
    let esr = Esr(ESR_EL2.get());
    context.arch.instruction_len = if esr.is_32bit_instruction() { 4 } else { 2 };
    // The data abort first, without the class table: every MEM exit and page fault is one.
    if esr.class_bits() == ExceptionClass::DataAbortLowerEl.bits() {
        return decode_data_abort(context, esr);
    }
    let far = FAR_EL2.get();
    let ipa = fault_ipa(far);
    let unhandled = Exit::Unhandled { class: esr.class_bits(), syndrome: esr.iss(), pc: context.pc };
    match esr.class() {
        ExceptionClass::DataAbortLowerEl => decode_data_abort(context, esr),
        ExceptionClass::InstructionAbortLowerEl => match esr.instruction_abort_status() {
            Some(status) if is_stage2_fault(status) => Exit::InstructionFetch { address: ipa, far },
            _ => unhandled,
        },
        ExceptionClass::HvcAarch64 => Exit::Hypercall { smc: false },
        ExceptionClass::SmcAarch64 => {
            // A trapped SMC returns to the SMC itself.
            context.pc = context.pc.wrapping_add(4);
            Exit::Hypercall { smc: true }
        }
        ExceptionClass::WfiWfe => {
            context.skip_instruction = true;
            // ISS.TI: 0b00 WFI, 0b01 WFE, 0b10 WFIT, 0b11 WFET. WFE and WFET only yield.
            let ti = esr.iss() & 0b11;
            if ti & 1 == 1 {
                context.exits.count(ExitKind::Wait);
                return Exit::Interrupted;
            }
            if context.arch.virtual_timer_fired() && !context.arch.vgic.holds(VIRTUAL_TIMER_INTID) {
                signals.raise_here(VIRTUAL_TIMER_INTID);
            }
            // An armed timer ends the sleep at its deadline (an expired one was raised above).
            let (ctl, cval) = context.arch.virtual_timer();
            let mut deadline = (ctl & 0b11 == 0b01).then(|| counter_to_ns(cval));
            if context.arch.ptimer.enabled() {
                let now = super::timer::ticks();
                if context.arch.ptimer.fired(now) {
                    return Exit::Interrupted;
                }
                if let Some(at) = context.arch.ptimer.deadline(now) {
                    let at = counter_to_ns(at);
                    deadline = Some(deadline.map_or(at, |d| d.min(at)));
                }
            }
            if ti == 0b10 {
                // WFIT: the register holds a timeout on the virtual count (CNTVOFF_EL2 is 0);
                // one already past ends the wait at once.
                let timeout = context.state.register(((esr.iss() >> 5) & 0x1f) as u8);
                if super::timer::ticks() >= timeout {
                    return Exit::Interrupted;
                }
                let timeout = counter_to_ns(timeout);
                deadline = Some(deadline.map_or(timeout, |d| d.min(timeout)));
            }
            Exit::WaitForInterrupt { pending: context.arch.vgic.has_pending() || signals.any_pending(), deadline }
        }
        ExceptionClass::SystemRegister => {
            let access = SystemAccess::from_iss(esr.iss());
            let action = system_action(access);
            if !matches!(action, SystemAction::SendSgi) {
                context.exits.count(ExitKind::SystemRegister);
            }
            match action {
                SystemAction::SendSgi => {
                    context.skip_instruction = true;
                    Exit::SendSgi { value: context.state.register(access.rt) }
                }
                SystemAction::RazWi | SystemAction::IdRegister { .. } => {
                    // (The short exit answers these first; kept for completeness.)
                    answer_system(&mut context.state.x, access, action);
                    context.skip_instruction = true;
                    Exit::Emulated
                }
                SystemAction::Debug(register) => {
                    let (breakpoints, watchpoints) = world::debug_points();
                    let value = context.state.register(access.rt);
                    match context.arch.debug.access(register, access.read, value, breakpoints, watchpoints) {
                        Ok(read) => {
                            if let (Some(read), Some(x)) = (read, context.state.x.get_mut(usize::from(access.rt))) {
                                *x = read;
                            }
                            context.skip_instruction = true;
                            Exit::Emulated
                        }
                        Err(crate::debug::Undefined) => undefined(context, esr),
                    }
                }
                SystemAction::PhysicalTimer(register) => {
                    let now = super::timer::ticks();
                    if access.read {
                        let value = context.arch.ptimer.read(register, now);
                        if let Some(x) = context.state.x.get_mut(usize::from(access.rt)) {
                            *x = value;
                        }
                    } else {
                        let value = context.state.register(access.rt);
                        context.arch.ptimer.write(register, value, now);
                    }
                    context.skip_instruction = true;
                    Exit::Emulated
                }
                SystemAction::PointerAuthKey => first_pauth_use(context, esr),
                SystemAction::Undefined => undefined(context, esr),
            }
        }
        // A pointer-authentication instruction (HCR_EL2.API clear): the VCPU's first use.
        ExceptionClass::Other(0x09) => {
            context.exits.count(ExitKind::SystemRegister);
            first_pauth_use(context, esr)
        }
        // SVE, SME and the other features the guest's ID registers do not show: UNDEF, as on a
        // CPU without them (their traps are CPTR_EL2.TZ and TSM).
        ExceptionClass::Other(0x19 | 0x1d) => {
            context.exits.count(ExitKind::SystemRegister);
            undefined(context, esr)
        }
        ExceptionClass::FpAccess => {
            context.exits.count(ExitKind::Fp);
            switch_fp(context);
            Exit::Emulated
        }
        _ => unhandled,
    }
}

/// The ID registers (op0 3, op1 0, CRn 0) as the guest's CPU model shows them, at CRm * 8 +
/// op2: computed once from this CPU's (Belfry runs on homogeneous cores, whose ID registers
/// are the same on every CPU), so a trapped read is one load.
fn guest_id_registers() -> &'static [u64; 64] {
    static VALUES: spin::Once<[u64; 64]> = spin::Once::new();
    VALUES.call_once(|| {
        core::array::from_fn(|index| {
            let (crm, op2) = ((index / 8) as u8, (index % 8) as u8);
            crate::traps::guest_id_register(crm, op2, world::read_id_register(crm, op2))
        })
    })
}

/// Answers a system register access that needs nothing but the guest's general registers:
/// RAZ/WI and the ID registers of the guest's CPU model. `false` for every other action.
#[inline(always)]
fn answer_system(x: &mut [u64; 31], access: SystemAccess, action: SystemAction) -> bool {
    let value = match action {
        SystemAction::RazWi => 0,
        SystemAction::IdRegister { crm, op2 } => guest_id_registers()[usize::from(crm & 7) * 8 + usize::from(op2 & 7)],
        _ => return false,
    };
    if access.read {
        if let Some(x) = x.get_mut(usize::from(access.rt)) {
            *x = value;
        }
    }
    true
}

/// The short exit: called by `belfry_guest_sync` (`world.rs`) for an HVC, SMC or MSR/MRS
/// from an AArch64 guest, with only its general registers saved (and all reloaded if it answers:
/// it may write any of them); the guest's EL1 registers, timer, vGIC, FP and debug state are
/// all still live. It answers what
/// needs no more than the general registers and returns 0: the exit path then reloads them
/// and `eret`s straight back. Anything else returns 1, and the full exit follows.
///
/// Answered here: PSCI and SMCCC calls that need no power state ([`psci::answer`]) over HVC
/// or SMC, RAZ/WI registers and ID register reads. Each is counted as the full exit would count
/// it. An instruction emulated here completes a software step, as on the full path (SPSR.SS
/// cleared). Nothing here blocks, allocates, locks or logs, so a guest looping these calls
/// costs only its own time: a physical interrupt (the scheduler's timer, a kick) still exits it
/// the moment the `eret` unmasks it.
///
/// # Safety
/// Only from `belfry_guest_exit`: `x` is the running VCPU's general registers and `counts` its
/// exit counts, neither borrowed elsewhere while the guest runs.
#[unsafe(no_mangle)]
unsafe extern "C" fn belfry_short_exit(x: *mut [u64; 31], counts: *mut ExitCounts, class: u64) -> u64 {
    // SAFETY: per the contract: `run` handed both to `world::enter` and does not touch them until
    // it returns.
    let (x, counts) = unsafe { (&mut *x, &mut *counts) };
    // `class` is the exception class less 0x16 (HVC64): 0 HVC, 1 SMC, 2 MSR/MRS.
    if class == 2 {
        return short_system(x, counts);
    }
    let Some(value) = psci::answer(x[0], x[1]) else { return 1 };
    x[0] = value;
    counts.count(ExitKind::Hypercall);
    // A trapped SMC returns to the SMC itself; HVC's preferred return is past it.
    if class == 1 {
        skip_in_place();
    }
    0
}

/// The short doorbell: called by `belfry_guest_sync` (`world.rs`) for a data abort from an
/// AArch64 guest that its trap cache's doorbell filter let through, with only its caller-saved
/// general registers saved (it writes none; Rust keeps the others). A 4-byte store with a
/// valid syndrome that stage 2 refused is rung in place when its address is a doorbell
/// ([`TrapCache::ring_in_place`]), counted as a trap, the guest stepped past it (SPSR.SS
/// cleared), and 0 returned: the exit path reloads those registers and `eret`s. Anything else
/// returns 1 with nothing done, and the full exit follows. When the doorbell woke a waiter, a
/// thread made ready on this CPU gets its time slice as before any entry (`before_guest`):
/// there is no IPI to itself. Nothing here blocks, allocates or logs; the only locks are those
/// the wake-up takes, as on the full path.
///
/// # Safety
/// Only from `belfry_guest_sync`: `counts` is the running VCPU's exit counts and `traps` its
/// trap cache, neither borrowed elsewhere while the guest runs.
#[unsafe(no_mangle)]
unsafe extern "C" fn belfry_short_doorbell(counts: *mut ExitCounts, traps: *mut TrapCache) -> u64 {
    // SAFETY: per the contract: `run` handed both to `world::enter` and does not touch them until
    // it returns.
    let (counts, traps) = unsafe { (&mut *counts, &mut *traps) };
    let esr = Esr(ESR_EL2.get());
    let abort = DataAbort::from_iss(esr.iss());
    let store = abort.syndrome_valid && abort.write && !abort.stage1_walk && is_stage2_fault(abort.status);
    if !store || !esr.is_32bit_instruction() || SPSR_EL2.get() & AARCH32_STATE != 0 {
        return 1;
    }
    let ipa = fault_ipa(FAR_EL2.get());
    let Some(woke) = traps.ring_in_place(ipa) else { return 1 };
    counts.count(ExitKind::Trap);
    skip_in_place();
    if woke {
        crate::sync::before_guest();
    }
    0
}

/// The short exit's system register accesses (kept out of line, so the hypercall path above
/// saves no registers of its own).
#[inline(never)]
fn short_system(x: &mut [u64; 31], counts: &mut ExitCounts) -> u64 {
    let access = SystemAccess::from_iss(Esr(ESR_EL2.get()).iss());
    if !answer_system(x, access, system_action(access)) {
        return 1;
    }
    counts.count(ExitKind::SystemRegister);
    skip_in_place();
    0
}

/// Steps the guest past the 4-byte instruction that trapped, in ELR_EL2 itself: it completed,
/// so a software step is due after it (SPSR.SS cleared).
#[inline(always)]
fn skip_in_place() {
    ELR_EL2.set(ELR_EL2.get().wrapping_add(4));
    let pstate = SPSR_EL2.get();
    if pstate & SPSR_SS != 0 {
        SPSR_EL2.set(pstate & !SPSR_SS);
    }
}

/// A VCPU's first pointer-authentication instruction or key-register access: from the next
/// entry on its keys are switched in and its use of them no longer traps (HCR_EL2.API and APK
/// set); the instruction runs again, with nothing skipped. Without FEAT_PAuth neither traps to
/// EL2 (the guest takes its own UNDEF), but a trap that says otherwise gets an UNDEF too, and
/// so does one after the first use (API/APK are set then: re-running it would only loop).
fn first_pauth_use(context: &mut Context, esr: Esr) -> Exit {
    if !world::has_pauth() || context.arch.pauth_used {
        return undefined(context, esr);
    }
    context.arch.pauth_used = true;
    context.arch.hcr = GUEST_HCR | GUEST_HCR_PAUTH;
    Exit::Emulated
}

/// Injects an UNDEF for an instruction or register that does not exist for the guest, logging
/// the first one of each VCPU at warn.
fn undefined(context: &mut Context, esr: Esr) -> Exit {
    if !context.arch.undef_logged {
        context.arch.undef_logged = true;
        defmt::warn!(
            "guest: UNDEF injected for EC {=u8:#x} ISS {=u32:#x} at PC {=u64:#x} (a register or instruction the guest's CPU does not have; logged once per VCPU)",
            esr.class_bits(),
            esr.iss(),
            context.pc
        );
    }
    inject(context, GuestException::Undefined);
    Exit::Emulated
}

/// The guest's current stack pointer (register 31 as a base): SP_EL1 in EL1h, else SP_EL0.
pub fn stack_pointer(context: &mut Context) -> u64 {
    if context.arch.pstate & 0b1111 == 0b0101 {
        context.state.sp
    } else {
        context.arch.el1_current().sp_el0
    }
}

/// The guest-physical address of a data access at virtual `address`: the address itself with
/// the guest's MMU off, otherwise through its stage 1 (`AT S1E1R`). Only right after an exit,
/// while the guest's EL1 registers are still loaded on this CPU.
pub fn translate_data(context: &mut Context, address: u64) -> Option<u64> {
    guest_pc_address(context.arch.el1_current(), address)
}

/// The guest-physical address of the guest's PC: the PC itself with its MMU off, otherwise
/// through its stage-1 tables (`AT S1E1R`; its EL1 registers are still loaded right after an
/// exit).
fn guest_pc_address(el1: &world::El1State, pc: u64) -> Option<u64> {
    if el1.sctlr & 1 == 0 {
        return Some(pc);
    }
    let par = world::translate_stage1(pc);
    (par & 1 == 0).then_some((par & 0x000f_ffff_ffff_f000) | (pc & 0xfff))
}

/// The guest-physical address of the stage-2 fault being taken: HPFAR_EL2's page and the
/// offset in it of `far` (FAR_EL2, which the caller has read).
#[inline(always)]
fn fault_ipa(far: u64) -> u64 {
    ((HPFAR_EL2.get() & 0x0000_0fff_ffff_fff0) << 8) | (far & 0xfff)
}

/// [`decode`] of a data abort from the guest (EC 0x24): a stage-2 fault is an access to
/// emulate or a page to map; anything else is unhandled.
#[inline(always)]
fn decode_data_abort(context: &mut Context, esr: Esr) -> Exit {
    let far = FAR_EL2.get();
    let ipa = fault_ipa(far);
    let abort = DataAbort::from_iss(esr.iss());
    if !is_stage2_fault(abort.status) {
        return Exit::Unhandled { class: esr.class_bits(), syndrome: esr.iss(), pc: context.pc };
    }
    if abort.stage1_walk {
        return Exit::TableWalk { address: ipa, far, write: abort.write };
    }
    if !abort.syndrome_valid {
        return Exit::AccessWithoutSyndrome {
            address: ipa,
            write: abort.write,
            pc_address: guest_pc_address(context.arch.el1_current(), context.pc),
            aarch32: context.arch.pstate & AARCH32_STATE != 0,
            far,
        };
    }
    let value = if abort.write { context.state.register(abort.register) } else { 0 };
    let value = if abort.access_size == 8 { value } else { value & ((1 << (8 * u64::from(abort.access_size))) - 1) };
    let access = Access::from_syndrome(esr.iss(), value, far);
    Exit::Access { address: ipa, access }
}

fn is_stage2_fault(status: FaultStatus) -> bool {
    matches!(status, FaultStatus::Translation { .. } | FaultStatus::AccessFlag { .. } | FaultStatus::Permission { .. })
}

/// Delivers `exception` to the guest's own EL1: the next entry starts in its vector, with its
/// ESR_EL1, FAR_EL1, ELR_EL1 and SPSR_EL1 as the hardware would have set them.
pub fn inject(context: &mut Context, exception: GuestException) {
    let pstate =
        (context.arch.pstate & !u64::from(crate::object::packet::CPSR_USER_MASK)) | u64::from(context.state.cpsr);
    let thumb = context.arch.instruction_len == 2;
    let el1 = context.arch.el1_mut();
    let entry = crate::inject::entry(exception, context.pc, pstate, el1.vbar, thumb);
    el1.esr = entry.esr;
    if let Some(far) = entry.far {
        el1.far = far;
    }
    el1.elr = entry.elr;
    el1.spsr = entry.spsr;
    context.pc = entry.pc;
    context.arch.pstate = entry.pstate;
    context.state.cpsr = (entry.pstate as u32) & crate::object::packet::CPSR_USER_MASK;
    context.skip_instruction = false;
    context.writeback = None;
}

/// The guest touched FP/SIMD while another VCPU's registers were live: swap them.
fn switch_fp(context: &mut Context) {
    let slot = this_cpu_loaded();
    let me = &mut *context.arch.fp as *mut FpState;
    let _guard = slot.lock.lock();
    let owner = slot.fp.swap(me as usize, Ordering::Relaxed) as *mut FpState;
    // SAFETY: FP instructions at EL2 need CPTR_EL2.TFP clear; EL2 itself never uses FP.
    unsafe { world::set_cptr(CPTR_BASE) };
    if !owner.is_null() {
        // SAFETY: a registered owner is a live `FpState` (see `Loaded`) of a VCPU not running.
        unsafe { world::save_fp(&mut *owner) };
    }
    // SAFETY: our own FP state.
    unsafe { world::load_fp(&*me) };
}

/// Invalidates the stage-2 TLB entries of one guest page.
pub fn invalidate_guest_page(vttbr: u64, ipa: u64) {
    // SAFETY: switches VTTBR_EL2 to the guest's only to name its VMID for the invalidation and
    // restores it; TLB maintenance has no other effect.
    unsafe { world::invalidate_ipa(vttbr, ipa) }
}

/// Invalidates every TLB entry of a guest (its VMID is about to be reused).
pub fn invalidate_guest(vttbr: u64) {
    // SAFETY: as above.
    unsafe { world::invalidate_vmid(vttbr) }
}

pub use super::world::{invalidate_instruction_cache, zero_pages};

/// Makes `len` bytes at `address` (identity-mapped) visible to a guest running with its
/// caches off, and its instruction fetches.
pub fn clean_for_guest(address: u64, len: usize) {
    world::clean_invalidate_to_poc(address, len);
}

/// Makes CPU `cpu` leave the guest it runs (the wake SGI; a physical interrupt exits to EL2).
pub fn interrupt_cpu(cpu: usize) {
    crate::irq::wake(cpu);
}

/// The CPU this code runs on.
pub fn current_cpu() -> usize {
    cpu::index()
}
