//! Guest bundles, end to end: bundles made by `xtask pack` from the test guests (arm64 Images
//! built apart from the firmware), passed as the initrd the way a user passes them, on every
//! board. Each VM's console lines carry its name; a VM whose image is corrupted or that asks
//! for too much memory is refused by name while the others run.

use belfry_system_tests::*;
use bundle::writer::VmInput;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

fn images() -> &'static [PathBuf] {
    static IMAGES: OnceLock<Vec<PathBuf>> = OnceLock::new();
    IMAGES.get_or_init(|| xtask::guests::build().expect("building the test guests"))
}

fn vm(name: &str, guest: usize, vcpus: u32, memory: u64) -> VmInput {
    VmInput {
        name: name.into(),
        kernel: std::fs::read(&images()[guest]).unwrap(),
        vcpus: Some(vcpus),
        memory: Some(memory),
        ..VmInput::default()
    }
}

/// Packs `vms` into `target/test-bundles/NAME.itb` as `cargo xtask pack` does, then lets
/// `edit` change the bytes.
fn bundle(name: &str, vms: &[VmInput], edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let dir = xtask::workspace_root().join("target/test-bundles");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.itb"));
    xtask::pack::pack(vms, &path).unwrap();
    let mut blob = std::fs::read(&path).unwrap();
    edit(&mut blob);
    std::fs::write(&path, blob).unwrap();
    path
}

fn run(board: Board, bundle: &std::path::Path) -> Outcome {
    boot(RunOptions { bundle: Some(bundle.to_path_buf()), ram_mib: Some(1024), ..RunOptions::new(board) })
}

/// The lines VM `name` printed, from Belfry's tagged console output (a piece passed on while
/// the guest was quiet mid-line is joined to the rest of its line).
fn console(outcome: &Outcome, name: &str) -> Vec<String> {
    xtask::decode::console_lines(&outcome.lines, name)
}

const HELLO: [&str; 4] = [
    "hello: an arm64 Image on QEMU virt's machine",
    "hello: x0 holds a device tree",
    "hello: running at EL1",
    "hello: PSCI SYSTEM_OFF",
];
const SMP: [&str; 5] = [
    "smp: cpu0 starts cpu1 with PSCI CPU_ON",
    "smp: cpu1 is up",
    "smp: CPU_ON succeeded",
    "smp: cpu1 got context id 0x5a17",
    "smp: PSCI SYSTEM_OFF",
];

/// The guests print the same lines natively on QEMU `virt` as under Belfry: they are plain
/// QEMU `virt` programs.
#[test]
fn the_test_guests_boot_natively() {
    tools_ready();
    let hello = xtask::qemu::run_native(&images()[0], 1, Duration::from_secs(30)).unwrap();
    assert_eq!(hello, HELLO);
    let smp = xtask::qemu::run_native(&images()[1], 2, Duration::from_secs(30)).unwrap();
    assert_eq!(smp, SMP);
}

fn tools_ready() {
    xtask::tools::ensure_qemu().expect("QEMU");
}

/// The CPU that logged the end of each console line of VM `name` (the VCPU's thread, whose
/// newline completed it).
fn console_cpus(outcome: &Outcome, name: &str) -> Vec<Option<usize>> {
    let tag = format!("console {name}: ");
    outcome.lines.iter().filter(|l| l.message.starts_with(&tag)).map(|l| l.cpu).collect()
}

#[test]
fn two_vms_run_each_line_tagged_with_its_name() {
    // Placement: hello's VCPU on cpu2, smp's VCPU 0 on cpu1 and VCPU 1 on cpu3.
    let hello = VmInput { cpus: Some(vec![2]), ..vm("hello", 0, 1, 32 << 20) };
    let smp = VmInput { cpus: Some(vec![1, 3]), ..vm("smp", 1, 2, 32 << 20) };
    let path = bundle("two", &[hello, smp], |_| {});
    for board in Board::ALL {
        let outcome = run(board, &path);
        expect_exit(&outcome, exit_code::SUCCESS);
        assert_eq!(console(&outcome, "hello"), HELLO, "{}", outcome.transcript());
        assert_eq!(console(&outcome, "smp"), SMP, "{}", outcome.transcript());
        assert_eq!(console_cpus(&outcome, "hello"), [Some(2); 4], "served on its placement's CPU");
        assert_eq!(console_cpus(&outcome, "smp"), [Some(1), Some(3), Some(1), Some(1), Some(1)]);
        assert!(outcome.lines.iter().any(|l| l.message.starts_with("bundle: 2 VM(s) in ")));
        for line in [
            "vm smp: PSCI CPU_ON for VCPU 1 at 0x4000010c",
            "vm smp: VCPU 1 off (PSCI CPU_OFF)",
            "vm smp: powered off (PSCI SYSTEM_OFF from VCPU 0)",
            "vm smp: stopped: powered off",
            "vm hello: powered off (PSCI SYSTEM_OFF from VCPU 0)",
            "vm hello: stopped: powered off",
            "bundle: every VM has stopped",
        ] {
            expect_line(&outcome, None, line);
        }
        // Every console line Belfry logged is tagged with one of the two names.
        for line in
            outcome.lines.iter().filter(|l| l.message.starts_with("console ") && !l.message.starts_with("console: "))
        {
            let vm = xtask::decode::console_text(&line.message).map(|(vm, _, _)| vm);
            assert!(
                matches!(vm, Some("hello" | "smp")),
                "an untagged console line: {}\n{}",
                line.message,
                outcome.transcript()
            );
        }
    }
}

#[test]
fn a_vm_whose_image_is_corrupted_is_refused_by_name_and_the_other_runs() {
    let hello = vm("hello", 0, 1, 32 << 20);
    let needle = b"hello: running at EL1".to_vec();
    let path = bundle("corrupted", &[hello, vm("smp", 1, 2, 32 << 20)], |blob| {
        let at = blob.windows(needle.len()).position(|w| w == needle).expect("the hello guest's text");
        blob[at] ^= 0x20;
    });
    for board in Board::ALL {
        let outcome = run(board, &path);
        expect_exit(&outcome, exit_code::VM_FAILED);
        expect_line(&outcome, Some(0), "vm hello: refused: the sha256 of its kernel image does not match");
        assert_eq!(console(&outcome, "hello"), Vec::<String>::new());
        assert_eq!(console(&outcome, "smp"), SMP, "{}", outcome.transcript());
        expect_line(&outcome, None, "vm smp: stopped: powered off");
    }
}

#[test]
fn a_vm_that_asks_for_too_much_memory_is_refused_by_name() {
    let path = bundle("too-big", &[vm("big", 0, 1, 4 << 30), vm("smp", 1, 2, 32 << 20)], |_| {});
    for board in Board::ALL {
        let outcome = run(board, &path);
        expect_exit(&outcome, exit_code::VM_FAILED);
        let refusal = outcome.lines.iter().find(|l| l.message.starts_with("vm big: refused: "));
        let refusal = refusal.unwrap_or_else(|| panic!("no refusal in:\n{}", outcome.transcript()));
        assert!(
            refusal.message.starts_with("vm big: refused: it asks for 4096 MiB of memory, ")
                && refusal.message.ends_with(" MiB are left"),
            "{}",
            refusal.message
        );
        assert_eq!(console(&outcome, "smp"), SMP, "{}", outcome.transcript());
    }
}

#[test]
fn a_bundle_that_is_not_a_fit_is_refused_and_belfry_ends_cleanly() {
    let path = bundle("truncated", &[vm("hello", 0, 1, 32 << 20)], |blob| blob.truncate(blob.len() / 2));
    let outcome = run(Board::Virt, &path);
    expect_exit(&outcome, exit_code::VM_FAILED);
    expect_line(&outcome, Some(0), "bundle refused: not a FIT image (BadHeader device tree)");
}

/// PSCI SYSTEM_RESET builds the VM again from the bundle: the guest boots again (30 times
/// here, then the test ends the run), and the other VM, on another CPU, runs to its end
/// undisturbed and is reaped while `reset` keeps resetting (the runner once restarted a VM
/// that had reset again before its start returned, over and over, and reached `hello` only
/// after 13 rebuilds, then 28 once rebuilds got cheaper). Deterministic time, so the
/// interleaving is the same on every run.
#[test]
fn a_reset_rebuilds_the_vm_from_the_bundle() {
    let reset = VmInput { cpus: Some(vec![1]), ..vm("reset", 2, 1, 16 << 20) };
    let hello = VmInput { cpus: Some(vec![2]), ..vm("hello", 0, 1, 32 << 20) };
    let path = bundle("reset", &[reset, hello], |_| {});
    for board in Board::ALL {
        let outcome = boot(RunOptions {
            bundle: Some(path.clone()),
            ram_mib: Some(1024),
            icount: true,
            stop_on: Some("console reset: reset: booted".into()),
            stop_on_count: 30,
            ..RunOptions::new(board)
        });
        assert!(outcome.stopped, "{}", outcome.transcript());
        let resets =
            outcome.lines.iter().filter(|l| l.message == "vm reset: reset (PSCI SYSTEM_RESET from VCPU 0)").count();
        assert!(resets >= 29, "{}", outcome.transcript());
        let built = outcome.lines.iter().filter(|l| l.message.starts_with("vm reset: 1 VCPU(s), 16 MiB")).count();
        assert!(built >= 30, "built once and again after each reset:\n{}", outcome.transcript());
        // Once hello has powered off, every rebuild leaves the same memory: a reset gives back
        // all it took.
        assert!(outcome.has("vm hello: stopped: powered off"), "{}", outcome.transcript());
        // Reaped within a rebuild or two of its power-off, not after many.
        let off = outcome.lines.iter().position(|l| l.message.starts_with("vm hello: powered off")).unwrap();
        let reaped = outcome.lines.iter().position(|l| l.message == "vm hello: stopped: powered off").unwrap();
        let between =
            outcome.lines[off..reaped].iter().filter(|l| l.message.starts_with("vm reset: 1 VCPU(s)")).count();
        assert!(between <= 2, "{between} rebuilds before hello was reaped:\n{}", outcome.transcript());
        let rebuilds: Vec<&str> = outcome
            .lines
            .iter()
            .filter(|l| l.message.starts_with("vm reset: 1 VCPU(s)"))
            .map(|l| l.message.as_str())
            .collect();
        let last = &rebuilds[rebuilds.len() - 10..];
        assert!(last.windows(2).all(|w| w[0] == w[1]), "{rebuilds:#?}");
        assert!(!outcome.has("console reset: reset: SYSTEM_RESET returned"));
        assert_eq!(console(&outcome, "hello"), HELLO, "{}", outcome.transcript());
    }
}

/// A FIT written by U-Boot's `mkimage -E` (external data; `bundle/tests/fixtures/mkimage.its`)
/// boots like one `xtask pack` writes.
#[test]
fn a_bundle_made_by_mkimage_runs() {
    let path = xtask::workspace_root().join("bundle/tests/fixtures/mkimage-external.itb");
    for board in Board::ALL {
        let outcome = run(board, &path);
        expect_exit(&outcome, exit_code::SUCCESS);
        assert_eq!(console(&outcome, "hello"), HELLO, "{}", outcome.transcript());
        assert_eq!(console(&outcome, "smp"), SMP, "{}", outcome.transcript());
    }
}

/// PSCI SYSTEM_OFF from VCPU 1 of a 4-VCPU guest stops the whole VM at once: the three VCPUs
/// spinning in the guest are kicked out and their threads end, on every board.
#[test]
fn system_off_from_any_vcpu_stops_the_whole_vm() {
    let path = bundle("poweroff", &[vm("poweroff", 3, 4, 16 << 20)], |_| {});
    for board in Board::ALL {
        let outcome = run(board, &path);
        expect_exit(&outcome, exit_code::SUCCESS);
        assert_eq!(
            console(&outcome, "poweroff"),
            [
                "poweroff: cpu0 starts three CPUs; cpu1 will power off",
                "poweroff: cpu1 calls SYSTEM_OFF while three CPUs spin"
            ]
        );
        expect_line(&outcome, None, "vm poweroff: powered off (PSCI SYSTEM_OFF from VCPU 1)");
        expect_line(&outcome, Some(0), "vm poweroff: stopped: powered off");
        expect_line(&outcome, Some(0), "bundle: every VM has stopped");
    }
}

/// The guest's own debug: a breakpoint, a watchpoint and three single steps taken at its EL1
/// (the class and address of each checked by the guest), and breakpoints per VCPU: cpu1, placed
/// on the same host CPU as cpu0 and with its own debug state, runs the code cpu0 has a
/// breakpoint on 200 times without a trap, and cpu0's breakpoint then still fires, on every board.
#[test]
fn the_guest_debugs_itself_with_breakpoints_watchpoints_and_steps() {
    let mut debug = vm("debug", 4, 2, 16 << 20);
    debug.cpus = Some(vec![1, 1]);
    let path = bundle("debug", &[debug], |_| {});
    for board in Board::ALL {
        let outcome = run(board, &path);
        expect_exit(&outcome, exit_code::SUCCESS);
        assert_eq!(
            console(&outcome, "debug"),
            [
                "debug: breakpoints, watchpoints and single-step at the guest's EL1",
                "debug: breakpoint 0 hit at its address (EC 0x31)",
                "debug: watchpoint 0 hit on a load, FAR its address (EC 0x35)",
                "debug: three single steps, one instruction each (EC 0x33)",
                "debug: cpu1 ran the code cpu0 watches 200 times without a trap",
                "debug: cpu0's breakpoint still fires for cpu0"
            ],
            "{}",
            outcome.transcript()
        );
        assert_eq!(console_cpus(&outcome, "debug"), [Some(1); 6], "both VCPUs served on cpu1");
        expect_line(&outcome, None, "vm debug: powered off (PSCI SYSTEM_OFF from VCPU 0)");
    }
}

/// GICv2 SGIs carry their sender: VCPU 1 sends SGI 5 to VCPU 0 through GICD_SGIR and VCPU 0
/// reads CPUID 1 in GICC_IAR (the guest checks the ID and the field), on the GICv2 boards
/// (`virt-gicv2`, and the Pi 4's GIC-400).
#[test]
fn a_gicv2_sgi_names_its_sender() {
    let path = bundle("sgi", &[vm("sgi", 5, 2, 16 << 20)], |_| {});
    for board in [Board::VirtGicv2, Board::Rpi4] {
        let outcome = run(board, &path);
        expect_exit(&outcome, exit_code::SUCCESS);
        assert_eq!(
            console(&outcome, "sgi"),
            ["sgi: cpu1 sends SGI 5 to cpu0 through GICD_SGIR", "sgi: cpu0 read SGI 5 from cpu1 in GICC_IAR"],
            "{}",
            outcome.transcript()
        );
        expect_line(&outcome, None, "vm sgi: powered off (PSCI SYSTEM_OFF from VCPU 0)");
    }
}

/// A console flood: VM `flood` prints 1 MiB (16384 lines) as fast as its PL011 takes it while
/// VM `ticker`, on another CPU, prints a line every 10 ms of its virtual counter. Every flood
/// line arrives whole, no log frame is lost or broken, Belfry's own lines are all there, and
/// the ticker is not held up: its twenty ticks are logged (by Belfry, with Belfry's
/// timestamps) while the flood goes on, about 10 ms apart. Deterministic time (`-icount`), on
/// `virt`. Under `-icount` QEMU runs the CPUs round-robin: a CPU that waits for a lock the
/// flooding CPU holds waits for that CPU's next turn, which can take tens of milliseconds of
/// virtual time (lock-holder preemption by the emulator, which real CPUs running side by side
/// do not have; one such gap of 43 ms has been seen), so a gap may reach 100 ms and the twenty
/// ticks 500 ms; a flood that held the ticker up until it ended would take 6 s.
#[test]
fn a_console_flood_stalls_nobody() {
    let flood = VmInput { cpus: Some(vec![1]), ..vm("flood", 6, 1, 16 << 20) };
    let ticker = VmInput { cpus: Some(vec![2]), ..vm("ticker", 7, 1, 16 << 20) };
    let path = bundle("flood", &[flood, ticker], |_| {});
    let outcome = boot(RunOptions {
        bundle: Some(path),
        ram_mib: Some(1024),
        icount: true,
        timeout: Duration::from_secs(600),
        ..RunOptions::new(Board::Virt)
    });
    expect_exit(&outcome, exit_code::SUCCESS);
    let lines = console(&outcome, "flood");
    assert_eq!(lines.len(), 16385, "every line of the flood");
    assert!(lines[..16384].iter().all(|l| l == "flood: 0123456789abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRS"));
    assert_eq!(lines[16384], "flood: done");
    assert!(!outcome.lines.iter().any(|l| l.message.contains("malformed")), "a broken log frame");
    for line in [
        "vm flood: powered off (PSCI SYSTEM_OFF from VCPU 0)",
        "vm flood: stopped: powered off",
        "vm ticker: powered off (PSCI SYSTEM_OFF from VCPU 0)",
        "vm ticker: stopped: powered off",
        "bundle: every VM has stopped",
    ] {
        expect_line(&outcome, None, line);
    }
    let seconds = |l: &LogLine| l.time.parse::<f64>().unwrap();
    let ticks: Vec<f64> =
        outcome.lines.iter().filter(|l| l.message == "console ticker: ticker: tick").map(seconds).collect();
    assert_eq!(ticks.len(), 20, "{}", outcome.transcript());
    let gaps: Vec<f64> = ticks.windows(2).map(|p| p[1] - p[0]).collect();
    assert!(gaps.iter().all(|&gap| gap <= 0.100), "the ticker was held up: {gaps:?}");
    assert!(ticks[19] - ticks[0] <= 0.500, "the ticker was held up: {gaps:?}");
    let flood = outcome.lines.iter().filter(|l| l.message.starts_with("console flood: ")).map(seconds);
    let (first, last) = flood.fold((f64::MAX, 0.0f64), |(a, b), t| (a.min(t), b.max(t)));
    assert!(first < ticks[0] && ticks[19] < last, "the ticks came while the flood went on");
}
