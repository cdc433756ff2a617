//! `cargo xtask bench`: boots the `guest:bench` scenario on every board under
//! `-icount shift=0,sleep=off -cpu max`, collects each path's EL2 instruction count and
//! guest-observed nanoseconds from the decoded log, prints a table, writes
//! `target/bench/bench.json` and `target/bench/bench.svg`, and compares the EL2 counts with the
//! committed baseline `bench/baseline.json` (a rise of more than 2 % fails). The figures are
//! deterministic, so the comparison is exact.

use crate::build::{self, Firmware};
use crate::qemu::{self, RunOptions};
use crate::{workspace_root, Board};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// One path's figures on one board.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Figure {
    pub board: String,
    pub path: String,
    pub el2: u64,
    pub guest_ns: u64,
}

/// The allowed rise over the baseline, in percent.
const TOLERANCE_PERCENT: u64 = 2;

/// Paths measured across two CPUs. Under `-icount` QEMU runs the CPUs round-robin, so their
/// figures repeat exactly run after run, but where in the other CPU's time slice each event
/// lands moves with any change to the firmware's code: a count can swing by 10 % with no change
/// to the path. They are reported, not checked.
pub const CROSS_CPU: [&str; 3] = ["interrupt", "guest-ipi", "linux-boot-4"];

/// Parses `bench: NAME el2 X guest_ns Y` lines.
pub fn parse(board: Board, messages: impl IntoIterator<Item = String>) -> Vec<Figure> {
    messages
        .into_iter()
        .filter_map(|message| {
            let words: Vec<&str> = message.split_whitespace().collect();
            match words.as_slice() {
                ["bench:", path, "el2", el2, "guest_ns", ns] => Some(Figure {
                    board: board.name().to_string(),
                    path: path.to_string(),
                    el2: el2.parse().ok()?,
                    guest_ns: ns.parse().ok()?,
                }),
                _ => None,
            }
        })
        .collect()
}

/// Runs the benchmark guest on `board`.
pub fn measure(firmware: &Firmware, board: Board) -> Result<Vec<Figure>> {
    let options = RunOptions {
        scenario: Some("guest:bench".into()),
        icount: true,
        timeout: Duration::from_secs(300),
        ..RunOptions::new(board)
    };
    let outcome = qemu::run(firmware, &options, |_| {})?;
    if outcome.exit_code != Some(0) || !outcome.has("guest scenario bench: passed") {
        bail!("the benchmark guest failed on {}:\n{}", board.name(), outcome.transcript());
    }
    let figures = parse(board, outcome.lines.iter().map(|l| l.message.clone()));
    if figures.is_empty() {
        bail!("no figures in the log of {}", board.name());
    }
    if board == Board::Virt {
        println!("exits per 100 operations (virt), by kind:");
        for line in outcome.lines.iter().filter_map(|l| exits_line(&l.message)) {
            println!("  {line}");
        }
    }
    Ok(figures)
}

/// A `bench-exits: NAME per 100 operations: KIND N ...` line as `NAME: KIND N, ...` with only
/// the kinds that occur.
pub fn exits_line(message: &str) -> Option<String> {
    let (name, counts) = message.strip_prefix("bench-exits: ")?.split_once(" per 100 operations: ")?;
    let words: Vec<&str> = counts.split_whitespace().collect();
    let kinds: Vec<String> =
        words.chunks_exact(2).filter(|pair| pair[1] != "0").map(|pair| format!("{} {}", pair[0], pair[1])).collect();
    Some(format!("{name:<18} {}", if kinds.is_empty() { "none".to_string() } else { kinds.join(", ") }))
}

/// One `linux-boot` measurement: the same Debian kernel and initramfs booted to BOOT-OK under
/// Belfry and natively, under `-icount shift=0,sleep=off` (one virtual nanosecond per
/// instruction; idle time, when every CPU waits, is skipped to the next timer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxBoot {
    pub vcpus: u32,
    /// Virtual nanoseconds from the kernel's first instruction to BOOT-OK under Belfry.
    pub belfry_ns: u64,
    /// The same, native (`virt` without EL2, Belfry's device tree for the guest).
    pub native_ns: u64,
    /// EL2 instructions on every CPU from the VM's creation to its power-off.
    pub el2: u64,
    /// The VM's exits by kind, as Belfry reported them at its end.
    pub exits: Vec<(String, u64)>,
}

impl LinuxBoot {
    /// Belfry's time over native, in thousandths.
    pub fn ratio_milli(&self) -> u64 {
        self.belfry_ns * 1000 / self.native_ns.max(1)
    }
}

/// The memory the `linux-boot` VM gets.
const LINUX_BOOT_MEMORY: u64 = 256 << 20;

/// The `boot-ticks COUNT FREQUENCY` line in console text, in nanoseconds.
fn boot_ns<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<u64> {
    lines.into_iter().find_map(|l| {
        let (count, frequency) = l.trim().strip_prefix(crate::linux::BOOT_TICKS)?.split_once(' ')?;
        let (count, frequency): (u128, u128) = (count.trim().parse().ok()?, frequency.trim().parse().ok()?);
        u64::try_from(count * 1_000_000_000 / frequency.max(1)).ok()
    })
}

/// Boots the kernel natively: `virt` at EL1 with `vcpus` CPUs, the device tree Belfry would give
/// the VM, the initramfs and the benchmark parameter. Returns the virtual ns to BOOT-OK.
fn linux_native(vcpus: u32) -> Result<u64> {
    let (kernel, _) = crate::linux::kernel()?;
    let out = workspace_root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    let initramfs = crate::linux::initramfs()?;
    let initrd_path = out.join("initramfs.cpio");
    std::fs::write(&initrd_path, &initramfs)?;
    // QEMU rewrites /memory and /chosen's initrd and bootargs; the rest is Belfry's machine.
    let tree = vmm::devicetree::generate(&vmm::devicetree::Description {
        vcpus,
        memory: LINUX_BOOT_MEMORY,
        gic_v3: true,
        cmdline: crate::linux::BENCH_PARAMETER,
        initrd: None,
        virtio_slots: 0,
    })
    .map_err(|e| anyhow::anyhow!("writing the guest device tree: {e:?}"))?;
    let dtb = out.join(format!("linux-boot-{vcpus}.dtb"));
    std::fs::write(&dtb, tree)?;
    let mut command = std::process::Command::new("qemu-system-aarch64");
    command.args(["-M", "virt,gic-version=3", "-cpu", "max", "-smp", &vcpus.to_string()]);
    command.args(["-m", &format!("{}M", LINUX_BOOT_MEMORY >> 20), "-icount", "shift=0,sleep=off"]);
    command.args(["-display", "none", "-monitor", "none", "-serial", "stdio", "-nic", "none", "-no-reboot"]);
    command.arg("-kernel").arg(&kernel).arg("-initrd").arg(&initrd_path).arg("-dtb").arg(&dtb);
    command.args(["-append", crate::linux::BENCH_PARAMETER]);
    let output = crate::qemu::output_within(command, Duration::from_secs(600))?;
    boot_ns(output.lines())
        .with_context(|| format!("no `{}` line from the native boot:\n{output}", crate::linux::BOOT_TICKS))
}

/// Boots the kernel under Belfry on `virt` (product firmware, the bundle with `vcpus` VCPUs and
/// the benchmark parameter) and measures it; `native_ns` comes from [`linux_native`].
fn linux_belfry(vcpus: u32, native_ns: u64) -> Result<LinuxBoot> {
    let bundle = crate::linux::bundle_with(vcpus, LINUX_BOOT_MEMORY, Some(crate::linux::BENCH_PARAMETER))?;
    linux_belfry_with(bundle, vcpus, native_ns)
}

/// `linux-boot` with 1 VCPU and virtio-console as the kernel's console: Belfry's figures only
/// (a native `virt` has no such console); `native_ns` is 0.
pub fn linux_boot_hvc0() -> Result<LinuxBoot> {
    let bundle = crate::linux::virtio_console_bench_bundle(1, LINUX_BOOT_MEMORY)?;
    linux_belfry_with(bundle, 1, 0)
}

fn linux_belfry_with(bundle: std::path::PathBuf, vcpus: u32, native_ns: u64) -> Result<LinuxBoot> {
    let firmware = build::build(&[Board::Virt])?.remove(0);
    let outcome = run_bundle(&firmware, bundle, "linux-boot")?;
    let console = crate::decode::console_lines(&outcome.lines, "linux");
    let boot = boot_ns(console.iter().map(String::as_str))
        .with_context(|| format!("no `{}` line:\n{}", crate::linux::BOOT_TICKS, outcome.transcript()))?;
    let start = outcome
        .lines
        .iter()
        .find(|l| l.message.starts_with("vm linux: ") && l.message.contains("VCPU(s)"))
        .context("no line for the VM's creation")?;
    let start_ns = (start.time.parse::<f64>().context("the creation line's time")? * 1e9) as u64;
    let mut exits = Vec::new();
    for line in &outcome.lines {
        if let Some(rest) = line.message.strip_prefix("vm linux: exits: ") {
            for pair in rest.split(", ") {
                if let Some((kind, count)) = pair.rsplit_once(' ') {
                    exits.push((kind.to_string(), count.parse().unwrap_or(0)));
                }
            }
        }
    }
    let el2 = el2_of(&outcome, "linux").unwrap_or(0);
    Ok(LinuxBoot { vcpus, belfry_ns: boot.saturating_sub(start_ns), native_ns, el2, exits })
}

/// Runs `bundle` on `virt` under `-icount` (product firmware) until every VM has ended; every
/// VM must power off cleanly.
fn run_bundle(firmware: &Firmware, bundle: std::path::PathBuf, what: &str) -> Result<qemu::Outcome> {
    let options = RunOptions {
        icount: true,
        timeout: Duration::from_secs(900),
        bundle: Some(bundle),
        ..RunOptions::new(Board::Virt)
    };
    let outcome = qemu::run(firmware, &options, |_| {})?;
    if outcome.exit_code != Some(0) {
        bail!("{what}: the VM(s) did not power off cleanly:\n{}", outcome.transcript());
    }
    Ok(outcome)
}

/// The EL2 instructions Belfry counted for VM `vm` (`vm NAME: el2 instructions N`).
fn el2_of(outcome: &qemu::Outcome, vm: &str) -> Option<u64> {
    let prefix = format!("vm {vm}: el2 instructions ");
    outcome.lines.iter().find_map(|l| l.message.strip_prefix(&prefix)?.trim().parse().ok())
}

/// One `work KIND BYTES TICKS FREQUENCY` line of `/bin/work` ([`crate::linux::WORK`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Work {
    pub bytes: u64,
    pub ticks: u64,
    pub frequency: u64,
}

impl Work {
    /// Parses VM `vm`'s `work KIND ...` line for `kind`.
    fn of(outcome: &qemu::Outcome, vm: &str, kind: &str) -> Result<Work> {
        let lines = crate::decode::console_lines(&outcome.lines, vm);
        Self::parse(&lines, kind)
            .with_context(|| format!("no `work {kind}` line from vm {vm}:\n{}", outcome.transcript()))
    }

    fn parse(lines: &[String], kind: &str) -> Option<Work> {
        lines.iter().find_map(|l| {
            let mut fields = l.trim().strip_prefix(crate::linux::WORK_TICKS)?.split(' ');
            if fields.next()? != kind {
                return None;
            }
            let mut number = || fields.next()?.parse::<u64>().ok();
            let work = Work { bytes: number()?, ticks: number()?, frequency: number()? };
            fields.next().is_none().then_some(work)
        })
    }

    /// Bytes per second of guest time.
    pub fn bytes_per_second(&self) -> u64 {
        (u128::from(self.bytes) * u128::from(self.frequency) / u128::from(self.ticks.max(1))) as u64
    }
}

/// One device figure: throughput in guest time and, where an empty twin run was made, the EL2
/// instructions the work added, per `unit` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceFigure {
    pub name: String,
    pub work: Work,
    /// EL2 instructions per `unit` bytes: (the run's count - its empty twin's) * unit / bytes.
    pub el2_per_unit: Option<(u64, u64)>,
}

impl DeviceFigure {
    fn row(&self) -> String {
        let el2 = match self.el2_per_unit {
            Some((count, unit)) => format!("{count} per {} KiB", unit >> 10),
            None => "-".into(),
        };
        let ns = u128::from(self.work.ticks) * 1_000_000_000 / u128::from(self.work.frequency.max(1));
        let rate = self.work.bytes_per_second() >> 10;
        format!("{:<20} {:>10} {:>14} {:>10}   {el2}", self.name, self.work.bytes, ns, rate)
    }
}

/// The memory each device benchmark VM gets.
const DEVICE_BENCH_MEMORY: u64 = 256 << 20;

/// A measured run and its empty twin (the same VM doing the work on 0 bytes): one bundle each.
struct Twin {
    name: &'static str,
    /// The `belfry.work=` kind.
    kind: &'static str,
    /// KiB of work (written with leading zeros, as its twin's `0` is).
    kib: u64,
    /// Per how many bytes the EL2 instructions are given.
    unit: u64,
    /// Other command-line parameters.
    parameters: &'static str,
    virtio_console: bool,
    disk: bool,
}

/// The device benchmarks on `virt` (product firmware, 1-VCPU Linux VMs with the virtio drivers):
/// the console's throughput on the PL011 and on virtio-console, virtio-blk's sequential reads
/// and writes (`O_DIRECT`, 64 KiB requests), each with the EL2 instructions its work added
/// (measured against an empty twin boot, so the boot's own cost cancels exactly under
/// `-icount`); virtio-net's round trip and TCP throughput between two VMs on a link. Runs two
/// QEMUs at a time.
pub fn devices() -> Result<DeviceFigures> {
    let firmware = build::build(&[Board::Virt])?.remove(0);
    let twins = [
        Twin {
            name: "console PL011",
            kind: "console",
            kib: 64,
            unit: 1 << 10,
            parameters: "",
            virtio_console: false,
            disk: false,
        },
        Twin {
            name: "console virtio",
            kind: "console",
            kib: 64,
            unit: 1 << 10,
            parameters: "console=hvc0",
            virtio_console: true,
            disk: false,
        },
        Twin {
            name: "blk read",
            kind: "blk-read",
            kib: 16384,
            unit: 4 << 10,
            parameters: "",
            virtio_console: false,
            disk: true,
        },
        Twin {
            name: "blk write",
            kind: "blk-write",
            kib: 16384,
            unit: 4 << 10,
            parameters: "",
            virtio_console: false,
            disk: true,
        },
    ];
    let disk = std::fs::read(crate::linux::disk_image()?)?;
    let mut bundles = Vec::new();
    for twin in &twins {
        for kib in [twin.kib, 0] {
            let parameters = format!("{} belfry.work={}:{kib:05}", twin.parameters, twin.kind);
            let vm = bundle::writer::VmInput {
                virtio_console: twin.virtio_console,
                disk: twin.disk.then(|| disk.clone()),
                ..crate::linux::bench_vm("linux", DEVICE_BENCH_MEMORY, parameters.trim())?
            };
            let file = format!("bench-{}-{kib}.itb", twin.name.replace(' ', "-"));
            bundles.push(crate::linux::write_bundle_of(vec![vm], &file)?);
        }
    }
    let net = |name: &str, parameters: &str, cpu: u32| -> Result<bundle::writer::VmInput> {
        Ok(bundle::writer::VmInput {
            cpus: Some(vec![cpu]),
            net: Some("bench0".into()),
            ..crate::linux::bench_vm(name, DEVICE_BENCH_MEMORY, parameters)?
        })
    };
    let sender = net("left", "belfry.ip=10.0.0.1/24 belfry.work=net:16384:10.0.0.2", 0)?;
    let receiver = net("right", "belfry.work=net-listen:16384:10.0.0.2:10.0.0.1", 1)?;
    bundles.push(crate::linux::write_bundle_of(vec![sender, receiver], "bench-net.itb")?);
    // Two QEMUs at a time: each is one host thread under -icount.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<qemu::Outcome>>>> =
        bundles.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(bundle) = bundles.get(index) else { break };
                let name = bundle.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let outcome = run_bundle(&firmware, bundle.clone(), &name);
                *results[index].lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
            });
        }
    });
    let outcomes: Vec<Result<qemu::Outcome>> = results
        .into_iter()
        .map(|slot| slot.into_inner().unwrap_or_else(|e| e.into_inner()).context("a benchmark run that did not run")?)
        .collect();
    let mut figures = Vec::new();
    let mut failures = Vec::new();
    for (twin, pair) in twins.iter().zip(outcomes.chunks(2)) {
        match twin_figure(twin, &pair[0], &pair[1]) {
            Ok(figure) => figures.push(figure),
            Err(e) => failures.push(format!("{}: {e:#}", twin.name)),
        }
    }
    let net = outcomes.last().context("the net run")?.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"));
    let rtt = net.and_then(|net| {
        figures.push(DeviceFigure { name: "net TCP".into(), work: Work::of(net, "left", "net")?, el2_per_unit: None });
        crate::decode::console_lines(&net.lines, "left")
            .iter()
            .find_map(|l| round_trip_us(l))
            .with_context(|| format!("no round trip from vm left:\n{}", net.transcript()))
    });
    let rtt = rtt.map_err(|e| failures.push(format!("net: {e:#}"))).ok();
    Ok(DeviceFigures { figures, rtt_us: rtt, failures })
}

/// The average of busybox ping's `round-trip min/avg/max = A/B/C ms`, in microseconds.
fn round_trip_us(line: &str) -> Option<u64> {
    let figures = line.trim().strip_prefix("round-trip min/avg/max = ")?.strip_suffix(" ms")?;
    let average: f64 = figures.split('/').nth(1)?.parse().ok()?;
    Some((average * 1000.0).round() as u64)
}

/// What [`devices`] measured, and what failed (each with its transcript).
pub struct DeviceFigures {
    pub figures: Vec<DeviceFigure>,
    pub rtt_us: Option<u64>,
    pub failures: Vec<String>,
}

/// A twin's figure from its two runs.
fn twin_figure(twin: &Twin, run: &Result<qemu::Outcome>, empty: &Result<qemu::Outcome>) -> Result<DeviceFigure> {
    let (run, empty) =
        (run.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?, empty.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?);
    let work = Work::of(run, "linux", twin.kind)?;
    let nothing = Work::of(empty, "linux", twin.kind)?;
    if work.bytes != twin.kib << 10 || nothing.bytes != 0 {
        bail!("the work moved {} bytes (its twin {}), not {}", work.bytes, nothing.bytes, twin.kib << 10);
    }
    let el2 = el2_of(run, "linux").zip(el2_of(empty, "linux"));
    let el2_per_unit = el2.map(|(with, without)| {
        let count = u128::from(with.saturating_sub(without)) * u128::from(twin.unit) / u128::from(work.bytes.max(1));
        (count as u64, twin.unit)
    });
    Ok(DeviceFigure { name: twin.name.to_string(), work, el2_per_unit })
}

/// Prints [`devices`]' figures; fails with what failed.
fn print_devices(devices: &DeviceFigures) -> Result<()> {
    println!("{:<20} {:>10} {:>14} {:>10}   EL2 instructions", "device (virt)", "bytes", "guest ns", "KiB/s");
    for figure in &devices.figures {
        println!("{}", figure.row());
    }
    if let Some(rtt) = devices.rtt_us {
        println!("{:<20} {:>10} {:>14}   (average of 100)", "net ping round trip", "", format!("{} us", rtt));
    }
    if !devices.failures.is_empty() {
        bail!("device benchmarks failed:\n{}", devices.failures.join("\n"));
    }
    Ok(())
}

/// `linux-boot` with 1 and 4 VCPUs on `virt`.
pub fn linux_boot() -> Result<Vec<LinuxBoot>> {
    [1, 4].into_iter().map(|vcpus| linux_belfry(vcpus, linux_native(vcpus)?)).collect()
}

/// JSON for the figures (and the image sections), written by hand: flat and stable.
pub fn to_json(figures: &[Figure], sections: &BTreeMap<String, BTreeMap<String, u64>>) -> String {
    let mut json = String::from("{\n  \"figures\": [\n");
    for (index, f) in figures.iter().enumerate() {
        let comma = if index + 1 < figures.len() { "," } else { "" };
        let _ = writeln!(
            json,
            "    {{\"board\": \"{}\", \"path\": \"{}\", \"el2_instructions\": {}, \"guest_ns\": {}}}{comma}",
            f.board, f.path, f.el2, f.guest_ns
        );
    }
    json.push_str("  ],\n  \"sections\": {");
    for (index, (board, map)) in sections.iter().enumerate() {
        let comma = if index + 1 < sections.len() { "," } else { "" };
        let fields: Vec<String> = map.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
        let _ = write!(json, "\n    \"{board}\": {{{}}}{comma}", fields.join(", "));
    }
    json.push_str("\n  }\n}\n");
    json
}

/// Reads the figures back from `to_json`'s output (the baseline).
pub fn from_json(text: &str) -> Vec<Figure> {
    text.lines()
        .filter_map(|line| {
            let field = |name: &str| -> Option<String> {
                let start = line.find(&format!("\"{name}\": "))? + name.len() + 4;
                let rest = &line[start..];
                let end = rest.find([',', '}']).unwrap_or(rest.len());
                Some(rest[..end].trim().trim_matches('"').to_string())
            };
            Some(Figure {
                board: field("board")?,
                path: field("path")?,
                el2: field("el2_instructions")?.parse().ok()?,
                guest_ns: field("guest_ns")?.parse().ok()?,
            })
        })
        .collect()
}

/// The regressions of `current` against `baseline`: paths whose EL2 count rose by more than
/// the tolerance, or that disappeared.
pub fn regressions(baseline: &[Figure], current: &[Figure]) -> Vec<String> {
    let mut found = Vec::new();
    for base in baseline.iter().filter(|f| !CROSS_CPU.contains(&f.path.as_str())) {
        match current.iter().find(|f| f.board == base.board && f.path == base.path) {
            None => found.push(format!("{} {}: missing", base.board, base.path)),
            Some(now) if now.el2 * 100 > base.el2 * (100 + TOLERANCE_PERCENT) => found.push(format!(
                "{} {}: {} EL2 instructions, baseline {} (+{:.1} %)",
                base.board,
                base.path,
                now.el2,
                base.el2,
                (now.el2 as f64 / base.el2.max(1) as f64 - 1.0) * 100.0
            )),
            Some(_) => {}
        }
    }
    found
}

/// A horizontal bar chart of the EL2 instruction counts, one group per path.
pub fn to_svg(figures: &[Figure]) -> String {
    let max = figures.iter().map(|f| f.el2).max().unwrap_or(1).max(1);
    let (bar, gap, left, width) = (14, 6, 230, 520);
    let height = figures.len() * (bar + gap) + 40;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"monospace\" font-size=\"11\">\n",
        left + width + 80
    );
    let _ = writeln!(svg, "<text x=\"4\" y=\"14\">EL2 instructions per operation (cargo xtask bench, -icount)</text>");
    for (index, f) in figures.iter().enumerate() {
        let y = 28 + index * (bar + gap);
        let length = (f.el2 * width as u64 / max) as usize;
        let _ = writeln!(svg, "<text x=\"4\" y=\"{}\">{} {}</text>", y + 11, f.board, f.path);
        let _ = writeln!(svg, "<rect x=\"{left}\" y=\"{y}\" width=\"{length}\" height=\"{bar}\" fill=\"#4a7ab5\"/>");
        let _ = writeln!(svg, "<text x=\"{}\" y=\"{}\">{}</text>", left + length + 4, y + 11, f.el2);
    }
    svg.push_str("</svg>\n");
    svg
}

/// `.text`, `.rodata`, `.data` and `.bss` sizes of a firmware ELF, and its flat image's size.
pub fn sections(firmware: &Firmware) -> Result<BTreeMap<String, u64>> {
    use object::{Object, ObjectSection};
    let bytes = std::fs::read(&firmware.elf).with_context(|| format!("reading {}", firmware.elf.display()))?;
    let file = object::File::parse(&*bytes)?;
    let mut sizes = BTreeMap::new();
    for name in [".text", ".rodata", ".data", ".bss"] {
        let size = file
            .sections()
            .filter(|s| s.name().is_ok_and(|n| n == name || n.starts_with(&format!("{name}."))))
            .map(|s| s.size())
            .sum();
        sizes.insert(name.trim_start_matches('.').to_string(), size);
    }
    let image = std::fs::metadata(&firmware.image).with_context(|| format!("reading {}", firmware.image.display()))?;
    sizes.insert("image".to_string(), image.len());
    Ok(sizes)
}

/// The baseline's path in the repository.
pub fn baseline_path() -> std::path::PathBuf {
    workspace_root().join("bench").join("baseline.json")
}

/// The `linux-boot` ratio the benchmark requires, in thousandths of native.
pub const LINUX_BOOT_LIMIT_MILLI: u64 = 1150;

/// `linux-boot` as baseline figures: `linux-boot-N` with EL2 instructions and Belfry's guest ns.
/// Only the 1-VCPU boot's EL2 count is checked (the 4-VCPU boot spans CPUs, see [`CROSS_CPU`]).
fn linux_figures(boots: &[LinuxBoot]) -> Vec<Figure> {
    boots
        .iter()
        .map(|b| Figure {
            board: Board::Virt.name().to_string(),
            path: format!("linux-boot-{}", b.vcpus),
            el2: b.el2,
            guest_ns: b.belfry_ns,
        })
        .collect()
}

/// What `cargo xtask test` measures: the figures the baseline checks (the exit paths and
/// `linux-boot`), not the device figures, which are reported only.
pub const CHECKED: &str = "checked";

/// Runs every board (or only `exits`, `linux-boot`, `devices`, or [`CHECKED`]: the first two);
/// prints the tables; writes the outputs;
/// checks or updates the baseline. Returns the regressions found (empty when the check passes
/// or the baseline was updated).
pub fn bench(update_baseline: bool, only: Option<&str>) -> Result<Vec<String>> {
    if let Some(other) = only.filter(|o| !["exits", "linux-boot", "devices", CHECKED].contains(o)) {
        bail!("--only takes `exits`, `linux-boot` or `devices`, not `{other}`");
    }
    if update_baseline && only.is_some_and(|o| o != CHECKED) {
        bail!("--update-baseline measures every checked figure: leave out --only (or say `checked`)");
    }
    let mut figures = Vec::new();
    let mut sizes = BTreeMap::new();
    if only.is_none() || only == Some("exits") || only == Some(CHECKED) {
        let firmwares = build::build(&Board::ALL)?;
        for (board, firmware) in Board::ALL.iter().zip(&firmwares) {
            // The paths are measured by the test kit's `bench` scenario; the sizes are the product's.
            figures.extend(measure(&build::test_firmware(*board)?, *board)?);
            sizes.insert(board.name().to_string(), sections(firmware)?);
        }
    }
    let mut found = Vec::new();
    if only.is_none() || only == Some("linux-boot") || only == Some(CHECKED) {
        let boots = linux_boot()?;
        println!(
            "{:<12} {:>14} {:>14} {:>7} {:>16}",
            "linux-boot", "Belfry ns", "native ns", "ratio", "EL2 instructions"
        );
        for b in &boots {
            let ratio = b.ratio_milli();
            println!(
                "{:<12} {:>14} {:>14} {:>3}.{:03} {:>16}",
                format!("virt {} VCPU", b.vcpus),
                b.belfry_ns,
                b.native_ns,
                ratio / 1000,
                ratio % 1000,
                b.el2
            );
            let exits: Vec<String> = b.exits.iter().map(|(k, n)| format!("{k} {n}")).collect();
            println!("             exits: {}", exits.join(", "));
            if ratio > LINUX_BOOT_LIMIT_MILLI {
                found.push(format!(
                    "virt linux-boot-{}: {}.{:03}x native, the limit is {}.{:03}x",
                    b.vcpus,
                    ratio / 1000,
                    ratio % 1000,
                    LINUX_BOOT_LIMIT_MILLI / 1000,
                    LINUX_BOOT_LIMIT_MILLI % 1000
                ));
            }
        }
        figures.extend(linux_figures(&boots));
        // The console's cost: the 1-VCPU boot again with virtio-console as the kernel's
        // console, in exits per second of guest time (reported, not checked).
        let hvc0 = linux_boot_hvc0()?;
        let per_second = |b: &LinuxBoot| {
            let exits: u64 = b.exits.iter().map(|(_, n)| n).sum();
            (exits, exits * 1_000_000_000 / b.belfry_ns.max(1))
        };
        if let Some(pl011) = boots.first() {
            let ((a, a_rate), (b, b_rate)) = (per_second(pl011), per_second(&hvc0));
            println!("linux-boot console  exits  exits/s  Belfry ns  EL2 instructions");
            println!("virt 1 VCPU PL011   {a:>6} {a_rate:>8} {:>10} {:>16}", pl011.belfry_ns, pl011.el2);
            println!("virt 1 VCPU hvc0    {b:>6} {b_rate:>8} {:>10} {:>16}", hvc0.belfry_ns, hvc0.el2);
            let exits: Vec<String> = hvc0.exits.iter().map(|(k, n)| format!("{k} {n}")).collect();
            println!("             hvc0 exits: {}", exits.join(", "));
        }
    }
    if only.is_none() || only == Some("devices") {
        // Reported, not checked: the device threads run on another CPU (see [`CROSS_CPU`]).
        print_devices(&devices()?)?;
    }
    if only == Some("devices") {
        return Ok(Vec::new());
    }
    println!("{:<12} {:<14} {:>16} {:>12}", "board", "path", "EL2 instructions", "guest ns");
    for f in &figures {
        let note = if CROSS_CPU.contains(&f.path.as_str()) { "  (two CPUs: not checked)" } else { "" };
        println!("{:<12} {:<14} {:>16} {:>12}{note}", f.board, f.path, f.el2, f.guest_ns);
    }
    for (board, map) in &sizes {
        let fields: Vec<String> = map.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("{board}: product image (bytes): {}", fields.join(", "));
    }
    let out = workspace_root().join("target").join("bench");
    std::fs::create_dir_all(&out)?;
    let json = to_json(&figures, &sizes);
    std::fs::write(out.join("bench.json"), &json)?;
    std::fs::write(out.join("bench.svg"), to_svg(&figures))?;
    println!("xtask: wrote {} and bench.svg", out.join("bench.json").display());
    let baseline = baseline_path();
    if update_baseline {
        std::fs::create_dir_all(baseline.parent().unwrap_or(&out))?;
        std::fs::write(&baseline, json)?;
        println!("xtask: baseline updated: {}", baseline.display());
        return Ok(found);
    }
    let text = std::fs::read_to_string(&baseline)
        .with_context(|| format!("reading {} (create it with --update-baseline)", baseline.display()))?;
    let measured = |f: &Figure| match only {
        Some("exits") => !f.path.starts_with("linux-boot"),
        Some("linux-boot") => f.path.starts_with("linux-boot"),
        Some(CHECKED) => true,
        Some(_) => false,
        None => true,
    };
    let wanted: Vec<Figure> = from_json(&text).into_iter().filter(measured).collect();
    found.extend(regressions(&wanted, &figures));
    if found.is_empty() {
        println!("xtask: every path within {TOLERANCE_PERCENT} % of the baseline");
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(path: &str, el2: u64) -> Figure {
        Figure { board: "virt".into(), path: path.into(), el2, guest_ns: el2 + 4 }
    }

    #[test]
    fn exit_lines_keep_the_kinds_that_occur() {
        let line = "bench-exits: wfi-wake per 100 operations: page 0 trap 0 abort 0 hvc 0 sgi 0 wait 100 sysreg 0 fp 0 interrupt 200 other 0";
        assert_eq!(exits_line(line).as_deref(), Some("wfi-wake           wait 100, interrupt 200"));
        let none = "bench-exits: guest-loop per 100 operations: page 0 trap 0";
        assert_eq!(exits_line(none).as_deref(), Some("guest-loop         none"));
        assert_eq!(exits_line("bench: x el2 1 guest_ns 2"), None);
    }

    #[test]
    fn parses_bench_lines_only() {
        let lines = ["bench: null-hvc el2 691 guest_ns 695", "bench: loop ratio 100/100", "other"];
        assert_eq!(parse(Board::Virt, lines.map(String::from)), [figure("null-hvc", 691)]);
    }

    #[test]
    fn work_and_round_trip_lines() {
        let lines = ["work console 65536 1234 1000000000".to_string(), "work net 5 6".to_string()];
        assert_eq!(Work::parse(&lines, "console"), Some(Work { bytes: 65536, ticks: 1234, frequency: 1_000_000_000 }));
        assert_eq!(Work::parse(&lines, "net"), None, "a line with a field missing");
        assert_eq!(Work::parse(&lines, "blk-read"), None);
        assert_eq!(Work::parse(&lines, "console").unwrap().bytes_per_second(), 53_108_589_951);
        assert_eq!(round_trip_us("round-trip min/avg/max = 0.311/0.401/1.025 ms"), Some(401));
        assert_eq!(round_trip_us("round-trip min/avg/max = 1.5 ms"), None);
    }

    #[test]
    fn json_round_trips() {
        let figures = [figure("null-hvc", 691), figure("bell", 1150)];
        let mut sections = BTreeMap::new();
        sections.insert("virt".to_string(), BTreeMap::from([("text".to_string(), 1u64)]));
        assert_eq!(from_json(&to_json(&figures, &sections)), figures);
    }

    #[test]
    fn a_rise_over_two_percent_is_a_regression() {
        let baseline = [figure("null-hvc", 1000), figure("bell", 1000), figure("interrupt", 10)];
        assert!(regressions(&baseline, &[figure("null-hvc", 1020), figure("bell", 900)]).is_empty());
        let found = regressions(&baseline, &[figure("null-hvc", 1021)]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("virt null-hvc: 1021 EL2 instructions, baseline 1000"));
        assert_eq!(found[1], "virt bell: missing");
    }
}
