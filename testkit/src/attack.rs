//! The attack suite: guests that do what a hostile guest would, and the checks that Belfry and
//! the other guests come through unharmed. Each scenario ends with a clean guest running to
//! its exit, which shows EL2 still serves guests after the attack.
//!
//! - `sysreg-sweep`: MRS of every op0 = 2 and op0 = 3 encoding (32 768), restarting the guest
//!   after each one Belfry kills it for.
//! - `psci-sweep`: every PSCI and SMCCC function ID of the standard ranges and some beyond, over
//!   HVC and SMC, with garbage arguments: each answers exactly as DEN0022/DEN0028 say.
//! - `doorbell-flood`: 50 000 doorbells through one BELL trap to a consumer on another CPU
//!   that takes them slowly: every one arrives, in order, none lost.
//! - `doorbell-same-cpu`: doorbells to a consumer on the ringing VCPU's own CPU, the guest then
//!   spinning with no other exit: the consumer's wake-up gets it a time slice, so it receives
//!   every doorbell before a watchdog kicks the guest.
//! - `random-words`: rounds of 16 384 random instruction words run at the guest's EL1, each
//!   round ended by the guest's exit, a kill, or a watchdog's kick.
//! - `gic-fuzz`: 20 000 random accesses to the emulated distributor and redistributors.
//! - `interrupt-flood`: 100 000 `vcpu_interrupt` calls from another CPU into a running guest.

use crate::guests;
use crate::suite::{call, check, fixture, gic_vcpu, is_exit, Failure, Outcome};
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use el2::api::Vcpu;
use el2::object::packet::Packet;
use el2::object::process::Process;
use el2::object::Status;

const PAGE: u64 = 4096;
const TRAP_ADDR: u64 = 0xffe000;

/// A clean guest after the attack: Belfry still runs guests.
fn still_serving(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::vcpu_enter())?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    let packet = call("vcpu_enter", vcpu.enter())?;
    check("a clean guest runs after the attack", is_exit(&packet))
}

fn word(memory: &el2::api::Vmo<'_>, address: u64) -> Result<u64, Failure> {
    let mut bytes = [0u8; 8];
    call("vmo_read", memory.read(address, &mut bytes))?;
    Ok(u64::from_le_bytes(bytes))
}

/// The short exit's answers reach every general register, and leave the others as they were
/// (`guests::short_exit_registers`).
pub fn short_exit_registers(process: &Process, resource: u32) -> Outcome {
    let f = fixture(process, resource, guests::short_exit_registers())?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    let packet = call("vcpu_enter", vcpu.enter())?;
    check("the guest ran to its end", is_exit(&packet))?;
    let pfr0 = el2::traps::guest_id_register(4, 0, el2::arch::aarch64::world::read_id_register(4, 0));
    let mut wrong = 0u64;
    for n in 1..=30u64 {
        wrong += u64::from(word(&f.memory, 0x30000 + 8 * (n - 1))? != pfr0);
        let expected = if n == 1 { el2::object::psci::SUCCESS } else { n };
        wrong += u64::from(word(&f.memory, 0x31000 + 8 * (n - 1))? != expected);
    }
    wrong += u64::from(word(&f.memory, 0x32000)? != 0);
    defmt::info!("short-exit-registers: 61 registers checked, {=u64} wrong", wrong);
    check("every register as the short exit left it", wrong == 0)
}

/// MRS of every op0 = 2 and op0 = 3 encoding.
pub fn sysreg_sweep(process: &Process, resource: u32) -> Outcome {
    const ENCODINGS: u64 = 0x8000;
    let (mut next, mut killed, mut undefined, mut guests_run) = (0u64, 0u64, 0u64, 0u64);
    while next < ENCODINGS {
        guests_run += 1;
        let f = fixture(process, resource, guests::sysreg_sweep())?;
        let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
        let mut state = call("read_state", vcpu.read_state())?;
        state.x[0] = next;
        call("write_state", vcpu.write_state(&state))?;
        let result = vcpu.enter();
        undefined += word(&f.memory, 0x30008)?;
        match result {
            Ok(packet) if is_exit(&packet) => next = ENCODINGS,
            Err(Status::NOT_SUPPORTED) => {
                killed += 1;
                next = word(&f.memory, 0x30000)? + 1;
            }
            _ => return Err(Failure::Mismatch("an exit or a kill")),
        }
    }
    let read = ENCODINGS - killed - undefined;
    defmt::info!(
        "sysreg-sweep: {=u64} MRS encodings: {=u64} read, {=u64} undefined at the guest's EL1, {=u64} killed the guest ({=u64} guests)",
        ENCODINGS,
        read,
        undefined,
        killed,
        guests_run
    );
    still_serving(process, resource)
}

/// The function IDs of the PSCI/SMCCC sweep and what each must answer (`None`: ends `enter`).
fn psci_functions() -> alloc::vec::Vec<(u64, Option<u64>)> {
    use el2::object::psci::*;
    let mut list = alloc::vec::Vec::new();
    for base in [0x8400_0000u64, 0xc400_0000, 0x8000_0000, 0xc000_0000, 0x8600_0000, 0xc600_0000, 0xbf00_0000] {
        for n in 0..0x20 {
            list.push(base + n);
        }
    }
    list.extend([0, 0xffff_ffff, 0xffff_ffff_ffff_ffff, 0x8400_ff00, 0x1_8400_0000, 0x8100_0000]);
    list.into_iter()
        .map(|function| {
            let answer = match function {
                PSCI_VERSION => Some(VERSION_1_1),
                SMCCC_VERSION => Some(SMCCC_VERSION_1_1),
                MIGRATE_INFO_TYPE => Some(MIGRATE_NOT_PRESENT),
                // Garbage targets and feature IDs.
                CPU_ON | CPU_ON_32 | AFFINITY_INFO | AFFINITY_INFO_32 => Some(INVALID_PARAMETERS),
                CPU_OFF | SYSTEM_OFF | SYSTEM_RESET => None,
                _ => Some(NOT_SUPPORTED),
            };
            (function, answer)
        })
        .collect()
}

/// Every PSCI/SMCCC function ID of the standard ranges, over HVC and SMC, with garbage.
pub fn psci_sweep(process: &Process, resource: u32) -> Outcome {
    let functions = psci_functions();
    let f = fixture(process, resource, guests::psci_sweep())?;
    for (index, (function, _)) in functions.iter().enumerate() {
        call("vmo_write", f.memory.write(0x40000 + 8 * index as u64, &function.to_le_bytes()))?;
    }
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    let mut state = call("read_state", vcpu.read_state())?;
    state.x[0] = functions.len() as u64;
    call("write_state", vcpu.write_state(&state))?;
    let mut left_enter = 0u32;
    loop {
        match vcpu.enter() {
            Ok(packet) if is_exit(&packet) => break,
            Ok(Packet::VcpuStartup { .. }) => {
                return Err(Failure::Mismatch("no CPU_ON with a garbage target starts a VCPU"))
            }
            Err(Status::UNAVAILABLE | Status::CANCELED | el2::object::psci::STOP) => left_enter += 1,
            _ => return Err(Failure::Mismatch("an exit, or SYSTEM_OFF/RESET/CPU_OFF")),
        }
    }
    let mut wrong = 0u32;
    for (index, (function, answer)) in functions.iter().enumerate() {
        let got = word(&f.memory, 0x50000 + 8 * index as u64)?;
        if let Some(answer) = answer {
            if got != *answer {
                wrong += 1;
                defmt::error!(
                    "psci-sweep: function {=u64:#x} answered {=u64:#x}, not {=u64:#x}",
                    function,
                    got,
                    answer
                );
            }
        }
    }
    defmt::info!(
        "psci-sweep: {=usize} function IDs over HVC and SMC: {=u32} wrong answers; SYSTEM_OFF, SYSTEM_RESET and CPU_OFF ended enter {=u32} times",
        functions.len(),
        wrong,
        left_enter
    );
    check("every answer as DEN0022 says", wrong == 0 && left_enter == 3)?;
    drop(vcpu);
    still_serving(process, resource)
}

/// 50 000 doorbells to a slow consumer on another CPU.
pub fn doorbell_flood(process: &'static Process, resource: u32) -> Outcome {
    const RINGS: u64 = 50_000;
    const KEY: u64 = 0xf100d;
    let f = fixture(process, resource, guests::doorbell_flood())?;
    let port = call("port_create", el2::api::Port::create(process))?;
    call("set_trap(bell)", f.guest.set_bell_trap(TRAP_ADDR, PAGE, &port, KEY))?;
    let port_handle = port.0.raw();
    let received = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (r, b, d) = (received.clone(), bad.clone(), done.clone());
    let consumer = call(
        "spawn",
        el2::thread::spawn(1, "consumer", move || {
            let mut count = 0u64;
            while count < RINGS && !d.load(Ordering::Acquire) {
                match process.port_wait(port_handle, el2::sync::now() + 100_000_000) {
                    Ok(packet) => {
                        match packet.decode() {
                            Packet::Bell { key: KEY, addr: TRAP_ADDR } => count += 1,
                            _ => {
                                b.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        // A slow consumer: let the producer fill its ring and pause.
                        if count.is_multiple_of(1000) {
                            el2::thread::yield_now();
                        }
                    }
                    Err(_) => el2::thread::yield_now(),
                }
                r.store(count, Ordering::Release);
            }
        }),
    )?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    let mut state = call("read_state", vcpu.read_state())?;
    state.x[0] = RINGS;
    call("write_state", vcpu.write_state(&state))?;
    let packet = call("vcpu_enter", vcpu.enter())?;
    check("the guest rang them all and exited", is_exit(&packet))?;
    let deadline = el2::sync::now() + 5_000_000_000;
    while received.load(Ordering::Acquire) < RINGS && el2::sync::now() < deadline {
        el2::thread::yield_now();
    }
    done.store(true, Ordering::Release);
    crate::suite::join(&consumer);
    let (received, bad) = (received.load(Ordering::Acquire), bad.load(Ordering::Acquire));
    defmt::info!(
        "doorbell-flood: {=u64} doorbells rung, {=u64} received by a slow consumer on cpu1, {=u64} other packets",
        RINGS,
        received,
        bad
    );
    check("every doorbell arrived", received == RINGS && bad == 0)?;
    drop(vcpu);
    still_serving(process, resource)
}

/// Doorbells to a consumer on the VCPU's own CPU, the guest spinning after them: rung in the
/// short exit, their wake-up must still give the consumer a time slice (`before_guest`), or it
/// would wait for the guest's next exit (here, the watchdog's kick).
pub fn doorbell_same_cpu(process: &'static Process, resource: u32) -> Outcome {
    const RINGS: u64 = 3;
    const KEY: u64 = 0x5a3e;
    let f = fixture(process, resource, guests::doorbell_spin())?;
    let port = call("port_create", el2::api::Port::create(process))?;
    call("set_trap(bell)", f.guest.set_bell_trap(TRAP_ADDR, PAGE, &port, KEY))?;
    let port_handle = port.0.raw();
    let here = el2::arch::current_cpu();
    let received = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let (r, b) = (received.clone(), bad.clone());
    let consumer = call(
        "spawn",
        el2::thread::spawn(here, "consumer", move || {
            // A deadline far past the watchdog's: no timer of its own brings it in.
            let deadline = el2::sync::now() + 20_000_000_000;
            while r.load(Ordering::Acquire) < RINGS && el2::sync::now() < deadline {
                match process.port_wait(port_handle, deadline).map(|packet| packet.decode()) {
                    Ok(Packet::Bell { key: KEY, addr: TRAP_ADDR }) => {
                        r.fetch_add(1, Ordering::AcqRel);
                    }
                    _ => {
                        b.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }),
    )?;
    let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
    let mut state = call("read_state", vcpu.read_state())?;
    state.x[0] = RINGS;
    call("write_state", vcpu.write_state(&state))?;
    // The watchdog, on the other CPU, waits up to 2 s for the consumer, then kicks the guest.
    let vcpu_handle = vcpu.0.raw();
    let at_kick = Arc::new(AtomicU64::new(u64::MAX));
    let (r, k) = (received.clone(), at_kick.clone());
    let watchdog = call(
        "spawn",
        el2::thread::spawn(1 - here.min(1), "watchdog", move || {
            let deadline = el2::sync::now() + 2_000_000_000;
            while r.load(Ordering::Acquire) < RINGS && el2::sync::now() < deadline {
                el2::thread::yield_now();
            }
            k.store(r.load(Ordering::Acquire), Ordering::Release);
            let _ = process.vcpu_kick(vcpu_handle);
        }),
    )?;
    let entered = vcpu.enter();
    crate::suite::join(&watchdog);
    crate::suite::join(&consumer);
    let (at_kick, received, bad) =
        (at_kick.load(Ordering::Acquire), received.load(Ordering::Acquire), bad.load(Ordering::Acquire));
    defmt::info!(
        "doorbell-same-cpu: {=u64} doorbells rung, {=u64} received on the VCPU's own cpu while the guest spun, {=u64} in all, {=u64} other packets",
        RINGS,
        at_kick,
        received,
        bad
    );
    check("the guest spun until kicked", entered == Err(Status::CANCELED))?;
    check("every doorbell arrived while the guest spun", at_kick == RINGS && received == RINGS && bad == 0)?;
    drop(vcpu);
    still_serving(process, resource)
}

/// Rounds of random instruction words at the guest's EL1.
pub fn random_words(process: &'static Process, resource: u32) -> Outcome {
    const ROUNDS: u32 = 60;
    const WORDS: usize = 16384;
    let current = Arc::new(AtomicU32::new(0));
    let round = Arc::new(AtomicU32::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let (c, r, done) = (current.clone(), round.clone(), finished.clone());
    // The watchdog kicks a round that has not ended within 20 ms (a guest in a loop or a WFI).
    let watchdog = call(
        "spawn",
        el2::thread::spawn(1, "watchdog", move || {
            let Ok(port) = process.port_create(0) else { return };
            let mut seen = u32::MAX;
            while !done.load(Ordering::Acquire) {
                let _ = process.port_wait(port, el2::sync::now() + 20_000_000);
                let now = r.load(Ordering::Acquire);
                if now == seen {
                    let _ = process.vcpu_kick(c.load(Ordering::Acquire));
                }
                seen = now;
            }
            let _ = process.handle_close(port);
        }),
    )?;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let (mut exits, mut killed, mut kicked, mut other) = (0u32, 0u32, 0u32, 0u32);
    for index in 0..ROUNDS {
        let f = fixture(process, resource, guests::random_words())?;
        let mut block = alloc::vec![0u8; WORDS * 4];
        for chunk in block.chunks_exact_mut(4) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            chunk.copy_from_slice(&(seed as u32).to_le_bytes());
        }
        call("vmo_write", f.memory.write(0x10000, &block))?;
        let vcpu = call("vcpu_create", Vcpu::create(&f.guest, 0))?;
        current.store(vcpu.0.raw(), Ordering::Release);
        // Up to 64 entries per round: MEM packets and calls that end `enter` are answered and
        // the guest resumed, until it exits, dies or is kicked.
        for _ in 0..64 {
            match vcpu.enter() {
                Ok(packet) if is_exit(&packet) => {
                    exits += 1;
                    break;
                }
                Err(Status::NOT_SUPPORTED) => {
                    killed += 1;
                    break;
                }
                Err(Status::CANCELED) if round.load(Ordering::Acquire) == index => {
                    kicked += 1;
                    break;
                }
                Err(Status::BAD_STATE) => {
                    other += 1;
                    break;
                }
                _ => {}
            }
        }
        round.store(index + 1, Ordering::Release);
    }
    finished.store(true, Ordering::Release);
    crate::suite::join(&watchdog);
    defmt::info!(
        "random-words: {=u32} rounds of {=usize} random words at EL1: {=u32} reached the exit page, {=u32} killed, {=u32} kicked, {=u32} other",
        ROUNDS,
        WORDS,
        exits,
        killed,
        kicked,
        other
    );
    still_serving(process, resource)
}

/// Random accesses to the emulated distributor and redistributors, served by the VMM's model.
pub fn gic_fuzz(process: &'static Process, resource: u32) -> Outcome {
    const ACCESSES: u64 = 20_000;
    let f = fixture(process, resource, guests::gic_fuzz())?;
    let machine = crate::machine::Machine::new(process, &f.guest, 2, |index| index)?;
    let vcpu = machine.create_vcpu(0, 0, ACCESSES)?;
    machine.serve(0, &vcpu, |_, _, _, _| Err(Failure::Mismatch("only GIC packets and the exit")))?;
    defmt::info!("gic-fuzz: {=u64} random accesses to the emulated GIC served; the guest exited", ACCESSES);
    drop(vcpu);
    still_serving(process, resource)
}

/// 100 000 `vcpu_interrupt` calls from cpu1 into a guest taking them on cpu0.
pub fn interrupt_flood(process: &'static Process, resource: u32) -> Outcome {
    const CALLS: u32 = 100_000;
    let f = fixture(process, resource, guests::interrupt_flood())?;
    let vcpu = gic_vcpu(&f.guest)?;
    let handle = vcpu.0.raw();
    let (failed, sent) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let (fail, count) = (failed.clone(), sent.clone());
    let memory_handle = f.memory.0.raw();
    let flooder = call(
        "spawn",
        el2::thread::spawn(1, "flood", move || {
            for i in 0..CALLS {
                if process.vcpu_interrupt(handle, 32 + i % 16).is_err() {
                    fail.fetch_add(1, Ordering::Relaxed);
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
            let _ = process.vmo_write(memory_handle, &1u64.to_le_bytes(), 0x30000);
        }),
    )?;
    let packet = call("vcpu_enter", vcpu.enter())?;
    crate::suite::join(&flooder);
    check("the guest exited", is_exit(&packet))?;
    let taken = word(&f.memory, 0x30008)?;
    let (failed, sent) = (failed.load(Ordering::Relaxed), sent.load(Ordering::Relaxed));
    defmt::info!(
        "interrupt-flood: {=u32} vcpu_interrupt calls from cpu1 ({=u32} failed); the guest took {=bool} interrupts and exited",
        sent,
        failed,
        taken > 0
    );
    check(
        "every call accepted, interrupts taken",
        failed == 0 && sent == CALLS && taken > 0 && taken <= u64::from(CALLS),
    )?;
    drop(vcpu);
    still_serving(process, resource)
}
