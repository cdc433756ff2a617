//! The test guests (`guests/`): small QEMU `virt` programs, each its own arm64 Image, built for
//! the bare-metal target and laid out flat. They are packed into bundles; Belfry never links
//! them.

use crate::build::{flat_image, TARGET};
use crate::workspace_root;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;

/// Every test guest.
pub const ALL: [&str; 9] = ["hello", "smp", "reset", "poweroff", "debug", "sgi", "flood", "ticker", "virtio_bad"];

/// Builds the test guests and returns the path of each one's Image, in [`ALL`]'s order.
pub fn build() -> Result<Vec<PathBuf>> {
    crate::tools::ensure_rust_targets()?;
    let root = workspace_root();
    let manifest = root.join("guests/Cargo.toml");
    let status = Command::new(env!("CARGO"))
        .current_dir(root.join("guests"))
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(&manifest)
        .status()
        .context("running cargo build for the test guests")?;
    if !status.success() {
        bail!("building the test guests failed");
    }
    let built = root.join("guests/target").join(TARGET).join("release");
    let out = root.join("target/guests");
    std::fs::create_dir_all(&out)?;
    ALL.iter()
        .map(|name| {
            let elf = std::fs::read(built.join(name)).with_context(|| format!("reading the {name} guest"))?;
            let image = out.join(format!("{name}.img"));
            let flat = flat_image(&elf)?;
            if std::fs::read(&image).ok().as_deref() != Some(&flat[..]) {
                let temporary =
                    out.join(format!("{name}.img.{}.{:?}", std::process::id(), std::thread::current().id()));
                std::fs::write(&temporary, &flat)?;
                std::fs::rename(&temporary, &image)?;
            }
            Ok(image)
        })
        .collect()
}

/// Builds the test guests and returns the path of `ticks`, the static Linux program that
/// prints the virtual counter (the Linux initramfs's boot mark, see [`crate::linux::INIT`]).
pub fn ticks() -> Result<PathBuf> {
    build()?;
    Ok(workspace_root().join("guests/target").join(TARGET).join("release/ticks"))
}

/// Packs the two test guests into `target/guests/demo.itb`: VM `hello` (1 VCPU) and VM `smp`
/// (2 VCPUs), 32 MiB each.
pub fn demo_bundle() -> Result<PathBuf> {
    let images = build()?;
    let vm = |name: &str, image: &PathBuf, vcpus: u32| -> Result<bundle::writer::VmInput> {
        Ok(bundle::writer::VmInput {
            name: name.to_string(),
            kernel: std::fs::read(image)?,
            vcpus: Some(vcpus),
            memory: Some(32 << 20),
            ..Default::default()
        })
    };
    let out = workspace_root().join("target/guests/demo.itb");
    crate::pack::pack(&[vm("hello", &images[0], 1)?, vm("smp", &images[1], 2)?], &out)?;
    Ok(out)
}
