//! Building the firmware and producing the image a loader takes.

use crate::{workspace_root, Board};
use anyhow::{bail, Context, Result};
use object::{Object, ObjectSegment};
use std::path::PathBuf;
use std::process::Command;

/// The bare-metal target Belfry is built for: EL2 never touches FP/SIMD.
pub const TARGET: &str = "aarch64-unknown-none-softfloat";

/// What a build produced for a board.
#[derive(Clone, Debug)]
pub struct Firmware {
    /// The ELF, with the defmt table and symbols (what the decoder and gdb read).
    pub elf: PathBuf,
    /// The flat image loaders take (`Image` for virt, `kernel8.img` for the Pi 4).
    pub image: PathBuf,
}

/// Builds the firmware crates of `boards` (release profile: the product and the test firmware)
/// and writes the product's flat images.
pub fn build(boards: &[Board]) -> Result<Vec<Firmware>> {
    crate::tools::ensure_rust_targets()?;
    let root = workspace_root();
    let mut crates: Vec<&str> = boards.iter().map(|b| b.firmware_crate()).collect();
    crates.dedup();
    let mut command = Command::new(env!("CARGO"));
    command.current_dir(&root).args(["build", "--release", "--target", TARGET]);
    for name in &crates {
        command.args(["-p", name]);
    }
    let status = command.status().context("running cargo build")?;
    if !status.success() {
        bail!("building the firmware failed");
    }
    boards.iter().map(|&board| firmware(board)).collect()
}

/// The paths of a board's already-built product firmware, writing its flat image from the ELF.
pub fn firmware(board: Board) -> Result<Firmware> {
    firmware_named(board.firmware_crate())
}

/// The paths of a board's already-built test firmware (the product plus the test kit), which
/// runs `scenario=NAME` command lines.
pub fn test_firmware(board: Board) -> Result<Firmware> {
    firmware_named(&format!("{}-test", board.firmware_crate()))
}

/// The firmware for a run: the test firmware when a scenario is asked for.
pub fn firmware_for(board: Board, scenario: bool) -> Result<Firmware> {
    if scenario {
        test_firmware(board)
    } else {
        firmware(board)
    }
}

fn firmware_named(name: &str) -> Result<Firmware> {
    let dir = workspace_root().join("target").join(TARGET).join("release");
    let elf = dir.join(name);
    let image = dir.join(format!("{name}.img"));
    let bytes = std::fs::read(&elf).with_context(|| format!("reading {}", elf.display()))?;
    let flat = flat_image(&bytes)?;
    // Several tests (and QEMUs) may ask at once: only write when the image changed, and then
    // atomically, so no QEMU ever loads a half-written image.
    if std::fs::read(&image).ok().as_deref() != Some(&flat[..]) {
        // Unique per writer: threads of one test process may write it at once.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let serial = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temporary = dir.join(format!("{name}.img.{}.{serial}", std::process::id()));
        std::fs::write(&temporary, &flat).with_context(|| format!("writing {}", temporary.display()))?;
        std::fs::rename(&temporary, &image).with_context(|| format!("renaming to {}", image.display()))?;
    }
    Ok(Firmware { elf, image })
}

/// Lays the ELF's loadable bytes out flat from the lowest load address, as `objcopy -O binary`
/// does; `.bss` and the stacks are not in the file (the image header's size covers them).
pub fn flat_image(elf: &[u8]) -> Result<Vec<u8>> {
    let file = object::File::parse(elf).context("parsing the firmware ELF")?;
    let mut segments = Vec::new();
    for segment in file.segments() {
        let data = segment.data().context("reading a segment")?;
        if !data.is_empty() {
            segments.push((segment.address(), data));
        }
    }
    let Some(base) = segments.iter().map(|(address, _)| *address).min() else {
        bail!("the firmware ELF has no loadable bytes");
    };
    let end = segments.iter().map(|(address, data)| address + data.len() as u64).max().unwrap_or(base);
    let mut image = vec![0u8; (end - base) as usize];
    for (address, data) in segments {
        let start = (address - base) as usize;
        image[start..start + data.len()].copy_from_slice(data);
    }
    Ok(image)
}
