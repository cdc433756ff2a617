//! Kernel objects on the real machine: four CPUs, two producing into one port (user packets
//! and wait-free trap-ring pushes that pause when the ring is full), two draining it with
//! `port_wait`; every packet must be accounted for, on every board.

use belfry_system_tests::*;

#[test]
fn port_stress_accounts_for_every_packet_on_every_board() {
    for board in Board::ALL {
        let outcome = boot_scenario(board, "port-stress");
        expect_exit(&outcome, exit_code::SUCCESS);
        expect_line(&outcome, Some(0), "port stress: cpus 1 and 2 send 10000 packets each, cpus 0 and 3 drain");
        expect_line(&outcome, Some(0), "port stress: all 20000 packets accounted for");
        let summary = outcome
            .lines
            .iter()
            .find_map(|l| l.message.strip_prefix("port stress: consumers took "))
            .unwrap_or_else(|| panic!("no summary on {}:\n{}", board.name(), outcome.transcript()));
        let numbers: Vec<u64> = summary
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        // "{cpu0} (cpu0) + {cpu3} (cpu3) packets; producers paused {a} + {b} times on full rings"
        assert_eq!(numbers[0] + numbers[2], 20_000, "{summary}");
        assert!(!outcome.lines.iter().any(|l| l.level == "ERROR"), "{}", outcome.transcript());
    }
}
