//! The virtual GIC on every board: more pending interrupts than list registers are delivered
//! exactly once each, lowest vector first, refilled by the maintenance interrupt alone.

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
