//! The test kit's part of boot: the scenario the command line names, run once every CPU is
//! online (or, for `early-panic`, before the MMU and the log).

use crate::scenario::{self, Scenario, UNMAPPED_ADDRESS};
use crate::selftest;
use alloc::sync::Arc;
use el2::arch::aarch64::cpu;
use el2::boot::VmmProcess;
use el2::machine::Machine;
use el2::{exit_code, report, thread};

/// Before the MMU: `scenario=early-panic` panics here, on the early console's path.
pub fn early(command_line: &str) {
    if scenario::parse(command_line) == Ok(Scenario::EarlyPanic) {
        panic!("deliberate panic before the log (scenario=early-panic)");
    }
}

/// After boot: runs the scenario; `None` for `boot` (or no scenario), which boots on as the
/// product does.
pub fn run(machine: &Machine, vmm: &'static VmmProcess) -> Option<u32> {
    let scenario = match scenario::parse(machine.command_line.as_str()) {
        Ok(scenario) => scenario,
        Err(error) => {
            defmt::error!("bad command line: {}", error);
            report::stop(0, exit_code::BOOT_FAILED)
        }
    };
    defmt::info!("scenario: {}", scenario);
    match scenario {
        Scenario::Boot => None,
        Scenario::FaultOnBootCpu => fault(),
        Scenario::FaultOnCpu(target) => {
            if !el2::boot::is_online(target) {
                defmt::error!("cpu{=usize} is not online", target);
                report::stop(0, exit_code::BOOT_FAILED)
            }
            if let Err(status) = thread::spawn(target, "fault", || fault()) {
                defmt::error!("cannot start a thread on cpu{=usize}: {}", target, status);
                report::stop(0, exit_code::BOOT_FAILED)
            }
            // The faulting CPU ends the run; wait for it.
            thread::serve_forever()
        }
        Scenario::Panic | Scenario::EarlyPanic => panic!("deliberate panic (scenario=panic)"),
        Scenario::StackOverflow => {
            if let Err(status) = thread::spawn(1, "overflow", || {
                let depth = recurse(0);
                panic!("recursion returned at depth {} without overflowing", depth)
            }) {
                defmt::error!("cannot start a thread on cpu1: {}", status);
                report::stop(0, exit_code::BOOT_FAILED)
            }
            // The overflowing CPU ends the run; wait for it.
            thread::serve_forever()
        }
        Scenario::PortStress => {
            port_stress();
            Some(exit_code::SUCCESS)
        }
        Scenario::Guest(guest) => {
            if !crate::suite::run_reported(guest.name(), &vmm.process, vmm.hypervisor_resource) {
                report::stop(0, exit_code::TEST_FAILED)
            }
            Some(exit_code::SUCCESS)
        }
    }
}

fn fault() -> ! {
    defmt::info!("loading from unmapped address {=u64:#x}", UNMAPPED_ADDRESS);
    // SAFETY: deliberately not safe: the load faults, and the fault report never returns here.
    let value = unsafe { (UNMAPPED_ADDRESS as *const u64).read_volatile() };
    panic!("a load from {:#x} returned {:#x} instead of faulting", UNMAPPED_ADDRESS, value)
}

/// Recurses with a 1 KiB frame until the stack runs into its guard page (`scenario=stack-overflow`).
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 1024];
    frame[0] = depth as u8;
    let frame = core::hint::black_box(&mut frame);
    if depth < 1 << 40 {
        recurse(depth + 1) + u64::from(frame[0])
    } else {
        depth
    }
}

fn port_stress() {
    if !(0..4).all(el2::boot::is_online) {
        defmt::error!("port stress needs CPUs 0 to 3");
        report::stop(0, exit_code::BOOT_FAILED)
    }
    let stress = match selftest::PortStress::new(cpu::at_el2()) {
        Ok(stress) => Arc::new(stress),
        Err(status) => {
            defmt::error!("port stress setup failed: {}", status);
            report::stop(0, exit_code::TEST_FAILED)
        }
    };
    defmt::info!(
        "port stress: {=usize} producer and {=usize} consumer threads on {=usize} CPUs, {=u64} packets per producer",
        selftest::CPUS,
        selftest::CPUS,
        selftest::CPUS,
        selftest::PACKETS_PER_PRODUCER
    );
    let mut threads = alloc::vec::Vec::new();
    for cpu_index in 0..selftest::CPUS {
        let (producer, consumer) = (stress.clone(), stress.clone());
        let spawned = thread::spawn(cpu_index, "producer", move || producer.produce(cpu_index))
            .and_then(|p| Ok((p, thread::spawn(cpu_index, "consumer", move || consumer.consume(cpu_index))?)));
        match spawned {
            Ok((producer, consumer)) => threads.extend([producer, consumer]),
            Err(status) => {
                defmt::error!("cannot start threads on cpu{=usize}: {}", cpu_index, status);
                report::stop(0, exit_code::TEST_FAILED)
            }
        }
    }
    stress.wait_and_stop();
    while !threads.iter().all(|t| t.has_exited()) {
        thread::yield_now();
        core::hint::spin_loop();
    }
    if stress.verify() {
        defmt::info!(
            "port stress: all {=u64} packets accounted for; {=usize} threads finished",
            selftest::PACKETS_PER_PRODUCER * selftest::CPUS as u64,
            threads.len()
        );
    } else {
        report::stop(0, exit_code::TEST_FAILED)
    }
}
