//! `cargo xtask`: build, run, test, flash and debug Belfry.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;
use xtask::qemu::RunOptions;
use xtask::{build, qemu, tools, workspace_root, Board};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, run, test and flash Belfry")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build the firmware for a board (or every board) and write its flat image.
    Build {
        /// The board; all of them when omitted.
        #[arg(long, value_enum)]
        board: Option<Board>,
    },
    /// Build Belfry and boot it under QEMU, printing the decoded log as it arrives.
    Run {
        #[arg(long, value_enum, default_value = "virt")]
        board: Board,
        /// Boot QEMU `virt` without EL2 (virtualization=off): Belfry says it cannot host guests.
        #[arg(long)]
        el1: bool,
        /// A guest bundle (`cargo xtask pack`) to boot; without one (and without a scenario)
        /// Belfry boots the guest `--guest` names.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// A scenario for the test firmware's command line (boot, fault, fault-cpu:N, panic,
        /// port-stress, guest:NAME).
        #[arg(long)]
        scenario: Option<String>,
        /// Deterministic time (`-icount shift=0,sleep=off`).
        #[arg(long)]
        icount: bool,
        /// The guest to boot when no bundle is given: `linux` (Debian's arm64 kernel with a
        /// busybox initramfs, fetched on first use, to a shell), `linux-disk` (the same kernel
        /// with its root on a virtio-blk disk and its shell on virtio-console's hvc0) or `demo`
        /// (the two test guests).
        #[arg(long, default_value = "linux")]
        guest: String,
        /// VCPUs of the `linux` guest.
        #[arg(long, default_value_t = 4)]
        vcpus: u32,
        /// Memory of the `linux` guest (K, M or G).
        #[arg(long, default_value = "256M")]
        memory: String,
        /// An extra QEMU argument (repeat for several).
        #[arg(long = "qemu-arg", allow_hyphen_values = true)]
        qemu_args: Vec<String>,
    },
    /// Write a guest bundle (a FIT image) from VM specifications.
    Pack {
        /// The bundle file to write.
        #[arg(long)]
        out: PathBuf,
        /// One VM: name=N,kernel=PATH[,initrd=PATH][,dtb=PATH][,vcpus=N][,memory=SIZE]
        /// [,cpus=A:B|A-B][,load=ADDR][,disk=PATH][,console=virtio|pl011][,net=LINK]
        /// [,cmdline=STR] (cmdline takes the rest, commas included).
        #[arg(long = "vm", required = true)]
        vms: Vec<String>,
    },
    /// Run every check CI runs: fmt, clippy, host unit tests, the QEMU system tests, and the
    /// model checks (loom, Miri).
    Test,
    /// Write a Raspberry Pi 4 boot folder (kernel8.img, config.txt, the bundle, the Pi
    /// firmware) and, with --image, a bootable SD-card image.
    Flash {
        #[arg(long, value_enum, default_value = "rpi4")]
        board: Board,
        /// The directory to write (e.g. the mounted FAT boot partition).
        #[arg(long)]
        out: PathBuf,
        /// The guest bundle to boot (default: the test guests' bundle).
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// Also write an SD-card image (one FAT32 partition) for dd or Raspberry Pi Imager.
        #[arg(long)]
        image: Option<PathBuf>,
        /// Where the Raspberry Pi firmware files are; fetched from Debian's raspi-firmware
        /// package when they are not there.
        #[arg(long, default_value = "/usr/lib/raspi-firmware")]
        firmware_dir: PathBuf,
    },
    /// Start QEMU halted with its gdbstub on :1234 and attach gdb to the firmware ELF.
    Gdb {
        #[arg(long, value_enum, default_value = "virt")]
        board: Board,
    },
    /// Decode a captured (or live) defmt byte stream, e.g. a real Pi 4's serial port.
    Decode {
        #[arg(long, value_enum, default_value = "rpi4")]
        board: Board,
        /// A file of captured bytes, or a serial device set up with
        /// `stty -F /dev/ttyUSB0 115200 raw -echo`.
        #[arg(long)]
        input: PathBuf,
    },
    /// Install what the host lacks (QEMU >= 9 from bookworm-backports).
    Setup,
    /// Run the `cargo fuzz` targets (fuzz/) for a time each and report executions and crashes.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        time: u64,
        /// Only this target.
        #[arg(long)]
        target: Option<String>,
    },
    /// Repeat the timing-sensitive scenarios (SMP guests, timer ticks, port stress) without
    /// -icount on every board, and count failures and hangs.
    Stress {
        /// Rounds; each runs the next scenario on every board.
        #[arg(long, default_value_t = 100)]
        runs: usize,
        /// Only this board.
        #[arg(long, value_enum)]
        board: Option<Board>,
    },
    /// Measure every exit path under -icount (EL2 instructions, guest nanoseconds) on every
    /// board; print a table, write target/bench/bench.json and bench.svg, and compare with
    /// bench/baseline.json (more than 2 % more EL2 instructions fails).
    Bench {
        /// Write the figures as the new baseline instead of checking them.
        #[arg(long)]
        update_baseline: bool,
        /// Measure only `exits` (the exit paths), `linux-boot`, `devices` (console, disk and
        /// network throughput; reported, not checked) or `checked` (the first two, what
        /// `cargo xtask test` runs). The baseline is then only checked, never written (except
        /// with `checked`).
        #[arg(long)]
        only: Option<String>,
        /// Instead: trace the exit paths on `virt` instruction by instruction and report, per
        /// path, EL2 instructions and system-register accesses per operation and the functions
        /// they are spent in (target/bench/trace.txt; slow: about ten minutes).
        #[arg(long)]
        trace: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Task::Build { board } => {
            let boards = board.map(|b| vec![b]).unwrap_or_else(|| Board::ALL.to_vec());
            for firmware in build::build(&boards)? {
                println!("{}", firmware.image.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Task::Pack { out, vms } => {
            let vms = vms.iter().map(|spec| xtask::pack::spec(spec)).collect::<Result<Vec<_>>>()?;
            for line in xtask::pack::pack(&vms, &out)? {
                println!("xtask: {line}");
            }
            println!("xtask: wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Task::Run { board, el1, bundle, scenario, icount, guest, vcpus, memory, qemu_args } => {
            if el1 && !board.has_el1_mode() {
                bail!("--el1 needs a QEMU virt board");
            }
            tools::ensure_qemu()?;
            build::build(&[board])?;
            // A scenario needs the test firmware; the product image boots bundles only.
            let firmware = build::firmware_for(board, scenario.is_some())?;
            // Without a bundle or a scenario, `run` boots the test guests' bundle.
            let bundle = match (bundle, &scenario) {
                (Some(bundle), _) => Some(bundle),
                (None, None) if !el1 => Some(match guest.as_str() {
                    "demo" => xtask::guests::demo_bundle()?,
                    "linux" => xtask::linux::bundle(vcpus, xtask::pack::size(&memory)?)?,
                    "linux-disk" => xtask::linux::disk_bundle(vcpus, xtask::pack::size(&memory)?)?,
                    other => bail!("--guest {other}: the guests are demo, linux and linux-disk"),
                }),
                (None, _) => None,
            };
            let options = RunOptions {
                board,
                virtualization: !el1,
                scenario,
                icount,
                timeout: Duration::from_secs(24 * 3600),
                bundle,
                qemu_args,
                interactive: true,
                ..RunOptions::new(board)
            };
            let mut console = xtask::decode::ConsoleView::default();
            let outcome = qemu::run(&firmware, &options, |line| console.show(line))?;
            eprint!("{}", outcome.qemu_stderr);
            let code = outcome.exit_code.unwrap_or(1);
            match outcome.exit_code {
                Some(code) => println!("xtask: Belfry ended the run with status {code}"),
                None => println!("xtask: QEMU ended (status {:?}) without Belfry's exit line", outcome.qemu_status),
            }
            Ok(ExitCode::from(code.clamp(0, 255) as u8))
        }
        Task::Test => test(),
        Task::Bench { trace: true, .. } => {
            tools::ensure_qemu()?;
            build::build(&[Board::Virt])?;
            let traces = xtask::trace::trace(&build::test_firmware(Board::Virt)?)?;
            let report = xtask::trace::report(&traces);
            print!("{report}");
            let out = xtask::workspace_root().join("target/bench");
            std::fs::create_dir_all(&out)?;
            std::fs::write(out.join("trace.txt"), report)?;
            std::fs::write(out.join("trace-pcs.txt"), xtask::trace::pc_listing(&traces))?;
            println!("xtask: wrote {} and trace-pcs.txt", out.join("trace.txt").display());
            Ok(ExitCode::SUCCESS)
        }
        Task::Bench { update_baseline, only, .. } => {
            tools::ensure_qemu()?;
            let found = xtask::bench::bench(update_baseline, only.as_deref())?;
            for regression in &found {
                eprintln!("xtask: regression: {regression}");
            }
            Ok(if found.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Task::Flash { board, out, bundle, image, firmware_dir } => flash(board, &out, bundle, image, &firmware_dir),
        Task::Gdb { board } => gdb(board),
        Task::Decode { board, input } => decode(board, &input),
        Task::Fuzz { time, target } => {
            let targets: Vec<&str> = match &target {
                Some(t) => vec![t.as_str()],
                None => xtask::fuzz::TARGETS.to_vec(),
            };
            let results = xtask::fuzz::fuzz(&targets, time)?;
            println!("{:<14} {:>14} {:>8} {:>8}", "target", "executions", "seconds", "crashes");
            for r in &results {
                println!("{:<14} {:>14} {:>8} {:>8}", r.target, r.executions, r.seconds, u8::from(r.crashed));
            }
            Ok(if results.iter().any(|r| r.crashed) { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        Task::Stress { runs, board } => {
            tools::ensure_qemu()?;
            let boards = board.map(|b| vec![b]).unwrap_or_else(|| Board::ALL.to_vec());
            build::build(&boards)?;
            let firmware = boards.iter().map(|&b| Ok((b, build::test_firmware(b)?))).collect::<Result<Vec<_>>>()?;
            let counts = xtask::stress::stress(&firmware, runs, Duration::from_secs(60))?;
            println!("{:<12} {:<20} {:>7} {:>7} {:>5}", "board", "scenario", "passed", "failed", "hung");
            let mut bad = 0;
            for ((board, scenario), [passed, failed, hung]) in &counts {
                println!("{board:<12} {scenario:<20} {passed:>7} {failed:>7} {hung:>5}");
                bad += failed + hung;
            }
            Ok(if bad == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Task::Setup => {
            tools::ensure_rust_targets()?;
            tools::ensure_miri()?;
            tools::ensure_qemu()?;
            println!("xtask: QEMU {} is installed", tools::qemu_major_version().unwrap_or(0));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn cargo(args: &[&str]) -> Result<()> {
    println!("xtask: cargo {}", args.join(" "));
    let status =
        Command::new(env!("CARGO")).current_dir(workspace_root()).args(args).status().context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

use tools::MIRI_TOOLCHAIN;

fn cargo_with(args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    println!(
        "xtask: {} cargo {}",
        env.iter().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join(" "),
        args.join(" ")
    );
    let status = Command::new("cargo")
        .current_dir(workspace_root())
        .args(args)
        .envs(env.iter().copied())
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

/// Model checks: the loom models of the lock-free ring and the kick/interrupt/WFI handshake,
/// and of a virtqueue's indices between a driver and a device thread; then Miri over the unit tests of `el2`, `gic` and `stage2` (the crates with `unsafe` code).
fn model_checks() -> Result<()> {
    cargo_with(
        &["test", "-p", "el2", "-p", "vmm", "--lib", "--release", "loom"],
        &[("RUSTFLAGS", "--cfg loom"), ("CARGO_TARGET_DIR", "target/loom")],
    )?;
    tools::ensure_miri()?;
    let toolchain = format!("+{MIRI_TOOLCHAIN}");
    cargo_with(
        &[&toolchain, "miri", "test", "-p", "el2", "-p", "gic", "-p", "stage2", "--lib"],
        &[("CARGO_TARGET_DIR", "target/miri"), ("MIRIFLAGS", "-Zmiri-permissive-provenance")],
    )
}

fn test() -> Result<ExitCode> {
    tools::ensure_qemu()?;
    tools::ensure_rust_targets()?;
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--exclude",
        "belfry-virt",
        "--exclude",
        "belfry-rpi4",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    cargo(&[
        "clippy",
        "--target",
        build::TARGET,
        "--release",
        "-p",
        "el2",
        "-p",
        "stage2",
        "-p",
        "gic",
        "-p",
        "vmm",
        "-p",
        "bundle",
        "-p",
        "testkit",
        "-p",
        "belfry-virt",
        "-p",
        "belfry-rpi4",
        "--",
        "-D",
        "warnings",
    ])?;
    build::build(&Board::ALL)?;
    // Host unit tests and the QEMU system tests (the `belfry-system-tests` crate). Two test
    // threads: each QEMU runs four emulated CPUs on this machine's two cores.
    cargo(&[
        "test",
        "--workspace",
        "--exclude",
        "belfry-virt",
        "--exclude",
        "belfry-rpi4",
        "--",
        "--test-threads",
        "2",
    ])?;
    model_checks()?;
    // Fuzz smoke runs: a few seconds per target (`cargo xtask fuzz --time S` for long runs);
    // the bundle parser, the one input a user hands Belfry, for at least a million inputs.
    let others: Vec<&str> = xtask::fuzz::TARGETS.iter().copied().filter(|&t| t != "bundle").collect();
    let mut fuzzed = xtask::fuzz::fuzz(&["bundle"], 40)?;
    if fuzzed.iter().any(|r| r.executions < 1_000_000) {
        bail!("the bundle fuzz smoke run made fewer than 1e6 executions: {}", fuzzed[0].executions);
    }
    fuzzed.extend(xtask::fuzz::fuzz(&others, 5)?);
    for r in &fuzzed {
        println!(
            "xtask: fuzz {}: {} executions, {}",
            r.target,
            r.executions,
            if r.crashed { "CRASHED" } else { "no crash" }
        );
    }
    if fuzzed.iter().any(|r| r.crashed || r.executions == 0) {
        bail!("a fuzz target crashed or did not run");
    }
    // The exit-path and linux-boot figures against the committed baseline (deterministic under
    // -icount); the device figures are `cargo xtask bench`'s, reported and not checked.
    let found = xtask::bench::bench(false, Some(xtask::bench::CHECKED))?;
    if !found.is_empty() {
        bail!("exit paths regressed over bench/baseline.json:\n{}", found.join("\n"));
    }
    println!("xtask: all checks passed");
    Ok(ExitCode::SUCCESS)
}

fn flash(
    board: Board,
    out: &Path,
    bundle: Option<PathBuf>,
    image: Option<PathBuf>,
    firmware_dir: &Path,
) -> Result<ExitCode> {
    if board != Board::Rpi4 {
        bail!("flash writes a Raspberry Pi 4 boot partition; use --board rpi4");
    }
    for path in xtask::flash::flash(out, bundle, image.as_deref(), firmware_dir)? {
        println!("xtask: wrote {}", path.display());
    }
    if let Some(image) = image {
        println!("xtask: {} is an SD-card image: write it with dd or Raspberry Pi Imager", image.display());
    }
    println!("xtask: connect a 3.3 V serial adapter to GPIO 14/15 and run: stty -F /dev/ttyUSB0 115200 raw -echo &&");
    println!("  cargo xtask decode --board rpi4 --input /dev/ttyUSB0");
    Ok(ExitCode::SUCCESS)
}

fn gdb(board: Board) -> Result<ExitCode> {
    tools::ensure_qemu()?;
    let firmware = build::build(&[board])?.remove(0);
    let mut command = qemu::command(&firmware, &RunOptions::new(board))?;
    command.args(["-S", "-gdb", "tcp::1234"]);
    let mut qemu = command.spawn().context("starting QEMU")?;
    // The host's plain `gdb` usually knows only the host architecture; gdb-multiarch knows AArch64.
    let gdb = ["gdb-multiarch"].into_iter().find(|g| Command::new(g).arg("--version").output().is_ok());
    let Some(gdb) = gdb else {
        println!("xtask: gdb-multiarch not found (Debian: apt-get install gdb-multiarch)");
        println!(
            "xtask: QEMU waits on :1234; attach with: gdb-multiarch {} -ex 'target remote :1234'",
            firmware.elf.display()
        );
        qemu.wait()?;
        return Ok(ExitCode::SUCCESS);
    };
    let status = Command::new(gdb).arg(&firmware.elf).args(["-ex", "target remote :1234"]).status()?;
    let _ = qemu.kill();
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn decode(board: Board, input: &Path) -> Result<ExitCode> {
    use std::io::Read;
    let firmware = build::firmware(board).context("build the firmware first: cargo xtask build")?;
    let elf = std::fs::read(&firmware.elf).with_context(|| format!("reading {}", firmware.elf.display()))?;
    let decoder = xtask::decode::Decoder::new(&elf)?;
    let mut stream = decoder.stream();
    let mut source = std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let mut buffer = [0u8; 4096];
    loop {
        let n = source.read(&mut buffer)?;
        if n == 0 {
            return Ok(ExitCode::SUCCESS);
        }
        for line in stream.feed(&buffer[..n]) {
            println!("{line}");
        }
    }
}
