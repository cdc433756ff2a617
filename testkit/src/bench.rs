//! The firmware side of `cargo xtask bench`: each exit path's cost, measured in Belfry's own
//! EL2 instruction counter (`el2::arch::aarch64::pmu`) and in the guest's virtual counter,
//! under QEMU `-icount shift=0,sleep=off` where both are exact and repeat run after run.
//!
//! A benchmark guest marks (a MEM trap the VMM answers), runs its operation N times, marks,
//! runs it 2N times and marks again. Each window holds the same marker overhead, so the cost of
//! one operation is (second window - first window) / N, in EL2 instructions and in guest
//! nanoseconds (16 ns per tick of QEMU's 62.5 MHz counter; one instruction is 1 ns). Results go
//! to the log as `bench: NAME el2 X guest_ns Y`, which xtask collects.

use crate::guests;
use crate::machine::{GICD_KEY, GUEST_GICD};
use crate::suite::{call, check, fixture, join, Failure, Outcome, EXIT_TEST_ADDR};
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use el2::api::{Port, Vcpu};
use el2::arch::aarch64::pmu;
use el2::object::packet::Packet;
use el2::object::process::Process;
use vmm::distributor::GICD_SGIR;

const MARK_ADDR: u64 = 0xffd000;
const MARK_KEY: u64 = 0x6d61;
const TRAP_ADDR: u64 = 0xffe000;
const TRAP_KEY: u64 = 0x7472;
const BELL_ADDR: u64 = 0xffc000;
const PAGE: u64 = 4096;

/// What one path costs per operation.
struct Cost {
    el2: u64,
    guest_ns: u64,
}

fn counter_ns(ticks: u64) -> u64 {
    (u128::from(ticks) * 1_000_000_000 / u128::from(el2::arch::aarch64::timer::frequency())) as u64
}

/// A second party some paths need, on its own thread.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Companion {
    None,
    /// VCPU 1 of the same guest on cpu0, storing to the MEM trap forever; both VCPUs' threads
    /// yield after each MEM packet, so each operation is two VCPU switches.
    SwitchPartner,
    /// VCPU 1 on cpu1, taking SGIs (`bench_ipi_target`); the VMM delivers VCPU 0's SGIs to it.
    IpiTarget,
    /// A thread on cpu1 that injects vector 32 into VCPU 0 each time the guest has counted the
    /// previous one at 0x30000.
    Injector,
}

/// Where a companion VCPU's program goes in guest memory.
const COMPANION_CODE: u64 = 0x8000;
/// The companion's VCPU handle (0: none yet) and the injector's start signal.
static COMPANION_VCPU: AtomicU32 = AtomicU32::new(0);
static INJECT_START: AtomicBool = AtomicBool::new(false);

/// One benchmark: the guest `code` with `n` operations per unit, `interrupt` injected first.
struct Path {
    name: &'static str,
    code: &'static [u8],
    n: u64,
    interrupt: Option<u32>,
    companion: Companion,
    /// Exits (or switches) per operation, to report the cost of one.
    per_operation: u64,
}

/// Starts the companion VCPU's thread on `cpu` and waits until it runs.
fn start_companion(process: &'static Process, guest: u32, cpu: usize) -> Result<Arc<el2::thread::Thread>, Failure> {
    COMPANION_VCPU.store(0, Ordering::Release);
    let version: u64 = if el2::irq::is_gicv3() { 3 } else { 2 };
    let thread = call(
        "thread_spawn",
        el2::thread::spawn(cpu, "companion", move || {
            let Ok(vcpu) = process.vcpu_create(guest, 0, COMPANION_CODE) else { return };
            let mut bytes = [0u8; 264];
            if process.vcpu_read_state(vcpu, el2::object::vcpu::VCPU_STATE, &mut bytes).is_ok() {
                bytes[20 * 8..21 * 8].copy_from_slice(&version.to_le_bytes());
                let _ = process.vcpu_write_state(vcpu, el2::object::vcpu::VCPU_STATE, &bytes);
            }
            COMPANION_VCPU.store(vcpu, Ordering::Release);
            // Runs until kicked; a MEM packet (the switch partner's store) is completed, then the
            // CPU is yielded to VCPU 0's thread.
            let vcpu = Vcpu(el2::api::OwnedHandle::new(process, vcpu));
            while let Ok(packet) = vcpu.enter_packet() {
                if let Some(view) = vmm::fault::FaultView::of(&packet, 0) {
                    if view.finish(&vcpu).is_err() {
                        return;
                    }
                    el2::thread::yield_now();
                }
            }
        }),
    )?;
    while COMPANION_VCPU.load(Ordering::Acquire) == 0 {
        check("the companion started", !thread.has_exited())?;
        el2::thread::yield_now();
    }
    Ok(thread)
}

/// Called at every mark: `cargo xtask bench --trace` finds the marks in QEMU's execution log by
/// this function's address (three per path, in the order of [`run`]'s paths).
#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn belfry_bench_mark() {
    // SAFETY: an empty instruction sequence the compiler cannot remove or merge.
    unsafe { core::arch::asm!("nop", options(nomem, nostack, preserves_flags)) };
}

/// Runs one benchmark path; see the module documentation.
fn measure(process: &'static Process, resource: u32, path: &Path) -> Result<Cost, Failure> {
    let n = path.n;
    let f = fixture(process, resource, path.code)?;
    call("set_trap(mark)", f.guest.set_mem_trap(MARK_ADDR, PAGE, MARK_KEY))?;
    call("set_trap(mem)", f.guest.set_mem_trap(TRAP_ADDR, PAGE, TRAP_KEY))?;
    call("set_trap(gicd)", f.guest.set_mem_trap(GUEST_GICD, PAGE, GICD_KEY))?;
    let port = call("port_create", Port::create(process))?;
    call("set_trap(bell)", f.guest.set_bell_trap(BELL_ADDR, PAGE, &port, 0xbe11))?;
    let guest = f.guest.handle.raw();
    let companion = match path.companion {
        Companion::SwitchPartner => {
            call("vmo_write", f.memory.write(COMPANION_CODE, guests::bench_switch_partner()))?;
            Some(start_companion(process, guest, 0)?)
        }
        Companion::IpiTarget => {
            call("vmo_write", f.memory.write(COMPANION_CODE, guests::bench_ipi_target()))?;
            Some(start_companion(process, guest, 1)?)
        }
        Companion::None | Companion::Injector => None,
    };
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    let mut state = call("read_state", vcpu.read_state())?;
    state.x[19] = n;
    state.x[20] = if el2::irq::is_gicv3() { 3 } else { 2 };
    call("write_state", vcpu.write_state(&state))?;
    if let Some(vector) = path.interrupt {
        call("vcpu_interrupt", vcpu.interrupt(vector))?;
    }
    let injector = if path.companion == Companion::Injector {
        INJECT_START.store(false, Ordering::Release);
        let (target, memory) = (vcpu.0.raw(), f.memory.0.raw());
        Some(call(
            "thread_spawn",
            el2::thread::spawn(1, "injector", move || {
                while !INJECT_START.load(Ordering::Acquire) {
                    core::hint::spin_loop();
                }
                for count in 1..=3 * n {
                    if process.vcpu_interrupt(target, 32).is_err() {
                        return;
                    }
                    let mut word = [0u8; 8];
                    while process.vmo_read(memory, &mut word, 0x30000).is_ok() && u64::from_le_bytes(word) < count {
                        for _ in 0..1000 {
                            core::hint::spin_loop();
                        }
                    }
                }
            }),
        )?)
    } else {
        None
    };
    let partner = COMPANION_VCPU.load(Ordering::Acquire);
    let mut marks = [(0u64, 0u64); 3];
    // The VCPU's exits by kind at each mark: which exits an operation takes.
    let mut exits = [el2::object::exit::ExitCounts::default(); 3];
    let mut count = 0;
    // The access served last, completed with the next entry (`FaultView::finish_and_enter`).
    let mut served: Option<vmm::fault::FaultView> = None;
    loop {
        let entered = vmm::fault::enter_after(served.take(), &vcpu);
        let packet = call("vcpu_enter", entered)?;
        // A MEM exit is read from the packet's words; anything else is decoded.
        let Some(mut view) = vmm::fault::FaultView::of(&packet, 0) else {
            match packet.decode() {
                // VCPU 0's SGI to VCPU 1 (ICC_SGI1R_EL1).
                Packet::VcpuInterrupt { mask, vector, .. } => {
                    if mask & 0b10 != 0 {
                        call("vcpu_interrupt", process.vcpu_interrupt(partner, u32::from(vector)))?;
                    }
                    continue;
                }
                _ => return Err(Failure::Mismatch("a MEM or INTERRUPT packet")),
            }
        };
        match view.address() {
            // The guest's end (`suite::is_exit`).
            EXIT_TEST_ADDR if packet.key == 0 && !view.is_read() => break,
            MARK_ADDR => {
                // Read at the marks only (the same point of each), not on every packet: the
                // counter's own instructions are no part of any path.
                let el2 = pmu::el2_instructions().unwrap_or(0);
                belfry_bench_mark();
                if let Some(slot) = marks.get_mut(count) {
                    *slot = (el2, view.data());
                }
                // Read after the EL2 count: every window holds one such read.
                if let (Some(slot), Ok(counts)) = (exits.get_mut(count), vcpu.read_exits()) {
                    *slot = counts;
                }
                count += 1;
                INJECT_START.store(true, Ordering::Release);
            }
            address if address == GUEST_GICD + GICD_SGIR && !view.is_read() => {
                // GICD_SGIR with a target list naming VCPU 1.
                let sgir = view.data() as u32;
                if (sgir >> 24) & 0b11 == 0 && (sgir >> 16) & 0b10 != 0 {
                    call("vcpu_interrupt", process.vcpu_interrupt(partner, sgir & 0xf))?;
                }
            }
            _ => {}
        }
        if view.is_read() {
            view.set_data(0);
        }
        if path.companion == Companion::SwitchPartner && view.address() == TRAP_ADDR {
            el2::thread::yield_now();
        }
        served = Some(view);
    }
    for thread in [companion, injector].into_iter().flatten() {
        if path.companion != Companion::Injector {
            call("vcpu_kick", process.vcpu_kick(partner))?;
        }
        join(&thread);
    }
    check("three marks", count == 3)?;
    let window = |a: usize, b: usize| (pmu::counted(marks[a].0, marks[b].0), marks[b].1.wrapping_sub(marks[a].1));
    let (el2_first, ticks_first) = window(0, 1);
    let (el2_second, ticks_second) = window(1, 2);
    let operations = n * path.per_operation;
    let per_operation = |total: u64, count: u64| (total + count / 2) / count;
    // Exits per 100 operations by kind (window difference), for `cargo xtask bench`'s report.
    let mut per_hundred = [0u64; el2::object::exit::EXIT_KINDS];
    for (kind, slot) in per_hundred.iter_mut().enumerate() {
        let window = |a: usize, b: usize| exits[b].0[kind].wrapping_sub(exits[a].0[kind]);
        *slot = per_operation(100 * window(1, 2).saturating_sub(window(0, 1)), operations);
    }
    let [page, trap, abort, hvc, sgi, wait, sysreg, fp, interrupt, other] = per_hundred;
    defmt::info!(
        "bench-exits: {=str} per 100 operations: page {=u64} trap {=u64} abort {=u64} hvc {=u64} sgi {=u64} wait {=u64} sysreg {=u64} fp {=u64} interrupt {=u64} other {=u64}",
        path.name, page, trap, abort, hvc, sgi, wait, sysreg, fp, interrupt, other
    );
    if matches!(path.companion, Companion::Injector | Companion::IpiTarget) {
        // Across two CPUs, where an event lands in the other CPU's time slice varies from
        // window to window by more than one operation costs, so the difference of the windows
        // means nothing; the second window's average (one mark's share included) is reported.
        let operations = 2 * operations;
        return Ok(Cost {
            el2: per_operation(el2_second, operations),
            guest_ns: per_operation(counter_ns(ticks_second), operations),
        });
    }
    Ok(Cost {
        el2: per_operation(el2_second.saturating_sub(el2_first), operations),
        guest_ns: per_operation(counter_ns(ticks_second.saturating_sub(ticks_first)), operations),
    })
}

/// The guest loop's body run natively at EL2, without a guest: instructions and nanoseconds
/// per iteration, by the same two-window difference.
fn native_loop(n: u64) -> Cost {
    let run = |iterations: u64| {
        let (start_el2, start_ticks) = (pmu::el2_instructions().unwrap_or(0), el2::arch::aarch64::timer::ticks());
        // SAFETY: a register-only loop (the guest loop's body, `add`, and its counter).
        unsafe {
            core::arch::asm!("1: add {x}, {x}, #1", "subs {n}, {n}, #1", "b.ne 1b",
                x = inout(reg) 0u64 => _, n = inout(reg) iterations => _, options(nomem, nostack));
        }
        let (end_el2, end_ticks) = (pmu::el2_instructions().unwrap_or(0), el2::arch::aarch64::timer::ticks());
        (pmu::counted(start_el2, end_el2), end_ticks.wrapping_sub(start_ticks))
    };
    let (el2_first, ticks_first) = run(n);
    let (el2_second, ticks_second) = run(2 * n);
    Cost {
        el2: (el2_second.saturating_sub(el2_first) + n / 2) / n,
        guest_ns: (counter_ns(ticks_second.saturating_sub(ticks_first)) + n / 2) / n,
    }
}

/// Every path; see the module documentation.
pub fn run(process: &'static Process, resource: u32) -> Outcome {
    check("a PMU counter for EL2", pmu::el2_instructions().is_some())?;
    let path = |name, code, n, interrupt, companion, per_operation| Path {
        name,
        code,
        n,
        interrupt,
        companion,
        per_operation,
    };
    let paths = [
        path("null-hvc", guests::bench_null_hvc(), 64, None, Companion::None, 1),
        path("sysreg", guests::bench_sysreg(), 64, None, Companion::None, 1),
        path("mem-store", guests::bench_mem_store(), 64, None, Companion::None, 1),
        path("mem-load", guests::bench_mem_load(), 64, None, Companion::None, 1),
        path("bell", guests::bench_bell(), 32, None, Companion::None, 1),
        path("interrupt", guests::bench_interrupt_wait(), 32, None, Companion::Injector, 1),
        path("guest-ipi", guests::bench_ipi(), 32, None, Companion::IpiTarget, 1),
        path("virtual-eoi", guests::bench_eoi(), 64, None, Companion::None, 1),
        path("wfi-wake", guests::bench_wfi_timer(), 16, None, Companion::None, 1),
        path("wfi-pending", guests::bench_wfi_pending(), 64, Some(32), Companion::None, 1),
        path("mem-store+switch", guests::bench_mem_store(), 32, None, Companion::SwitchPartner, 1),
        path("demand-page", guests::bench_demand_page(), 64, None, Companion::None, 1),
        path("guest-loop", guests::bench_guest_loop(), 4096, None, Companion::None, 1),
    ];
    let mut guest_loop_ns = 0;
    let mut mem_store = Cost { el2: 0, guest_ns: 0 };
    for path in &paths {
        // For `cargo xtask bench --trace`: how many operations each window's difference holds.
        defmt::info!("bench-trace: {=str} operations {=u64}", path.name, path.n * path.per_operation);
        let cost = measure(process, resource, path)?;
        match path.name {
            "guest-loop" => guest_loop_ns = cost.guest_ns,
            "mem-store" => mem_store = Cost { ..cost },
            "mem-store+switch" => {
                // Each operation is a MEM round trip and two switches (to VCPU 1's thread, whose
                // own round trip is on the other side, and back): the switch is the difference.
                let el2 = cost.el2.saturating_sub(2 * mem_store.el2) / 2;
                let guest_ns = cost.guest_ns.saturating_sub(2 * mem_store.guest_ns) / 2;
                defmt::info!("bench: vcpu-switch el2 {=u64} guest_ns {=u64}", el2, guest_ns);
                continue;
            }
            _ => {}
        }
        defmt::info!("bench: {=str} el2 {=u64} guest_ns {=u64}", path.name, cost.el2, cost.guest_ns);
    }
    let native = native_loop(4096);
    defmt::info!("bench: native-loop el2 {=u64} guest_ns {=u64}", native.el2, native.guest_ns);
    // Under icount a nanosecond is an instruction: the loop's instructions per iteration as a
    // guest over the same natively at EL2, in hundredths (the guest runs no EL2 instruction).
    let ratio = (guest_loop_ns * 100).checked_div(native.guest_ns).unwrap_or(0);
    defmt::info!(
        "bench: loop ratio {=u64}/100 (as a guest {=u64} ns per iteration, natively {=u64} ns)",
        ratio,
        guest_loop_ns,
        native.guest_ns
    );
    Ok(())
}
