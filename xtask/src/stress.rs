//! `cargo xtask stress --runs N`: the timing-sensitive scenarios (SMP guests on four and on two
//! CPUs, virtual timer ticks, the port stress) repeated without `-icount`, where real host
//! scheduling moves every interleaving around, on every board. Each run either passes (Belfry's
//! exit status 0 and the scenario's "passed" line), fails (another status), or hangs (the time
//! limit). The summary counts each per board and scenario; any failure or hang fails the task.

use crate::build::Firmware;
use crate::qemu::{self, RunOptions};
use crate::Board;
use anyhow::Result;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The scenarios a stress run cycles through, and the line each passes on.
pub const SCENARIOS: [(&str, &str); 5] = [
    ("guest:smp4", "guest scenario smp4: passed"),
    ("guest:smp4-on-2", "guest scenario smp4-on-2: passed"),
    ("guest:timer-ticks", "guest scenario timer-ticks: passed"),
    ("guest:timer-level", "guest scenario timer-level: passed"),
    ("port-stress", "boot complete"),
];

/// How one run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Failed,
    Hung,
}

/// Runs `runs` rounds; each round runs the next scenario on every board in `boards`.
pub fn stress(
    firmware: &[(Board, Firmware)],
    runs: usize,
    limit: Duration,
) -> Result<BTreeMap<(String, String), [usize; 3]>> {
    let mut counts: BTreeMap<(String, String), [usize; 3]> = BTreeMap::new();
    let started = Instant::now();
    for round in 0..runs {
        let (scenario, passed_line) = SCENARIOS[round % SCENARIOS.len()];
        for (board, image) in firmware {
            let options =
                RunOptions { scenario: Some(scenario.to_string()), timeout: limit, ..RunOptions::new(*board) };
            let outcome = qemu::run(image, &options, |_| {})?;
            let verdict = if outcome.timed_out {
                Verdict::Hung
            } else if outcome.exit_code == Some(0) && outcome.has(passed_line) {
                Verdict::Passed
            } else {
                Verdict::Failed
            };
            let slot = counts.entry((board.name().to_string(), scenario.to_string())).or_default();
            slot[verdict as usize] += 1;
            if verdict != Verdict::Passed {
                eprintln!(
                    "xtask: stress round {round}: {} {scenario} {verdict:?}\n{}",
                    board.name(),
                    outcome.transcript()
                );
            }
        }
        if (round + 1) % 20 == 0 || round + 1 == runs {
            let (failed, hung) = counts.values().fold((0, 0), |(f, h), c| (f + c[1], h + c[2]));
            println!(
                "xtask: stress: {} of {runs} rounds, {failed} failed, {hung} hung, {:.0} s",
                round + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(counts)
}
