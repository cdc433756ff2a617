//! The virtual GIC on every board: more pending interrupts than list registers are delivered
//! exactly once each, lowest vector first, refilled by the maintenance interrupt alone.

use belfry_system_tests::*;

fn run_everywhere(scenario: &str, lines: &[&str]) {
    for board in Board::ALL {
        let outcome = boot_scenario(board, &format!("guest:{scenario}"));
        expect_exit(&outcome, exit_code::SUCCESS);
        for line in lines {
            expect_line(&outcome, Some(0), line);
        }
        expect_line(&outcome, Some(0), &format!("guest scenario {scenario}: passed"));
    }
}

/// Eight interrupts raised out of order, four list registers, a guest that never executes WFI:
/// the maintenance interrupt (no pending list register) brings the refills.
#[test]
fn more_pending_interrupts_than_list_registers() {
    run_everywhere(
        "many-interrupts",
        &["many-interrupts: 8 raised, 4 list registers; taken in order [32, 33, 34, 35, 36, 37, 38, 39]"],
    );
}
