//! Running Belfry under QEMU: the command line, a time limit, and the decoded log.

use crate::build::Firmware;
use crate::decode::{Decoder, LogLine};
use crate::Board;
use anyhow::{Context, Result};
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How to start one run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub board: Board,
    /// `false` boots QEMU `virt` without EL2 (`virtualization=off`).
    pub virtualization: bool,
    /// The `scenario=` word of Belfry's command line, if any.
    pub scenario: Option<String>,
    /// Deterministic time: one counter tick per instruction.
    pub icount: bool,
    /// Kill QEMU after this long.
    pub timeout: Duration,
    /// Give the board a device tree with the command line (`virt`: QEMU's own; `rpi4`: the Pi
    /// 4's, from Debian's kernel package). `false` on `rpi4` boots it with none, on its built-in
    /// description and without a command line: such a run never ends by itself (see `stop_on`).
    pub device_tree: bool,
    /// End the run (successfully) once a line with exactly this message is logged.
    pub stop_on: Option<String>,
    /// How many lines `stop_on` must match before the run ends (at least 1).
    pub stop_on_count: usize,
    /// A device tree file to boot with instead of the board's own (`-dtb`).
    pub dtb_file: Option<std::path::PathBuf>,
    /// A guest bundle, passed as the initrd; `virt` gets the RAM it needs.
    pub bundle: Option<std::path::PathBuf>,
    /// `virt`'s RAM in MiB, instead of what the bundle needs.
    pub ram_mib: Option<u64>,
    /// More QEMU arguments, appended last.
    pub qemu_args: Vec<String>,
    /// Keystrokes to type on the board's console: each `(after, keys)` waits for a log line
    /// whose message contains `after` (following the previous step's), then sends `keys`.
    pub script: Vec<(String, String)>,
    /// Forward this terminal's keystrokes to the board's console (raw mode; Ctrl-A x quits).
    pub interactive: bool,
}

impl RunOptions {
    /// A plain boot of `board` with a generous limit.
    pub fn new(board: Board) -> Self {
        Self {
            board,
            virtualization: true,
            scenario: None,
            icount: false,
            timeout: Duration::from_secs(120),
            device_tree: true,
            stop_on: None,
            stop_on_count: 1,
            dtb_file: None,
            bundle: None,
            ram_mib: None,
            qemu_args: Vec::new(),
            script: Vec::new(),
            interactive: false,
        }
    }

    /// Belfry's command line: power off at the end of the run, and the scenario.
    pub fn command_line(&self) -> String {
        let mut line = String::from("belfry.exit=poweroff");
        if let Some(scenario) = &self.scenario {
            line.push_str(&format!(" scenario={scenario}"));
        }
        line
    }
}

/// Belfry's structured last line: the run's exit status. Only Belfry's own code logs it (a
/// guest's console lines are prefixed with its name), and a run has no other way to end with
/// a status: QEMU runs without semihosting.
pub const EXIT_LINE_PREFIX: &str = "belfry: run ended, exit status ";

/// How a run ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The exit status Belfry reported on its last line, when the run then ended cleanly (a
    /// power-off, QEMU's status 0, or `stop_on`); `None` otherwise.
    pub exit_code: Option<i32>,
    /// QEMU's own process exit code; `None` when killed.
    pub qemu_status: Option<i32>,
    pub timed_out: bool,
    /// The run was ended on `stop_on`.
    pub stopped: bool,
    pub lines: Vec<LogLine>,
    /// What QEMU itself printed on stderr.
    pub qemu_stderr: String,
}

impl Outcome {
    /// Whether some line's message is exactly `message`.
    pub fn has(&self, message: &str) -> bool {
        self.lines.iter().any(|l| l.message == message)
    }

    /// The lines of one CPU.
    pub fn from_cpu(&self, cpu: usize) -> impl Iterator<Item = &LogLine> {
        self.lines.iter().filter(move |l| l.cpu == Some(cpu))
    }

    /// The whole log, one line each, for failure messages.
    pub fn transcript(&self) -> String {
        let mut text: String = self.lines.iter().map(|l| format!("{l}\n")).collect();
        if !self.qemu_stderr.is_empty() {
            text.push_str("--- qemu stderr ---\n");
            text.push_str(&self.qemu_stderr);
        }
        text
    }
}

/// The QEMU command for a run.
pub fn command(firmware: &Firmware, options: &RunOptions) -> Result<Command> {
    let mut command = Command::new("qemu-system-aarch64");
    let mut ram_mib = crate::Board::VIRT_RAM_MIB;
    if let Some(bundle) = &options.bundle {
        let blob = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
        ram_mib = ram_mib.max(crate::pack::ram_needed_mib(&blob));
    }
    command.args(options.board.machine_args(options.virtualization, options.ram_mib.unwrap_or(ram_mib)));
    // No network device: `virt` would otherwise add a virtio NIC whose option ROM comes from a
    // package (ipxe-qemu) that a minimal QEMU install lacks. No semihosting: a guest could use
    // it to reach the host (see `el2::arch::aarch64::power`). A reset ends QEMU.
    command.args(["-display", "none", "-monitor", "none", "-serial", "stdio", "-nic", "none", "-no-reboot"]);
    if options.icount {
        command.args(["-icount", "shift=0,sleep=off"]);
    }
    if options.device_tree {
        if let Some(file) = &options.dtb_file {
            command.arg("-dtb").arg(file);
        } else if options.board == Board::Rpi4 {
            command.arg("-dtb").arg(crate::debian::pi4_device_tree()?);
        }
        command.arg("-append").arg(options.command_line());
    }
    command.arg("-kernel").arg(&firmware.image);
    if let Some(bundle) = &options.bundle {
        command.arg("-initrd").arg(bundle);
    }
    command.args(&options.qemu_args);
    die_with_parent(&mut command);
    Ok(command)
}

/// QEMU ends when the process that started it ends (xtask killed by a time limit, a test
/// harness that panicked): no stray emulator keeps burning the machine's two cores.
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: `prctl(PR_SET_PDEATHSIG)` is async-signal-safe and touches only the child's own
    // state, as `pre_exec` requires.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs QEMU to completion or the time limit, calling `on_line` for each decoded line as it
/// arrives, and returns the outcome.
pub fn run(firmware: &Firmware, options: &RunOptions, mut on_line: impl FnMut(&LogLine)) -> Result<Outcome> {
    let elf = std::fs::read(&firmware.elf).with_context(|| format!("reading {}", firmware.elf.display()))?;
    let decoder = Decoder::new(&elf)?;
    let mut stream = decoder.stream();
    let mut child = command(firmware, options)?
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-aarch64 (is QEMU >= 9 installed? `cargo xtask setup`)")?;
    let mut stdout = child.stdout.take().context("QEMU's stdout")?;
    let mut stderr = child.stderr.take().context("QEMU's stderr")?;
    let stdin = std::sync::Arc::new(std::sync::Mutex::new(child.stdin.take().context("QEMU's stdin")?));
    let quit = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _terminal = if options.interactive { crate::terminal::forward(stdin.clone(), quit.clone()) } else { None };
    let mut script = options.script.iter().peekable();
    let mut script_from = 0;
    // What the script matches against: the log, with each VM's console output as whole lines
    // (a piece passed on mid-line joined to the rest).
    let mut script_view: Vec<String> = Vec::new();
    let mut open_pieces: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut viewed = 0;
    let (sender, receiver) = mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buffer) {
            if sender.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let deadline = Instant::now() + options.timeout;
    let mut lines = Vec::new();
    let mut timed_out = false;
    let mut stopped = false;
    let mut take = |bytes: Vec<u8>, lines: &mut Vec<LogLine>| {
        for line in stream.feed(&bytes) {
            on_line(&line);
            lines.push(line);
        }
    };
    let stop_seen = |lines: &[LogLine]| {
        options
            .stop_on
            .as_ref()
            .is_some_and(|m| lines.iter().filter(|l| &l.message == m).count() >= options.stop_on_count.max(1))
    };
    let status = loop {
        match receiver.recv_timeout(Duration::from_millis(20)) {
            Ok(bytes) => take(bytes, &mut lines),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }
        for line in &lines[viewed..] {
            match crate::decode::console_text(&line.message) {
                Some((vm, text, complete)) => {
                    let open = open_pieces.entry(vm.to_string()).or_default();
                    open.push_str(text);
                    if complete {
                        script_view.push(format!("console {vm}: {}", std::mem::take(open)));
                    }
                }
                None => script_view.push(line.message.clone()),
            }
        }
        viewed = lines.len();
        while let Some((after, keys)) = script.peek() {
            let Some(found) = script_view[script_from..].iter().position(|m| m.contains(after.as_str())) else {
                break;
            };
            script_from += found + 1;
            use std::io::Write;
            let mut stdin = stdin.lock().unwrap_or_else(|e| e.into_inner());
            let _ = stdin.write_all(keys.as_bytes()).and_then(|()| stdin.flush());
            script.next();
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if quit.load(std::sync::atomic::Ordering::Relaxed) {
            stopped = true;
            let _ = child.kill();
            break child.wait()?;
        }
        if stop_seen(&lines) {
            stopped = true;
            let _ = child.kill();
            break child.wait()?;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait()?;
        }
    };
    let _ = reader.join();
    while let Ok(bytes) = receiver.try_recv() {
        take(bytes, &mut lines);
    }
    let qemu_stderr = stderr_reader.join().unwrap_or_default();
    let qemu_status = if timed_out || stopped { None } else { status.code() };
    let clean = qemu_status == Some(0) || stopped;
    Ok(Outcome { exit_code: exit_status(&lines, clean), qemu_status, timed_out, stopped, lines, qemu_stderr })
}

/// Belfry's reported exit status: its last line's, when the run then ended cleanly (QEMU exited
/// with 0 after the power-off, or the harness stopped it on a line).
pub fn exit_status(lines: &[LogLine], clean: bool) -> Option<i32> {
    if !clean {
        return None;
    }
    let last = lines.iter().rev().find(|l| l.message.starts_with(EXIT_LINE_PREFIX))?;
    last.message[EXIT_LINE_PREFIX.len()..].parse().ok()
}

/// Boots `image` natively on QEMU `virt` at EL1 (no Belfry) with `cpus` CPUs and returns the
/// lines it printed on its serial port; the guest must power the machine off within `timeout`.
pub fn run_native(image: &std::path::Path, cpus: u32, timeout: Duration) -> Result<Vec<String>> {
    let mut command = Command::new("qemu-system-aarch64");
    command.args(["-M", "virt,gic-version=3", "-cpu", "max", "-m", "128M", "-smp", &cpus.to_string()]);
    command.args(["-display", "none", "-monitor", "none", "-serial", "stdio", "-nic", "none", "-no-reboot"]);
    command.arg("-kernel").arg(image);
    let output = output_within(command, timeout)
        .with_context(|| format!("{} did not power off within {timeout:?}", image.display()))?;
    Ok(output.lines().map(|l| l.trim_end_matches('\r').to_string()).filter(|l| !l.is_empty()).collect())
}

/// Runs `command` (QEMU with its serial port on stdout) until it exits, at most `timeout`, and
/// returns what it printed. Its stdout is drained as it runs (a full pipe would stall it).
pub fn output_within(mut command: Command, timeout: Duration) -> Result<String> {
    command.stdout(Stdio::piped()).stderr(Stdio::inherit()).stdin(Stdio::null());
    die_with_parent(&mut command);
    let mut child = command.spawn().context("starting qemu-system-aarch64")?;
    let mut stdout = child.stdout.take().context("QEMU's stdout")?;
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let started = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("QEMU did not end within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let bytes = reader.join().unwrap_or_default();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
