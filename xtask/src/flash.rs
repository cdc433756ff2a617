//! `cargo xtask flash`: a Raspberry Pi 4 boot folder, or a whole SD-card image.
//!
//! The folder holds what the Pi's boot ROM and GPU firmware read from the SD card's FAT
//! partition: `start4.elf` and `fixup4.dat` (Debian's `raspi-firmware` package, component
//! non-free-firmware, fetched through the private apt state when the files are not on the
//! machine), the board's device tree `bcm2711-rpi-4-b.dtb` (Debian's arm64 kernel package),
//! `config.txt`, Belfry's product image as `kernel8.img` and the guest bundle as `belfry.itb`,
//! which `initramfs belfry.itb followkernel` makes the firmware load after the kernel and name
//! in `/chosen` as the initrd. The image is an MBR disk with one FAT32 partition holding the
//! same files, for `dd` or Raspberry Pi Imager.

use anyhow::{bail, Context, Result};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The files every boot folder has, besides the firmware files.
pub const BELFRY_FILES: [&str; 3] = ["kernel8.img", "config.txt", "belfry.itb"];
/// The firmware files, in the order they are written.
pub const FIRMWARE_FILES: [&str; 3] = ["start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb"];

/// `config.txt`: 64-bit, Belfry entered at EL2 at 0x80000 with the GIC-400 on, the PL011 on
/// GPIO 14/15, and the bundle loaded after the kernel as the initrd.
pub const CONFIG_TXT: &str = "\
# Belfry on a Raspberry Pi 4: 64-bit, entered at EL2 at 0x80000 with the GIC-400 enabled.
arm_64bit=1
kernel=kernel8.img
kernel_address=0x80000
enable_uart=1
enable_gic=1
dtoverlay=disable-bt
# The guest bundle: loaded after the kernel, named in /chosen linux,initrd-start/end.
initramfs belfry.itb followkernel
";

/// The Pi firmware files: from `firmware_dir` when they are there (a Debian system with
/// `raspi-firmware` installed has them in /usr/lib/raspi-firmware), otherwise fetched.
pub fn firmware_files(firmware_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    for name in &FIRMWARE_FILES[..2] {
        let local =
            [firmware_dir.join(name), firmware_dir.join("broadcom").join(name)].into_iter().find(|p| p.exists());
        let path = match local {
            Some(path) => path,
            None => fetched_firmware(name)?,
        };
        files.push((name.to_string(), path));
    }
    let dtb = [firmware_dir.join(FIRMWARE_FILES[2]), firmware_dir.join("broadcom").join(FIRMWARE_FILES[2])]
        .into_iter()
        .find(|p| p.exists());
    let dtb = match dtb {
        Some(path) => path,
        None => crate::debian::pi4_device_tree()?,
    };
    files.push((FIRMWARE_FILES[2].to_string(), dtb));
    Ok(files)
}

/// `name` from Debian's `raspi-firmware` package (cached under target/debian).
fn fetched_firmware(name: &str) -> Result<PathBuf> {
    let dir = crate::debian::cache_dir().join("raspi-firmware");
    let cached = dir.join(name);
    if cached.exists() {
        return Ok(cached);
    }
    let _lock = crate::debian::lock()?;
    if cached.exists() {
        return Ok(cached);
    }
    let deb = crate::debian::download("raspi-firmware", "arm64")?;
    let found = crate::debian::extract(&deb, &format!("/{name}"), &dir.join("unpacked"))?;
    let source = found.first().with_context(|| format!("raspi-firmware has no {name}"))?;
    std::fs::copy(source, &cached).with_context(|| format!("copying {}", source.display()))?;
    eprintln!("xtask: {name} from Debian's raspi-firmware: {}", cached.display());
    Ok(cached)
}

/// Writes the boot folder `out`: `kernel8.img` from `image`, `belfry.itb` from `bundle`,
/// `config.txt`, and the firmware files; returns every file written.
pub fn write_folder(out: &Path, image: &Path, bundle: &Path, firmware_dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = Vec::new();
    let mut copy = |from: &Path, name: &str| -> Result<()> {
        std::fs::copy(from, out.join(name)).with_context(|| format!("copying {} to {name}", from.display()))?;
        written.push(out.join(name));
        Ok(())
    };
    copy(image, "kernel8.img")?;
    copy(bundle, "belfry.itb")?;
    for (name, path) in firmware_files(firmware_dir)? {
        copy(&path, &name)?;
    }
    std::fs::write(out.join("config.txt"), CONFIG_TXT).context("writing config.txt")?;
    written.push(out.join("config.txt"));
    Ok(written)
}

/// Builds Belfry for the Pi 4 and writes the boot folder `out` with `bundle` (the test guests'
/// bundle when `None`), and the SD-card image `image` if asked; returns the files written.
pub fn flash(out: &Path, bundle: Option<PathBuf>, image: Option<&Path>, firmware_dir: &Path) -> Result<Vec<PathBuf>> {
    let firmware = crate::build::build(&[crate::Board::Rpi4])?.remove(0);
    let bundle = match bundle {
        Some(bundle) => bundle,
        None => crate::guests::demo_bundle()?,
    };
    let blob = std::fs::read(&bundle).with_context(|| format!("reading {}", bundle.display()))?;
    for line in crate::pack::check(&blob)? {
        println!("xtask: {line}");
    }
    let mut written = write_folder(out, &firmware.image, &bundle, firmware_dir)?;
    if let Some(image) = image {
        write_image(image, &written)?;
        written.push(image.to_path_buf());
    }
    Ok(written)
}

/// The FAT partition starts 1 MiB into the disk (sector 2048), as SD-card tools align it.
const PARTITION_START: u64 = 1 << 20;

/// A window of a file: the FAT partition inside the disk image.
struct Partition {
    file: std::fs::File,
    start: u64,
    size: u64,
    at: u64,
}

impl Read for Partition {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let n = buffer.len().min((self.size - self.at) as usize);
        self.file.seek(SeekFrom::Start(self.start + self.at))?;
        let read = self.file.read(&mut buffer[..n])?;
        self.at += read as u64;
        Ok(read)
    }
}

impl Write for Partition {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        let n = buffer.len().min((self.size - self.at) as usize);
        if n == 0 && !buffer.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "past the partition's end"));
        }
        self.file.seek(SeekFrom::Start(self.start + self.at))?;
        let written = self.file.write(&buffer[..n])?;
        self.at += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Partition {
    fn seek(&mut self, position: SeekFrom) -> std::io::Result<u64> {
        let target = match position {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::End(delta) => self.size.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.at.checked_add_signed(delta),
        };
        match target.filter(|&t| t <= self.size) {
            Some(target) => {
                self.at = target;
                Ok(target)
            }
            None => Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek outside the partition")),
        }
    }
}

/// The MBR of a disk with one FAT32 (LBA) partition of `sectors` 512-byte sectors at 1 MiB.
fn master_boot_record(sectors: u32) -> [u8; 512] {
    let mut mbr = [0u8; 512];
    let entry = &mut mbr[446..462];
    entry[0] = 0x80; // bootable
    entry[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]); // CHS: beyond 8 GiB, use LBA
    entry[4] = 0x0c; // FAT32 with LBA
    entry[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[8..12].copy_from_slice(&((PARTITION_START / 512) as u32).to_le_bytes());
    entry[12..16].copy_from_slice(&sectors.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    mbr
}

/// Writes an SD-card image at `image` whose one FAT32 partition holds `files` (in its root).
pub fn write_image(image: &Path, files: &[PathBuf]) -> Result<()> {
    let payload: u64 = files.iter().map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0)).sum();
    // FAT32 needs at least 65 525 clusters: 64 MiB of 512-byte clusters, more for big payloads.
    let size = (payload + (16 << 20)).next_multiple_of(1 << 20).max(64 << 20);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(image)
        .with_context(|| format!("creating {}", image.display()))?;
    file.set_len(PARTITION_START + size)?;
    let mut disk = file.try_clone()?;
    disk.write_all(&master_boot_record((size / 512) as u32))?;
    let mut partition = Partition { file, start: PARTITION_START, size, at: 0 };
    let options = fatfs::FormatVolumeOptions::new()
        .fat_type(fatfs::FatType::Fat32)
        .bytes_per_cluster(512)
        .volume_label(*b"BELFRY     ");
    fatfs::format_volume(&mut partition, options).context("formatting the FAT32 partition")?;
    partition.seek(SeekFrom::Start(0))?;
    let fs = fatfs::FileSystem::new(partition, fatfs::FsOptions::new()).context("opening the new partition")?;
    for path in files {
        let name =
            path.file_name().and_then(|n| n.to_str()).with_context(|| format!("{} has no name", path.display()))?;
        let mut target = fs.root_dir().create_file(name)?;
        target.truncate()?;
        target.write_all(&std::fs::read(path)?)?;
    }
    fs.unmount()?;
    Ok(())
}

/// The names and sizes of the files in the root of `image`'s FAT partition.
pub fn list_image(image: &Path) -> Result<Vec<(String, u64)>> {
    let file = std::fs::OpenOptions::new().read(true).write(true).open(image)?;
    let mut mbr = [0u8; 512];
    (&file).read_exact(&mut mbr)?;
    if mbr[510..] != [0x55, 0xaa] || mbr[446 + 4] != 0x0c {
        bail!("{} has no FAT32 partition in its MBR", image.display());
    }
    let start = u64::from(u32::from_le_bytes(mbr[454..458].try_into()?)) * 512;
    let size = u64::from(u32::from_le_bytes(mbr[458..462].try_into()?)) * 512;
    let fs = fatfs::FileSystem::new(Partition { file, start, size, at: 0 }, fatfs::FsOptions::new())?;
    let mut names = Vec::new();
    for entry in fs.root_dir().iter() {
        let entry = entry?;
        if !entry.is_dir() {
            names.push((entry.file_name(), entry.len()));
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_lists_what_was_written() {
        let dir = std::env::temp_dir().join(format!("belfry-flash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("kernel8.img");
        std::fs::write(&a, vec![7u8; 100_000]).unwrap();
        let b = dir.join("config.txt");
        std::fs::write(&b, CONFIG_TXT).unwrap();
        let image = dir.join("sd.img");
        write_image(&image, &[a, b]).unwrap();
        let listed = list_image(&image).unwrap();
        assert_eq!(listed, [("kernel8.img".to_string(), 100_000), ("config.txt".to_string(), CONFIG_TXT.len() as u64)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
