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
