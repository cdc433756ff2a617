//! The default guest: Debian's arm64 Linux kernel and a busybox initramfs.
//!
//! The kernel is the `vmlinuz` of Debian's current `linux-image-*-arm64` package (on arm64 an
//! uncompressed `Image`), `busybox` comes from `busybox-static` (arm64); both are fetched through
//! the private apt state of [`crate::debian`] and cached under `target/debian/linux`. The
//! initramfs is written here, as a cpio "newc" archive, in Rust: `/init` (a shell script run by
//! busybox), busybox and `/dev/console`, so the kernel has a console for init before devtmpfs.

use crate::debian;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// The line `/init` prints once userspace runs (the boot benchmark's end mark).
pub const BOOT_OK: &str = "BOOT-OK";

/// The kernel parameter that makes `/init` report its boot mark and power off at once (the
/// `linux-boot` benchmark; a parameter with a dot is a module's, so the kernel passes it over).
pub const BENCH_PARAMETER: &str = "belfry.bench";

/// What `/init` prints under [`BENCH_PARAMETER`] after BOOT-OK: `boot-ticks N F`, the virtual
/// counter read just before BOOT-OK was printed and its frequency.
pub const BOOT_TICKS: &str = "boot-ticks ";

/// `/init`: mounts the kernel's file systems, installs busybox's applets, reads the counter
/// (`/bin/ticks`), says BOOT-OK and runs a shell on the console (respawned if it exits); with
/// [`BENCH_PARAMETER`] it reports the counter and powers off instead.
pub const INIT: &str = "#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
ticks=$(/bin/ticks)
echo BOOT-OK
case \" $(cat /proc/cmdline) \" in *\" belfry.bench \"*) echo \"boot-ticks $ticks\"; poweroff -f;; esac
while true; do setsid cttyhack sh -l; done
";

fn dir() -> PathBuf {
    debian::cache_dir().join("linux")
}

/// Debian's arm64 kernel `Image`; returns its path and the package it came from.
pub fn kernel() -> Result<(PathBuf, String)> {
    let cached = dir().join("Image");
    let name = dir().join("package");
    if cached.exists() && name.exists() {
        return Ok((cached, std::fs::read_to_string(&name)?));
    }
    let _lock = debian::lock()?;
    if cached.exists() && name.exists() {
        return Ok((cached, std::fs::read_to_string(&name)?));
    }
    let package = debian::resolve("linux-image-arm64", "arm64")?;
    let deb = debian::download(&package, "arm64")?;
    let member = debian::members(&deb)?
        .into_iter()
        .find(|m| m.starts_with("./boot/vmlinuz-"))
        .context("the kernel package has no /boot/vmlinuz-*")?;
    let vmlinuz = debian::extract(&deb, &member, &dir().join("unpacked"))?.remove(0);
    let image = std::fs::read(&vmlinuz)?;
    if !bundle::image::is_image(&image) {
        bail!("{} is not an arm64 Image", vmlinuz.display());
    }
    std::fs::write(&cached, &image)?;
    std::fs::write(&name, &package)?;
    eprintln!("xtask: the kernel from {package}: {}", cached.display());
    Ok((cached, package))
}

/// busybox (static, arm64).
pub fn busybox() -> Result<PathBuf> {
    let cached = dir().join("busybox");
    if cached.exists() {
        return Ok(cached);
    }
    let _lock = debian::lock()?;
    if cached.exists() {
        return Ok(cached);
    }
    let deb = debian::download("busybox-static", "arm64")?;
    let found = debian::extract(&deb, "/bin/busybox", &dir().join("unpacked-busybox"))?;
    std::fs::create_dir_all(dir())?;
    std::fs::copy(&found[0], &cached)?;
    Ok(cached)
}

/// One cpio "newc" archive under construction.
#[derive(Default)]
pub struct Cpio {
    bytes: Vec<u8>,
    inode: u32,
}

/// File types for [`Cpio::entry`].
pub const S_IFREG: u32 = 0o100000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFCHR: u32 = 0o020000;

impl Cpio {
    /// Adds an entry: `mode` includes the type; `device` is (major, minor) for a device node.
    pub fn entry(&mut self, name: &str, mode: u32, data: &[u8], device: (u32, u32)) {
        self.inode += 1;
        let fields = [
            self.inode,
            mode,
            0,
            0,
            if mode & S_IFDIR != 0 { 2 } else { 1 },
            0,
            data.len() as u32,
            0,
            0,
            device.0,
            device.1,
            name.len() as u32 + 1,
            0,
        ];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    /// The archive, with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.bytes
    }
}

/// The initramfs: `/init`, `/bin/busybox`, `/bin/ticks`, `/dev/console`.
pub fn initramfs() -> Result<Vec<u8>> {
    let busybox = std::fs::read(busybox()?)?;
    let mut cpio = Cpio::default();
    for directory in ["bin", "dev", "proc", "sys", "tmp"] {
        cpio.entry(directory, S_IFDIR | 0o755, &[], (0, 0));
    }
    cpio.entry("dev/console", S_IFCHR | 0o600, &[], (5, 1));
    cpio.entry("bin/busybox", S_IFREG | 0o755, &busybox, (0, 0));
    cpio.entry("bin/ticks", S_IFREG | 0o755, &std::fs::read(crate::guests::ticks()?)?, (0, 0));
    cpio.entry("init", S_IFREG | 0o755, INIT.as_bytes(), (0, 0));
    Ok(cpio.finish())
}

/// The Linux bundle: one VM `linux` with `vcpus` VCPUs and `memory` bytes, Debian's kernel and
/// the busybox initramfs; written to `target/guests/linux-V-M.itb`.
pub fn bundle(vcpus: u32, memory: u64) -> Result<PathBuf> {
    bundle_with(vcpus, memory, None)
}

/// [`bundle`] with a kernel command line (`linux-V-M-bench.itb` for [`BENCH_PARAMETER`]).
pub fn bundle_with(vcpus: u32, memory: u64, cmdline: Option<&str>) -> Result<PathBuf> {
    let (kernel, _) = kernel()?;
    let vm = bundle::writer::VmInput {
        name: "linux".into(),
        kernel: std::fs::read(kernel)?,
        initrd: Some(initramfs()?),
        vcpus: Some(vcpus),
        memory: Some(memory),
        cmdline: cmdline.map(str::to_string),
        ..Default::default()
    };
    let out = crate::workspace_root().join("target/guests");
    std::fs::create_dir_all(&out)?;
    let suffix = if cmdline.is_some() { "-bench" } else { "" };
    let path = out.join(format!("linux-{vcpus}-{}M{suffix}.itb", memory >> 20));
    crate::pack::pack(&[vm], &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newc_archive() {
        let mut cpio = Cpio::default();
        cpio.entry("init", S_IFREG | 0o755, b"hi", (0, 0));
        let bytes = cpio.finish();
        let header = std::str::from_utf8(&bytes[..110]).unwrap();
        assert_eq!(&header[..6], "070701");
        assert_eq!(&header[6..14], "00000001", "inode");
        assert_eq!(&header[14..22], "000081ed", "a regular file, rwxr-xr-x");
        assert_eq!(&header[54..62], "00000002", "its size");
        assert_eq!(&header[94..102], "00000005", "name length with the NUL");
        assert_eq!(&bytes[110..115], b"init\0");
        assert_eq!(&bytes[116..118], b"hi", "data after the name, 4-byte aligned");
        assert!(bytes[120..].starts_with(b"070701"));
        assert_eq!(bytes.len() % 4, 0);
    }
}
