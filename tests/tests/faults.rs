//! Fatal reports: an unexpected exception on the boot CPU or a secondary, and a panic, are
//! reported with their decoded syndrome and end the run with a distinct exit code instead of
//! hanging it.

use belfry_system_tests::*;

/// The unmapped address the fault scenarios load from (testkit::scenario::UNMAPPED_ADDRESS).
const UNMAPPED: u64 = 0x7f_dead_0000;

fn expect_fault_report(board: Board, outcome: &Outcome, cpu: usize) {
    expect_exit(outcome, exit_code::FAULT);
    expect_line(outcome, Some(cpu), &format!("loading from unmapped address {UNMAPPED:#x}"));
    expect_line(outcome, Some(cpu), &format!("cpu{cpu}: unexpected Synchronous exception (CurrentElSpx)"));
    // EC 0x25 (data abort taken to the same EL); ISS: DFSC 0b000101 = translation fault at
    // level 1 (the 39-bit map's level-1 entry for 508 GiB is invalid), WnR 0. QEMU gives no
    // instruction syndrome (ISV 0) for aborts taken to the same EL.
    expect_line(outcome, Some(cpu), "  EC 0x25 (data abort, same EL), IL true, ISS 0x0000005");
    expect_line(outcome, Some(cpu), &format!("  data abort: translation fault at level 1, read, FAR {UNMAPPED:#x}"));
    assert_eq!(hex_field(outcome, "  ELR ", "FAR"), Some(UNMAPPED));
    // The faulting instruction is in Belfry's text.
    let elr = hex_field(outcome, "  ELR ", "ELR").expect("ELR");
    let base = match board {
        Board::Virt | Board::VirtGicv2 => 0x4020_0000,
        Board::Rpi4 => 0x8_0000,
    };
    assert!((base..base + 0x10_0000).contains(&elr), "ELR {elr:#x} outside the image:\n{}", outcome.transcript());
    expect_line(outcome, Some(cpu), &format!("cpu{cpu} stopped"));
}

#[test]
fn a_fault_on_the_boot_cpu_is_reported_and_ends_the_run() {
    for board in Board::ALL {
        let outcome = boot_scenario(board, "fault");
        expect_fault_report(board, &outcome, 0);
    }
}

#[test]
fn a_fault_on_a_secondary_cpu_is_reported_and_ends_the_run() {
    for board in Board::ALL {
        let outcome = boot_scenario(board, "fault-cpu:2");
        expect_line(&outcome, Some(0), "scenario: FaultOnCpu(2)");
        expect_fault_report(board, &outcome, 2);
    }
}

#[test]
fn a_fault_at_el1_is_reported_too() {
    let outcome =
        boot(RunOptions { virtualization: false, scenario: Some("fault".into()), ..RunOptions::new(Board::Virt) });
    expect_fault_report(Board::Virt, &outcome, 0);
}

#[test]
fn a_panic_is_reported_and_ends_the_run() {
    for board in Board::ALL {
        let outcome = boot_scenario(board, "panic");
        expect_exit(&outcome, exit_code::PANIC);
        let panic = outcome.lines.iter().find(|l| l.message.starts_with("cpu0 panicked: ")).expect("panic line");
        assert!(panic.message.contains("testkit/src/run.rs"), "{}", panic.message);
        assert!(panic.message.ends_with("deliberate panic (scenario=panic)"), "{}", panic.message);
        expect_line(&outcome, Some(0), "cpu0 stopped");
    }
}

#[test]
fn a_bad_command_line_is_refused() {
    let outcome = boot_scenario(Board::Virt, "dance");
    expect_exit(&outcome, exit_code::BOOT_FAILED);
    expect_line(&outcome, Some(0), "bad command line: UnknownScenario");
}

/// EL2 stacks have guard pages: a thread that recurses without end faults on the unmapped page
/// below its stack, and the report (on the CPU's emergency stack) names it, instead of the
/// overflow silently corrupting whatever lay below.
#[test]
fn an_el2_stack_overflow_hits_its_guard_page() {
    for board in Board::ALL {
        let outcome = boot_scenario(board, "stack-overflow");
        expect_exit(&outcome, exit_code::FAULT);
        expect_line(&outcome, Some(1), "cpu1: unexpected Synchronous exception (CurrentElSpx)");
        expect_line(&outcome, Some(1), "  EL2 stack overflow: thread stack slot 0 ran into its guard page");
        let far = hex_field(&outcome, "  data abort: translation fault at level 3, write, FAR", "FAR");
        assert!(far.is_some(), "no level-3 translation fault:\n{}", outcome.transcript());
        expect_line(&outcome, Some(1), "cpu1 stopped");
    }
}

/// A fatal error before the logger is up still reaches the UART in words (the early console):
/// `scenario=early-panic` panics right after the machine description, before the MMU and the
/// log. The lines are plain text, told apart from defmt frames by their framing, and the run
/// still ends with Belfry's exit line (as an early line).
#[test]
fn a_fatal_error_before_the_log_reaches_the_uart_in_words() {
    for board in Board::ALL {
        let outcome = boot_scenario(board, "early-panic");
        expect_exit(&outcome, exit_code::PANIC);
        let early: Vec<&str> =
            outcome.lines.iter().filter(|l| l.level == "EARLY").map(|l| l.message.as_str()).collect();
        assert_eq!(early.len(), 3, "{}", outcome.transcript());
        assert!(early[0].starts_with("cpu0 panicked before the log: panicked at testkit/src/run.rs:"), "{}", early[0]);
        assert!(early[0].ends_with("deliberate panic before the log (scenario=early-panic)"), "{}", early[0]);
        assert_eq!(early[1..], ["cpu0 stopped", "belfry: run ended, exit status 4"]);
        assert!(outcome.lines.iter().all(|l| l.level == "EARLY"), "{}", outcome.transcript());
    }
}
