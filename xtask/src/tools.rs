//! Host tools: QEMU >= 9 (for `raspi4b`), from Debian's bookworm-backports on this kind of
//! machine. `ensure_qemu` installs it when it can (root with apt) and otherwise prints the
//! exact commands.

use anyhow::{bail, Context, Result};
use std::process::Command;

/// The oldest QEMU that models the Raspberry Pi 4.
pub const MINIMUM_QEMU_MAJOR: u32 = 9;

const BACKPORTS_SOURCE: &str = "/etc/apt/sources.list.d/belfry-bookworm-backports.sources";
const BACKPORTS: &str = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";

/// The installed QEMU's major version, if any.
pub fn qemu_major_version() -> Option<u32> {
    let output = Command::new("qemu-system-aarch64").arg("--version").output().ok()?;
    parse_qemu_version(&String::from_utf8_lossy(&output.stdout))
}

/// Extracts the major version from `QEMU emulator version 10.0.2 (...)`.
pub fn parse_qemu_version(text: &str) -> Option<u32> {
    let rest = text.split("version ").nth(1)?;
    rest.split('.').next()?.trim().parse().ok()
}

fn install_commands() -> String {
    format!(
        "printf '{}' | sudo tee {BACKPORTS_SOURCE}\nsudo apt-get update\nsudo apt-get install -y --no-install-recommends -t bookworm-backports qemu-system-arm",
        BACKPORTS.replace('\n', "\\n")
    )
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// Makes sure QEMU >= 9 is installed, installing it from bookworm-backports when running as
/// root on Debian, and failing with the exact commands otherwise.
pub fn ensure_qemu() -> Result<()> {
    if qemu_major_version().is_some_and(|major| major >= MINIMUM_QEMU_MAJOR) {
        return Ok(());
    }
    let debian_bookworm = std::fs::read_to_string("/etc/os-release").is_ok_and(|t| t.contains("bookworm"));
    if !(debian_bookworm && is_root()) {
        bail!(
            "QEMU >= {MINIMUM_QEMU_MAJOR} (qemu-system-aarch64) is needed. On Debian bookworm:\n{}",
            install_commands()
        );
    }
    eprintln!("xtask: installing QEMU from bookworm-backports");
    std::fs::write(BACKPORTS_SOURCE, BACKPORTS).context("writing the backports apt source")?;
    let run = |args: &[&str]| -> Result<()> {
        let status = Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").status()?;
        if !status.success() {
            bail!("apt-get {} failed; to do it by hand:\n{}", args.join(" "), install_commands());
        }
        Ok(())
    };
    run(&["update", "-qq"])?;
    run(&["install", "-y", "-qq", "--no-install-recommends", "-t", "bookworm-backports", "qemu-system-arm"])?;
    match qemu_major_version() {
        Some(major) if major >= MINIMUM_QEMU_MAJOR => Ok(()),
        other => bail!("after installing, qemu-system-aarch64 reports version {other:?}"),
    }
}

/// The nightly Miri (and `cargo fuzz`) run on: pinned, so a Miri release cannot break CI by
/// surprise.
pub const MIRI_TOOLCHAIN: &str = "nightly-2026-05-20";

/// The pinned toolchain's channel, targets and components, from `rust-toolchain.toml`.
fn pinned_toolchain() -> Result<(String, Vec<String>, Vec<String>)> {
    let path = crate::workspace_root().join("rust-toolchain.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let value =
        |key: &str| text.lines().find_map(|l| l.trim().strip_prefix(key)?.trim().strip_prefix('=').map(str::trim));
    let list = |key: &str| -> Vec<String> {
        value(key)
            .map(|v| {
                v.trim_matches(['[', ']'])
                    .split(',')
                    .map(|s| s.trim().trim_matches('"').to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let channel = value("channel").context("rust-toolchain.toml has no channel")?.trim_matches('"').to_string();
    Ok((channel, list("targets"), list("components")))
}

fn rustup(args: &[&str]) -> Result<String> {
    let output =
        Command::new("rustup").args(args).output().context("running rustup (Belfry's toolchain comes from rustup)")?;
    if !output.status.success() {
        bail!("rustup {} failed:\n{}", args.join(" "), String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Adds what the pinned toolchain lacks of `wanted` (`kind` is `target` or `component`).
fn ensure_installed(channel: &str, kind: &str, wanted: &[String]) -> Result<()> {
    let installed = rustup(&[kind, "list", "--installed", "--toolchain", channel])?;
    let installed: Vec<&str> = installed.lines().map(|l| l.split_whitespace().next().unwrap_or("")).collect();
    // Components are listed with their host triple (`clippy-x86_64-unknown-linux-gnu`),
    // targets exactly (`aarch64-unknown-none` must not match `...-none-softfloat`).
    let host = host_triple();
    let missing: Vec<&str> = wanted
        .iter()
        .map(String::as_str)
        .filter(|w| !installed.iter().any(|i| i == w || (kind == "component" && *i == format!("{w}-{host}"))))
        .collect();
    if !missing.is_empty() {
        eprintln!("xtask: rustup {kind} add {} (toolchain {channel})", missing.join(" "));
        let mut args = vec![kind, "add", "--toolchain", channel];
        args.extend(&missing);
        rustup(&args)?;
    }
    Ok(())
}

/// The host's target triple (what rustup appends to component names).
fn host_triple() -> String {
    let output = Command::new("rustc").arg("-vV").output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    output.ok().and_then(|t| t.lines().find_map(|l| l.strip_prefix("host: ").map(String::from))).unwrap_or_default()
}

/// Makes sure the pinned toolchain has the bare-metal targets and the components
/// `rust-toolchain.toml` names. rustup adds them only when it installs the toolchain; one
/// installed earlier without them (by hand, or by another project) lacks them.
pub fn ensure_rust_targets() -> Result<()> {
    let (channel, targets, components) = pinned_toolchain()?;
    ensure_installed(&channel, "target", &targets)?;
    ensure_installed(&channel, "component", &components)
}

/// Makes sure Miri's pinned nightly is installed with `miri` and `rust-src`.
pub fn ensure_miri() -> Result<()> {
    let toolchains = rustup(&["toolchain", "list"])?;
    if !toolchains.lines().any(|l| l.starts_with(MIRI_TOOLCHAIN)) {
        eprintln!("xtask: installing {MIRI_TOOLCHAIN} for Miri");
        rustup(&["toolchain", "install", MIRI_TOOLCHAIN, "--profile", "minimal", "--component", "miri,rust-src"])?;
    }
    ensure_installed(MIRI_TOOLCHAIN, "component", &["miri".to_string(), "rust-src".to_string()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_qemu_version("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)\n"), Some(10));
        assert_eq!(parse_qemu_version("QEMU emulator version 7.2.15\n"), Some(7));
        assert_eq!(parse_qemu_version("nonsense"), None);
    }
}
