//! The attack suite (issue 10): guests doing what a hostile guest would, on every board. Each
//! scenario ends by running a clean guest to its exit (Belfry still serves guests) and passes
//! on Belfry's own lines and exit status.

use belfry_system_tests::*;

/// MRS of all 32 768 op0 = 2 and op0 = 3 encodings: each is read (switched, emulated or
/// RAZ/WI) or undefined at the guest's own EL1 (the hardware's UNDEF, or one Belfry injects for
/// a register the guest's CPU does not have); none kills the guest, and EL2 never faults.
#[test]
fn system_register_sweep() {
    for (board, read, undefined, killed) in
        [(Board::Virt, 212, 32556, 0), (Board::VirtGicv2, 197, 32571, 0), (Board::Rpi4, 168, 32600, 0)]
    {
        let outcome = boot_scenario(board, "guest:sysreg-sweep");
        expect_exit(&outcome, exit_code::SUCCESS);
        expect_line(
            &outcome,
            Some(0),
            &format!(
                "sysreg-sweep: 32768 MRS encodings: {read} read, {undefined} undefined at the guest's EL1, {killed} killed the guest ({} guests)",
                killed + 1
            ),
        );
        expect_line(&outcome, Some(0), "guest scenario sysreg-sweep: passed");
    }
}

/// The short exit (the exit answered with the guest's state still loaded) writes an ID register
/// read into any of x1..x30, keeps x2..x30 across a PSCI call it answers, and writes a RAZ
/// read into x29 (it once wrote the answer only to memory for x19..x29: Linux hung).
#[test]
fn short_exits_write_every_register() {
    run_guest_everywhere("short-exit-registers", &["short-exit-registers: 61 registers checked, 0 wrong"]);
}

/// 230 PSCI/SMCCC function IDs over HVC and SMC with garbage arguments: every answer is the
/// DEN0022/DEN0028 one, and nothing starts a VCPU.
#[test]
fn psci_and_smccc_sweep() {
    run_guest_everywhere(
        "psci-sweep",
        &["psci-sweep: 230 function IDs over HVC and SMC: 0 wrong answers; SYSTEM_OFF, SYSTEM_RESET and CPU_OFF ended enter 3 times"],
    );
}

/// 50 000 doorbells to a slow consumer on another CPU: the producer pauses on a full ring and
/// resumes, and every doorbell arrives.
#[test]
fn doorbell_flood() {
    run_guest_everywhere(
        "doorbell-flood",
        &["doorbell-flood: 50000 doorbells rung, 50000 received by a slow consumer on cpu1, 0 other packets"],
    );
}

/// Doorbells to a consumer on the ringing VCPU's own CPU, the guest spinning after them with no
/// other exit: the doorbells are rung in the short exit, and the consumer's wake-up still gets
/// it a time slice: it receives all three before a watchdog on the other CPU kicks the guest.
#[test]
fn a_doorbell_wakes_a_consumer_on_the_same_cpu() {
    run_guest_everywhere(
        "doorbell-same-cpu",
        &["doorbell-same-cpu: 3 doorbells rung, 3 received on the VCPU's own cpu while the guest spun, 3 in all, 0 other packets"],
    );
}

/// 60 rounds of 16 384 random instruction words at the guest's EL1: each round ends in an
/// exit, a kill or a watchdog's kick, and Belfry goes on.
#[test]
fn random_instruction_words() {
    for board in Board::ALL {
        let outcome = boot_scenario(board, "guest:random-words");
        expect_exit(&outcome, exit_code::SUCCESS);
        let line = outcome
            .lines
            .iter()
            .find_map(|l| l.message.strip_prefix("random-words: 60 rounds of 16384 random words at EL1: "))
            .unwrap_or_else(|| panic!("no random-words line:\n{}", outcome.transcript()));
        let total: u32 = line.split(", ").filter_map(|part| part.split(' ').next()?.parse::<u32>().ok()).sum();
        assert_eq!(total, 60, "{line}");
        expect_line(&outcome, Some(0), "guest scenario random-words: passed");
    }
}

/// 20 000 random accesses (offsets, widths, values, reads and writes) to the guest's emulated
/// distributor and redistributors: the VMM's model serves them all, the guest exits.
#[test]
fn emulated_gic_fuzz() {
    run_guest_everywhere("gic-fuzz", &["gic-fuzz: 20000 random accesses to the emulated GIC served; the guest exited"]);
}

/// 100 000 `vcpu_interrupt` calls from another CPU into a guest that takes what arrives: every
/// call is accepted, the guest takes interrupts and exits when told.
#[test]
fn interrupt_flood() {
    run_guest_everywhere(
        "interrupt-flood",
        &["interrupt-flood: 100000 vcpu_interrupt calls from cpu1 (0 failed); the guest took true interrupts and exited"],
    );
}
