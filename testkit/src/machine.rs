//! A virtual machine with a GIC: the VMM side of guests that program their interrupt
//! controller. One thread per VCPU serves it (`serve`): MEM packets on the guest's GICD and GICR
//! pages go to the [`Distributor`] model, VCPU INTERRUPT packets (GICv3 SGIs) become SGIs in the
//! model, STARTUP packets (PSCI CPU_ON) start a new thread with a new VCPU on the CPU the
//! machine's placement names, and every [`Action`] the model returns becomes a `vcpu_interrupt`
//! or a priority. Other packets go to the scenario's own handler.
//!
//! The guest's GIC sits where QEMU `virt` puts the host's: GICD at 0x0800_0000 (64 KiB on v3,
//! 4 KiB on v2, then the GICV page Belfry maps at 0x0801_0000), GICR at 0x080A_0000.
//!
//! Lock order: the distributor lock is never held across a call into the hypervisor.

use crate::suite::{call, complete, is_exit, Failure};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use el2::api::{OwnedHandle, Vcpu};
use el2::object::packet::Packet;
use el2::object::process::Process;
use vmm::distributor::{Action, Distributor, Version};
use vmm::fault::FaultView;

/// A scenario's handler for the packets the machine does not own: the machine, the VCPU's
/// index and the VCPU.
pub type Handler = fn(&Arc<Machine>, usize, &Vcpu<'static>, &Packet) -> Result<Flow, Failure>;

/// Guest-physical base of the guest's distributor.
pub const GUEST_GICD: u64 = 0x0800_0000;
/// Guest-physical base of the guest's redistributors (GICv3).
pub const GUEST_GICR: u64 = 0x080a_0000;
/// Bytes of one GICv3 redistributor (RD_base and SGI_base frames).
const GICR_STRIDE: u64 = 0x2_0000;
/// The MEM trap key of the guest's distributor page(s).
pub const GICD_KEY: u64 = 0x61cd;
const GICR_KEY: u64 = 0x61c7;
/// VCPUs a machine holds at most.
pub const MAX_VCPUS: usize = 8;

/// What a scenario's packet handler tells the serving loop.
pub enum Flow {
    Continue,
    /// The packet was the VCPU's last: its thread is done.
    Exit,
}

/// See the module documentation.
pub struct Machine {
    pub process: &'static Process,
    guest: u32,
    handles: [AtomicU32; MAX_VCPUS],
    pub distributor: spin::Mutex<Distributor>,
    /// The CPU that runs VCPU n's thread.
    placement: fn(usize) -> usize,
    threads: spin::Mutex<Vec<Arc<el2::thread::Thread>>>,
    /// STARTUP packets served (VCPUs started through PSCI CPU_ON).
    pub started: AtomicU32,
}

impl Machine {
    /// A machine for `guest` (a raw handle) with `vcpus` VCPUs and 64 SPIs; traps the guest's
    /// GIC pages.
    pub fn new(
        process: &'static Process,
        guest: &el2::api::Guest<'_>,
        vcpus: usize,
        placement: fn(usize) -> usize,
    ) -> Result<Arc<Self>, Failure> {
        let v3 = el2::irq::is_gicv3();
        let version = if v3 { Version::V3 } else { Version::V2 };
        let vcpus = vcpus.min(MAX_VCPUS);
        call("set_trap(gicd)", guest.set_mem_trap(GUEST_GICD, if v3 { 0x1_0000 } else { 0x1000 }, GICD_KEY))?;
        if v3 {
            call("set_trap(gicr)", guest.set_mem_trap(GUEST_GICR, GICR_STRIDE * vcpus as u64, GICR_KEY))?;
        }
        Ok(Arc::new(Self {
            process,
            guest: guest.handle.raw(),
            handles: [const { AtomicU32::new(0) }; MAX_VCPUS],
            distributor: spin::Mutex::new(Distributor::new(version, vcpus, 64)),
            placement,
            threads: spin::Mutex::new(Vec::new()),
            started: AtomicU32::new(0),
        }))
    }

    /// Whether the guest sees a GICv3.
    pub fn is_v3(&self) -> bool {
        el2::irq::is_gicv3()
    }

    /// Creates VCPU `index` on the calling thread at `entry` with `x0 = context` and the
    /// guest's GIC version in x20 (the test guests' convention), and gives it the priorities
    /// the guest has already programmed.
    pub fn create_vcpu(&self, index: usize, entry: u64, context: u64) -> Result<Vcpu<'static>, Failure> {
        let Some(slot) = self.handles.get(index) else { return Err(Failure::Mismatch("a VCPU index in range")) };
        let vcpu =
            Vcpu(OwnedHandle::new(self.process, call("vcpu_create", self.process.vcpu_create(self.guest, 0, entry))?));
        let mut state = call("read_state", vcpu.read_state())?;
        state.x[0] = context;
        state.x[20] = if self.is_v3() { 3 } else { 2 };
        call("write_state", vcpu.write_state(&state))?;
        let priorities: Vec<(u32, u8)> = self.distributor.lock().priorities(index).collect();
        for (vector, priority) in priorities {
            call("set_interrupt_priority", vcpu.set_interrupt_priority(vector, priority))?;
        }
        slot.store(vcpu.0.raw(), Ordering::Release);
        Ok(vcpu)
    }

    /// The handle of VCPU `index`, once created.
    pub fn vcpu(&self, index: usize) -> Option<u32> {
        self.handles.get(index).map(|h| h.load(Ordering::Acquire)).filter(|&h| h != 0)
    }

    /// Carries out the model's actions. An interrupt for a VCPU not yet created is dropped, as
    /// a GIC drops SGIs to a CPU that is not on.
    pub fn perform(&self, actions: &[Action]) -> Result<(), Failure> {
        for action in actions {
            match *action {
                Action::Interrupt { vcpu, vector } => {
                    if let Some(handle) = self.vcpu(vcpu) {
                        call("vcpu_interrupt", self.process.vcpu_interrupt(handle, vector))?;
                    }
                }
                Action::Sgi { vcpu, vector, sources } => {
                    if let Some(handle) = self.vcpu(vcpu) {
                        for source in (0..8u8).filter(|s| sources & (1 << s) != 0) {
                            call("vcpu_interrupt_sgi", self.process.vcpu_interrupt_sgi(handle, vector, source))?;
                        }
                    }
                }
                Action::Priority { vcpu, vector, priority } => {
                    if let Some(handle) = self.vcpu(vcpu) {
                        call(
                            "set_interrupt_priority",
                            self.process.vcpu_set_interrupt_priority(handle, vector, priority),
                        )?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs `operation` on the model and carries out what it asks for.
    pub fn with_distributor(
        &self,
        operation: impl FnOnce(&mut Distributor, &mut dyn FnMut(Action)),
    ) -> Result<(), Failure> {
        let mut actions = Vec::new();
        operation(&mut self.distributor.lock(), &mut |action| actions.push(action));
        self.perform(&actions)
    }

    /// Serves VCPU `index` (handle `vcpu`) until `handler` says it exited; packets the machine
    /// does not own go to `handler`.
    pub fn serve(self: &Arc<Self>, index: usize, vcpu: &Vcpu<'static>, handler: Handler) -> Result<(), Failure> {
        loop {
            let packet = call("vcpu_enter", vcpu.enter())?;
            match packet {
                Packet::VcpuInterrupt { mask, vector, .. } => {
                    self.with_distributor(|d, out| d.send_sgi(mask, u32::from(vector), out))?
                }
                Packet::VcpuStartup { target, entry, context, .. } => {
                    self.start(target as usize, entry, context, handler)?
                }
                Packet::Mem { key: key @ (GICD_KEY | GICR_KEY), mem } => {
                    let control = call("read_control", vcpu.read_control())?;
                    let mut view = FaultView::new(mem, control.pc);
                    let (size, data) = (view.size(), view.data());
                    let mut actions = Vec::new();
                    {
                        let mut d = self.distributor.lock();
                        let mut out = |action| actions.push(action);
                        match (key, view.is_read()) {
                            (GICD_KEY, true) => {
                                view.set_data(d.read_distributor(index, view.address() - GUEST_GICD, size))
                            }
                            (GICD_KEY, false) => {
                                d.write_distributor(index, view.address() - GUEST_GICD, size, data, &mut out)
                            }
                            (_, true) => view.set_data(d.read_redistributor(view.address() - GUEST_GICR, size)),
                            (_, false) => d.write_redistributor(view.address() - GUEST_GICR, size, data, &mut out),
                        }
                    }
                    self.perform(&actions)?;
                    complete(vcpu, &view)?;
                }
                packet => {
                    if is_exit(&packet) {
                        return Ok(());
                    }
                    if let Flow::Exit = handler(self, index, vcpu, &packet)? {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn start(self: &Arc<Self>, index: usize, entry: u64, context: u64, handler: Handler) -> Result<(), Failure> {
        // Belfry's PSCI only lets through a CPU_ON for an affinity a VCPU can have, once.
        if index >= MAX_VCPUS || self.vcpu(index).is_some() {
            defmt::warn!("machine: STARTUP for VCPU {=usize} ignored: no such VCPU or already started", index);
            return Ok(());
        }
        self.started.fetch_add(1, Ordering::Relaxed);
        let cpu = (self.placement)(index);
        defmt::info!("machine: PSCI CPU_ON for VCPU {=usize} at {=u64:#x}: a thread on cpu{=usize}", index, entry, cpu);
        let machine = self.clone();
        let thread = call(
            "thread_spawn",
            el2::thread::spawn(cpu, "vcpu", move || {
                let run = || -> Result<(), Failure> {
                    let vcpu = machine.create_vcpu(index, entry, context)?;
                    machine.serve(index, &vcpu, handler)
                };
                if let Err(failure) = run() {
                    defmt::error!("machine: VCPU {=usize} failed: {}", index, failure);
                }
            }),
        )?;
        self.threads.lock().push(thread.clone());
        // VCPU ids follow creation order: wait for this one before the guest starts another.
        while self.vcpu(index).is_none() {
            if thread.has_exited() {
                return Err(Failure::Mismatch("the started VCPU was created"));
            }
            el2::thread::yield_now();
        }
        Ok(())
    }

    /// Waits for every VCPU thread started through PSCI to end.
    pub fn join(&self) {
        let threads: Vec<_> = self.threads.lock().clone();
        for thread in &threads {
            crate::suite::join(thread);
        }
    }
}
