//! Guest scenarios for the system tests: DESIGN.md Appendix A (Zircon's hypervisor tests) and
//! Belfry's own. Each runs one guest program and checks what the API reports, exactly; the
//! log lines it writes are what the host-side test asserts on.

use crate::guests;
use crate::machine::{Flow, Machine, GICD_KEY, GUEST_GICD};
use alloc::sync::Arc;
use el2::api::{Guest, Port, Vcpu, Vmo};
use el2::object::packet::{Packet, VcpuState};
use el2::object::process::Process;
use el2::object::vmar::{VM_PERM_EXECUTE, VM_PERM_READ, VM_PERM_WRITE};
use el2::object::{Status, ZxResult};
use vmm::distributor::GICD_SGIR;
use vmm::fault::FaultView;

const PAGE: u64 = 4096;
const GUEST_MEMORY: u64 = 16 << 20;
pub(crate) const EXIT_TEST_ADDR: u64 = 0xfff000;
const TRAP_ADDR: u64 = 0xffe000;
const TRAP_KEY: u64 = 0x1234;
const RWX: u32 = VM_PERM_READ | VM_PERM_WRITE | VM_PERM_EXECUTE;

/// Why a scenario failed.
#[derive(Debug)]
pub enum Failure {
    /// A call returned an unexpected status.
    Status(&'static str, Status),
    /// A value was not the expected one.
    Mismatch(&'static str),
    /// No scenario has this name.
    Unknown,
}

impl defmt::Format for Failure {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            Failure::Status(what, status) => defmt::write!(f, "{=str}: {}", what, status),
            Failure::Mismatch(what) => defmt::write!(f, "{=str}", what),
            Failure::Unknown => defmt::write!(f, "no such guest scenario"),
        }
    }
}

pub(crate) type Outcome = Result<(), Failure>;

pub(crate) fn call<T>(what: &'static str, result: ZxResult<T>) -> Result<T, Failure> {
    result.map_err(|status| Failure::Status(what, status))
}

pub(crate) fn check(what: &'static str, ok: bool) -> Outcome {
    if ok {
        Ok(())
    } else {
        Err(Failure::Mismatch(what))
    }
}

/// The Zircon fixture: 16 MiB of RAM mapped RWX at 0 with `code` at 0, and a MEM trap (key 0)
/// on the exit page.
pub(crate) struct Fixture<'p> {
    pub(crate) guest: Guest<'p>,
    pub(crate) memory: Vmo<'p>,
}

pub(crate) fn fixture<'p>(process: &'p Process, resource: u32, code: &[u8]) -> Result<Fixture<'p>, Failure> {
    let guest = call("guest_create", Guest::create(process, resource))?;
    let memory = call("vmo_create", Vmo::create(process, GUEST_MEMORY))?;
    call("vmo_write", memory.write(0, code))?;
    call("vmar_map", guest.map(0, &memory, RWX, GUEST_MEMORY))?;
    call("set_trap(exit)", guest.set_mem_trap(EXIT_TEST_ADDR, PAGE, 0))?;
    Ok(Fixture { guest, memory })
}

/// A VCPU at guest-physical 0 with the host's GIC generation in x20 (3 or 2), the test
/// guests' convention for how to reach their interrupt controller.
pub(crate) fn gic_vcpu<'p>(guest: &Guest<'p>) -> Result<Vcpu<'p>, Failure> {
    let vcpu = call("vcpu_create", Vcpu::create(guest, 0))?;
    let mut state = call("read_state", vcpu.read_state())?;
    state.x[20] = if el2::irq::is_gicv3() { 3 } else { 2 };
    call("write_state", vcpu.write_state(&state))?;
    Ok(vcpu)
}

pub(crate) fn is_exit(packet: &Packet) -> bool {
    matches!(packet, Packet::Mem { key: 0, mem } if mem.addr == EXIT_TEST_ADDR && !mem.read)
}

/// Runs `code` in the Zircon fixture on a VCPU at 0 until its exit; returns its registers.
fn run_to_exit(process: &Process, resource: u32, code: &[u8]) -> Result<[u64; 31], Failure> {
    let f = fixture(process, resource, code)?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    expect_exit(&vcpu)?;
    Ok(call("read_state", vcpu.read_state())?.x)
}

fn expect_exit(vcpu: &Vcpu<'_>) -> Outcome {
    let packet = call("vcpu_enter", vcpu.enter())?;
    check("the guest's store to the exit address", is_exit(&packet))
}

/// Starts a thread on `cpu` that waits a millisecond (so the guest is running), then acts.
fn after_a_millisecond(
    cpu: usize,
    name: &'static str,
    action: impl FnOnce() + Send + 'static,
) -> Result<alloc::sync::Arc<el2::thread::Thread>, Failure> {
    call(
        "spawn",
        el2::thread::spawn(cpu, name, move || {
            let deadline = el2::sync::now() + 1_000_000;
            while el2::sync::now() < deadline {
                core::hint::spin_loop();
            }
            action();
        }),
    )
}

/// Lets the CPU's other threads run until `thread` has finished.
pub(crate) fn join(thread: &el2::thread::Thread) {
    while !thread.has_exited() {
        el2::thread::yield_now();
    }
}

/// Applies a served MEM fault to the VCPU: the read's register and the skip of the
/// instruction.
pub(crate) fn complete(vcpu: &Vcpu<'_>, view: &FaultView) -> Outcome {
    call("complete the access", view.finish(vcpu))
}

/// Runs the scenario `name` and logs how it went; `true` when it passed. Boards hand this to
/// Belfry's boot code for `scenario=guest:NAME`.
pub fn run_reported(name: &str, process: &'static Process, resource: u32) -> bool {
    match run(name, process, resource) {
        Ok(()) => {
            defmt::info!("guest scenario {=str}: passed", name);
            true
        }
        Err(failure) => {
            defmt::error!("guest scenario {=str} failed: {}", name, failure);
            false
        }
    }
}

/// Runs the scenario `name`.
pub fn run(name: &str, process: &'static Process, resource: u32) -> Outcome {
    match name {
        "vcpu-enter" => vcpu_enter(process, resource),
        "set-trap-mem" => set_trap_mem(process, resource),
        "set-trap-bell" => set_trap_bell(process, resource),
        "set-trap-bell-drop" => set_trap_bell_drop(process, resource),
        "bell-words" => bell_words(process, resource),
        "close-port" => close_port(process, resource),
        "read-write-state" => read_write_state(process, resource),
        "psci-system-off" => psci(process, resource, guests::psci_system_off(), Status::UNAVAILABLE),
        "psci-system-reset" => psci(process, resource, guests::psci_system_reset(), Status::CANCELED),
        "write-state-io" => write_state_io(process, resource),
        "interrupt-out-of-bounds" => interrupt_out_of_bounds(process, resource),
        "vmar-protect" => vmar_protect(process, resource),
        "set-way" => set_way(process, resource),
        "touch-all-memory" => touch_all_memory(process, resource),
        "stray" => stray(process, resource),
        "kick" => kick(process, resource),
        "trap-after-touch" => trap_after_touch(process, resource),
        "mmio" => mmio(process, resource),
        "mmio-pair" => mmio_pair(process, resource),
        "demo" => demo(process, resource),
        "fp" => fp(process, resource),
        "pauth-keys" => pauth_keys(process, resource),
        "mmu" => mmu(process, resource),
        "isolation" => isolation(process, resource),
        "interrupt" => interrupt(process, resource),
        "wfi-timer" => wfi_timer(process, resource),
        "wfi-pending" => wfi_pending(process, resource),
        "wfi-aarch32" => wfi_aarch32(process, resource),
        "fp-aarch32" => fp_aarch32(process, resource),
        "thread-reuse" => thread_reuse(process, resource),
        "bell-max-user" => bell_max_user(process, resource),
        "thread-exits" => thread_exits(process, resource),
        "interrupt-running" => interrupt_running(process, resource),
        "many-interrupts" => many_interrupts(process, resource),
        "self-ipi" => self_ipi(process, resource),
        "ping-pong" => ping_pong(process, resource),
        "timer-ticks" => timer_ticks(process, resource),
        "all-active" => all_active(process, resource),
        "priority-order" => priority_order(process, resource),
        "physical-timer" => physical_timer(process, resource),
        "bench" => crate::bench::run(process, resource),
        "nested" => nested(process, resource),
        "smp4" => smp4(process, resource, 4),
        "smp4-on-2" => smp4(process, resource, 2),
        "cpu-on-storm" => cpu_on_storm(process, resource),
        "residue" => residue(process, resource),
        "trap-fetch" => trap_fetch(process, resource),
        "wfit" => wfit(process, resource),
        "semihosting" => semihosting(process, resource),
        "mmio-straddle" => mmio_straddle(process, resource),
        "timer-level" => timer_level(process, resource),
        "timer-reasserted" => timer_reasserted(process, resource),
        "timer-during-mem" => timer_during_mem(process, resource),
        "active-pending" => active_pending(process, resource),
        "sysreg-sweep" => crate::attack::sysreg_sweep(process, resource),
        "short-exit-registers" => crate::attack::short_exit_registers(process, resource),
        "psci-sweep" => crate::attack::psci_sweep(process, resource),
        "doorbell-flood" => crate::attack::doorbell_flood(process, resource),
        "doorbell-same-cpu" => crate::attack::doorbell_same_cpu(process, resource),
        "random-words" => crate::attack::random_words(process, resource),
        "gic-fuzz" => crate::attack::gic_fuzz(process, resource),
        "interrupt-flood" => crate::attack::interrupt_flood(process, resource),
        "aarch32-stm" => aarch32_stm(process, resource),
        _ => Err(Failure::Unknown),
    }
}

fn vcpu_enter(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::vcpu_enter())?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    let packet = call("vcpu_enter", vcpu.enter())?;
    if let Packet::Mem { key, mem } = packet {
        defmt::info!(
            "vcpu-enter: MEM packet key {=u64:#x}, addr {=u64:#x}, size {=u8}, read {=bool}, xt {=u8}",
            key,
            mem.addr,
            mem.access_size,
            mem.read,
            mem.xt
        );
    }
    check("MEM packet for the exit store", is_exit(&packet))
}

fn set_trap_mem(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::set_trap_mem())?;
    call("set_trap(mem)", f.guest.set_mem_trap(TRAP_ADDR, PAGE, TRAP_KEY))?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    let packet = call("vcpu_enter", vcpu.enter())?;
    let Packet::Mem { key, mem } = packet else { return Err(Failure::Mismatch("a MEM packet")) };
    check(
        "MEM packet from the trap: key, address, an 8-byte write of XZR",
        (key, mem.addr, mem.access_size, mem.xt, mem.read, mem.data) == (TRAP_KEY, TRAP_ADDR, 8, 31, false, 0),
    )?;
    defmt::info!("set-trap-mem: MEM packet key {=u64:#x} at {=u64:#x}, then a clean exit", TRAP_KEY, TRAP_ADDR);
    expect_exit(&vcpu)
}

fn set_trap_bell(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::set_trap_bell())?;
    let port = call("port_create", Port::create(process))?;
    call("set_trap(bell)", f.guest.set_bell_trap(TRAP_ADDR, PAGE, &port, TRAP_KEY))?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    expect_exit(&vcpu)?;
    let bell = call("port_wait", port.wait(0))?;
    check("BELL packet", bell == Packet::Bell { key: TRAP_KEY, addr: TRAP_ADDR })?;
    defmt::info!(
        "set-trap-bell: the guest ran to its exit; the port holds BELL key {=u64:#x} addr {=u64:#x}",
        TRAP_KEY,
        TRAP_ADDR
    );
    Ok(())
}

/// Belfry's doorbell words (`BELFRY_GUEST_TRAP_BELL_WORDS`): a word of a MEM trap's page rings
/// the port and the guest continues; the word next to it is still MEM; the API's checks.
fn bell_words(process: &Process, resource: u32) -> Outcome {
    const BELL_KEY: u64 = 0xbe11;
    let f = fixture(process, resource, guests::bell_words())?;
    let port = call("port_create", Port::create(process))?;
    check(
        "words outside a MEM trap: NOT_FOUND",
        f.guest.set_bell_words(TRAP_ADDR + 0x50, 4, &port, BELL_KEY) == Err(Status::NOT_FOUND),
    )?;
    call("set_trap(mem)", f.guest.set_mem_trap(TRAP_ADDR, PAGE, TRAP_KEY))?;
    check(
        "a word not 4-aligned: INVALID_ARGS",
        f.guest.set_bell_words(TRAP_ADDR + 0x52, 4, &port, BELL_KEY) == Err(Status::INVALID_ARGS),
    )?;
    call("set_trap(bell words)", f.guest.set_bell_words(TRAP_ADDR + 0x50, 4, &port, BELL_KEY))?;
    check(
        "overlapping words: ALREADY_EXISTS",
        f.guest.set_bell_words(TRAP_ADDR + 0x4c, 8, &port, BELL_KEY) == Err(Status::ALREADY_EXISTS),
    )?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    let packet = call("vcpu_enter", vcpu.enter())?;
    let Packet::Mem { key, mem } = packet else { return Err(Failure::Mismatch("a MEM packet")) };
    check(
        "the word after the doorbell is MEM: key, address, a 4-byte write of 9",
        (key, mem.addr, mem.access_size, mem.read, mem.data) == (TRAP_KEY, TRAP_ADDR + 0x54, 4, false, 9),
    )?;
    expect_exit(&vcpu)?;
    let first = call("port_wait", port.wait(0))?;
    let second = call("port_wait", port.wait(0))?;
    let bell = Packet::Bell { key: BELL_KEY, addr: TRAP_ADDR + 0x50 };
    check("the first ring: a BELL packet for the word", first == bell)?;
    check("the byte store into the word rang too", second == Packet::Bell { key: BELL_KEY, addr: TRAP_ADDR + 0x52 })?;
    check("nothing else on the port", port.wait(0) == Err(Status::TIMED_OUT))?;
    defmt::info!(
        "bell-words: word {=u64:#x} rang BELL key {=u64:#x} twice (4- and 1-byte stores), {=u64:#x} stayed MEM",
        TRAP_ADDR + 0x50,
        BELL_KEY,
        TRAP_ADDR + 0x54
    );
    Ok(())
}

fn set_trap_bell_drop(process: &Process, resource: u32) -> Outcome {
    let port = call("port_create", Port::create(process))?;
    {
        let f = fixture(process, resource, guests::set_trap_bell())?;
        call("port_queue", port.queue(TRAP_KEY, [7; 4]))?;
        call("set_trap(bell)", f.guest.set_bell_trap(TRAP_ADDR, PAGE, &port, TRAP_KEY))?;
        let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
        expect_exit(&vcpu)?;
        // The guest and its VCPU go away with a BELL packet still queued.
    }
    let user = call("port_wait", port.wait(0))?;
    check("the user packet survives", user == Packet::User { key: TRAP_KEY, status: 0, data: [7; 4] })?;
    check("the trap's packet went with the trap", port.wait(0) == Err(Status::TIMED_OUT))?;
    defmt::info!("set-trap-bell-drop: guest destroyed with a BELL queued; the user packet with the same key survived");
    Ok(())
}

fn close_port(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::set_trap_bell())?;
    let port = call("port_create", Port::create(process))?;
    call("set_trap(bell)", f.guest.set_bell_trap(TRAP_ADDR, PAGE, &port, TRAP_KEY))?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    drop(port);
    let first = vcpu.enter();
    check("BAD_STATE after the port closed", first == Err(Status::BAD_STATE))?;
    expect_exit(&vcpu)?;
    defmt::info!("close-port: enter returned BAD_STATE, then the guest exited cleanly");
    Ok(())
}

fn read_write_state(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::read_write_state())?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    let mut state = VcpuState::default();
    for (i, x) in state.x.iter_mut().enumerate() {
        *x = i as u64;
    }
    state.sp = 64;
    call("write_state", vcpu.write_state(&state))?;
    expect_exit(&vcpu)?;
    let state = call("read_state", vcpu.read_state())?;
    check("x[i] = 2i", (1..31).all(|i| state.x[i] == 2 * i as u64))?;
    defmt::info!(
        "read-write-state: x1 {=u64}, x30 {=u64}, sp {=u64}, cpsr {=u32:#x}",
        state.x[1],
        state.x[30],
        state.sp,
        state.cpsr
    );
    check("sp = 128", state.sp == 128)?;
    check("cpsr = Z and C", state.cpsr == 0b0110 << 28)
}

fn psci(process: &Process, resource: u32, code: &[u8], expected: Status) -> Outcome {
    let f = fixture(process, resource, code)?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    let result = vcpu.enter();
    defmt::info!("psci: vcpu_enter returned {}", el2::object::Status::from_result(&result));
    check("the PSCI status", result.err() == Some(expected))
}

fn write_state_io(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::vcpu_enter())?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    let result = process.vcpu_write_state(vcpu.0.raw(), el2::object::vcpu::VCPU_IO, &[0; 8]);
    defmt::info!("write-state-io: {}", Status::from_result(&result));
    check("INVALID_ARGS", result == Err(Status::INVALID_ARGS))
}

fn interrupt_out_of_bounds(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::vcpu_enter())?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    let result = vcpu.interrupt(u32::MAX);
    check("OUT_OF_RANGE", result == Err(Status::OUT_OF_RANGE))?;
    expect_exit(&vcpu)?;
    defmt::info!("interrupt-out-of-bounds: {}, and the guest still ran to its exit", Status::from_result(&result));
    Ok(())
}

fn vmar_protect(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::vcpu_enter())?;
    let vmar = f.guest.vmar.raw();
    call("vmar_protect", process.vmar_protect(vmar, VM_PERM_READ | VM_PERM_EXECUTE, 0, PAGE))?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    expect_exit(&vcpu)?;
    defmt::info!("vmar-protect: guest page 0 made read+execute; the guest still ran to its exit");
    Ok(())
}

fn set_way(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::set_way())?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    expect_exit(&vcpu)?;
    defmt::info!("set-way: dc csw, cisw and isw were emulated");
    Ok(())
}

fn touch_all_memory(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::touch_all_memory())?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    expect_exit(&vcpu)?;
    let vmar = call("vmar", process.vmar_object(f.guest.vmar.raw()))?;
    let mapped = (0..GUEST_MEMORY / PAGE).filter(|page| vmar.stage2_lookup(page * PAGE).is_some()).count();
    let mut word = [0u8; 8];
    call("vmo_read", f.memory.read(0x123000, &mut word))?;
    defmt::info!(
        "touch-all-memory: {=usize} pages mapped on demand; the word at 0x123000 reads {=u64:#x}",
        mapped,
        u64::from_le_bytes(word)
    );
    // Pages 0x1000..0xffe000 were stored to, page 0 holds the code; the trap pages never map.
    check("every touched page mapped", mapped == (GUEST_MEMORY / PAGE) as usize - 2)?;
    check("the guest's store landed in the VMO", u64::from_le_bytes(word) == 0x123000)
}

fn stray(process: &Process, resource: u32) -> Outcome {
    let x = run_to_exit(process, resource, guests::stray())?;
    defmt::info!(
        "stray: a load from IPA 0x40000000 took ESR_EL1 {=u64:#x} FAR_EL1 {=u64:#x}, a branch there ESR_EL1 {=u64:#x} FAR_EL1 {=u64:#x}; the guest carried on to its exit",
        x[25],
        x[26],
        x[27],
        x[28]
    );
    check(
        "a data abort and a prefetch abort, synchronous external, at the guest's EL1",
        (x[25], x[26], x[27], x[28]) == (0x9600_0010, 0x4000_0000, 0x8600_0010, 0x4000_0000),
    )
}

fn kick(process: &'static Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::spin())?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    let handle = vcpu.0.raw();
    // Another CPU kicks the spinning guest a millisecond after it starts.
    let kicker = after_a_millisecond(1, "kicker", move || {
        let _ = process.vcpu_kick(handle);
    })?;
    let first = vcpu.enter();
    join(&kicker);
    defmt::info!("kick: a guest spinning on cpu0, kicked from cpu1: enter returned {}", Status::from_result(&first));
    check("CANCELED", first.err() == Some(Status::CANCELED))?;
    // The next enter resumes the guest; kick it again from this thread first.
    call("vcpu_kick", vcpu.kick())?;
    let second = vcpu.enter();
    check("the next kick cancels the next enter", second.err() == Some(Status::CANCELED))
}

fn trap_after_touch(process: &Process, resource: u32) -> Outcome {
    // The guest stores to TRAP_ADDR while it is plain RAM, then the VMM traps the page: the next
    // store must reach the trap, not the page mapped by the first.
    let f = fixture(process, resource, guests::set_trap_mem())?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    // With no trap on TRAP_ADDR yet, the first store maps that page and the guest exits.
    expect_exit(&vcpu)?;
    call("set_trap(mem)", f.guest.set_mem_trap(TRAP_ADDR, PAGE, TRAP_KEY))?;
    // Run the program again from the top.
    let restart = |c: &mut el2::object::vcpu::Context| {
        c.pc = 0;
        c.skip_instruction = false;
    };
    call("restart", process.vcpu_object(vcpu.0.raw()).map(|v| v.with_context(restart)))?;
    let packet = call("vcpu_enter", vcpu.enter())?;
    let Packet::Mem { key, mem } = packet else { return Err(Failure::Mismatch("a MEM packet")) };
    defmt::info!(
        "trap-after-touch: after the trap was set, the store gave a MEM packet key {=u64:#x} at {=u64:#x}",
        key,
        mem.addr
    );
    check("the store reaches the new trap", key == TRAP_KEY && mem.addr == TRAP_ADDR)
}

/// The emulated device's byte at `offset`: 0x80 | offset, so every byte has its sign bit set.
fn device_byte(offset: u64) -> u8 {
    0x80 | (offset as u8 & 0x7f)
}

/// Emulates the device behind the MEM trap until the guest exits: reads return
/// [`device_byte`]s, writes are recorded (offset, size, data). Returns the reads' count.
/// Each access is completed with the next entry, in one call (`FaultView::finish_and_enter`:
/// a read's register is written by `enter_with_register`).
fn serve_device(vcpu: &Vcpu<'_>, writes: &mut [(u64, u8, u64)], write_count: &mut usize) -> Result<usize, Failure> {
    let mut reads = 0;
    let mut served: Option<FaultView> = None;
    loop {
        let entered = vmm::fault::enter_after(served.take(), vcpu);
        let packet = call("vcpu_enter", entered)?.decode();
        let Packet::Mem { key, mem } = packet else { return Err(Failure::Mismatch("a MEM packet")) };
        if key == 0 {
            return Ok(reads);
        }
        let control = call("read_control", vcpu.read_control())?;
        let mut view = FaultView::new(mem, control.pc);
        let offset = view.address() - TRAP_ADDR;
        if view.is_read() {
            let value =
                (0..u64::from(view.size())).fold(0u64, |v, i| v | (u64::from(device_byte(offset + i)) << (8 * i)));
            view.set_data(value);
            reads += 1;
        } else if let Some(slot) = writes.get_mut(*write_count) {
            *slot = (offset, view.size(), view.data());
            *write_count += 1;
        }
        served = Some(view);
    }
}

fn device_vcpu<'p>(f: &Fixture<'p>) -> Result<Vcpu<'p>, Failure> {
    call("set_trap(mem)", f.guest.set_mem_trap(TRAP_ADDR, PAGE, TRAP_KEY))?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    let mut state = call("read_state", vcpu.read_state())?;
    state.x[9] = 0x1122_3344_5566_7788;
    state.x[10] = 0x99aa_bbcc_ddee_ff00;
    call("write_state", vcpu.write_state(&state))?;
    Ok(vcpu)
}

fn mmio(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::mmio())?;
    let vcpu = device_vcpu(&f)?;
    let mut writes: [(u64, u8, u64); 8] = [(0, 0, 0); 8];
    let mut write_count = 0;
    let reads = serve_device(&vcpu, &mut writes, &mut write_count)?;
    let state = call("read_state", vcpu.read_state())?;
    defmt::info!(
        "mmio: w1 {=u64:#x} w2 {=u64:#x} x3 {=u64:#x} w4 {=u64:#x} x5 {=u64:#x}",
        state.x[1],
        state.x[2],
        state.x[3],
        state.x[4],
        state.x[5]
    );
    defmt::info!(
        "mmio: w6 {=u64:#x} x7 {=u64:#x} x8 {=u64:#x}; {=usize} reads",
        state.x[6],
        state.x[7],
        state.x[8],
        reads
    );
    for (offset, size, data) in &writes[..write_count] {
        defmt::info!("mmio: write of {=u8} bytes at +{=u64} data {=u64:#x}", size, offset, data);
    }
    check(
        "read results",
        state.x[1..9]
            == [
                0x81,
                0xffff_ff81,
                0xffff_ffff_ffff_ff81,
                0x8382,
                0xffff_ffff_ffff_8382,
                0x8786_8584,
                0xffff_ffff_8786_8584,
                0x8f8e_8d8c_8b8a_8988,
            ],
    )?;
    check("nine reads", reads == 9)?;
    // The combined call's refusals run nothing: no register past x30, and WRITE is needed
    // besides EXECUTE.
    let exits = call("read_exits", vcpu.read_exits())?;
    let x0 = state.x[0];
    let past = vcpu.enter_with_register(31, 7);
    let execute_only = call("duplicate", vcpu.0.duplicate(el2::object::Rights::EXECUTE))?;
    let unwritable = Vcpu(execute_only).enter_with_register(0, 7);
    let after = call("read_exits", vcpu.read_exits())?;
    let x0_after = call("read_state", vcpu.read_state())?.x[0];
    defmt::info!(
        "mmio: enter_with_register(31) {}, without WRITE {}",
        Status::from_result(&past),
        Status::from_result(&unwritable)
    );
    check("x31 is INVALID_ARGS", past.err() == Some(Status::INVALID_ARGS))?;
    check("without WRITE is ACCESS_DENIED", unwritable.err() == Some(Status::ACCESS_DENIED))?;
    check("a refused call runs nothing and writes nothing", after.0 == exits.0 && x0_after == x0)?;
    check(
        "writes",
        writes[..write_count]
            == [(16, 1, 0x88), (18, 2, 0x7788), (20, 4, 0x5566_7788), (24, 8, 0x1122_3344_5566_7788), (32, 8, 0)],
    )
}

fn mmio_pair(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::mmio_pair())?;
    let vcpu = device_vcpu(&f)?;
    let mut writes: [(u64, u8, u64); 8] = [(0, 0, 0); 8];
    let mut write_count = 0;
    let reads = serve_device(&vcpu, &mut writes, &mut write_count)?;
    let state = call("read_state", vcpu.read_state())?;
    defmt::info!(
        "mmio-pair: x1 {=u64:#x} x2 {=u64:#x} x3 {=u64:#x} x4 {=u64:#x} x5 {=u64:#x}; base x6 {=u64:#x}; {=usize} reads",
        state.x[1],
        state.x[2],
        state.x[3],
        state.x[4],
        state.x[5],
        state.x[6],
        reads
    );
    for (offset, size, data) in &writes[..write_count] {
        defmt::info!("mmio-pair: write of {=u8} bytes at +{=u64} data {=u64:#x}", size, offset, data);
    }
    check(
        "read results",
        state.x[1..7]
            == [
                0x8786_8584_8382_8180,
                0x8f8e_8d8c_8b8a_8988,
                0x8f8e_8d8c_8b8a_8988,
                0xffff_ffff_9392_9190,
                0xffff_ffff_9796_9594,
                TRAP_ADDR + 16,
            ],
    )?;
    check("five reads", reads == 5)?;
    check(
        "writes",
        writes[..write_count] == [(16, 8, 0x1122_3344_5566_7788), (24, 8, 0x99aa_bbcc_ddee_ff00), (8, 4, 0x5566_7788)],
    )
}

/// Guest-physical address of the demo guest's PL011 (as on QEMU `virt`).
const DEMO_UART: u64 = 0x0900_0000;
/// Guest-physical address of the demo guest's doorbell.
const DEMO_DOORBELL: u64 = 0x0a00_0000;
const DEMO_UART_KEY: u64 = 0x11;
const DEMO_DOORBELL_KEY: u64 = 0xd00b;

fn demo(process: &'static Process, resource: u32) -> Outcome {
    const STATUS_KEY: u64 = 0x57a7;
    const INTERRUPT: u32 = 40;
    let f = fixture(process, resource, guests::demo())?;
    call("set_trap(uart)", f.guest.set_mem_trap(DEMO_UART, PAGE, DEMO_UART_KEY))?;
    call("set_trap(status)", f.guest.set_mem_trap(DEMO_DOORBELL + PAGE, PAGE, STATUS_KEY))?;
    let port = call("port_create", Port::create(process))?;
    call("set_trap(doorbell)", f.guest.set_bell_trap(DEMO_DOORBELL, PAGE, &port, DEMO_DOORBELL_KEY))?;
    let vcpu = gic_vcpu(&f.guest)?;
    // A VMM thread on another CPU serves the doorbell: it answers with an interrupt.
    let port_handle = call("duplicate", port.0.duplicate(el2::object::Rights::SAME_RIGHTS))?;
    let port_value = port_handle.raw();
    core::mem::forget(port_handle);
    let vcpu_value = vcpu.0.raw();
    let doorbells = call(
        "spawn",
        el2::thread::spawn(1, "doorbell", move || {
            if let Ok(packet) = process.port_wait(port_value, el2::sync::INFINITE) {
                if let Packet::Bell { key, addr } = packet.decode() {
                    defmt::info!("vmm: doorbell {=u64:#x} rung at {=u64:#x}, served on cpu1", key, addr);
                    let injected = process.vcpu_interrupt(vcpu_value, INTERRUPT);
                    defmt::info!(
                        "vmm: interrupt {=u32} injected from cpu1: {}",
                        INTERRUPT,
                        Status::from_result(&injected)
                    );
                }
            }
            let _ = process.handle_close(port_value);
        }),
    )?;
    defmt::info!("vmm: starting guest 1 (demo) at 0x0 with a PL011 at {=u64:#x}", DEMO_UART);
    let mut uart = vmm::pl011::Pl011::new();
    let status = loop {
        let (key, mem) = match vcpu.enter() {
            Ok(Packet::Mem { key, mem }) => (key, mem),
            Ok(_) => return Err(Failure::Mismatch("an unexpected packet")),
            Err(status) => break status,
        };
        let control = call("read_control", vcpu.read_control())?;
        let mut view = FaultView::new(mem, control.pc);
        match key {
            DEMO_UART_KEY => {
                let offset = view.address() - DEMO_UART;
                if view.is_read() {
                    view.set_data(u64::from(uart.read(offset)));
                } else if let Some(vmm::pl011::Output::Line(line) | vmm::pl011::Output::Piece(line)) =
                    uart.write(offset, view.data() as u32)
                {
                    defmt::info!("guest 1: {=str}", core::str::from_utf8(line).unwrap_or("(not UTF-8)"));
                }
            }
            STATUS_KEY => defmt::info!("vmm: guest 1 took interrupt {=u64} and acknowledged it", view.data() & 0x3ff),
            _ => return Err(Failure::Mismatch("a MEM packet from an unknown trap")),
        }
        complete(&vcpu, &view)?;
    };
    join(&doorbells);
    defmt::info!("vmm: guest 1 exited: vcpu_enter returned {}", status);
    check("PSCI SYSTEM_OFF", status == Status::UNAVAILABLE)?;
    defmt::info!("vmm: guest 1 powered off (PSCI SYSTEM_OFF)");
    Ok(())
}

fn fp(process: &'static Process, resource: u32) -> Outcome {
    const A: u64 = 0x0123_4567_89ab_cdef;
    const B: u64 = 0xfedc_ba98_7654_3210;
    let f = fixture(process, resource, guests::fp())?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    let mut state = call("read_state", vcpu.read_state())?;
    state.x[2] = A;
    call("write_state", vcpu.write_state(&state))?;
    expect_exit(&vcpu)?;
    // A second guest's VCPU, on another thread of this CPU, loads B into the same register.
    let other = call(
        "spawn",
        el2::thread::spawn(el2::arch::current_cpu(), "fp-guest", move || {
            let run = || -> Outcome {
                let g = fixture(process, resource, guests::fp())?;
                let vcpu = call("vcpu_create", Vcpu::create(&g.guest, 0))?;
                let mut state = call("read_state", vcpu.read_state())?;
                state.x[2] = B;
                call("write_state", vcpu.write_state(&state))?;
                expect_exit(&vcpu)?;
                expect_exit(&vcpu)?;
                let state = call("read_state", vcpu.read_state())?;
                check("the second guest reads its own value", state.x[1] == B)
            };
            if let Err(failure) = run() {
                defmt::error!("fp: the second guest failed: {}", failure);
            } else {
                defmt::info!("fp: the second guest, on the same CPU, read back {=u64:#x}", B);
            }
        }),
    )?;
    join(&other);
    expect_exit(&vcpu)?;
    let state = call("read_state", vcpu.read_state())?;
    defmt::info!("fp: the first guest read back {=u64:#x} after the other guest used FP", state.x[1]);
    check("d0 survived the other guest", state.x[1] == A)
}

/// Two guests' VCPUs on two threads of one CPU take turns with pointer authentication: each
/// reads its own key before setting one (0, though the CPU may hold the other's), signs with its
/// key, and after the other guest has signed with another key signs again to the same value
/// and reads its key back. Without FEAT_PAuth the guests' ID registers say so and the key
/// registers are UNDEFINED: nothing to run.
fn pauth_keys(process: &'static Process, resource: u32) -> Outcome {
    use core::sync::atomic::{AtomicU64, Ordering};
    const KEYS: [u64; 2] = [0x0123_4567_89ab_cdef, 0x7654_3210_fedc_ba98];
    const DATA: u64 = 0x0000_1234_5678_9abc;
    /// The turn (A: 0 and 2, B: 1 and 3), then B's key before setting, its two signatures and
    /// its key read back.
    static B: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
    if !el2::arch::aarch64::world::has_pauth() {
        defmt::info!("pauth-keys: no FEAT_PAuth on this CPU: nothing to switch");
        return Ok(());
    }
    let prepared = |vcpu: &Vcpu<'_>, key: u64| -> Outcome {
        let mut state = call("read_state", vcpu.read_state())?;
        (state.x[2], state.x[5], state.x[6]) = (key, DATA, 0x42);
        call("write_state", vcpu.write_state(&state))
    };
    let wait_turn = |turn: u64| {
        while B[0].load(Ordering::Acquire) < turn {
            el2::thread::yield_now();
        }
    };
    for slot in &B {
        slot.store(0, Ordering::Relaxed);
    }
    let a = fixture(process, resource, guests::pauth_keys())?;
    let b = fixture(process, resource, guests::pauth_keys())?;
    let first = call("vcpu_create", Vcpu::create(&a.guest, 0))?;
    prepared(&first, KEYS[0])?;
    // A reads its key, sets it and signs: the CPU holds A's key.
    expect_exit(&first)?;
    let unset_a = call("read_state", first.read_state())?.x[1];
    expect_exit(&first)?;
    let pac_a = call("read_state", first.read_state())?.x[4];
    let guest_b = b.guest.handle.raw();
    let other = call(
        "spawn",
        el2::thread::spawn(el2::arch::current_cpu(), "pauth-b", move || {
            let run = || -> Outcome {
                let vcpu =
                    Vcpu(el2::api::OwnedHandle::new(process, call("vcpu_create", process.vcpu_create(guest_b, 0, 0))?));
                prepared(&vcpu, KEYS[1])?;
                // B, on A's CPU, reads its own key, not A's; then signs with its own.
                expect_exit(&vcpu)?;
                B[1].store(call("read_state", vcpu.read_state())?.x[1], Ordering::Relaxed);
                expect_exit(&vcpu)?;
                B[2].store(call("read_state", vcpu.read_state())?.x[4], Ordering::Relaxed);
                B[0].store(1, Ordering::Release);
                wait_turn(2);
                expect_exit(&vcpu)?;
                let state = call("read_state", vcpu.read_state())?;
                B[3].store(state.x[7], Ordering::Relaxed);
                B[4].store(state.x[8], Ordering::Relaxed);
                Ok(())
            };
            if let Err(failure) = run() {
                defmt::error!("pauth-keys: the second guest failed: {}", failure);
            }
            B[0].store(3, Ordering::Release);
        }),
    )?;
    wait_turn(1);
    expect_exit(&first)?;
    let again_a = call("read_state", first.read_state())?;
    B[0].store(2, Ordering::Release);
    join(&other);
    let [_, unset_b, pac_b, again_b, key_b] = B.each_ref().map(|slot| slot.load(Ordering::Acquire));
    check("each guest reads 0 before it sets a key", unset_a == 0 && unset_b == 0)?;
    check("the two keys sign differently", pac_a != pac_b && pac_a != DATA && pac_b != 0)?;
    check("A signs the same after B's turn, and reads its key back", again_a.x[7] == pac_a && again_a.x[8] == KEYS[0])?;
    check("B signs the same after A's turn, and reads its key back", again_b == pac_b && key_b == KEYS[1])?;
    defmt::info!(
        "pauth-keys: 2 guests on one cpu: each read key 0 before setting its own, each signed alike before and after the other's turn and read its own key back"
    );
    Ok(())
}

fn mmu(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::mmu())?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    expect_exit(&vcpu)?;
    let state = call("read_state", vcpu.read_state())?;
    defmt::info!(
        "mmu: written with the MMU off, read {=u64:#x} with it on and {=u64:#x} off again",
        state.x[8],
        state.x[9]
    );
    check("the data is intact both ways", state.x[8] == 0xdead_beef && state.x[9] == 0xdead_beef)
}

fn isolation(process: &'static Process, resource: u32) -> Outcome {
    const PATTERN: u64 = 0x5a5a_0000_1234_5678;
    // The victim: counts at 0x20000 on cpu1 until kicked; a pattern sits at 0x30000.
    let victim = fixture(process, resource, guests::counter())?;
    call("vmo_write", victim.memory.write(0x30000, &PATTERN.to_le_bytes()))?;
    let victim_vmar = call("vmar", process.vmar_object(victim.guest.vmar.raw()))?;
    let victim_handle = victim.guest.handle.raw();
    let (vcpu_slot, vcpu_ready) = (
        alloc::sync::Arc::new(core::sync::atomic::AtomicU32::new(0)),
        alloc::sync::Arc::new(core::sync::atomic::AtomicBool::new(false)),
    );
    let (slot, ready) = (vcpu_slot.clone(), vcpu_ready.clone());
    let runner = call(
        "spawn",
        el2::thread::spawn(1, "victim", move || {
            let Ok(vcpu) = process.vcpu_create(victim_handle, 0, 0) else { return };
            slot.store(vcpu, core::sync::atomic::Ordering::Release);
            ready.store(true, core::sync::atomic::Ordering::Release);
            let result = process.vcpu_enter(vcpu);
            defmt::info!("isolation: the counting guest's enter returned {}", Status::from_result(&result));
            let _ = process.handle_close(vcpu);
        }),
    )?;
    while !vcpu_ready.load(core::sync::atomic::Ordering::Acquire) {
        el2::thread::yield_now();
    }
    let counter = |f: &Fixture<'_>| -> Result<u64, Failure> {
        let mut word = [0u8; 8];
        call("vmo_read", f.memory.read(0x20000, &mut word))?;
        Ok(u64::from_le_bytes(word))
    };
    // Wait until the victim has counted, so its page is mapped.
    while counter(&victim)? == 0 {
        el2::thread::yield_now();
    }
    let Some((frame, _)) = victim_vmar.stage2_lookup(0x20000) else {
        return Err(Failure::Mismatch("the victim's counter page is mapped"));
    };
    // Attackers store to the victim's frame address and to Belfry's image on `virt`, as IPAs.
    // Beyond their own 16 MiB the store is an external abort at their own EL1; within it (a low
    // frame on the Pi 4, whose RAM starts at 0) it lands in their own memory, never in the
    // victim's frame.
    for target in [frame.raw(), 0x4020_0000] {
        let attacker = fixture(process, resource, guests::store_x1())?;
        let vcpu = call("vcpu_create", Vcpu::create(&attacker.guest, 0))?;
        let mut state = call("read_state", vcpu.read_state())?;
        state.x[1] = target;
        call("write_state", vcpu.write_state(&state))?;
        let result = vcpu.enter();
        check("the attacker reaches its exit", result.as_ref().is_ok_and(is_exit))?;
        let esr = call("read_state", vcpu.read_state())?.x[3];
        if target >= GUEST_MEMORY {
            check("the stray store is an external abort in its own guest", esr == 0x9600_0050)?;
        } else {
            check("the store within its memory completes", esr == 0)?;
            let mut word = [0u8; 8];
            call("vmo_read", attacker.memory.read(target, &mut word))?;
            check("the store landed in the attacker's own memory", u64::from_le_bytes(word) == 0x6666)?;
        }
    }
    // Attacker 2 reads a register its CPU does not have: an UNDEF at its own EL1.
    let attacker = fixture(process, resource, guests::unhandled())?;
    let vcpu = call("vcpu_create", Vcpu::create(&attacker.guest, 0))?;
    let undefined = vcpu.enter();
    let esr = call("read_state", vcpu.read_state())?.x[3];
    // EC 0 (UNDEF) on a CPU without SVE; with SVE hidden, the guest's own CPACR_EL1.ZEN trap
    // comes first (EC 0x19 at its EL1, as under KVM); either way its own EL1 takes it.
    let class = esr >> 26;
    check(
        "the missing register is an exception in its own guest",
        undefined.as_ref().is_ok_and(is_exit) && (class == 0 || class == 0x19),
    )?;
    // The victim still counts: its counter moves within a second.
    let before = counter(&victim)?;
    let deadline = el2::sync::now() + 1_000_000_000;
    let mut after = before;
    while after == before && el2::sync::now() < deadline {
        el2::thread::yield_now();
        after = counter(&victim)?;
    }
    let mut pattern = [0u8; 8];
    call("vmo_read", victim.memory.read(0x30000, &mut pattern))?;
    call("vcpu_kick", process.vcpu_kick(vcpu_slot.load(core::sync::atomic::Ordering::Acquire)))?;
    join(&runner);
    defmt::info!(
        "isolation: stray stores aborted in or stayed in their guests, a missing register an exception there; the counting guest went on ({=bool}) with its memory intact ({=bool})",
        after > before,
        u64::from_le_bytes(pattern) == PATTERN
    );
    check("the victim kept running", after > before)?;
    check("the victim's memory is intact", u64::from_le_bytes(pattern) == PATTERN)
}

fn interrupt(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::interrupt())?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    call("vcpu_interrupt", vcpu.interrupt(32))?;
    expect_exit(&vcpu)?;
    let control = call("read_control", vcpu.read_control())?;
    defmt::info!(
        "interrupt: vector 32 injected before enter; the guest took it at VBAR+0x280 (PC {=u64:#x})",
        control.pc
    );
    check("the exit came from the IRQ vector", control.pc == 0x800 + 0x280 + 4)
}

fn wfi_timer(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::wfi_timer())?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    expect_exit(&vcpu)?;
    defmt::info!("wfi-timer: WFI with an expired virtual timer did not block");
    Ok(())
}

fn wfi_pending(process: &Process, resource: u32) -> Outcome {
    let program = if el2::irq::is_gicv3() { guests::wfi_pending_v3() } else { guests::wfi_pending_v2() };
    let f = fixture(process, resource, program)?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    call("vcpu_interrupt", vcpu.interrupt(32))?;
    call("vcpu_interrupt", vcpu.interrupt(33))?;
    expect_exit(&vcpu)?;
    let state = call("read_state", vcpu.read_state())?;
    defmt::info!(
        "wfi-pending: the guest acknowledged interrupt {=u64} and its WFI did not block while the other was pending",
        state.x[1] & 0x3ff
    );
    check("the first acknowledged is 32", state.x[1] & 0x3ff == 32)
}

fn wfi_aarch32(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::wfi_aarch32())?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    let packet = call("vcpu_enter", vcpu.enter())?;
    let Packet::Mem { key, mem } = packet else { return Err(Failure::Mismatch("a MEM packet")) };
    defmt::info!(
        "wfi-aarch32: after WFI at AArch32 EL0, MEM exit at {=u64:#x}: {=u8} bytes, read {=bool}, data {=u64:#x}",
        mem.addr,
        mem.access_size,
        mem.read,
        mem.data
    );
    check(
        "the AArch32 store",
        key == 0 && mem.addr == EXIT_TEST_ADDR && !mem.read && mem.data == 0 && mem.access_size == 4,
    )
}

fn fp_aarch32(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::fp_aarch32())?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    let packet = call("vcpu_enter", vcpu.enter())?;
    let Packet::Mem { key, mem } = packet else { return Err(Failure::Mismatch("a MEM packet")) };
    defmt::info!(
        "fp-aarch32: AArch32 EL0 moved {=u64:#x} through s0 after its EL1 enabled FP ({=u8}-byte store)",
        mem.data,
        mem.access_size
    );
    check("the value came through s0", key == 0 && mem.addr == EXIT_TEST_ADDR && mem.data == 0x1234)
}

fn thread_reuse(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::vcpu_enter())?;
    let _vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    let second = Vcpu::create(&f.guest, 0);
    defmt::info!("thread-reuse: a second vcpu_create on this thread: {}", Status::from_result(&second));
    check("BAD_STATE", second.err() == Some(Status::BAD_STATE))
}

fn bell_max_user(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::set_trap_bell())?;
    let port = call("port_create", Port::create(process))?;
    let mut queued = 0u64;
    while port.queue(queued, [0; 4]).is_ok() {
        queued += 1;
    }
    call("set_trap(bell)", f.guest.set_bell_trap(TRAP_ADDR, PAGE, &port, TRAP_KEY))?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    expect_exit(&vcpu)?;
    let mut bells = 0;
    for _ in 0..=queued {
        if let Packet::Bell { key: TRAP_KEY, addr: TRAP_ADDR } = call("port_wait", port.wait(0))? {
            bells += 1;
        }
    }
    defmt::info!(
        "bell-max-user: {=u64} user packets filled the port; the doorbell still arrived ({=u32})",
        queued,
        bells
    );
    check("one bell", bells == 1)
}

fn thread_exits(process: &'static Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::vcpu_enter())?;
    let guest = f.guest.handle.raw();
    let created = alloc::sync::Arc::new(core::sync::atomic::AtomicU32::new(0));
    let slot = created.clone();
    let creator = call(
        "spawn",
        el2::thread::spawn(2, "creator", move || {
            if let Ok(vcpu) = process.vcpu_create(guest, 0, 0) {
                slot.store(vcpu, core::sync::atomic::Ordering::Release);
            }
        }),
    )?;
    join(&creator);
    let vcpu = created.load(core::sync::atomic::Ordering::Acquire);
    let interrupt = process.vcpu_interrupt(vcpu, 32);
    let enter = process.vcpu_enter(vcpu);
    let close = process.handle_close(vcpu);
    defmt::info!(
        "thread-exits: after the owning thread ended: interrupt {}, enter {}, close {}",
        Status::from_result(&interrupt),
        Status::from_result(&enter),
        Status::from_result(&close)
    );
    check("interrupt and close are safe", interrupt.is_ok() && close.is_ok())?;
    check("enter from another thread is BAD_STATE", enter.err() == Some(Status::BAD_STATE))
}

fn interrupt_running(process: &'static Process, resource: u32) -> Outcome {
    // The guest spins with IRQs unmasked; another CPU injects: the guest must take it without
    // waiting for an unrelated exit.
    let f = fixture(process, resource, guests::interrupt_spin())?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    let handle = vcpu.0.raw();
    let injector = after_a_millisecond(3, "injector", move || {
        let _ = process.vcpu_interrupt(handle, 48);
    })?;
    expect_exit(&vcpu)?;
    join(&injector);
    defmt::info!("interrupt-running: interrupt 48 from cpu3 reached the guest running on cpu0");
    Ok(())
}

fn many_interrupts(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::many_interrupts())?;
    let vcpu = gic_vcpu(&f.guest)?;
    // Eight interrupts, more than the four list registers, raised out of order.
    for vector in [39, 34, 36, 32, 38, 33, 37, 35] {
        call("vcpu_interrupt", vcpu.interrupt(vector))?;
    }
    expect_exit(&vcpu)?;
    let mut taken = [0u64; 8];
    for (index, slot) in taken.iter_mut().enumerate() {
        let mut word = [0u8; 8];
        call("vmo_read", f.memory.read(0x30000 + 8 * index as u64, &mut word))?;
        *slot = u64::from_le_bytes(word) & 0x3ff;
    }
    defmt::info!("many-interrupts: 8 raised, 4 list registers; taken in order {}", taken);
    check("each once, lowest vector first", taken == [32, 33, 34, 35, 36, 37, 38, 39])
}

fn self_ipi(process: &Process, resource: u32) -> Outcome {
    let v3 = el2::irq::is_gicv3();
    let f = fixture(process, resource, if v3 { guests::self_ipi_v3() } else { guests::self_ipi_v2() })?;
    call("set_trap(gicd)", f.guest.set_mem_trap(GUEST_GICD, PAGE, GICD_KEY))?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    let mut route = "";
    loop {
        match call("vcpu_enter", vcpu.enter())? {
            Packet::VcpuInterrupt { mask, vector, .. } => {
                route = "a VCPU INTERRUPT packet (ICC_SGI1R_EL1)";
                check("the SGI targets VCPU 0 only", mask == 1)?;
                call("vcpu_interrupt", vcpu.interrupt(u32::from(vector)))?;
            }
            Packet::Mem { key: GICD_KEY, mem } => {
                route = "the distributor model (GICD_SGIR)";
                let control = call("read_control", vcpu.read_control())?;
                let view = FaultView::new(mem, control.pc);
                if !view.is_read() && view.address() - GUEST_GICD == GICD_SGIR {
                    let sgir = view.data() as u32;
                    // Target list filter 2: this VCPU; 0: the list, whose bit 0 is VCPU 0.
                    let filter = (sgir >> 24) & 0b11;
                    let to_self = filter == 2 || (filter == 0 && (sgir >> 16) & 1 == 1);
                    if to_self {
                        call("vcpu_interrupt", vcpu.interrupt(sgir & 0xf))?;
                    }
                }
                complete(&vcpu, &view)?;
            }
            packet => {
                check("the exit after the SGI", is_exit(&packet))?;
                break;
            }
        }
    }
    let mut word = [0u8; 8];
    call("vmo_read", f.memory.read(0x30000, &mut word))?;
    let taken = u64::from_le_bytes(word) & 0x3ff;
    defmt::info!("self-ipi: the guest sent SGI 3 to itself through {=str} and took SGI {=u64}", route, taken);
    check("SGI 3 taken", taken == 3)
}

/// Serves one VCPU of an SMP guest until it stores to the exit address: SGIs (GICv3 packets or
/// GICv2 GICD_SGIR writes) go to the VCPUs named in `handles` (by VCPU index); a STARTUP packet
/// is handed to `start`. Returns how many SGIs this VCPU sent.
fn serve_smp_vcpu(
    process: &Process,
    vcpu: u32,
    handles: &[core::sync::atomic::AtomicU32],
    mut start: impl FnMut(u64, u64, u64),
) -> Result<u64, Failure> {
    use core::sync::atomic::Ordering;
    let deliver = |mask: u64, vector: u32| -> Outcome {
        for (index, handle) in handles.iter().enumerate() {
            if mask & (1 << index) != 0 {
                call("vcpu_interrupt", process.vcpu_interrupt(handle.load(Ordering::Acquire), vector))?;
            }
        }
        Ok(())
    };
    let mut sent = 0;
    loop {
        let packet = call("vcpu_enter", process.vcpu_enter(vcpu))?.decode();
        match packet {
            Packet::VcpuInterrupt { mask, vector, .. } => {
                deliver(mask, u32::from(vector))?;
                sent += 1;
            }
            Packet::VcpuStartup { target, entry, context, .. } => start(target, entry, context),
            Packet::Mem { key: GICD_KEY, mem } => {
                let mut control_bytes = [0u8; 16];
                call(
                    "read_control",
                    process.vcpu_read_state(vcpu, el2::object::vcpu::BELFRY_VCPU_CONTROL, &mut control_bytes),
                )?;
                if !mem.read && mem.addr - GUEST_GICD == GICD_SGIR {
                    let sgir = mem.data as u32;
                    if (sgir >> 24) & 0b11 == 0 {
                        deliver(u64::from((sgir >> 16) & 0xff), sgir & 0xf)?;
                        sent += 1;
                    }
                }
                // The store is emulated: skip it.
                control_bytes[8] = 1;
                call(
                    "write_control",
                    process.vcpu_write_state(vcpu, el2::object::vcpu::BELFRY_VCPU_CONTROL, &control_bytes),
                )?;
            }
            packet if is_exit(&packet) => return Ok(sent),
            _ => return Err(Failure::Mismatch("an unexpected packet")),
        }
    }
}

fn ping_pong(process: &'static Process, resource: u32) -> Outcome {
    use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    static HANDLES: [AtomicU32; 2] = [const { AtomicU32::new(0) }; 2];
    static SECONDARY_SENT: AtomicU64 = AtomicU64::new(u64::MAX);
    let gic_version = if el2::irq::is_gicv3() { 3 } else { 2 };
    let f = fixture(process, resource, guests::ping_pong())?;
    call("set_trap(gicd)", f.guest.set_mem_trap(GUEST_GICD, PAGE, GICD_KEY))?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    HANDLES[0].store(vcpu.0.raw(), Ordering::Release);
    let mut state = call("read_state", vcpu.read_state())?;
    state.x[20] = gic_version;
    call("write_state", vcpu.write_state(&state))?;
    let guest = f.guest.handle.raw();
    let mut secondary = None;
    let started = |target: u64, entry: u64, context: u64| {
        defmt::info!("ping-pong: PSCI CPU_ON for VCPU {=u64} at {=u64:#x}: starting it on cpu1", target, entry);
        let spawned = el2::thread::spawn(1, "vcpu1", move || {
            let run = || -> Result<u64, Failure> {
                let vcpu = call("vcpu_create", process.vcpu_create(guest, 0, entry))?;
                let mut bytes = [0u8; 264];
                call("read_state", process.vcpu_read_state(vcpu, 0, &mut bytes))?;
                bytes[..8].copy_from_slice(&context.to_le_bytes());
                bytes[20 * 8..21 * 8].copy_from_slice(&gic_version.to_le_bytes());
                call("write_state", process.vcpu_write_state(vcpu, 0, &bytes))?;
                HANDLES[1].store(vcpu, Ordering::Release);
                let sent = serve_smp_vcpu(process, vcpu, &HANDLES, |_, _, _| {})?;
                let _ = process.handle_close(vcpu);
                Ok(sent)
            };
            match run() {
                Ok(sent) => SECONDARY_SENT.store(sent, Ordering::Release),
                Err(failure) => defmt::error!("ping-pong: VCPU 1 failed: {}", failure),
            }
        });
        secondary = spawned.ok();
    };
    let sent = serve_smp_vcpu(process, vcpu.0.raw(), &HANDLES, started)?;
    let Some(secondary) = secondary else { return Err(Failure::Mismatch("VCPU 1 was started")) };
    join(&secondary);
    let state = call("read_state", vcpu.read_state())?;
    let secondary_sent = SECONDARY_SENT.load(Ordering::Acquire);
    defmt::info!(
        "ping-pong: VCPU 0 on cpu0 counted {=u64} pings and sent {=u64} pongs; VCPU 1 on cpu1 sent {=u64} pings",
        state.x[19],
        sent,
        secondary_sent
    );
    check("100 each way, none lost", state.x[19] == 100 && sent == 100 && secondary_sent == 100)
}

fn timer_ticks(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::timer_ticks())?;
    let vcpu = gic_vcpu(&f.guest)?;
    expect_exit(&vcpu)?;
    let state = call("read_state", vcpu.read_state())?;
    defmt::info!(
        "timer-ticks: the guest armed its virtual timer 10 times (5 in WFI, 5 running) and took {=u64} ticks",
        state.x[19]
    );
    check("ten ticks", state.x[19] == 10)
}

fn all_active(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::all_active())?;
    let vcpu = gic_vcpu(&f.guest)?;
    for vector in 32..40 {
        call("vcpu_interrupt", vcpu.interrupt(vector))?;
    }
    expect_exit(&vcpu)?;
    let mut taken = [0u64; 8];
    for (index, slot) in taken.iter_mut().enumerate() {
        let mut word = [0u8; 8];
        call("vmo_read", f.memory.read(0x30000 + 8 * index as u64, &mut word))?;
        *slot = u64::from_le_bytes(word) & 0x3ff;
    }
    defmt::info!("all-active: four list registers held active interrupts while four waited; taken in order {}", taken);
    check("each once, in order", taken == [32, 33, 34, 35, 36, 37, 38, 39])
}

/// Completes a store the guest made to a MEM trap (the VMM has acted on it).
fn complete_store(vcpu: &Vcpu<'_>, mem: &el2::object::packet::GuestMemPacket) -> Outcome {
    let control = call("read_control", vcpu.read_control())?;
    let view = FaultView::new(*mem, control.pc);
    check("a store", !view.is_read())?;
    complete(vcpu, &view)
}

/// Reads `N` words of guest memory at `address`.
fn guest_words<const N: usize>(memory: &Vmo<'_>, address: u64, stride: u64) -> Result<[u64; N], Failure> {
    let mut words = [0u64; N];
    for (index, slot) in words.iter_mut().enumerate() {
        let mut word = [0u8; 8];
        call("vmo_read", memory.read(address + stride * index as u64, &mut word))?;
        *slot = u64::from_le_bytes(word);
    }
    Ok(words)
}

/// The one VCPU of the priority scenarios: a store to the trap page raises `spis(stored value)`
/// through the distributor model.
fn raise_on_store(
    machine: &Arc<Machine>,
    vcpu: &Vcpu<'static>,
    packet: &Packet,
    spis: impl Fn(u64) -> core::ops::Range<u32>,
) -> Result<Flow, Failure> {
    let Packet::Mem { key: TRAP_KEY, mem } = packet else { return Err(Failure::Mismatch("a store to the trap page")) };
    machine.with_distributor(|d, out| spis(mem.data).for_each(|spi| d.raise_spi(spi, out)))?;
    complete_store(vcpu, mem)?;
    Ok(Flow::Continue)
}

/// `priority-order`: any store raises SPIs 32..39.
fn raise_all(machine: &Arc<Machine>, _: usize, vcpu: &Vcpu<'static>, packet: &Packet) -> Result<Flow, Failure> {
    raise_on_store(machine, vcpu, packet, |_| 32..40)
}

/// `nested`: a store of n raises SPI 32 + n.
fn raise_one(machine: &Arc<Machine>, _: usize, vcpu: &Vcpu<'static>, packet: &Packet) -> Result<Flow, Failure> {
    raise_on_store(machine, vcpu, packet, |n| {
        let spi = 32 + (n & 0x3f) as u32;
        spi..spi + 1
    })
}

/// Eight SPIs of eight priorities raised at once through the distributor model: the guest takes
/// them in priority order, each once, four list registers at a time.
fn priority_order(process: &'static Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::priority_order())?;
    call("set_trap(mem)", f.guest.set_mem_trap(TRAP_ADDR, PAGE, TRAP_KEY))?;
    let machine = Machine::new(process, &f.guest, 1, |_| 0)?;
    let vcpu = machine.create_vcpu(0, 0, 0)?;
    machine.serve(0, &vcpu, raise_all)?;
    let taken = guest_words::<9>(&f.memory, 0x30000, 8)?.map(|id| id & 0x3ff);
    defmt::info!("priority-order: SPIs 32..39 with priorities 0x80 + 0x10 * (3n mod 8); taken in order {}", taken);
    check("each once, in priority order", taken == [32, 35, 38, 33, 36, 39, 34, 37, 0])
}

/// Six nested interrupts, each more urgent than the last, through four list registers: two
/// active ones are spilled out of the list registers and ended through EOIcount.
fn nested(process: &'static Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::nested())?;
    call("set_trap(mem)", f.guest.set_mem_trap(TRAP_ADDR, PAGE, TRAP_KEY))?;
    let machine = Machine::new(process, &f.guest, 1, |_| 0)?;
    let vcpu = machine.create_vcpu(0, 0, 0)?;
    machine.serve(0, &vcpu, raise_one)?;
    let taken = guest_words::<7>(&f.memory, 0x30000, 8)?.map(|id| id & 0x3ff);
    let ended = guest_words::<7>(&f.memory, 0x30100, 8)?.map(|id| id & 0x3ff);
    let object = call("vcpu_object", process.vcpu_object(vcpu.0.raw()))?;
    let still_pending = (32..38).any(|vector| object.is_pending(vector));
    defmt::info!(
        "nested: six levels, deeper than the 4 list registers of every board here; taken {}, ended {}, pending after {=bool}",
        taken,
        ended,
        still_pending
    );
    check(
        "taken outermost first, ended innermost first, each once",
        taken == [32, 33, 34, 35, 36, 37, 0] && ended == [37, 36, 35, 34, 33, 32, 0] && !still_pending,
    )
}

fn unexpected(_: &Arc<Machine>, _: usize, _: &Vcpu<'static>, _: &Packet) -> Result<Flow, Failure> {
    Err(Failure::Mismatch("only GIC, STARTUP and exit packets"))
}

/// Four VCPUs brought up with PSCI CPU_ON, each on its own CPU or two to a CPU: five virtual
/// timer ticks each, then a token passed round the ring by IPIs 25 times.
fn smp4(process: &'static Process, resource: u32, cpus: usize) -> Outcome {
    let f = fixture(process, resource, guests::smp4())?;
    let placement: fn(usize) -> usize = if cpus == 4 { |index| index } else { |index| index % 2 };
    let machine = Machine::new(process, &f.guest, 4, placement)?;
    let vcpu = machine.create_vcpu(0, 0, 0)?;
    machine.serve(0, &vcpu, unexpected)?;
    machine.join();
    let ticks = guest_words::<4>(&f.memory, 0x30000, 0x100)?;
    let tokens = guest_words::<4>(&f.memory, 0x30008, 0x100)?;
    defmt::info!("smp4: 4 VCPUs on {=usize} CPUs; timer ticks {}, tokens {}", cpus, ticks, tokens);
    check("5 ticks and 25 tokens on every VCPU", ticks == [5; 4] && tokens == [25; 4])
}

/// The EL1 physical timer is trapped: the guest reads the physical counter, then its CNTP_CTL_EL0
/// access kills it.
fn physical_timer(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::physical_timer())?;
    let vcpu = gic_vcpu(&f.guest)?;
    expect_exit(&vcpu)?;
    let x = call("read_state", vcpu.read_state())?.x;
    let (tval, ctl_off, ticks, intid, early, ctl_in_handler) = (x[22], x[23], x[19], x[27], x[28], x[26]);
    defmt::info!(
        "physical-timer: TVAL 0x7fff0000 read back below it and above 0: {=bool}; CTL disabled {=u64:#x}; {=u64} ticks of INTID {=u64} (2 from WFI, 2 running), {=u64} before the deadline; CTL in the handler {=u64:#x}",
        tval > 0 && tval <= 0x7fff_0000,
        ctl_off,
        ticks,
        intid,
        early,
        ctl_in_handler
    );
    check("TVAL reads the distance to the deadline", tval > 0 && tval <= 0x7fff_0000)?;
    check("four ticks of PPI 30, none early", ticks == 4 && intid == 30 && early == 0)?;
    check("CTL: ENABLE and ISTATUS in the handler", ctl_in_handler == 0b101 && ctl_off == 0)
}

/// F1/F10: a guest looping CPU_ON starts exactly the VCPUs it names once, and every bad call
/// gets its DEN0022 error (see `guests::cpu_on_storm`).
fn cpu_on_storm(process: &'static Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::cpu_on_storm())?;
    let machine = Machine::new(process, &f.guest, 3, |index| index % 2)?;
    let vcpu = machine.create_vcpu(0, 0, 0)?;
    machine.serve(0, &vcpu, unexpected)?;
    machine.join();
    let state = call("read_state", vcpu.read_state())?;
    let started = machine.started.load(core::sync::atomic::Ordering::Relaxed);
    let [first, already_on, bad_mpidr, bad_entry, smc32, affinity] =
        [19, 21, 23, 24, 25, 26].map(|r| state.x[r] as i64);
    defmt::info!(
        "cpu-on-storm: CPU_ON {=i64}, then {=i64} of 100000 ALREADY_ON; MPIDR 0x100 {=i64}, entry outside RAM {=i64}, SMC32 with high garbage {=i64}, AFFINITY_INFO {=i64}; {=u32} VCPUs started",
        first,
        already_on,
        bad_mpidr,
        bad_entry,
        smc32,
        affinity,
        started
    );
    check(
        "DEN0022 codes, two VCPUs started",
        (first, already_on, bad_mpidr, bad_entry, smc32, affinity, started) == (0, 100_000, -2, -9, 0, 0, 2),
    )
}

/// The residue test (F2, F4): a fresh guest reads every register a guest can write; the next
/// guest on the same CPU writes a pattern into all of them; a third reads them again and must
/// see exactly what the fresh one saw. Any difference is state one guest left for another.
fn residue(process: &Process, resource: u32) -> Outcome {
    let v3 = el2::irq::is_gicv3();
    let gic: &[&str] = if v3 { &guests::RESIDUE_GICV3 } else { &guests::RESIDUE_GICV2 };
    let names: alloc::vec::Vec<&str> = guests::RESIDUE_REGISTERS.iter().chain(gic).copied().collect();
    let run = |write: bool| -> Result<alloc::vec::Vec<u64>, Failure> {
        let f = fixture(process, resource, guests::residue())?;
        let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
        let mut state = call("read_state", vcpu.read_state())?;
        state.x[0] = u64::from(write);
        state.x[20] = if v3 { 3 } else { 2 };
        call("write_state", vcpu.write_state(&state))?;
        expect_exit(&vcpu)?;
        let mut values = alloc::vec::Vec::with_capacity(names.len());
        for index in 0..names.len() {
            let mut word = [0u8; 8];
            call("vmo_read", f.memory.read(0x40000 + 8 * index as u64, &mut word))?;
            values.push(u64::from_le_bytes(word));
        }
        Ok(values)
    };
    let fresh = run(false)?;
    let writer = run(true)?;
    let reader = run(false)?;
    let changed = fresh.iter().zip(&writer).filter(|(f, w)| f != w).count();
    let mut leaked = 0;
    for (index, name) in names.iter().enumerate() {
        if reader[index] != fresh[index] {
            leaked += 1;
            defmt::error!(
                "residue: {=str} leaked: fresh {=u64:#x}, written {=u64:#x}, next guest {=u64:#x}",
                name,
                fresh[index],
                writer[index],
                reader[index]
            );
        }
    }
    defmt::info!(
        "residue: {=usize} registers read by a fresh guest, changed {=usize} of them in the next, {=usize} leaked to a third on the same CPU",
        names.len(),
        changed,
        leaked
    );
    check("no register leaked", leaked == 0)
}

/// F3: a fetch from a trapped page and a table walk into one are external aborts delivered to
/// the guest; the page stays unmapped, so a store to it afterwards is still a MEM packet.
fn trap_fetch(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::trap_fetch())?;
    call("set_trap", f.guest.set_mem_trap(TRAP_ADDR, PAGE, TRAP_KEY))?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    let packet = call("vcpu_enter", vcpu.enter())?;
    let stored =
        matches!(packet, Packet::Mem { key: TRAP_KEY, mem } if mem.addr == TRAP_ADDR && !mem.read && mem.data == 0x77);
    check("the store after the fetch is a MEM packet", stored)?;
    expect_exit(&vcpu)?;
    let x = call("read_state", vcpu.read_state())?.x;
    defmt::info!(
        "trap-fetch: fetch from the trapped page: ESR_EL1 {=u64:#x}, FAR_EL1 {=u64:#x}, ELR_EL1 {=u64:#x}; the store after it a MEM packet; walk into it: ESR_EL1 {=u64:#x}, FAR_EL1 {=u64:#x}",
        x[25],
        x[26],
        x[27],
        x[28],
        x[29]
    );
    check(
        "prefetch and data external aborts",
        (x[25], x[26], x[27], x[28], x[29]) == (0x8600_0010, TRAP_ADDR, TRAP_ADDR, 0x9600_0010, 0xffff_ff80_0000_0000),
    )
}

/// F7: WFIT's timeout ends the wait (it used to be a WFI without one: asleep forever).
fn wfit(process: &Process, resource: u32) -> Outcome {
    let x = run_to_exit(process, resource, guests::wfit())?;
    let woke_at_timeout = x[2] >= x[1] && x[4] >= 1;
    defmt::info!("wfit: WFIT with a timeout 200000 ticks ahead returned by it: {=bool}", woke_at_timeout);
    check("woke at the timeout", woke_at_timeout)
}

/// F9: an AArch32 access without syndrome to a trapped page is an external abort delivered to
/// the guest, not an A64 decoding of an A32 instruction.
fn aarch32_stm(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::aarch32_stm())?;
    call("set_trap", f.guest.set_mem_trap(TRAP_ADDR, PAGE, TRAP_KEY))?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    expect_exit(&vcpu)?;
    let x = call("read_state", vcpu.read_state())?.x;
    defmt::info!(
        "aarch32-stm: STM at AArch32 EL0 into the trapped page: ESR_EL1 {=u64:#x}, FAR_EL1 {=u64:#x}, r0 {=u64}",
        x[21],
        x[22],
        x[0]
    );
    check("a data abort from a lower EL, r0 intact", (x[21], x[22], x[0] & 0xffff_ffff) == (0x9200_0050, TRAP_ADDR, 7))
}

/// F5: a guest's semihosting calls reach nothing: each `HLT #0xF000` is an undefined
/// instruction at the guest's EL1, and the run goes on to end with Belfry's own status.
fn semihosting(process: &Process, resource: u32) -> Outcome {
    let x = run_to_exit(process, resource, guests::semihosting())?;
    defmt::info!(
        "semihosting: the guest's SYS_WRITE0 and SYS_EXIT were {=u64} undefined instructions at its EL1 (ESR_EL1 {=u64:#x})",
        x[21],
        x[22]
    );
    check("both UNDEF", x[21] == 2 && x[22] >> 26 == 0)
}

/// F8: a load/store pair without syndrome that starts in RAM and ends in a trap: the RAM
/// element is performed by Belfry on guest memory, the trapped one is the MEM packet, at the
/// right addresses, and the writeback still applies.
fn mmio_straddle(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::mmio_straddle())?;
    let vcpu = device_vcpu(&f)?;
    let mut writes: [(u64, u8, u64); 4] = [(0, 0, 0); 4];
    let mut write_count = 0;
    let reads = serve_device(&vcpu, &mut writes, &mut write_count)?;
    let x = call("read_state", vcpu.read_state())?.x;
    let mut word = [0u8; 8];
    call("vmo_read", f.memory.read(TRAP_ADDR - 8, &mut word))?;
    let ram = u64::from_le_bytes(word);
    defmt::info!(
        "mmio-straddle: RAM word {=u64:#x}; device writes {=usize} (+{=u64}: {=u64:#x}), reads {=usize}; x1 {=u64:#x} x2 {=u64:#x} x3 {=u64:#x} x4 {=u64:#x} x7 {=u64:#x}",
        ram,
        write_count,
        writes[0].0,
        writes[0].2,
        reads,
        x[1],
        x[2],
        x[3],
        x[4],
        x[7]
    );
    let (x9, x10, device) = (0x1122_3344_5566_7788, 0x99aa_bbcc_ddee_ff00, 0x8786_8584_8382_8180);
    check(
        "each element at its own address",
        ram == x9
            && writes[..write_count] == [(0, 8, x10)]
            && reads == 2
            && [x[1], x[2], x[3], x[4], x[7]] == [x9, device, x9, device, TRAP_ADDR - 8],
    )
}

/// F12: one expiry of the level-triggered virtual timer is one interrupt, even when the guest
/// exits to EL2 between acknowledging it and silencing the timer.
fn timer_level(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::timer_level())?;
    let vcpu = gic_vcpu(&f.guest)?;
    expect_exit(&vcpu)?;
    let ticks = call("read_state", vcpu.read_state())?.x[19];
    defmt::info!("timer-level: one expiry, an exit inside the handler: {=u64} interrupt(s) taken", ticks);
    check("one interrupt", ticks == 1)
}

/// The virtual timer's interrupt ended while the timer still asserts it is taken again (its
/// list register forwards the guest's deactivation to the physical PPI, which signals anew),
/// and once the guest silences the timer, no more. Reports how many re-deliveries waited for
/// an exit of the guest (see the test for why that differs between GIC models).
fn timer_reasserted(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::timer_reasserted())?;
    let vcpu = gic_vcpu(&f.guest)?;
    expect_exit(&vcpu)?;
    let x = call("read_state", vcpu.read_state())?.x;
    let (ticks, exits) = (x[19], x[18]);
    defmt::info!(
        "timer-reasserted: ended twice with the timer asserted, then silenced: {=u64} interrupt(s) taken, {=u64} after an exit",
        ticks,
        exits
    );
    check("three interrupts", ticks == 3)
}

/// A virtual timer that comes due while the VMM serves a MEM exit is taken at once. The entry
/// after a MEM exit resumes without looking at the timer (`guest::run`): the armed physical
/// PPI, pending since the timer fired, must bring the guest straight back out to EL2, whose
/// full entry then injects it. Without that the guest, exiting only for MEM, would never see it.
fn timer_during_mem(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::timer_during_mem())?;
    call("set_trap", f.guest.set_mem_trap(TRAP_ADDR, PAGE, TRAP_KEY))?;
    let vcpu = gic_vcpu(&f.guest)?;
    let mut served: Option<FaultView> = None;
    let mut accesses = 0u64;
    loop {
        let entered = vmm::fault::enter_after(served.take(), &vcpu);
        let packet = call("vcpu_enter", entered)?.decode();
        if is_exit(&packet) {
            break;
        }
        let Packet::Mem { key: TRAP_KEY, mem } = packet else {
            return Err(Failure::Mismatch("a MEM packet of the trap"));
        };
        accesses += 1;
        // Serving takes a while: 25 000 counter ticks, so the timer (20 000 ticks after the
        // guest armed it, just before its first access) comes due while the first is served.
        let start = el2::arch::aarch64::timer::ticks();
        while el2::arch::aarch64::timer::ticks().wrapping_sub(start) < 25_000 {
            core::hint::spin_loop();
        }
        served = Some(FaultView::new(mem, 0));
    }
    let x = call("read_state", vcpu.read_state())?.x;
    let (taken, after) = (x[19], x[18]);
    defmt::info!(
        "timer-during-mem: {=u64} access(es) served, the timer taken {=u64} time(s) after {=u64}",
        accesses,
        taken,
        after
    );
    let prompt = taken == 1 && after == 1;
    defmt::info!(
        "timer-during-mem: the timer that came due while the VMM served an access was taken at once: {=bool}",
        prompt
    );
    check("the timer taken once, right after the access it came due in", prompt)
}

/// F6: with every list register active-and-pending and another interrupt waiting, the guest
/// still runs at full speed (no NPIE self-livelock): its 100 000-iteration loop takes the
/// ticks it takes natively, under -icount one per instruction.
fn active_pending(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::active_pending())?;
    call("set_trap", f.guest.set_mem_trap(TRAP_ADDR, PAGE, TRAP_KEY))?;
    let vcpu = gic_vcpu(&f.guest)?;
    for vector in 32..36 {
        call("vcpu_interrupt", vcpu.interrupt(vector))?;
    }
    let packet = call("vcpu_enter", vcpu.enter())?;
    check("the guest's signal", matches!(packet, Packet::Mem { key: TRAP_KEY, .. }))?;
    for vector in 32..37 {
        call("vcpu_interrupt", vcpu.interrupt(vector))?;
    }
    let mut control = call("read_control", vcpu.read_control())?;
    control.flags = 1;
    call("write_control", vcpu.write_control(&control))?;
    expect_exit(&vcpu)?;
    let mut word = [0u8; 8];
    call("vmo_read", f.memory.read(0x30000, &mut word))?;
    let ticks = u64::from_le_bytes(word);
    let full_speed = ticks < 1_000_000;
    defmt::info!(
        "active-pending: four list registers active and pending, one waiting: the 100000-iteration loop ran at full speed: {=bool}",
        full_speed
    );
    if !full_speed {
        defmt::error!("active-pending: the loop took {=u64} ticks", ticks);
    }
    check("no self-livelock", full_speed)
}
