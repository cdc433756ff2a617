//! The virtual GIC on every board: more pending interrupts than list registers, priorities
//! through the emulated distributor, nesting deeper than the list registers, guest SGIs, SMP
//! guests of two and four VCPUs, and the virtual timer. Every interrupt is delivered exactly
//! once, in priority order.

use belfry_system_tests::*;

/// Eight interrupts raised out of order, four list registers, a guest that never executes WFI:
/// the maintenance interrupt (no pending list register) brings the refills.
#[test]
fn more_pending_interrupts_than_list_registers() {
    run_guest_everywhere(
        "many-interrupts",
        &["many-interrupts: 8 raised, 4 list registers; taken in order [32, 33, 34, 35, 36, 37, 38, 39]"],
    );
}

/// A guest's SGI: on GICv3 its ICC_SGI1R_EL1 write traps and becomes a VCPU INTERRUPT packet
/// `{mask, vector}`; on GICv2 its GICD_SGIR write reaches the VMM's distributor model through a
/// MEM trap. Either way the VMM delivers it with `vcpu_interrupt` and the guest takes it.
#[test]
fn guest_sgis_reach_their_target() {
    for board in Board::ALL {
        let outcome = boot_scenario(board, "guest:self-ipi");
        expect_exit(&outcome, exit_code::SUCCESS);
        let route = match board {
            Board::Virt => "a VCPU INTERRUPT packet (ICC_SGI1R_EL1)",
            Board::VirtGicv2 | Board::Rpi4 => "the distributor model (GICD_SGIR)",
        };
        expect_line(
            &outcome,
            Some(0),
            &format!("self-ipi: the guest sent SGI 3 to itself through {route} and took SGI 3"),
        );
    }
}

/// An SMP guest: VCPU 0 starts VCPU 1 with PSCI CPU_ON (a STARTUP packet; the VMM starts a
/// thread on cpu1 with a VCPU at the entry point), then the two exchange 100 IPIs each way,
/// none lost and none duplicated.
#[test]
fn smp_guest_ping_pong() {
    run_guest_everywhere(
        "ping-pong",
        &[
            "ping-pong: PSCI CPU_ON for VCPU 1 at 0x50: starting it on cpu1",
            "ping-pong: VCPU 0 on cpu0 counted 100 pings and sent 100 pongs; VCPU 1 on cpu1 sent 100 pings",
        ],
    );
}

/// The guest's virtual timer, under deterministic time (`-icount shift=0,sleep=off`): armed ten
/// times, five times while the guest waits in WFI (Belfry sleeps until the deadline) and five
/// while it runs (the expiry's physical PPI 27 exits the guest): exactly ten ticks arrive,
/// each as virtual PPI 27.
#[test]
fn virtual_timer_ticks() {
    for board in Board::ALL {
        let options = RunOptions { scenario: Some("guest:timer-ticks".into()), icount: true, ..RunOptions::new(board) };
        let outcome = boot(options);
        expect_exit(&outcome, exit_code::SUCCESS);
        expect_line(
            &outcome,
            Some(0),
            "timer-ticks: the guest armed its virtual timer 10 times (5 in WFI, 5 running) and took 10 ticks",
        );
    }
}

/// No livelock when every list register holds an active interrupt: the guest splits priority
/// drop from deactivation and keeps four interrupts active while four more wait. "No pending
/// list register" already holds then, so the no-pending maintenance interrupt would exit the
/// guest before each instruction forever (this test hangs without the fix); Belfry waits for a
/// deactivation (EOI maintenance) instead. All eight arrive, once each, in order.
#[test]
fn no_livelock_when_every_list_register_is_active() {
    run_guest_everywhere(
        "all-active",
        &["all-active: four list registers held active interrupts while four waited; taken in order [32, 33, 34, 35, 36, 37, 38, 39]"],
    );
}

/// Priorities through the emulated distributor: the guest gives SPIs 32..39 eight different
/// priorities with byte stores to GICD_IPRIORITYR, enables them and the distributor; the VMM
/// raises all eight at once through its distributor model. Four list registers hold the four
/// most urgent, the rest follow: each is taken once, in priority order.
#[test]
fn interrupts_are_taken_in_priority_order() {
    run_guest_everywhere(
        "priority-order",
        &["priority-order: SPIs 32..39 with priorities 0x80 + 0x10 * (3n mod 8); taken in order [32, 35, 38, 33, 36, 39, 34, 37, 0]"],
    );
}

/// Nested active interrupts deeper than the list registers: six levels, each preempting the
/// last, through four list registers. The two outermost are spilled out of the list registers
/// while active and ended through the interface's EOI count; nothing is taken twice or left
/// pending.
#[test]
fn nesting_deeper_than_the_list_registers() {
    run_guest_everywhere(
        "nested",
        &["nested: six levels, deeper than the 4 list registers of every board here; taken [32, 33, 34, 35, 36, 37, 0], ended [37, 36, 35, 34, 33, 32, 0], pending after false"],
    );
}

/// An SMP guest of four VCPUs on four CPUs: VCPU 0 enables the distributor and starts the
/// others with PSCI CPU_ON (one VMM thread and VCPU per STARTUP packet, each on its own CPU);
/// each programs its redistributor (or banked GICD), takes five virtual timer ticks, and a
/// token goes round the ring of SGIs 25 times, none lost.
#[test]
fn smp_guest_of_four_vcpus_on_four_cpus() {
    run_guest_everywhere(
        "smp4",
        &[
            "machine: PSCI CPU_ON for VCPU 1 at 0x4: a thread on cpu1",
            "machine: PSCI CPU_ON for VCPU 2 at 0x4: a thread on cpu2",
            "machine: PSCI CPU_ON for VCPU 3 at 0x4: a thread on cpu3",
            "smp4: 4 VCPUs on 4 CPUs; timer ticks [5, 5, 5, 5], tokens [25, 25, 25, 25]",
        ],
    );
}

/// The same guest with two VCPU threads per CPU: the EL2 scheduler shares each CPU in time
/// slices (the EL2 timer ends a guest's slice while another thread is ready) and wakes a VCPU
/// sleeping in WFI at its timer's deadline.
#[test]
fn smp_guest_of_four_vcpus_on_two_cpus() {
    run_guest_everywhere(
        "smp4-on-2",
        &[
            "machine: PSCI CPU_ON for VCPU 2 at 0x4: a thread on cpu0",
            "machine: PSCI CPU_ON for VCPU 3 at 0x4: a thread on cpu1",
            "smp4: 4 VCPUs on 2 CPUs; timer ticks [5, 5, 5, 5], tokens [25, 25, 25, 25]",
        ],
    );
}

/// F12: the virtual timer's interrupt is level-triggered: one expiry is one interrupt even when
/// the guest exits to EL2 (a PSCI call) between acknowledging it and silencing the timer. It
/// used to be raised again while active (active-and-pending): two interrupts, which is how
/// `smp4-on-2` counted a sixth tick 5 runs in 400 without -icount.
#[test]
fn one_timer_expiry_is_one_interrupt() {
    run_guest_everywhere("timer-level", &["timer-level: one expiry, an exit inside the handler: 1 interrupt(s) taken"]);
}

/// The virtual timer's interrupt is level-triggered end to end: ended while the timer still
/// asserts it, it is taken again; silenced, it stops. Belfry forwards the guest's deactivation
/// to the physical PPI (a hardware list register), so on a GICv3 the re-delivery needs no exit.
/// QEMU's GICv2 model does not look at the physical distributor again after a virtual EOI
/// deactivates a hardware interrupt (`gic_complete_irq` updates only the virtual interfaces),
/// so there the PPI signals again only at the next physical GIC event; Belfry then re-delivers
/// it at the guest's next exit (its entry sees the timer fired and not held). A GIC-400
/// re-evaluates at once. The line is exact for each model.
#[test]
fn a_timer_ended_while_asserted_is_taken_again() {
    for board in Board::ALL {
        // -icount: the guest's waits are counted in instructions, the timer in the same ticks.
        let options =
            RunOptions { scenario: Some("guest:timer-reasserted".into()), icount: true, ..RunOptions::new(board) };
        let outcome = boot(options);
        expect_exit(&outcome, exit_code::SUCCESS);
        let after_exit = if board == Board::Virt { 0 } else { 2 };
        expect_line(
            &outcome,
            Some(0),
            &format!("timer-reasserted: ended twice with the timer asserted, then silenced: 3 interrupt(s) taken, {after_exit} after an exit"),
        );
        expect_line(&outcome, Some(0), "guest scenario timer-reasserted: passed");
    }
}

/// A virtual timer that comes due while the VMM serves a MEM exit is taken at once: the entry
/// after a MEM exit resumes without looking at the timer, and relies on the armed physical PPI
/// (pending since the timer fired) to bring the guest back out for the full entry that injects
/// it. -icount: the VMM's serving time and the timer count in the same ticks.
#[test]
fn a_timer_due_while_the_vmm_serves_an_access_is_taken_at_once() {
    for board in Board::ALL {
        let options =
            RunOptions { scenario: Some("guest:timer-during-mem".into()), icount: true, ..RunOptions::new(board) };
        let outcome = boot(options);
        expect_exit(&outcome, exit_code::SUCCESS);
        expect_line(
            &outcome,
            Some(0),
            "timer-during-mem: the timer that came due while the VMM served an access was taken at once: true",
        );
        expect_line(&outcome, Some(0), "guest scenario timer-during-mem: passed");
    }
}

/// F6: every list register active-and-pending and another interrupt waiting: no register is
/// pending alone, so NPIE must not be requested (the guest would exit before each of its
/// instructions). Under -icount the guest's 100 000-iteration loop must take under a million
/// ticks (about 300 000 natively; the livelock made it hundreds of millions).
#[test]
fn every_register_active_and_pending_does_not_livelock() {
    for board in Board::ALL {
        let options =
            RunOptions { scenario: Some("guest:active-pending".into()), icount: true, ..RunOptions::new(board) };
        let outcome = boot(options);
        expect_exit(&outcome, exit_code::SUCCESS);
        expect_line(
            &outcome,
            Some(0),
            "active-pending: four list registers active and pending, one waiting: the 100000-iteration loop ran at full speed: true",
        );
    }
}
