//! Kernel objects and EL2 threads on the real machine: each of four CPUs runs a producer and a
//! consumer thread on one port (user packets, and wait-free trap-ring pushes that block the
//! producer thread when its ring is full so the consumer on its CPU runs); every packet must
//! be accounted for, on every board. Idle CPUs sleep in WFI and are woken by the wake SGI, so a
//! broken SGI path hangs the run into its time limit.

use belfry_system_tests::*;

#[test]
fn port_stress_accounts_for_every_packet_on_every_board() {
    for board in Board::ALL {
        let outcome = boot_scenario(board, "port-stress");
        expect_exit(&outcome, exit_code::SUCCESS);
        expect_line(
            &outcome,
            Some(0),
            "port stress: 4 producer and 4 consumer threads on 4 CPUs, 5000 packets per producer",
        );
        expect_line(&outcome, Some(0), "port stress: all 20000 packets accounted for; 8 threads finished");
        let summary = outcome
            .lines
            .iter()
            .find_map(|l| l.message.strip_prefix("port stress: consumers took "))
            .unwrap_or_else(|| panic!("no summary on {}:\n{}", board.name(), outcome.transcript()));
        // "[a, b, c, d] packets; producers blocked [e, f, g, h] times on full rings"
        let numbers: Vec<u64> = summary
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(numbers.len(), 8, "{summary}");
        assert_eq!(numbers[..4].iter().sum::<u64>(), 20_000, "{summary}");
        assert!(!outcome.lines.iter().any(|l| l.level == "ERROR"), "{}", outcome.transcript());
    }
}
