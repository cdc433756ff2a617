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

/// `/init`: mounts the kernel's file systems, installs busybox's applets, loads the virtio
/// drivers when the machine has virtio-mmio devices and the initramfs carries them
/// (`/lib/modules/order`), switches to the disk with `root=/dev/vda`, gives `eth0` the address
/// `belfry.ip=ADDR/LEN` names, reads the counter (`/bin/ticks`), says BOOT-OK and runs a shell
/// (respawned if it exits) on the console: virtio-console's `hvc0` when there is one, else the
/// kernel's console; with [`BENCH_PARAMETER`] it reports the counter and powers off instead.
pub const INIT: &str = "#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /mnt /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
if [ -f /lib/modules/order ] && ls /proc/device-tree | grep -q '^virtio_mmio@'; then
  for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko; done
  if grep -qx 0x0003 /sys/bus/virtio/devices/*/device; then
    for i in 1 2 3 4 5 6 7 8 9 10; do [ -c /dev/hvc0 ] && break; sleep 0.1; done
  fi
fi
case \" $(cat /proc/cmdline) \" in *\" root=/dev/vda \"*)
  if [ -f /lib/modules/order ] && mount -t ext2 /dev/vda /mnt; then
    umount /proc /sys /dev 2>/dev/null
    exec switch_root /mnt /init
  fi;;
esac
for p in $(cat /proc/cmdline); do
  case $p in belfry.ip=*) ip link set eth0 up && ip addr add ${p#belfry.ip=} dev eth0 && echo \"eth0: ${p#belfry.ip=}\";; esac
done
ticks=$(/bin/ticks)
[ -c /dev/hvc0 ] && exec <>/dev/hvc0 >&0 2>&1
echo BOOT-OK
case \" $(cat /proc/cmdline) \" in *\" belfry.bench \"*)
  echo \"boot-ticks $ticks\"
  for p in $(cat /proc/cmdline); do case $p in belfry.work=*) /bin/work ${p#belfry.work=};; esac; done
  poweroff -f;;
esac
if [ -c /dev/hvc0 ]; then
  while true; do setsid sh -c 'exec sh -l <>/dev/hvc0 >&0 2>&1'; done
fi
while true; do setsid cttyhack sh -l; done
";

/// `/bin/work KIND:KIB[:ADDRESS]`: one measured piece of work for `cargo xtask bench`'s device
/// figures, run by `/init` under [`BENCH_PARAMETER`] for each `belfry.work=` on the command
/// line. It prints [`WORK_TICKS`]` KIND BYTES TICKS FREQUENCY` (TICKS: the virtual counter across
/// the work alone; anything it prepares is done before the first read). KIB is written with
/// leading zeros so that a run and its empty twin (`0000`) have command lines of one length.
/// - `console`: KIB KiB of 64-byte lines written to the console (`hvc0` when there is one).
/// - `blk-read`, `blk-write`: KIB KiB read from / written to `/dev/vda` with `dd`, 64 KiB per
///   request, `O_DIRECT` (the device, not the page cache).
/// - `net`: once ADDRESS answers a ping, 100 pings (busybox prints their `round-trip
///   min/avg/max`), then KIB KiB sent over TCP (busybox `nc`) to ADDRESS port 5000, timed until
///   the receiver says on port 5001 that all of it arrived (the sender's `nc` ends when its
///   socket has the data, not when the peer does).
/// - `net-listen` (ADDRESS is `OWN:PEER`): receives one TCP connection on port 5000 and says
///   so to PEER's port 5001; brings `eth0` up with OWN/24 only once it listens, so a peer that
///   reaches it finds the port open; ends once PEER stops answering pings (a VM that powered
///   off at once could lose what its socket still holds).
pub const WORK: &str = r#"#!/bin/busybox sh
kind=${1%%:*}; rest=${1#*:}; kib=$(echo ${rest%%:*} | sed 's/^0*//'); kib=${kib:-0}; address=${rest#*:}
bytes=$((kib * 1024))
now() { set -- $(/bin/ticks); echo $1; }
case $kind in
console)
  yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c $bytes > /tmp/work
  out=/dev/console; [ -c /dev/hvc0 ] && out=/dev/hvc0
  start=$(now); cat /tmp/work > $out; end=$(now);;
blk-read)
  start=$(now); dd if=/dev/vda of=/dev/null bs=64k count=$((kib / 64)) iflag=direct 2>/dev/null; end=$(now);;
blk-write)
  start=$(now); dd if=/dev/zero of=/dev/vda bs=64k count=$((kib / 64)) oflag=direct 2>/dev/null; end=$(now);;
net)
  dd if=/dev/zero of=/tmp/work bs=64k count=$((kib / 64)) 2>/dev/null
  until ping -c 1 -W 1 $address >/dev/null 2>&1; do :; done
  ping -q -c 100 -i 0.01 $address | grep round-trip
  nc -l -p 5001 | head -n 1 > /dev/null &
  until grep -qs ':1389 0*:0000 0A' /proc/net/tcp /proc/net/tcp6; do :; done
  start=$(now); nc $address 5000 < /tmp/work; wait $!; end=$(now);;
net-listen)
  own=${address%%:*}; peer=${address#*:}
  { nc -l -p 5000 > /dev/null; echo received | nc $peer 5001; } &
  until grep -qs ':1388 0*:0000 0A' /proc/net/tcp /proc/net/tcp6; do :; done
  ip link set eth0 up && ip addr add $own/24 dev eth0
  wait
  while ping -c 1 -W 1 $peer >/dev/null 2>&1; do sleep 0.1; done
  exit 0;;
*) echo "work: no such work: $kind"; exit 1;;
esac
set -- $(/bin/ticks)
echo "work $kind $bytes $((end - start)) $2"
"#;

/// What [`WORK`] prints: `work KIND BYTES TICKS FREQUENCY`.
pub const WORK_TICKS: &str = "work ";

/// The virtio drivers Debian builds as modules, with what they need, in load order: virtio-mmio,
/// virtio-blk, virtio-console, virtio-net (with failover and net_failover), and ext4 (which
/// mounts ext2, with crc16, mbcache, jbd2 and the crc32c it asks the crypto API for at every
/// mount). Paths under `/lib/modules/VERSION/`.
pub const MODULES: [&str; 11] = [
    "kernel/drivers/virtio/virtio_mmio.ko",
    "kernel/drivers/block/virtio_blk.ko",
    "kernel/drivers/char/virtio_console.ko",
    "kernel/net/core/failover.ko",
    "kernel/drivers/net/net_failover.ko",
    "kernel/drivers/net/virtio_net.ko",
    "kernel/lib/crc16.ko",
    "kernel/crypto/crc32c_generic.ko",
    "kernel/fs/mbcache.ko",
    "kernel/fs/jbd2/jbd2.ko",
    "kernel/fs/ext4/ext4.ko",
];

/// A module's name (its file name without `.ko`).
fn module_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path).trim_end_matches(".ko")
}

/// The `depends=` of a module's `.modinfo`: the modules it needs loaded first.
pub fn module_depends(module: &[u8]) -> Result<Vec<String>> {
    use object::{Object, ObjectSection};
    let file = object::File::parse(module).context("not an ELF module")?;
    let section = file.section_by_name(".modinfo").context("a module without .modinfo")?;
    let data = section.data()?;
    Ok(data
        .split(|&b| b == 0)
        .filter_map(|entry| entry.strip_prefix(b"depends="))
        .flat_map(|list| list.split(|&b| b == b','))
        .filter(|name| !name.is_empty())
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect())
}

/// [`MODULES`] from the kernel's own package (cached under `target/debian/linux/modules`):
/// (name, bytes) in load order; each module's `depends=` is checked to come earlier.
pub fn modules() -> Result<Vec<(String, Vec<u8>)>> {
    let (_, package) = kernel()?;
    let cached = dir().join("modules");
    let paths: Vec<PathBuf> = MODULES.iter().map(|m| cached.join(module_name(m)).with_extension("ko")).collect();
    if !paths.iter().all(|p| p.exists()) {
        let _lock = debian::lock()?;
        let deb = debian::cached_or_download(&package, "arm64")?;
        let unpacked = dir().join("unpacked-modules");
        let found = debian::extract_any(&deb, &MODULES, &unpacked)?;
        std::fs::create_dir_all(&cached)?;
        for module in MODULES {
            let source = found.iter().find(|f| f.to_string_lossy().ends_with(module)).context("an extracted module")?;
            std::fs::copy(source, cached.join(module_name(module)).with_extension("ko"))?;
        }
    }
    let mut loaded: Vec<(String, Vec<u8>)> = Vec::new();
    for (module, path) in MODULES.iter().zip(&paths) {
        let bytes = std::fs::read(path)?;
        for dependency in module_depends(&bytes)? {
            if !loaded.iter().any(|(name, _)| name.replace('-', "_") == dependency.replace('-', "_")) {
                bail!("module {} needs {dependency}, which is not loaded before it", module_name(module));
            }
        }
        loaded.push((module_name(module).to_string(), bytes));
    }
    Ok(loaded)
}

/// The file the disk image xtask writes holds at its root: 192 KiB of a fixed pseudo-random
/// sequence, so a test knows its sha256.
pub const DISK_FILE: &str = "belfry.bin";

/// [`DISK_FILE`]'s bytes.
pub fn disk_file() -> Vec<u8> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..192 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Bytes of the disk image: room for the test file and 16 MiB more written by `dd`.
pub const DISK_SIZE: u64 = 40 << 20;

/// The disk image for a Linux VM: ext2 (Debian's `mke2fs -d`, from `e2fsprogs`, which every
/// Debian system has), a root file system (the same `/init` and busybox as the initramfs)
/// holding [`DISK_FILE`]; written to `target/guests/disk.ext2`. The initramfs's `/init`
/// switches to it when the command line says `root=/dev/vda`.
pub fn disk_image() -> Result<PathBuf> {
    let out = crate::workspace_root().join("target/guests");
    let root = out.join("disk-root");
    let _ = std::fs::remove_dir_all(&root);
    for directory in ["bin", "dev", "proc", "sys", "tmp", "mnt"] {
        std::fs::create_dir_all(root.join(directory))?;
    }
    std::fs::write(root.join(DISK_FILE), disk_file())?;
    std::fs::copy(busybox()?, root.join("bin/busybox"))?;
    std::fs::copy(crate::guests::ticks()?, root.join("bin/ticks"))?;
    std::fs::write(root.join("init"), INIT)?;
    std::fs::write(root.join("bin/work"), WORK)?;
    use std::os::unix::fs::PermissionsExt;
    for executable in ["init", "bin/busybox", "bin/ticks", "bin/work"] {
        std::fs::set_permissions(root.join(executable), std::fs::Permissions::from_mode(0o755))?;
    }
    let image = out.join("disk.ext2");
    let _ = std::fs::remove_file(&image);
    let mke2fs = ["/usr/sbin/mke2fs", "/sbin/mke2fs"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .context("mke2fs not found: install Debian's e2fsprogs")?;
    let status = std::process::Command::new(mke2fs)
        .args(["-q", "-F", "-t", "ext2", "-b", "4096", "-m", "0", "-E", "root_owner=0:0", "-d"])
        .arg(&root)
        .arg(&image)
        .arg(format!("{}k", DISK_SIZE >> 10))
        .env("E2FSPROGS_FAKE_TIME", "1700000000")
        .status()
        .context("running mke2fs")?;
    if !status.success() {
        bail!("mke2fs failed ({status})");
    }
    Ok(image)
}

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
    initramfs_with(false)
}

/// The initramfs, with the virtio drivers ([`MODULES`], in `/lib/modules`, their load order in
/// `/lib/modules/order`) when `drivers`.
pub fn initramfs_with(drivers: bool) -> Result<Vec<u8>> {
    let busybox = std::fs::read(busybox()?)?;
    let mut cpio = Cpio::default();
    for directory in ["bin", "dev", "proc", "sys", "tmp"] {
        cpio.entry(directory, S_IFDIR | 0o755, &[], (0, 0));
    }
    if drivers {
        let modules = modules()?;
        cpio.entry("lib", S_IFDIR | 0o755, &[], (0, 0));
        cpio.entry("lib/modules", S_IFDIR | 0o755, &[], (0, 0));
        let order: Vec<&str> = modules.iter().map(|(name, _)| name.as_str()).collect();
        cpio.entry("lib/modules/order", S_IFREG | 0o644, format!("{}\n", order.join(" ")).as_bytes(), (0, 0));
        for (name, bytes) in &modules {
            cpio.entry(&format!("lib/modules/{name}.ko"), S_IFREG | 0o644, bytes, (0, 0));
        }
    }
    cpio.entry("dev/console", S_IFCHR | 0o600, &[], (5, 1));
    cpio.entry("bin/busybox", S_IFREG | 0o755, &busybox, (0, 0));
    cpio.entry("bin/ticks", S_IFREG | 0o755, &std::fs::read(crate::guests::ticks()?)?, (0, 0));
    cpio.entry("bin/work", S_IFREG | 0o755, WORK.as_bytes(), (0, 0));
    cpio.entry("init", S_IFREG | 0o755, INIT.as_bytes(), (0, 0));
    Ok(cpio.finish())
}

/// The Linux bundle: one VM `linux` with `vcpus` VCPUs and `memory` bytes, Debian's kernel and
/// the busybox initramfs; written to `target/guests/linux-V-M.itb`.
pub fn bundle(vcpus: u32, memory: u64) -> Result<PathBuf> {
    bundle_with(vcpus, memory, None)
}

/// [`bundle()`] with a kernel command line (`linux-V-M-bench.itb` for [`BENCH_PARAMETER`]).
pub fn bundle_with(vcpus: u32, memory: u64, cmdline: Option<&str>) -> Result<PathBuf> {
    let vm = bundle::writer::VmInput { cmdline: cmdline.map(str::to_string), ..linux_vm(vcpus, memory, false)? };
    let suffix = if cmdline.is_some() { "-bench" } else { "" };
    write_bundle(vm, &format!("linux-{vcpus}-{}M{suffix}.itb", memory >> 20))
}

/// The `linux-boot` bundle with virtio-console as the kernel's console (`console=hvc0`: the
/// kernel's messages before the driver loads wait in its log and follow through hvc0), the
/// virtio drivers in the initramfs, and [`BENCH_PARAMETER`]; for the boot's exits per second
/// against the PL011's.
pub fn virtio_console_bench_bundle(vcpus: u32, memory: u64) -> Result<PathBuf> {
    let vm = bundle::writer::VmInput {
        cmdline: Some(format!("console=hvc0 {BENCH_PARAMETER}")),
        virtio_console: true,
        ..linux_vm(vcpus, memory, true)?
    };
    write_bundle(vm, &format!("linux-hvc0-{vcpus}-{}M-bench.itb", memory >> 20))
}

/// The Linux bundle with devices: one VM `linux` whose console is virtio-console (hvc0),
/// whose root is the ext2 disk [`disk_image`] (`root=/dev/vda`, through the initramfs, which
/// loads the virtio drivers); written to `target/guests/linux-disk-V-M.itb`.
pub fn disk_bundle(vcpus: u32, memory: u64) -> Result<PathBuf> {
    let vm = bundle::writer::VmInput {
        cmdline: Some("console=ttyAMA0 root=/dev/vda".into()),
        disk: Some(std::fs::read(disk_image()?)?),
        virtio_console: true,
        ..linux_vm(vcpus, memory, true)?
    };
    write_bundle(vm, &format!("linux-disk-{vcpus}-{}M.itb", memory >> 20))
}

/// VM `linux`: Debian's kernel and the initramfs (with the virtio drivers when `drivers`).
fn linux_vm(vcpus: u32, memory: u64, drivers: bool) -> Result<bundle::writer::VmInput> {
    let (kernel, _) = kernel()?;
    Ok(bundle::writer::VmInput {
        name: "linux".into(),
        kernel: std::fs::read(kernel)?,
        initrd: Some(initramfs_with(drivers)?),
        vcpus: Some(vcpus),
        memory: Some(memory),
        ..Default::default()
    })
}

/// A VM for `cargo xtask bench`'s device figures: `name`, 1 VCPU, `memory`, the initramfs with
/// the virtio drivers, [`BENCH_PARAMETER`] and `parameters` on its command line.
pub fn bench_vm(name: &str, memory: u64, parameters: &str) -> Result<bundle::writer::VmInput> {
    Ok(bundle::writer::VmInput {
        name: name.into(),
        cmdline: Some(format!("{BENCH_PARAMETER} {parameters}")),
        ..linux_vm(1, memory, true)?
    })
}

/// Packs `vm` into `target/guests/NAME`.
fn write_bundle(vm: bundle::writer::VmInput, name: &str) -> Result<PathBuf> {
    write_bundle_of(vec![vm], name)
}

/// Packs `vms` into `target/guests/NAME`.
pub fn write_bundle_of(vms: Vec<bundle::writer::VmInput>, name: &str) -> Result<PathBuf> {
    let out = crate::workspace_root().join("target/guests");
    std::fs::create_dir_all(&out)?;
    let path = out.join(name);
    crate::pack::pack(&vms, &path)?;
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
