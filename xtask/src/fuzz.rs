//! `cargo xtask fuzz`: Belfry's `cargo fuzz` targets (the crate in `fuzz/`), on Miri's pinned
//! nightly, each for a time; `cargo xtask test` runs each for a few seconds (a smoke run).
//! cargo-fuzz is installed from crates.io when missing. The summary gives, per target, the
//! executions libFuzzer reports and whether it found a crash (which fails the task and leaves
//! the input in `fuzz/artifacts/TARGET`).

use crate::tools::MIRI_TOOLCHAIN;
use crate::workspace_root;
use anyhow::{bail, Context, Result};
use std::process::Command;

/// Every target, in the order they run.
pub const TARGETS: [&str; 8] =
    ["bundle", "decoders", "device_tree", "distributor", "pl011", "syscalls", "virtqueue", "virtio"];

/// One target's result.
#[derive(Clone, Debug)]
pub struct FuzzResult {
    pub target: String,
    pub executions: u64,
    pub seconds: u64,
    pub crashed: bool,
}

/// Installs cargo-fuzz when `cargo fuzz` is not there.
pub fn ensure_cargo_fuzz() -> Result<()> {
    let present = Command::new("cargo")
        .args([&format!("+{MIRI_TOOLCHAIN}"), "fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-fuzz from crates.io");
    let status = Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]).status().context("cargo install")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz failed");
    }
    Ok(())
}

/// The executions libFuzzer reports at its end ("Done N runs in S second(s)").
pub fn executions(output: &str) -> Option<u64> {
    output.lines().rev().find_map(|l| l.trim().strip_prefix("Done ")?.split_whitespace().next()?.parse().ok())
}

/// Runs each of `targets` for `seconds`.
pub fn fuzz(targets: &[&str], seconds: u64) -> Result<Vec<FuzzResult>> {
    crate::tools::ensure_miri()?;
    ensure_cargo_fuzz()?;
    let root = workspace_root();
    let mut results = Vec::new();
    for target in targets {
        let corpus = root.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        let mut command = Command::new("cargo");
        command.current_dir(&root).args([&format!("+{MIRI_TOOLCHAIN}"), "fuzz", "run", target]).arg(&corpus);
        let seeds = root.join("fuzz/seeds").join(target);
        if seeds.is_dir() {
            command.arg(&seeds);
        }
        command.args(["--", &format!("-max_total_time={seconds}"), "-max_len=4096", "-print_final_stats=1"]);
        println!("xtask: cargo fuzz run {target} for {seconds} s");
        let output = command.output().context("running cargo fuzz")?;
        let text = String::from_utf8_lossy(&output.stderr);
        let crashed = !output.status.success();
        if crashed {
            eprintln!("{text}");
        }
        let executions = executions(&text).unwrap_or(0);
        results.push(FuzzResult { target: target.to_string(), executions, seconds, crashed });
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzers_summary() {
        let text =
            "#1048576\tpulse  cov: 12\nDone 1234567 runs in 11 second(s)\nstat::number_of_executed_units: 1234567\n";
        assert_eq!(executions(text), Some(1_234_567));
        assert_eq!(executions("nothing"), None);
    }
}
