//! # Belfry's QEMU system-test harness
//!
//! Each test boots a fresh QEMU with a time limit, runs one scenario, and passes on the exit
//! code (Belfry's semihosting exit status) *and* the decoded defmt log: an image linked
//! without the defmt table, or one that exits early for the wrong reason, fails.
//!
//! The firmware is built once per test process (`cargo build` of the board crates, which is a
//! no-op when `cargo xtask test` has just built them).

use std::sync::OnceLock;
use std::time::Duration;
pub use xtask::decode::LogLine;
pub use xtask::exit_code;
pub use xtask::qemu::{Outcome, RunOptions};
pub use xtask::Board;

/// The per-run time limit. Boots take a second or two; the limit only catches hangs.
pub const TIME_LIMIT: Duration = Duration::from_secs(90);

fn built() -> &'static Result<(), String> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT.get_or_init(|| {
        xtask::tools::ensure_qemu().map_err(|e| format!("{e:#}"))?;
        xtask::build::build(&Board::ALL).map(|_| ()).map_err(|e| format!("{e:#}"))
    })
}

/// Builds the firmware of every board once per test process; panics if that fails.
pub fn build_firmware() {
    if let Err(error) = built() {
        panic!("building the firmware failed: {error}");
    }
}

/// Boots `options.board` and returns the outcome; panics (failing the test) if QEMU cannot
/// run at all or the run hit the time limit.
pub fn boot(options: RunOptions) -> Outcome {
    if let Err(error) = built() {
        panic!("building the firmware failed: {error}");
    }
    // A scenario runs on the test firmware; everything else on the product image users flash.
    let firmware = xtask::build::firmware_for(options.board, options.scenario.is_some()).expect("built firmware");
    // The default limit catches hangs; a test that boots Linux asks for more.
    let timeout = if options.timeout > RunOptions::new(options.board).timeout { options.timeout } else { TIME_LIMIT };
    let options = RunOptions { timeout, ..options };
    let outcome = xtask::qemu::run(&firmware, &options, |_| {}).expect("running QEMU");
    assert!(
        !outcome.timed_out,
        "{} hit the {:?} limit:\n{}",
        options.board.name(),
        options.timeout,
        outcome.transcript()
    );
    outcome
}

/// Boots with a `scenario=` word on the command line.
pub fn boot_scenario(board: Board, scenario: &str) -> Outcome {
    boot(RunOptions { scenario: Some(scenario.to_string()), ..RunOptions::new(board) })
}

/// Asserts that the log has a line with exactly `message`, from `cpu` when given.
#[track_caller]
pub fn expect_line(outcome: &Outcome, cpu: Option<usize>, message: &str) {
    let found = outcome.lines.iter().any(|l| l.message == message && (cpu.is_none() || l.cpu == cpu));
    assert!(found, "no line {message:?} (cpu {cpu:?}) in:\n{}", outcome.transcript());
}

/// Asserts the exit code.
#[track_caller]
pub fn expect_exit(outcome: &Outcome, code: u32) {
    assert_eq!(outcome.exit_code, Some(code as i32), "wrong exit code; log:\n{}", outcome.transcript());
}

/// The value of a `NAME 0x...` field in the first line whose message starts with `prefix`.
pub fn hex_field(outcome: &Outcome, prefix: &str, name: &str) -> Option<u64> {
    let line = outcome.lines.iter().find(|l| l.message.starts_with(prefix))?;
    let after = line.message.split(&format!("{name} 0x")).nth(1)?;
    let digits: String = after.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
    u64::from_str_radix(&digits, 16).ok()
}

/// Runs guest scenario `scenario` (`scenario=guest:NAME`) on every board: exit 0, each of
/// `lines` logged by cpu0, and the scenario's own "passed" line.
#[track_caller]
pub fn run_guest_everywhere(scenario: &str, lines: &[&str]) {
    for board in Board::ALL {
        let outcome = boot_scenario(board, &format!("guest:{scenario}"));
        expect_exit(&outcome, exit_code::SUCCESS);
        for line in lines {
            expect_line(&outcome, Some(0), line);
        }
        expect_line(&outcome, Some(0), &format!("guest scenario {scenario}: passed"));
    }
}

/// Packs `vms` into `target/test-bundles/NAME.itb` as `cargo xtask pack` does.
pub fn pack_bundle(name: &str, vms: &[bundle::writer::VmInput]) -> std::path::PathBuf {
    let dir = xtask::workspace_root().join("target/test-bundles");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.itb"));
    xtask::pack::pack(vms, &path).unwrap();
    path
}

/// Boots `board` with `bundle` and types `steps` into its console, each after a log line
/// containing its trigger.
pub fn run_script(board: Board, bundle: std::path::PathBuf, steps: &[(&str, &str)], limit: Duration) -> Outcome {
    let script = steps.iter().map(|(after, keys)| (after.to_string(), keys.to_string())).collect();
    boot(RunOptions { bundle: Some(bundle), script, timeout: limit, ..RunOptions::new(board) })
}
