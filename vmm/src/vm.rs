//! A VM built from a bundle, and the serving loop of each of its VCPUs.
//!
//! [`Vm::start`] takes one VM of the bundle through the VMM's pipeline: the loader's plan, the
//! host-CPU placement, guest memory charged in full (a VM that does not fit is refused with the
//! numbers), the images copied in through the VMO's checked writes, the device tree (the
//! bundle's, or one generated from [`crate::layout`]), the GIC and the bus trapped, and the
//! boot VCPU started on its CPU with x0 = the device tree, x1..x3 = 0, at EL1h with the MMU
//! off. Each VCPU has one thread and one serving loop; PSCI CPU_ON starts another.
//!
//! PSCI SYSTEM_OFF and SYSTEM_RESET are outcomes of the VM, not errors: the VCPU that asks
//! records it, kicks every other VCPU, and each loop ends; the runner then reports the VM
//! powered off, or builds it again from the bundle. CPU_OFF ends only its VCPU.

use crate::bus::{Bus, Device, Trigger};
use crate::console_input::Input;
use crate::devices::{self, Backend, GuestRam, Peer, Virtio, VmoStore, Window};
use crate::devicetree::{self, Description};
use crate::distributor::{Action, Distributor, Version};
use crate::fault::FaultView;
use crate::layout::*;
use crate::loader::{self, LoadError};
use crate::pl011::{Output, Pl011};
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use bundle::{ConsoleKind, VmSpec};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use el2::api::{Guest, OwnedHandle, Port, Vcpu, Vmo};
use el2::object::exit::{EXIT_KINDS, EXIT_KIND_NAMES};
use el2::object::packet::Packet;
use el2::object::process::{Process, BELFRY_VMO_CHARGED};
use el2::object::psci::STOP;
use el2::object::vmar::{VM_PERM_EXECUTE, VM_PERM_READ, VM_PERM_WRITE};
use el2::object::{Status, ZxResult};
use el2::thread::Thread;

/// MEM trap keys.
const GICD_KEY: u64 = 0x61cd;
const GICR_KEY: u64 = 0x61c7;
const BUS_KEY: u64 = 0xb05;
/// BELL keys of the virtio doorbells: this plus the slot.
const DOORBELL_KEY: u64 = 0xd00b_0000;
/// The most VCPUs a VM has.
const MAX_VCPUS: usize = bundle::fit::MAX_VCPUS as usize;

/// Why a VM was not started.
#[derive(Clone, Copy, Debug)]
pub enum Refusal {
    /// The bundle's configuration is refused.
    Spec(bundle::VmError),
    /// Its images do not fit its memory.
    Load(LoadError),
    /// Its placement names a CPU the board does not have.
    Placement { cpu: u32, online: usize },
    /// Its memory cannot be charged: what it asks and what is left, in bytes.
    Memory { asked: u64, available: u64 },
    /// A hypervisor call failed while building it.
    Hypervisor(&'static str, Status),
    /// Its device tree could not be generated.
    DeviceTree,
}

impl defmt::Format for Refusal {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            Refusal::Spec(error) => defmt::write!(f, "{}", defmt::Display2Format(error)),
            Refusal::Load(error) => defmt::write!(f, "{}", defmt::Display2Format(error)),
            Refusal::Placement { cpu, online } => {
                defmt::write!(f, "its placement names cpu{=u32}, but {=usize} CPUs are online", cpu, online)
            }
            Refusal::Memory { asked, available } => {
                defmt::write!(f, "it asks for {=u64} MiB of memory, {=u64} MiB are left", asked >> 20, available >> 20)
            }
            Refusal::Hypervisor(what, status) => defmt::write!(f, "{=str}: {}", what, status),
            Refusal::DeviceTree => defmt::write!(f, "its device tree could not be generated"),
        }
    }
}

/// How a VM ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Ending {
    Running = 0,
    PoweredOff = 1,
    Reset = 2,
    Failed = 3,
}

impl Ending {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::PoweredOff,
            2 => Self::Reset,
            3 => Self::Failed,
            _ => Self::Running,
        }
    }
}

/// The VM's console: a PL011 whose output goes to Belfry's log tagged with the VM's name
/// (`console NAME: LINE` for a line, `console NAME~ TEXT` for text without a newline), and
/// whose receive FIFO takes the user's keystrokes when the VM has the focus.
struct Console {
    uart: Pl011,
    vm: Arc<str>,
    /// Bytes transmitted, and that count at the last tick: unchanged means the guest is quiet.
    transmitted: u64,
    at_last_tick: u64,
}

pub(crate) fn emit(vm: &str, output: Output<'_>) {
    // Bytes that are not UTF-8 (a guest's binary garbage) are shown escaped, never dropped.
    let (text, bytes) = match output {
        Output::Line(bytes) => (true, bytes),
        Output::Piece(bytes) => (false, bytes),
    };
    // A guest's output may be dropped when the board's UART is behind (a flood must not hold
    // up the VMs or crowd out Belfry's own lines); what was dropped is said, by Belfry.
    el2::console::guest_output(|| match (core::str::from_utf8(bytes), text) {
        (Ok(text), true) => defmt::info!("console {=str}: {=str}", vm, text),
        (Ok(text), false) => defmt::info!("console {=str}~ {=str}", vm, text),
        (Err(_), true) => defmt::info!("console {=str}: {=[u8]:a}", vm, bytes),
        (Err(_), false) => defmt::info!("console {=str}~ {=[u8]:a}", vm, bytes),
    });
    let dropped = el2::console::dropped();
    if dropped > 0 {
        defmt::warn!("console: {=u64} guest console line(s) dropped: the board's UART is behind", dropped);
    }
}

impl Device for Console {
    fn read(&mut self, offset: u64, _: u8) -> u64 {
        u64::from(self.uart.read(offset))
    }

    fn write(&mut self, offset: u64, _: u8, value: u64) {
        if offset == crate::pl011::UARTDR {
            self.transmitted += 1;
        }
        if let Some(output) = self.uart.write(offset, value as u32) {
            emit(&self.vm, output);
        }
    }

    fn interrupt(&mut self) -> bool {
        self.uart.interrupt()
    }

    fn receive(&mut self, bytes: &[u8]) -> usize {
        self.uart.receive(bytes)
    }

    fn tick(&mut self) {
        if self.transmitted == self.at_last_tick {
            if let Some(output) = self.uart.flush() {
                emit(&self.vm, output);
            }
        }
        self.at_last_tick = self.transmitted;
    }
}

/// A running VM.
pub struct Vm {
    pub name: Arc<str>,
    process: &'static Process,
    guest: Guest<'static>,
    memory: Arc<Vmo<'static>>,
    memory_size: u64,
    /// The virtio devices, by slot.
    devices: Vec<Arc<Virtio>>,
    console: ConsoleKind,
    /// The virtio-net link the VM is on.
    pub link: Option<alloc::string::String>,
    dtb: u64,
    v3: bool,
    distributor: spin::Mutex<Distributor>,
    bus: Bus,
    vcpus: [AtomicU32; MAX_VCPUS],
    vcpu_count: usize,
    placement: Vec<usize>,
    ending: AtomicU8,
    threads: spin::Mutex<Vec<Arc<Thread>>>,
    /// The exits of the VCPUs that have ended, by kind (`BELFRY_VCPU_EXITS`).
    exits: [AtomicU64; EXIT_KINDS],
    /// EL2 instructions on every CPU when the VM was built (None without a PMU).
    el2_at_start: Option<u64>,
}

fn hv<T>(what: &'static str, result: ZxResult<T>) -> Result<T, Refusal> {
    result.map_err(|status| Refusal::Hypervisor(what, status))
}

impl Vm {
    /// Builds the VM `spec` and starts its boot VCPU; `online` is how many host CPUs run.
    pub fn start(
        spec: &VmSpec<'static>,
        process: &'static Process,
        resource: u32,
        online: usize,
    ) -> Result<Arc<Self>, Refusal> {
        let plan = loader::plan(spec).map_err(Refusal::Load)?;
        let placement: Vec<usize> = match &spec.cpus {
            Some(cpus) => {
                if let Some(&cpu) = cpus.iter().find(|&&cpu| cpu as usize >= online) {
                    return Err(Refusal::Placement { cpu, online });
                }
                cpus.iter().map(|&cpu| cpu as usize).collect()
            }
            None => (0..online).collect(),
        };
        let v3 = el2::irq::is_gicv3();
        let guest = hv("guest_create", Guest::create(process, resource))?;
        let memory = match process.vmo_create(spec.memory, BELFRY_VMO_CHARGED) {
            Ok(handle) => Vmo(OwnedHandle::new(process, handle)),
            Err(Status::NO_MEMORY) => {
                let available = el2::object::frames::available_pages() * el2::object::frames::PAGE_SIZE;
                return Err(Refusal::Memory { asked: spec.memory, available });
            }
            Err(status) => return Err(Refusal::Hypervisor("vmo_create", status)),
        };
        let rwx = VM_PERM_READ | VM_PERM_WRITE | VM_PERM_EXECUTE;
        hv("vmar_map", guest.map(RAM_BASE, &memory, rwx, spec.memory))?;
        hv("vmo_write(kernel)", memory.write(plan.kernel - RAM_BASE, spec.kernel))?;
        let initrd = match (plan.initrd, spec.ramdisk) {
            (Some(at), Some(data)) => {
                hv("vmo_write(initrd)", memory.write(at - RAM_BASE, data))?;
                Some((at, at + data.len() as u64))
            }
            _ => None,
        };
        let name: Arc<str> = Arc::from(spec.name.as_str());
        let memory = Arc::new(memory);
        let devices = Self::devices(spec, process, &name)?;
        let generated;
        let tree = match spec.fdt {
            Some(fdt) => fdt,
            None => {
                let description = Description {
                    vcpus: spec.vcpus,
                    memory: spec.memory,
                    gic_v3: v3,
                    cmdline: &spec.cmdline,
                    initrd,
                    virtio_slots: devices.len() as u32,
                };
                generated = devicetree::generate(&description).map_err(|_| Refusal::DeviceTree)?;
                &generated
            }
        };
        if tree.len() as u64 > DTB_SLOT {
            return Err(Refusal::Load(LoadError::DeviceTreeTooLarge));
        }
        hv("vmo_write(dtb)", memory.write(plan.dtb - RAM_BASE, tree))?;

        let mut bus = Bus::new();
        let console = Console { uart: Pl011::new(), vm: name.clone(), transmitted: 0, at_last_tick: 0 };
        // Cannot overlap: the bus is empty.
        let _ = bus.add(UART, UART_SIZE, Some((UART_SPI, Trigger::Level)), Box::new(console));
        hv("set_trap(uart)", guest.set_mem_trap(UART, UART_SIZE, BUS_KEY))?;
        if !devices.is_empty() {
            // The slots' pages are trapped whole: the slots without a device read as empty
            // virtio-mmio windows (device ID 0), as QEMU's do.
            let pages = (devices.len() as u64 * VIRTIO_STRIDE).div_ceil(PAGE);
            let slots = pages * PAGE / VIRTIO_STRIDE;
            for slot in 0..slots as u32 {
                let base = VIRTIO_BASE + u64::from(slot) * VIRTIO_STRIDE;
                let (line, device): (_, Box<dyn Device>) = match devices.get(slot as usize) {
                    Some(device) => (Some((VIRTIO_SPI_BASE + slot, Trigger::Level)), Box::new(Window(device.clone()))),
                    None => (None, devices::empty_slot()),
                };
                // Cannot overlap: the slots are apart, and apart from the UART.
                let _ = bus.add(base, VIRTIO_STRIDE, line, device);
            }
            hv("set_trap(virtio)", guest.set_mem_trap(VIRTIO_BASE, pages * PAGE, BUS_KEY))?;
            for device in &devices {
                let key = DOORBELL_KEY + u64::from(device.slot);
                let notify = device.base() + crate::virtio_mmio::QUEUE_NOTIFY;
                hv("set_trap(doorbell)", guest.set_bell_words(notify, 4, &device.port, key))?;
            }
        }
        let vcpu_count = spec.vcpus as usize;
        hv("set_trap(gicd)", guest.set_mem_trap(GICD, if v3 { GICD_SIZE_V3 } else { GICD_SIZE_V2 }, GICD_KEY))?;
        if v3 {
            hv("set_trap(gicr)", guest.set_mem_trap(GICR, GICR_STRIDE * vcpu_count as u64, GICR_KEY))?;
        }
        let version = if v3 { Version::V3 } else { Version::V2 };
        let vm = Arc::new(Self {
            name,
            process,
            guest,
            memory,
            memory_size: spec.memory,
            devices,
            console: spec.console,
            link: spec.net.clone(),
            dtb: plan.dtb,
            v3,
            distributor: spin::Mutex::new(Distributor::new(version, vcpu_count, SPIS)),
            bus,
            vcpus: [const { AtomicU32::new(0) }; MAX_VCPUS],
            vcpu_count,
            placement,
            ending: AtomicU8::new(Ending::Running as u8),
            threads: spin::Mutex::new(Vec::new()),
            exits: [const { AtomicU64::new(0) }; EXIT_KINDS],
            el2_at_start: el2::arch::aarch64::pmu::all_cpus(),
        });
        defmt::info!(
            "vm {=str}: {=u32} VCPU(s), {=u64} MiB at {=u64:#x} ({=u64} MiB left), kernel at {=u64:#x}, device tree at {=u64:#x}",
            &*vm.name,
            spec.vcpus,
            spec.memory >> 20,
            RAM_BASE,
            (el2::object::frames::available_pages() * el2::object::frames::PAGE_SIZE) >> 20,
            plan.kernel,
            plan.dtb
        );
        vm.start_devices(online).map_err(|status| Refusal::Hypervisor("thread_spawn(device)", status))?;
        vm.spawn(0, plan.entry, plan.dtb).map_err(|status| Refusal::Hypervisor("thread_spawn", status))?;
        Ok(vm)
    }

    /// The virtio devices `spec` asks for, slot by slot: the console, the disk, the network
    /// card. A disk's writes are kept in a VMO charged to the VM (its size).
    fn devices(
        spec: &VmSpec<'static>,
        process: &'static Process,
        name: &Arc<str>,
    ) -> Result<Vec<Arc<Virtio>>, Refusal> {
        let mut devices = Vec::new();
        let mut add = |kind: &'static str, transport: crate::virtio_mmio::Transport, backend: Backend| {
            let port = Port::create(process).map_err(|status| Refusal::Hypervisor("port_create", status))?;
            let slot = devices.len() as u32;
            devices.push(Arc::new(Virtio::new(slot, kind, transport, backend, port, name.clone())));
            Ok::<(), Refusal>(())
        };
        if spec.console == ConsoleKind::Virtio {
            let console = crate::virtio_console::Console::new();
            add("console", console.transport(), Backend::Console(console))?;
        }
        if let Some(image) = spec.disk {
            let size = (image.len() as u64).next_multiple_of(PAGE);
            let store = match process.vmo_create(size, BELFRY_VMO_CHARGED) {
                Ok(handle) => Vmo(OwnedHandle::new(process, handle)),
                Err(Status::NO_MEMORY) => {
                    let available = el2::object::frames::available_pages() * el2::object::frames::PAGE_SIZE;
                    return Err(Refusal::Memory { asked: spec.memory + size, available });
                }
                Err(status) => return Err(Refusal::Hypervisor("vmo_create(disk)", status)),
            };
            let disk = crate::virtio_blk::Overlay::new(image, VmoStore(store));
            let blk = crate::virtio_blk::Blk::new(disk, name.as_bytes());
            add("blk", blk.transport(), Backend::Blk(blk))?;
        }
        if spec.net.is_some() {
            let index = NEXT_MAC.fetch_add(1, Ordering::Relaxed);
            add("net", crate::virtio_net::transport(crate::virtio_net::mac(index)), Backend::Net(None))?;
        }
        Ok(devices)
    }

    /// Wires each device's interrupt line and starts its thread: on a CPU the VM's VCPUs do
    /// not use when there is one (a doorbell then never waits for a VCPU's time slice).
    fn start_devices(self: &Arc<Self>, online: usize) -> ZxResult {
        let cpu = (0..online).find(|cpu| !self.placement.contains(cpu)).unwrap_or(self.placement[0]);
        for device in &self.devices {
            let vm = Arc::downgrade(self);
            let base = device.base();
            device.line.call_once(|| {
                Box::new(move || {
                    if let Some(vm) = vm.upgrade() {
                        vm.raise_device_line(base);
                    }
                })
            });
            let vm = self.clone();
            let device = device.clone();
            let thread = el2::thread::spawn(cpu, "virtio", move || vm.serve_device(&device))?;
            self.threads.lock().push(thread);
        }
        Ok(())
    }

    /// Raises the SPI of the device at `base` if its line is up.
    fn raise_device_line(&self, base: u64) {
        if let Some(spi) = self.bus.poke(base, |_| {}) {
            if let Err((what, status)) = self.with_distributor(|d, out| d.raise_spi(32 + spi, out)) {
                defmt::error!("vm {=str}: device interrupt: {=str}: {}", &*self.name, what, status);
            }
        }
    }

    /// A device's thread: serves its queues whenever its doorbell rings or it is kicked, until
    /// the VM ends.
    fn serve_device(&self, device: &Virtio) {
        loop {
            let doorbell = match device.port.wait(el2::sync::INFINITE) {
                Ok(Packet::User { key: devices::STOP, .. }) | Err(_) => return,
                Ok(Packet::Bell { .. }) => true,
                Ok(_) => {
                    device.kicked();
                    false
                }
            };
            if self.ending() != Ending::Running {
                return;
            }
            let mut ram = GuestRam { vmo: &self.memory, size: self.memory_size };
            device.serve(&mut ram, &mut |output| emit(&self.name, output), doorbell);
            device.raise_line();
        }
    }

    /// The VM's RAM, for a peer's network card.
    fn peer(&self) -> Option<Peer> {
        let device = self.devices.iter().find(|d| d.kind == "net")?;
        Some(Peer { device: device.clone(), ram: self.memory.clone(), size: self.memory_size })
    }

    /// Joins the network cards of `a` and `b` (a link).
    pub fn connect(a: &Vm, b: &Vm) {
        if let (Some(pa), Some(pb)) = (a.peer(), b.peer()) {
            *pa.device.peer.lock() = Some(pb.clone());
            *pb.device.peer.lock() = Some(pa);
            defmt::info!("net: vm {=str} and vm {=str} are linked", &*a.name, &*b.name);
        }
    }

    /// Logs what the VM cost once every VCPU has ended: its exits by kind, and the EL2
    /// instructions every CPU ran since it was built (Belfry's own work while it ran: its
    /// exits, its VMM, the rest of the firmware), when the PMU counts them.
    fn report(&self) {
        let mut line = alloc::string::String::new();
        for (name, count) in EXIT_KIND_NAMES.iter().zip(&self.exits) {
            if !line.is_empty() {
                line.push_str(", ");
            }
            let _ = core::fmt::Write::write_fmt(&mut line, format_args!("{name} {}", count.load(Ordering::Relaxed)));
        }
        defmt::info!("vm {=str}: exits: {=str}", &*self.name, line.as_str());
        // Without a counting PMU (QEMU counts instructions only under -icount) there is no figure.
        if let (Some(start), Some(now)) = (self.el2_at_start, el2::arch::aarch64::pmu::all_cpus()) {
            let counted = now.wrapping_sub(start);
            if counted > 0 {
                defmt::info!("vm {=str}: el2 instructions {=u64}", &*self.name, counted);
            }
        }
    }

    /// How the VM ended, or `Running`.
    pub fn ending(&self) -> Ending {
        Ending::from_u8(self.ending.load(Ordering::Acquire))
    }

    /// Whether every VCPU thread has ended.
    pub fn stopped(&self) -> bool {
        self.threads.lock().iter().all(|t| t.has_exited())
    }

    /// Hands `bytes` of console input to the VM's UART; returns how many it took.
    fn console_input(&self, bytes: &[u8]) -> usize {
        if self.console == ConsoleKind::Virtio {
            if let Some(device) = self.devices.iter().find(|d| d.kind == "console") {
                let taken = match &mut *device.backend.lock() {
                    Backend::Console(console) => console.receive(bytes),
                    _ => 0,
                };
                if taken > 0 {
                    device.kick();
                }
                return taken;
            }
        }
        let mut taken = 0;
        let raise = self.bus.poke(UART, |d| taken = d.receive(bytes));
        if let Some(spi) = raise {
            if let Err((what, status)) = self.with_distributor(|d, out| d.raise_spi(32 + spi, out)) {
                defmt::error!("vm {=str}: console interrupt: {=str}: {}", &*self.name, what, status);
            }
        }
        taken
    }

    /// The periodic tick of the VM's devices.
    fn tick(&self) {
        let _ = self.bus.poke(UART, |d| d.tick());
        for device in &self.devices {
            if let Backend::Console(console) = &mut *device.backend.lock() {
                console.tick(&mut |output| emit(&self.name, output));
            }
        }
    }

    /// Records how the VM ends (the first outcome wins) and kicks every VCPU out of the guest.
    fn end(&self, ending: Ending) {
        let first = self
            .ending
            .compare_exchange(Ending::Running as u8, ending as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        ENDED.notify_all();
        if !first {
            return;
        }
        for device in &self.devices {
            // The link is cut at both ends (the peer keeps no part of this VM), and the
            // device's thread ends.
            // Our end's lock is released before the peer's is taken (two VMs ending at once
            // each cut their end first).
            let peer = device.peer.lock().take();
            if let Some(peer) = peer {
                peer.device.peer.lock().take();
            }
            let _ = device.port.queue(devices::STOP, [0; 4]);
        }
        for slot in &self.vcpus {
            let handle = slot.load(Ordering::Acquire);
            if handle != 0 {
                // A VCPU whose thread already ended has closed its handle: nothing to kick.
                let _ = self.process.vcpu_kick(handle);
            }
        }
    }

    /// Starts VCPU `index`'s thread on its CPU, entering at `entry` with `x0`.
    fn spawn(self: &Arc<Self>, index: usize, entry: u64, x0: u64) -> ZxResult {
        let cpu = self.placement[index % self.placement.len()];
        let vm = self.clone();
        let thread = el2::thread::spawn(cpu, "vcpu", move || vm.run_vcpu(index, entry, x0))?;
        self.threads.lock().push(thread.clone());
        // VCPU ids follow creation order: wait for this one before another is started.
        while self.vcpus[index].load(Ordering::Acquire) == 0 && !thread.has_exited() {
            el2::thread::yield_now();
        }
        Ok(())
    }

    fn run_vcpu(self: Arc<Self>, index: usize, entry: u64, x0: u64) {
        if let Err((what, status)) = Self::serve(&self, index, entry, x0) {
            defmt::error!("vm {=str}: VCPU {=usize}: {=str}: {}", &*self.name, index, what, status);
            self.end(Ending::Failed);
        }
        // The runner looks again (this may have been the VM's last VCPU).
        ENDED.notify_all();
    }

    fn serve(self: &Arc<Self>, index: usize, entry: u64, x0: u64) -> Result<(), (&'static str, Status)> {
        let call = |what: &'static str| move |status| (what, status);
        let vcpu = Vcpu::create(&self.guest, entry).map_err(call("vcpu_create"))?;
        let mut state = vcpu.read_state().map_err(call("read_state"))?;
        state.x[..4].copy_from_slice(&[x0, 0, 0, 0]);
        vcpu.write_state(&state).map_err(call("write_state"))?;
        let priorities: Vec<(u32, u8)> = self.distributor.lock().priorities(index).collect();
        for (vector, priority) in priorities {
            vcpu.set_interrupt_priority(vector, priority).map_err(call("set_interrupt_priority"))?;
        }
        self.vcpus[index].store(vcpu.0.raw(), Ordering::Release);
        let result = self.serve_loop(index, &vcpu);
        self.vcpus[index].store(0, Ordering::Release);
        if let Ok(counts) = vcpu.read_exits() {
            for (total, count) in self.exits.iter().zip(counts.0) {
                total.fetch_add(count, Ordering::Relaxed);
            }
        }
        result
    }

    fn serve_loop(self: &Arc<Self>, index: usize, vcpu: &Vcpu<'static>) -> Result<(), (&'static str, Status)> {
        // The access served last, completed with the next entry (`FaultView::finish_and_enter`).
        let mut served: Option<FaultView> = None;
        loop {
            if self.ending() != Ending::Running {
                return Ok(());
            }
            let entered = crate::fault::enter_after(served.take(), vcpu);
            let packet = match entered {
                Ok(packet) => packet,
                // Only the VCPU's own CPU_OFF answers STOP: said even when the VM is ending too.
                Err(STOP) => {
                    defmt::info!("vm {=str}: VCPU {=usize} off (PSCI CPU_OFF)", &*self.name, index);
                    return Ok(());
                }
                Err(_) if self.ending() != Ending::Running => return Ok(()),
                Err(Status::UNAVAILABLE) => {
                    defmt::info!("vm {=str}: powered off (PSCI SYSTEM_OFF from VCPU {=usize})", &*self.name, index);
                    self.end(Ending::PoweredOff);
                    return Ok(());
                }
                Err(Status::CANCELED) => {
                    defmt::info!("vm {=str}: reset (PSCI SYSTEM_RESET from VCPU {=usize})", &*self.name, index);
                    self.end(Ending::Reset);
                    return Ok(());
                }
                Err(status) => return Err(("vcpu_enter", status)),
            };
            // A MEM exit is read from the packet's words; anything else is decoded.
            if let Some(mut view) = FaultView::of(&packet, 0) {
                self.serve_mem(index, packet.key, &mut view)?;
                served = Some(view);
                continue;
            }
            match packet.decode() {
                Packet::VcpuInterrupt { mask, vector, .. } => {
                    self.with_distributor(|d, out| d.send_sgi(mask, u32::from(vector), out))?
                }
                Packet::VcpuStartup { target, entry, context, .. } => self.start_secondary(target, entry, context),
                _ => return Err(("an exit no device serves", Status::NOT_SUPPORTED)),
            }
        }
    }

    fn serve_mem(&self, index: usize, key: u64, view: &mut FaultView) -> Result<(), (&'static str, Status)> {
        let (address, size, data, read) = (view.address(), view.size(), view.data(), view.is_read());
        match key {
            GICD_KEY | GICR_KEY => {
                let mut actions = Vec::new();
                {
                    let mut d = self.distributor.lock();
                    let mut out = |action| actions.push(action);
                    match (key, read) {
                        (GICD_KEY, true) => view.set_data(d.read_distributor(index, address - GICD, size)),
                        (GICD_KEY, false) => d.write_distributor(index, address - GICD, size, data, &mut out),
                        (_, true) => view.set_data(d.read_redistributor(address - GICR, size)),
                        (_, false) => d.write_redistributor(address - GICR, size, data, &mut out),
                    }
                }
                self.perform(&actions)
            }
            _ => {
                let served = self.bus.access(address, size, (!read).then_some(data));
                let Some(served) = served else { return Err(("an access outside every device", Status::NOT_FOUND)) };
                if read {
                    view.set_data(served.value);
                }
                if let Some(spi) = served.raise {
                    self.with_distributor(|d, out| d.raise_spi(32 + spi, out))?;
                }
                Ok(())
            }
        }
    }

    fn with_distributor(
        &self,
        operation: impl FnOnce(&mut Distributor, &mut dyn FnMut(Action)),
    ) -> Result<(), (&'static str, Status)> {
        let mut actions = Vec::new();
        operation(&mut self.distributor.lock(), &mut |action| actions.push(action));
        self.perform(&actions)
    }

    /// Carries out the model's actions; an interrupt for a VCPU not started is dropped, as a
    /// GIC drops one for a CPU that is off.
    fn perform(&self, actions: &[Action]) -> Result<(), (&'static str, Status)> {
        for action in actions {
            match *action {
                Action::Interrupt { vcpu, vector } => {
                    if let Some(handle) = self.vcpu(vcpu) {
                        match self.process.vcpu_interrupt(handle, vector) {
                            // The VCPU's thread ended between the lookup and the call.
                            Ok(()) | Err(Status::BAD_HANDLE) => {}
                            Err(status) => return Err(("vcpu_interrupt", status)),
                        }
                    }
                }
                Action::Sgi { vcpu, vector, sources } => {
                    if let Some(handle) = self.vcpu(vcpu) {
                        for source in (0..8u8).filter(|s| sources & (1 << s) != 0) {
                            match self.process.vcpu_interrupt_sgi(handle, vector, source) {
                                Ok(()) | Err(Status::BAD_HANDLE) => {}
                                Err(status) => return Err(("vcpu_interrupt_sgi", status)),
                            }
                        }
                    }
                }
                Action::Priority { vcpu, vector, priority } => {
                    if let Some(handle) = self.vcpu(vcpu) {
                        match self.process.vcpu_set_interrupt_priority(handle, vector, priority) {
                            Ok(()) | Err(Status::BAD_HANDLE) => {}
                            Err(status) => return Err(("set_interrupt_priority", status)),
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn vcpu(&self, index: usize) -> Option<u32> {
        self.vcpus.get(index).map(|h| h.load(Ordering::Acquire)).filter(|&h| h != 0)
    }

    fn start_secondary(self: &Arc<Self>, target: u64, entry: u64, context: u64) {
        let index = target as usize;
        // Belfry's PSCI lets through a CPU_ON only for an affinity the guest's VCPUs can have,
        // once per VCPU; the VM may have fewer than the hypervisor allows.
        if index >= self.vcpu_count || self.vcpu(index).is_some() {
            defmt::warn!("vm {=str}: CPU_ON for VCPU {=usize} ignored: the VM has no such VCPU", &*self.name, index);
            return;
        }
        defmt::info!("vm {=str}: PSCI CPU_ON for VCPU {=usize} at {=u64:#x}", &*self.name, index, entry);
        if let Err(status) = self.spawn(index, entry, context) {
            defmt::error!("vm {=str}: VCPU {=usize} not started: {}", &*self.name, index, status);
            self.end(Ending::Failed);
        }
    }

    /// The guest-physical address of the device tree the boot VCPU got.
    pub fn device_tree(&self) -> u64 {
        self.dtb
    }

    /// Whether the VM's GIC is a GICv3.
    pub fn is_v3(&self) -> bool {
        self.v3
    }
}

/// Notified when a VM ends, so the runner looks at once.
static ENDED: el2::thread::WaitQueue = el2::thread::WaitQueue::new();
/// The last byte of the next network card's MAC address.
static NEXT_MAC: AtomicU8 = AtomicU8::new(1);
/// The runner's period: console input, idle console output, stopped VMs (10 ms).
const TICK_NS: i64 = 10_000_000;
/// Reads the board's console and hands what was typed to the VMs of `running`
/// ([`crate::console_input`]: the focused VM, a backlog per VM).
fn poll_input(input: &mut Input, running: &[(usize, Arc<Vm>)]) {
    let mut buffer = [0u8; 256];
    let count = el2::console::read(&mut buffer);
    input.feed(&buffer[..count], running, |vm| defmt::info!("console: input goes to vm {=str}", &*vm.name));
    input.drain(running, |vm, bytes| vm.console_input(bytes));
}

/// Joins the network cards of the running VMs that name the same link, two per link (a third
/// stays unplugged, which the log says); with `only`, the links of that VM alone (restarted).
fn link(running: &[(usize, Arc<Vm>)], only: Option<&Arc<Vm>>) {
    for (i, (_, a)) in running.iter().enumerate() {
        let Some(name) = &a.link else { continue };
        let mut peers = running.iter().filter(|(_, b)| b.link.as_ref() == Some(name));
        let (first, second, third) = (peers.next(), peers.next(), peers.next());
        let (Some((_, first)), Some((_, second))) = (first, second) else { continue };
        if Arc::ptr_eq(first, a) && (only.is_none_or(|o| Arc::ptr_eq(o, first) || Arc::ptr_eq(o, second))) {
            Vm::connect(first, second);
        }
        if let Some((_, extra)) = third {
            if Arc::ptr_eq(extra, a) && only.is_none_or(|o| Arc::ptr_eq(o, extra)) {
                defmt::warn!("net: vm {=str} stays unplugged: link {=str} joins two VMs", &*extra.name, name.as_str());
            }
        }
        let _ = i;
    }
}

/// Runs every VM of the bundle `blob` until each has stopped; `true` when every VM was started
/// and powered off. Meanwhile the boot CPU's thread serves the console: every 10 ms it hands
/// the user's keystrokes to the focused VM (the first; Ctrl-A n moves the focus) and lets each
/// console pass on output its guest left without a newline.
pub fn run_bundle(blob: &'static [u8], process: &'static Process, resource: u32, online: usize) -> bool {
    let parsed = match bundle::parse(blob) {
        Ok(parsed) => parsed,
        Err(error) => {
            defmt::error!("bundle refused: {}", defmt::Display2Format(&error));
            return false;
        }
    };
    defmt::info!("bundle: {=usize} VM(s) in {=usize} bytes", parsed.entries.len(), blob.len());
    let mut all_good = true;
    let mut running: Vec<(usize, Arc<Vm>)> = Vec::new();
    for (index, entry) in parsed.entries.iter().enumerate() {
        let started = match &entry.vm {
            Ok(spec) => Vm::start(spec, process, resource, online),
            Err(error) => Err(Refusal::Spec(*error)),
        };
        match started {
            Ok(vm) => running.push((index, vm)),
            Err(refusal) => {
                defmt::error!("vm {=str}: refused: {}", entry.name.as_str(), refusal);
                all_good = false;
            }
        }
    }
    link(&running, None);
    if let Some((_, vm)) = running.first() {
        defmt::info!("console: input goes to vm {=str} (Ctrl-A n: the next VM)", &*vm.name);
    }
    let mut input = Input::new();
    while !running.is_empty() {
        let ticket = ENDED.ticket();
        poll_input(&mut input, &running);
        for (_, vm) in &running {
            vm.tick();
        }
        let mut index = 0;
        while index < running.len() {
            let vm = &running[index].1;
            if !vm.stopped() {
                index += 1;
                continue;
            }
            let (spec_index, vm) = running.remove(index);
            vm.tick();
            vm.report();
            let ending = vm.ending();
            let name = vm.name.clone();
            drop(vm);
            match ending {
                Ending::PoweredOff => defmt::info!("vm {=str}: stopped: powered off", &*name),
                Ending::Reset => {
                    let Ok(spec) = &parsed.entries[spec_index].vm else { continue };
                    match Vm::start(spec, process, resource, online) {
                        Ok(vm) => {
                            running.insert(index, (spec_index, vm.clone()));
                            link(&running, Some(&vm));
                            // The new VM is looked at on the next pass, not now: one that
                            // resets before its start returns (under QEMU's round-robin, a
                            // VCPU thread on another CPU can run to its reset before this CPU
                            // runs again) would otherwise be restarted again and again here,
                            // and the VMs after it never reaped.
                            index += 1;
                        }
                        Err(refusal) => {
                            defmt::error!("vm {=str}: not restarted: {}", spec.name.as_str(), refusal);
                            all_good = false;
                        }
                    }
                }
                Ending::Failed => {
                    defmt::error!("vm {=str}: stopped: failed", &*name);
                    all_good = false;
                }
                Ending::Running => {
                    defmt::warn!("vm {=str}: stopped: every VCPU is off", &*name);
                    all_good = false;
                }
            }
        }
        ENDED.wait(ticket, el2::thread::now() + TICK_NS);
    }
    defmt::info!("bundle: every VM has stopped");
    all_good
}
