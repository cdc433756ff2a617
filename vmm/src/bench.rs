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
use crate::suite::{call, check, complete, fixture, is_exit, Failure, Outcome};
use el2::api::{Port, Vcpu};
use el2::arch::aarch64::pmu;
use el2::object::packet::Packet;
use el2::object::process::Process;

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

/// Runs one benchmark guest with `n` operations per unit; `interrupt` is injected first.
fn measure(process: &Process, resource: u32, code: &[u8], n: u64, interrupt: Option<u32>) -> Result<Cost, Failure> {
    let f = fixture(process, resource, code)?;
    call("set_trap(mark)", f.guest.set_mem_trap(MARK_ADDR, PAGE, MARK_KEY))?;
    call("set_trap(mem)", f.guest.set_mem_trap(TRAP_ADDR, PAGE, TRAP_KEY))?;
    let port = call("port_create", Port::create(process))?;
    call("set_trap(bell)", f.guest.set_bell_trap(BELL_ADDR, PAGE, &port, 0xbe11))?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    let mut state = call("read_state", vcpu.read_state())?;
    state.x[19] = n;
    call("write_state", vcpu.write_state(&state))?;
    if let Some(vector) = interrupt {
        call("vcpu_interrupt", vcpu.interrupt(vector))?;
    }
    let mut marks = [(0u64, 0u64); 3];
    let mut count = 0;
    loop {
        let packet = call("vcpu_enter", vcpu.enter())?;
        let el2 = pmu::el2_instructions().unwrap_or(0);
        if is_exit(&packet) {
            break;
        }
        let Packet::Mem { key, mem } = packet else { return Err(Failure::Mismatch("a MEM packet")) };
        if key == MARK_KEY {
            if let Some(slot) = marks.get_mut(count) {
                *slot = (el2, mem.data);
            }
            count += 1;
        }
        let mut control = call("read_control", vcpu.read_control())?;
        let mut view = crate::fault::FaultView::new(mem, control.pc);
        if view.is_read() {
            view.set_data(0);
        }
        complete(&vcpu, &view, &mut control)?;
    }
    check("three marks", count == 3)?;
    let window = |a: usize, b: usize| (marks[b].0.wrapping_sub(marks[a].0), marks[b].1.wrapping_sub(marks[a].1));
    let (el2_first, ticks_first) = window(0, 1);
    let (el2_second, ticks_second) = window(1, 2);
    Ok(Cost {
        el2: el2_second.saturating_sub(el2_first) / n,
        guest_ns: counter_ns(ticks_second.saturating_sub(ticks_first)) / n,
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
        (end_el2 - start_el2, end_ticks - start_ticks)
    };
    let (el2_first, ticks_first) = run(n);
    let (el2_second, ticks_second) = run(2 * n);
    Cost {
        el2: el2_second.saturating_sub(el2_first) / n,
        guest_ns: counter_ns(ticks_second.saturating_sub(ticks_first)) / n,
    }
}

/// Every path; see the module documentation.
pub fn run(process: &'static Process, resource: u32) -> Outcome {
    check("a PMU counter for EL2", pmu::el2_instructions().is_some())?;
    let paths: [(&str, &[u8], u64, Option<u32>); 7] = [
        ("null-hvc", guests::bench_null_hvc(), 64, None),
        ("mem-store", guests::bench_mem_store(), 64, None),
        ("mem-load", guests::bench_mem_load(), 64, None),
        ("bell", guests::bench_bell(), 32, None),
        ("wfi-pending", guests::bench_wfi_pending(), 64, Some(32)),
        ("demand-page", guests::bench_demand_page(), 64, None),
        ("guest-loop", guests::bench_guest_loop(), 4096, None),
    ];
    let mut guest_loop_ns = 0;
    for (name, code, n, interrupt) in paths {
        let cost = measure(process, resource, code, n, interrupt)?;
        defmt::info!("bench: {=str} el2 {=u64} guest_ns {=u64}", name, cost.el2, cost.guest_ns);
        if name == "guest-loop" {
            guest_loop_ns = cost.guest_ns;
        }
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
