//! Bringing the machine up: the Rust half of boot, shared by every board.
//!
//! Boot CPU: describe the machine (device tree or built-in), build and enable the identity map,
//! start logging, set up the heap and frame allocator, identify the GIC, start every other CPU
//! and wait for each to report in, then run the requested `Scenario`. Other CPUs: enable the
//! MMU on the shared tables, report in, and wait.
//!
//! Nothing before `mmu::enable` takes a lock or touches data another CPU writes.

use crate::arch::aarch64::power::{self, PowerOff};
use crate::arch::aarch64::{boot as entry, cpu, mmu, timer};
use crate::machine::{DescriptionError, DescriptionSource, GicDescription, Machine, PsciConduit};
use crate::object::process::Process;
use crate::object::resource::{RSRC_KIND_HYPERVISOR, RSRC_KIND_MMIO};
use crate::object::Status;
use crate::{exit_code, logger, memory, report, thread};
use core::sync::atomic::{AtomicU64, Ordering};
use embedded_hal::delay::DelayNs;
use stage2::PhysAddr;

/// How a board starts its secondary CPUs.
#[derive(Clone, Copy, Debug)]
pub enum CpuStart {
    /// PSCI CPU_ON, through the conduit the device tree names.
    Psci,
    /// A spin table: the release address of each core, by MPIDR.Aff0.
    SpinTable(&'static [u64]),
}

/// What a board crate tells the shared boot code.
#[derive(Debug)]
pub struct Board {
    /// The board's name for the log.
    pub name: &'static str,
    /// The PL011 Belfry logs on, and its reference clock.
    pub uart: PhysAddr,
    pub uart_clock_hz: u32,
    /// Physical windows to map as Device memory: `[start, end)`.
    pub device_windows: &'static [(u64, u64)],
    /// The description to use when the loader passes no device tree.
    pub builtin: Option<fn() -> Machine>,
    /// An interrupt controller fixed by the SoC, preferred over the device tree's.
    pub fixed_gic: Option<GicDescription>,
    pub cpu_start: CpuStart,
    /// The BCM2835-family power manager (watchdog) that resets the board, when it has one;
    /// otherwise a run ends with PSCI SYSTEM_OFF.
    pub watchdog: Option<u64>,
    /// The test kit, in test firmware only (DESIGN.md section 7: the product image has none).
    pub test_kit: Option<&'static TestKit>,
    /// Runs the VMs of a guest bundle until every one has stopped (the VMM's process, its
    /// hypervisor resource, the CPUs online); `true` when all were started and powered off.
    pub run_bundle: Option<BundleRunner>,
}

/// Runs a bundle: its bytes, the VMM's process, its hypervisor resource, the CPUs online.
pub type BundleRunner = fn(&'static [u8], &'static Process, u32, usize) -> bool;

/// What test firmware adds to the boot path (the `testkit` crate provides it).
pub struct TestKit {
    /// Called before the MMU and the log with the command line (the early-panic scenario).
    pub early: fn(&str),
    /// Called once every CPU is online: `Some(status)` ends the run with it (a test scenario
    /// ran); `None` boots on as the product does.
    pub run: fn(&Machine, &'static VmmProcess) -> Option<u32>,
}

impl core::fmt::Debug for TestKit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("TestKit")
    }
}

/// Bit `n` is set once logical CPU `n` runs with its MMU on.
static ONLINE: AtomicU64 = AtomicU64::new(0);

enum Described {
    Tree(Machine),
    /// The board's own description; the error when a tree was passed but refused.
    BuiltIn(Machine, Option<DescriptionError>),
    Failed(DescriptionError),
}

fn describe(board: &Board, dtb: usize) -> Described {
    let from_tree = (dtb != 0).then(|| {
        // SAFETY: the loader put a device tree at `dtb`; its first 8 bytes hold magic and size.
        let header = unsafe { &*(dtb as *const [u8; 8]) };
        let size = crate::machine::device_tree_size(header).ok_or(DescriptionError::NotADeviceTree)?;
        if size > crate::fdt_check::MAX_SIZE {
            return Err(DescriptionError::Malformed(crate::fdt_check::FdtError::BadHeader));
        }
        // SAFETY: the header announces `size` bytes at `dtb`, which the loader placed in RAM
        // for Belfry; nothing else reads or writes it while boot describes the machine.
        let blob = unsafe { core::slice::from_raw_parts_mut(dtb as *mut u8, size) };
        // Untrusted input: checked, and its NOP tokens removed, before `fdt` reads it.
        crate::fdt_check::sanitize(blob).map_err(DescriptionError::Malformed)?;
        Machine::from_device_tree(blob, PhysAddr::new(dtb as u64))
    });
    let mut described = match (from_tree, board.builtin) {
        (Some(Ok(machine)), _) => Described::Tree(machine),
        (Some(Err(error)), None) => Described::Failed(error),
        (Some(Err(error)), Some(builtin)) => Described::BuiltIn(builtin(), Some(error)),
        (None, Some(builtin)) => Described::BuiltIn(builtin(), None),
        (None, None) => Described::Failed(DescriptionError::NotADeviceTree),
    };
    if let (Described::Tree(machine) | Described::BuiltIn(machine, _), Some(gic)) = (&mut described, board.fixed_gic) {
        machine.gic = Some(gic);
    }
    described
}

/// The boot CPU's path; `dtb` is what the loader left in x0.
pub fn primary(board: &'static Board, dtb: usize) -> ! {
    crate::early::set_uart(board.uart.raw());
    let described = describe(board, dtb);
    // The end of the run may come before the log is up: arm the power-off now.
    if let Described::Tree(machine) | Described::BuiltIn(machine, _) = &described {
        arm_power_off(board, machine);
        if let Some(kit) = board.test_kit {
            (kit.early)(machine.command_line.as_str());
        }
    }
    let machine = match &described {
        Described::Tree(machine) | Described::BuiltIn(machine, _) => Some(machine),
        Described::Failed(_) => None,
    };
    let ram = machine.into_iter().flat_map(|m| m.ram.as_slice().iter().map(|r| (r.start.raw(), r.end.raw())));
    // SAFETY: boot CPU, MMU off, no other CPU started yet.
    let built = unsafe { mmu::build(ram, board.device_windows.iter().copied()) };
    let tables = match built {
        Ok((root, tables)) => {
            // SAFETY: `root` is the complete identity map just built.
            unsafe { mmu::enable(root) };
            tables
        }
        // Without translation there is no log either; all that is left is the exit code.
        Err(error) => {
            crate::early::line(format_args!(
                "boot failed before the log: the identity map could not be built ({error:?})"
            ));
            power::exit(exit_code::BOOT_FAILED)
        }
    };
    // SAFETY: boot CPU, MMU on, the UART lies in a Device window of the map.
    unsafe { logger::init(board.uart, board.uart_clock_hz) };

    defmt::info!("Belfry {=str} on {=str}", env!("CARGO_PKG_VERSION"), board.name);
    let el = cpu::current_el();
    if el == 2 {
        defmt::info!("running at EL2: virtualization available");
    } else {
        defmt::warn!("entered at EL{=u8}: virtualization unavailable, guests cannot be created", el);
    }
    let machine = match described {
        Described::Tree(machine) => {
            if let DescriptionSource::DeviceTree(blob) = machine.source {
                defmt::info!(
                    "device tree at {=u64:#x} ({=u64} bytes): {=str}",
                    blob.start.raw(),
                    blob.size(),
                    machine.model.as_str()
                );
            }
            machine
        }
        Described::BuiltIn(machine, error) => {
            if dtb == 0 {
                defmt::warn!("no device tree from the loader: using the built-in description of {=str}", board.name);
            } else if let Some(DescriptionError::Malformed(reason)) = error {
                defmt::warn!(
                    "device tree at {=usize:#x} refused ({}): using the built-in description of {=str}",
                    dtb,
                    reason,
                    board.name
                );
            } else {
                defmt::warn!(
                    "no device tree at {=usize:#x} (x0 holds no valid FDT): using the built-in description of {=str}",
                    dtb,
                    board.name
                );
            }
            machine
        }
        Described::Failed(error) => {
            defmt::error!("no machine description: {}", error);
            report::stop(0, exit_code::BOOT_FAILED)
        }
    };
    defmt::info!("EL2 identity map: {=usize} translation tables, W^X", tables);
    report_memory(&machine);
    report_gic(&machine);
    if let Some(gic) = &machine.gic {
        // SAFETY: the GIC's frames are Device windows of the identity map, used only here.
        unsafe { crate::irq::init_boot(gic) };
    }
    if !crate::irq::init_cpu(0) {
        defmt::warn!("cpu0: no wake SGI from the GIC");
    }
    thread::init_cpu(0);
    crate::arch::aarch64::pmu::init_cpu();
    crate::arch::aarch64::world::init_debug_cpu();
    crate::arch::aarch64::world::init_stage2_cpu();
    vmm_process();
    let online = start_secondaries(board, &machine);
    defmt::info!("{=usize} of {=usize} CPUs online", online, machine.cpus().len());
    if online != machine.cpus().len() {
        report::stop(0, exit_code::BOOT_FAILED);
    }
    run(board, &machine)
}

/// How many CPUs are online.
pub fn online_cpus() -> usize {
    ONLINE.load(Ordering::Acquire).count_ones() as usize
}

/// Whether logical CPU `index` is online.
pub fn is_online(index: usize) -> bool {
    index < 64 && ONLINE.load(Ordering::Acquire) & (1 << index) != 0
}

/// Runs the bundle the loader passed, if there is one; the run's exit status.
fn run_bundle(board: &Board, machine: &Machine) -> u32 {
    let Some(initrd) = machine.initrd else {
        defmt::info!("no guest bundle (/chosen has no linux,initrd-start): nothing to run");
        return exit_code::SUCCESS;
    };
    let Some(region) = machine.bundle() else {
        defmt::error!("bundle refused: {=u64:#x}..{=u64:#x} is not inside RAM", initrd.start.raw(), initrd.end.raw());
        return exit_code::TEST_FAILED;
    };
    let (Some(run), Some(vmm)) = (board.run_bundle, VMM.get()) else {
        defmt::error!("this board has no VMM to run a bundle");
        return exit_code::BOOT_FAILED;
    };
    defmt::info!("bundle at {=u64:#x} ({=u64} bytes)", region.start.raw(), region.size());
    // SAFETY: the region lies inside RAM, which the identity map maps, and it is reserved: no
    // allocator hands it out and nothing in Belfry writes it, for the rest of the run.
    let blob = unsafe { core::slice::from_raw_parts(region.start.raw() as *const u8, region.size() as usize) };
    if run(blob, &vmm.process, vmm.hypervisor_resource, online_cpus()) {
        exit_code::SUCCESS
    } else {
        exit_code::VM_FAILED
    }
}

fn report_memory(machine: &Machine) {
    defmt::info!("RAM: {=u64} MiB in {=usize} region(s)", machine.ram.total_size() >> 20, machine.ram.len());
    for region in machine.ram.as_slice() {
        defmt::info!("  RAM {=u64:#011x}..{=u64:#011x}", region.start.raw(), region.end.raw());
    }
    for region in machine.reserved.as_slice() {
        defmt::info!("  reserved {=u64:#011x}..{=u64:#011x}", region.start.raw(), region.end.raw());
    }
    let image = mmu::image_layout();
    let Some(image_region) = crate::regions::Region::new(image.start, image.end) else {
        defmt::error!("the linker placed an empty image");
        report::stop(0, exit_code::BOOT_FAILED)
    };
    defmt::info!("  Belfry image {=u64:#011x}..{=u64:#011x}", image.start, image.end);
    let plan = machine.free_memory(image_region).ok().and_then(|free| memory::plan(&free));
    let Some(plan) = plan else {
        defmt::error!("no free RAM for the heap and frame allocator");
        report::stop(0, exit_code::BOOT_FAILED)
    };
    // SAFETY: the plan's regions are RAM outside the image and every reserved region, mapped
    // read-write, and handed out once.
    unsafe { memory::init(&plan) };
    let mut check = alloc::vec::Vec::with_capacity(64);
    check.extend(0..64u64);
    let frame = memory::alloc_frames(1);
    let (used, total) = memory::heap_usage();
    defmt::info!(
        "heap: {=u64} KiB at {=u64:#x} ({=usize} bytes in use); frames: {=u64} MiB free",
        plan.heap.size() >> 10,
        plan.heap.start.raw(),
        used,
        plan.frames.total_size() >> 20
    );
    match frame {
        Some(frame) => memory::free_frames(frame, 1),
        None => {
            defmt::error!("the frame allocator gave no page");
            report::stop(0, exit_code::BOOT_FAILED)
        }
    }
    if check.iter().sum::<u64>() != 2016 || total == 0 {
        defmt::error!("heap self-check failed");
        report::stop(0, exit_code::BOOT_FAILED)
    }
}

fn report_gic(machine: &Machine) {
    match machine.gic {
        Some(GicDescription::V3 { distributor, redistributors }) => {
            // SAFETY: the distributor frame is a Device window of the identity map.
            let gicd = unsafe { &*(distributor.raw() as *const gic::regs::DistributorV3) };
            match gic::probe_v3(gicd) {
                Ok(info) => {
                    defmt::info!(
                        "GICv3: GICD {=u64:#x}, GICR {=u64:#x}; ArchRev {=u8}, {=u32} interrupt IDs",
                        distributor.raw(),
                        redistributors.raw(),
                        info.arch_revision,
                        info.interrupt_lines,
                    );
                    if cpu::at_el2() {
                        let list_registers = gic::list_registers_v3(cpu::ich_vtr());
                        defmt::info!("GICv3 virtual CPU interface: {=u32} list registers", list_registers);
                    }
                }
                Err(error) => defmt::error!(
                    "GICv3 at {=u64:#x} does not identify: {}",
                    distributor.raw(),
                    defmt::Debug2Format(&error)
                ),
            }
        }
        Some(GicDescription::V2 { distributor, cpu_interface, hyp_interface, .. }) => {
            // SAFETY: the distributor frame is a Device window of the identity map.
            let gicd = unsafe { &*(distributor.raw() as *const gic::regs::DistributorV2) };
            match gic::probe_v2(gicd) {
                Ok(info) => {
                    defmt::info!(
                        "GICv2: GICD {=u64:#x}, GICC {=u64:#x}; ArchRev {=u8}, {=u32} interrupt IDs",
                        distributor.raw(),
                        cpu_interface.raw(),
                        info.arch_revision,
                        info.interrupt_lines,
                    );
                    if let Some(gich) = hyp_interface.filter(|_| cpu::at_el2()) {
                        // SAFETY: the GICH frame is a Device window of the identity map.
                        let gich = unsafe { &*(gich.raw() as *const gic::regs::VirtualInterfaceControlV2) };
                        let list_registers = gic::list_registers_v2(gich);
                        defmt::info!(
                            "GICv2 virtual interface (GICH {=u64:#x}): {=u32} list registers",
                            (gich as *const _ as u64),
                            list_registers
                        );
                    }
                }
                Err(error) => defmt::error!(
                    "GICv2 at {=u64:#x} does not identify: {}",
                    distributor.raw(),
                    defmt::Debug2Format(&error)
                ),
            }
        }
        None => defmt::warn!("no interrupt controller described"),
    }
}

/// The in-firmware VMM's process: its handle table holds the hypervisor resource Belfry hands
/// it at boot (and an MMIO resource, which `guest_create` refuses).
pub static VMM: spin::Once<VmmProcess> = spin::Once::new();

/// The VMM process and the resources it was given.
pub struct VmmProcess {
    pub process: Process,
    pub hypervisor_resource: u32,
    pub mmio_resource: u32,
}

fn vmm_process() {
    let process = Process::new(cpu::at_el2());
    let (Ok(hypervisor_resource), Ok(mmio_resource)) =
        (process.grant_resource(RSRC_KIND_HYPERVISOR), process.grant_resource(RSRC_KIND_MMIO))
    else {
        defmt::error!("cannot create the VMM's resources");
        report::stop(0, exit_code::BOOT_FAILED)
    };
    // Check the gate both ways before anything relies on it.
    let guest = process.guest_create(hypervisor_resource, 0);
    let refused = process.guest_create(mmio_resource, 0);
    defmt::info!(
        "VMM: hypervisor resource {=u32:#x}; guest_create with it: {}, with an MMIO resource: {}",
        hypervisor_resource,
        Status::from_result(&guest),
        Status::from_result(&refused)
    );
    if let Ok((guest, vmar)) = guest {
        let _ = process.handle_close(guest);
        let _ = process.handle_close(vmar);
    }
    VMM.call_once(|| VmmProcess { process, hypervisor_resource, mmio_resource });
}

/// How long the boot CPU waits for a started CPU to report: 500 000 polls of 10 us, 5 s.
const REPORT_POLLS: u32 = 500_000;
const REPORT_POLL_US: u32 = 10;

/// Starts every CPU of the description and waits for each to report; returns how many are
/// online, the boot CPU included.
fn start_secondaries(board: &Board, machine: &Machine) -> usize {
    let own = cpu::mpidr();
    if machine.cpus().first() != Some(&own) {
        defmt::warn!("the boot CPU (MPIDR {=u64:#x}) is not the first CPU described", own);
    }
    ONLINE.fetch_or(1, Ordering::AcqRel);
    for (index, &mpidr) in (1..).zip(machine.cpus().iter().filter(|&&mpidr| mpidr != own)) {
        if let Err(reason) = start_cpu(board, machine, index, mpidr) {
            defmt::error!("cpu{=usize} (MPIDR {=u64:#x}) did not start: {=str}", index, mpidr, reason);
        } else {
            let mut delay = timer::Delay;
            for _ in 0..REPORT_POLLS {
                if ONLINE.load(Ordering::Acquire) & (1 << index) != 0 {
                    break;
                }
                delay.delay_us(REPORT_POLL_US);
            }
            if ONLINE.load(Ordering::Acquire) & (1 << index) == 0 {
                defmt::error!("cpu{=usize} (MPIDR {=u64:#x}) did not report within 5 s", index, mpidr);
            }
        }
    }
    if machine.cpus_ignored() > 0 {
        defmt::warn!("{=usize} CPU(s) beyond Belfry's limit left off", machine.cpus_ignored());
    }
    ONLINE.load(Ordering::Acquire).count_ones() as usize
}

fn start_cpu(board: &Board, machine: &Machine, index: usize, mpidr: u64) -> Result<(), &'static str> {
    match board.cpu_start {
        CpuStart::Psci => {
            let entry = entry::secondary_entry_psci();
            let result = match machine.psci {
                Some(PsciConduit::Smc) => smccc::psci::cpu_on::<smccc::Smc>(mpidr, entry, index as u64),
                Some(PsciConduit::Hvc) => smccc::psci::cpu_on::<smccc::Hvc>(mpidr, entry, index as u64),
                None => return Err("the device tree names no PSCI conduit"),
            };
            result.map_err(|_| "PSCI CPU_ON failed")
        }
        CpuStart::SpinTable(release) => {
            let address = *release.get((mpidr & 0xff) as usize).ok_or("no spin-table slot for this core")?;
            // SAFETY: the release address is a spin-table slot in low RAM, mapped read-write; the
            // parked core polls it with its caches off, hence the clean to the point of coherency.
            unsafe { (address as *mut u64).write_volatile(entry::secondary_entry_spin_table()) };
            cpu::clean_to_poc(address as usize);
            cpu::send_event();
            Ok(())
        }
    }
}

/// A secondary CPU's path, from the boot code.
pub fn secondary(cpu_index: usize) -> ! {
    mmu::invalidate_own_stack(cpu_index);
    // SAFETY: the boot CPU built the complete map before starting this CPU.
    unsafe { mmu::enable(mmu::root()) };
    let sgi = crate::irq::init_cpu(cpu_index);
    thread::init_cpu(cpu_index);
    crate::arch::aarch64::pmu::init_cpu();
    crate::arch::aarch64::world::init_debug_cpu();
    crate::arch::aarch64::world::init_stage2_cpu();
    defmt::info!("cpu{=usize} online: MPIDR {=u64:#x}, EL{=u8}", cpu_index, cpu::mpidr(), cpu::current_el());
    if !sgi {
        defmt::warn!("cpu{=usize}: no wake SGI from the GIC", cpu_index);
    }
    ONLINE.fetch_or(1 << cpu_index, Ordering::AcqRel);
    thread::serve_forever()
}

/// Powers the machine off at the end of the run when the command line asks for it.
fn arm_power_off(board: &Board, machine: &Machine) {
    if machine.command_line.has_word("belfry.exit=poweroff") {
        let how = match (board.watchdog, machine.psci) {
            (Some(base), _) => Some(PowerOff::Bcm2835Watchdog(base)),
            (None, Some(PsciConduit::Smc)) => Some(PowerOff::PsciSmc),
            (None, Some(PsciConduit::Hvc)) => Some(PowerOff::PsciHvc),
            (None, None) => None,
        };
        if let Some(how) = how {
            power::arm(how);
        }
    }
}

fn run(board: &Board, machine: &Machine) -> ! {
    let vmm = VMM.get();
    match (board.test_kit, vmm) {
        (Some(kit), Some(vmm)) => {
            if let Some(status) = (kit.run)(machine, vmm) {
                finish(status)
            }
        }
        _ => {
            if let Some(word) =
                machine.command_line.as_str().split_ascii_whitespace().find(|w| w.starts_with("scenario="))
            {
                defmt::warn!("{=str} ignored: scenarios are in the test firmware, not the product image", word);
            }
        }
    }
    finish(run_bundle(board, machine))
}

/// Ends the run with `status`: a power-off where the command line armed one.
fn finish(status: u32) -> ! {
    if status == exit_code::SUCCESS {
        defmt::info!("boot complete");
    }
    power::exit(status)
}
