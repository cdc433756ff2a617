//! `cargo xtask pack`: a guest bundle (a FIT image) from VM specifications.
//!
//! A SPEC is `name=N,kernel=PATH[,initrd=PATH][,dtb=PATH][,vcpus=N][,memory=SIZE][,cpus=LIST]
//! [,load=ADDR][,disk=PATH][,console=virtio|pl011][,net=LINK][,cmdline=STR]`: `memory` takes
//! K, M or G suffixes, `cpus` is a list of host CPU indices separated by `:` or a range `A-B`,
//! `load` makes the kernel a raw binary loaded and entered there (otherwise it must be an arm64
//! Image), `disk` is a disk image the VM gets as virtio-blk (`/dev/vda`), `console=virtio` makes
//! virtio-console's hvc0 the VM's console, `net` joins the VM to the virtio-net link of that
//! name (two VMs per link), and `cmdline` takes the rest of the SPEC, commas included. The bundle is read back and each VM's layout planned before it is
//! written, so a bundle `pack` writes is one Belfry accepts.

use anyhow::{anyhow, bail, Context, Result};
use bundle::writer::VmInput;
use std::path::Path;

/// Parses a size: bytes, or a number with a K, M or G suffix.
pub fn size(text: &str) -> Result<u64> {
    let text = text.trim();
    let (digits, shift) = match text.chars().last() {
        Some('K' | 'k') => (&text[..text.len() - 1], 10),
        Some('M' | 'm') => (&text[..text.len() - 1], 20),
        Some('G' | 'g') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let value: u64 = parse_number(digits)?;
    value.checked_shl(shift).filter(|v| v >> shift == value).ok_or_else(|| anyhow!("size {text} is too large"))
}

fn parse_number(text: &str) -> Result<u64> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.with_context(|| format!("{text:?} is not a number"))
}

/// Parses `0:1:3` or `0-3`.
fn cpu_list(text: &str) -> Result<Vec<u32>> {
    if let Some((a, b)) = text.split_once('-') {
        let (a, b): (u32, u32) = (a.parse()?, b.parse()?);
        if a > b {
            bail!("cpus={text}: an empty range");
        }
        return Ok((a..=b).collect());
    }
    text.split(':').map(|c| c.parse::<u32>().with_context(|| format!("cpus={text}"))).collect()
}

/// Reads one SPEC (see the module documentation).
pub fn spec(text: &str) -> Result<VmInput> {
    let mut vm = VmInput::default();
    let mut kernel = None;
    let mut rest = text;
    while !rest.is_empty() {
        let (field, tail) =
            if rest.starts_with("cmdline=") { (rest, "") } else { rest.split_once(',').unwrap_or((rest, "")) };
        rest = tail;
        let (key, value) = field.split_once('=').ok_or_else(|| anyhow!("{field:?} is not KEY=VALUE"))?;
        let read = |path: &str| std::fs::read(path).with_context(|| format!("reading {path}"));
        match key {
            "name" => vm.name = value.to_string(),
            "kernel" => kernel = Some(read(value)?),
            "initrd" => vm.initrd = Some(read(value)?),
            "dtb" => vm.dtb = Some(read(value)?),
            "vcpus" => vm.vcpus = Some(value.parse().with_context(|| format!("vcpus={value}"))?),
            "memory" => vm.memory = Some(size(value)?),
            "cpus" => vm.cpus = Some(cpu_list(value)?),
            "load" => vm.load = Some(parse_number(value)?),
            "cmdline" => vm.cmdline = Some(value.to_string()),
            "disk" => vm.disk = Some(read(value)?),
            "console" => {
                vm.virtio_console = match value {
                    "virtio" => true,
                    "pl011" => false,
                    other => bail!("console={other}: the consoles are virtio and pl011"),
                }
            }
            "net" => vm.net = Some(value.to_string()),
            other => bail!("unknown SPEC field {other:?}"),
        }
    }
    if vm.name.is_empty() {
        bail!("SPEC {text:?} has no name=");
    }
    vm.kernel = kernel.ok_or_else(|| anyhow!("SPEC {text:?} has no kernel="))?;
    if vm.load.is_none() && !bundle::image::is_image(&vm.kernel) {
        bail!("VM {}: the kernel is not an arm64 Image; give load=ADDR for a raw binary", vm.name);
    }
    Ok(vm)
}

/// Writes the bundle for `vms` to `out` after checking that Belfry will accept every VM;
/// returns one summary line per VM.
pub fn pack(vms: &[VmInput], out: &Path) -> Result<Vec<String>> {
    let blob = bundle::writer::write(vms).map_err(|e| anyhow!(e))?;
    let summary = check(&blob)?;
    std::fs::write(out, &blob).with_context(|| format!("writing {}", out.display()))?;
    Ok(summary)
}

/// Reads a bundle as Belfry will; one summary line per VM, or the first refusal.
pub fn check(blob: &[u8]) -> Result<Vec<String>> {
    let parsed = bundle::parse(blob).map_err(|e| anyhow!("not a bundle Belfry accepts: {e:?}"))?;
    let mut lines = Vec::new();
    for entry in &parsed.entries {
        let vm = entry.vm.as_ref().map_err(|e| anyhow!("VM {}: refused: {e:?}", entry.name))?;
        let plan = vmm::loader::plan(vm).map_err(|e| anyhow!("VM {}: refused: {e:?}", entry.name))?;
        let mut line = format!(
            "{}: {} VCPU(s), {} MiB of RAM at {:#x}, kernel at {:#x}..{:#x}",
            vm.name,
            vm.vcpus,
            vm.memory >> 20,
            vmm::layout::RAM_BASE,
            plan.kernel,
            plan.kernel_end
        );
        if let (Some(at), Some(data)) = (plan.initrd, vm.ramdisk) {
            line.push_str(&format!(", initrd at {:#x}..{:#x}", at, at + data.len() as u64));
        }
        line.push_str(&format!(", device tree at {:#x}", plan.dtb));
        lines.push(line);
    }
    Ok(lines)
}

/// The RAM, in MiB, a board needs for a bundle: each VM's memory, the bundle itself, and room
/// for Belfry (image, heap, page tables).
pub fn ram_needed_mib(blob: &[u8]) -> u64 {
    let vms: u64 = bundle::parse(blob)
        .map(|b| b.entries.iter().filter_map(|e| e.vm.as_ref().ok()).map(|vm| vm.memory).sum())
        .unwrap_or(0);
    (vms + blob.len() as u64).div_ceil(1 << 20) + 256
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_lists() {
        assert_eq!(size("64M").unwrap(), 64 << 20);
        assert_eq!(size("1G").unwrap(), 1 << 30);
        assert_eq!(size("4096").unwrap(), 4096);
        assert_eq!(size("0x1000k").unwrap(), 0x1000 << 10);
        assert!(size("lots").is_err());
        assert!(size("99999999999999999G").is_err());
        assert_eq!(cpu_list("0:2").unwrap(), [0, 2]);
        assert_eq!(cpu_list("1-3").unwrap(), [1, 2, 3]);
        assert!(cpu_list("3-1").is_err());
    }

    #[test]
    fn specs() {
        let dir = std::env::temp_dir().join(format!("belfry-pack-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let raw = dir.join("raw.bin");
        std::fs::write(&raw, [0x14u8, 0, 0, 0]).unwrap();
        let text =
            format!("name=a,kernel={},load=0x40080000,vcpus=2,memory=32M,cpus=0:1,cmdline=x=1,y=2", raw.display());
        let vm = spec(&text).unwrap();
        assert_eq!((vm.name.as_str(), vm.load, vm.vcpus, vm.memory), ("a", Some(0x4008_0000), Some(2), Some(32 << 20)));
        assert_eq!((vm.cpus.clone(), vm.cmdline.as_deref()), (Some(vec![0, 1]), Some("x=1,y=2")));
        assert!(spec(&format!("name=a,kernel={}", raw.display())).is_err(), "neither an Image nor load=");
        assert!(spec("kernel=/nonexistent").is_err());
        assert!(spec(&format!("name=a,kernel={},colour=red", raw.display())).is_err());
        let devices = spec(&format!(
            "name=d,kernel={0},load=0x40080000,disk={0},console=virtio,net=lan0,cmdline=root=/dev/vda",
            raw.display()
        ))
        .unwrap();
        assert_eq!(
            (devices.disk.as_deref(), devices.virtio_console, devices.net.as_deref(), devices.cmdline.as_deref()),
            (Some(&[0x14u8, 0, 0, 0][..]), true, Some("lan0"), Some("root=/dev/vda"))
        );
        assert!(spec(&format!("name=a,kernel={},load=0,console=vga", raw.display())).is_err());
        let bundle = dir.join("b.itb");
        let summary = pack(&[vm], &bundle).unwrap();
        assert_eq!(
            summary,
            ["a: 2 VCPU(s), 32 MiB of RAM at 0x40000000, kernel at 0x40080000..0x40080004, device tree at 0x41e00000"]
        );
        assert!(ram_needed_mib(&std::fs::read(&bundle).unwrap()) >= 32 + 256);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
