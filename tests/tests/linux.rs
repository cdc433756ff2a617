//! Debian's unmodified arm64 kernel, booted from a bundle to a busybox shell on every board:
//! the test types into the guest's console through the board's UART, the way a user does, and
//! reads the answers from Belfry's tagged console lines.

use belfry_system_tests::*;
use bundle::writer::VmInput;
use std::sync::OnceLock;
use std::time::Duration;

/// Debian's kernel and the busybox initramfs (fetched once, cached under target/debian).
fn linux(name: &str, vcpus: u32, memory: u64, cpus: Option<Vec<u32>>) -> VmInput {
    static IMAGES: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    let (kernel, initrd) = IMAGES.get_or_init(|| {
        let (kernel, _) = xtask::linux::kernel().expect("Debian's arm64 kernel");
        (std::fs::read(kernel).unwrap(), xtask::linux::initramfs().expect("the busybox initramfs"))
    });
    VmInput {
        name: name.into(),
        kernel: kernel.clone(),
        initrd: Some(initrd.clone()),
        vcpus: Some(vcpus),
        memory: Some(memory),
        cpus,
        ..VmInput::default()
    }
}

/// The shell session every Linux test runs: arithmetic, the CPUs Linux brought up, power off.
fn session(vm: &str) -> Vec<(String, &'static str)> {
    vec![
        (format!("console {vm}: BOOT-OK"), "echo $((6*7))\n"),
        (format!("console {vm}: 42"), "grep -c ^processor /proc/cpuinfo\n"),
        (format!("console {vm}: 4"), "poweroff -f\n"),
    ]
}

fn check_session(outcome: &Outcome, vm: &str, cpus: usize) {
    let lines = xtask::decode::console_lines(&outcome.lines, vm);
    assert!(lines.iter().any(|l| l == "42"), "no 42 from {vm}:\n{}", outcome.transcript());
    assert!(lines.iter().any(|l| *l == cpus.to_string()), "no CPU count from {vm}:\n{}", outcome.transcript());
    assert!(
        outcome
            .lines
            .iter()
            .any(|l| l.message.starts_with(&format!("vm {vm}: powered off (PSCI SYSTEM_OFF from VCPU"))),
        "{vm} did not power off:\n{}",
        outcome.transcript()
    );
    expect_line(outcome, None, &format!("vm {vm}: stopped: powered off"));
}

/// The CPU features Linux found (`/proc/cpuinfo`) are the ones Belfry's ID registers show:
/// on `virt` (`-cpu max`) pointer authentication but no SVE, SME, MTE or other feature Belfry
/// does not switch; the Cortex-A72 of the Pi 4 has none of them.
#[test]
fn a_four_vcpu_debian_kernel_boots_to_a_shell_on_every_board() {
    let path = pack_bundle("linux-4", &[linux("linux", 4, 256 << 20, None)]);
    for board in Board::ALL {
        let steps = [
            ("console linux: BOOT-OK", "echo $((6*7))\n"),
            ("console linux: 42", "grep -c ^processor /proc/cpuinfo\n"),
            ("console linux: 4", "grep -m1 Features /proc/cpuinfo\n"),
            ("console linux: Features", "poweroff -f\n"),
        ];
        let outcome = run_script(board, path.clone(), &steps, Duration::from_secs(300));
        expect_exit(&outcome, exit_code::SUCCESS);
        check_session(&outcome, "linux", 4);
        let lines = xtask::decode::console_lines(&outcome.lines, "linux");
        let features = lines.iter().find(|l| l.starts_with("Features")).expect("the Features line");
        let features: Vec<&str> = features.split(':').nth(1).unwrap_or("").split_whitespace().collect();
        for hidden in ["sve", "sve2", "sme", "mte", "mte3", "svebf16", "sveaes"] {
            assert!(!features.contains(&hidden), "{}: Linux found {hidden}: {features:?}", board.name());
        }
        for basic in ["fp", "asimd", "cpuid"] {
            assert!(features.contains(&basic), "{}: no {basic}: {features:?}", board.name());
        }
        let pauth = features.contains(&"paca") && features.contains(&"pacg");
        assert_eq!(
            pauth,
            board != Board::Rpi4,
            "{}: pointer authentication as the CPU has it: {features:?}",
            board.name()
        );
    }
}

/// Four VCPUs on two host CPUs (placement cpus=0:1): Belfry's scheduler shares them.
#[test]
fn four_vcpus_on_two_cpus() {
    let path = pack_bundle("linux-4-on-2", &[linux("linux", 4, 256 << 20, Some(vec![0, 1]))]);
    let steps = session("linux");
    let steps: Vec<(&str, &str)> = steps.iter().map(|(a, k)| (a.as_str(), *k)).collect();
    let outcome = run_script(Board::Virt, path, &steps, Duration::from_secs(300));
    expect_exit(&outcome, exit_code::SUCCESS);
    check_session(&outcome, "linux", 4);
    let cpus: std::collections::BTreeSet<_> =
        outcome.lines.iter().filter(|l| l.message.starts_with("console linux")).filter_map(|l| l.cpu).collect();
    assert!(cpus.iter().all(|&cpu| cpu < 2), "served only on cpu0 and cpu1: {cpus:?}");
}

/// Two Linux VMs of 2 VCPUs side by side, each answering on its own console: the test types
/// into the first, moves the focus with Ctrl-A n, and types into the second.
#[test]
fn two_linux_vms_answer_on_their_own_consoles() {
    let path = pack_bundle(
        "linux-two",
        &[linux("alpha", 2, 192 << 20, Some(vec![0, 1])), linux("beta", 2, 192 << 20, Some(vec![2, 3]))],
    );
    let steps = [
        ("console alpha: BOOT-OK", "echo alpha $((6*7))\n"),
        ("console alpha: alpha 42", "\x01n"),
        ("console: input goes to vm beta", "echo beta $((6*7)); grep -c ^processor /proc/cpuinfo\n"),
        ("console beta: 2", "poweroff -f\n"),
        ("vm beta: stopped: powered off", "poweroff -f\n"),
    ];
    let outcome = run_script(Board::Virt, path, &steps, Duration::from_secs(300));
    expect_exit(&outcome, exit_code::SUCCESS);
    let alpha = xtask::decode::console_lines(&outcome.lines, "alpha");
    let beta = xtask::decode::console_lines(&outcome.lines, "beta");
    assert!(alpha.iter().any(|l| l == "alpha 42"), "{}", outcome.transcript());
    assert!(beta.iter().any(|l| l == "beta 42") && beta.iter().any(|l| l == "2"), "{}", outcome.transcript());
    assert!(!alpha.iter().any(|l| l.contains("beta")), "beta's input reached alpha:\n{}", outcome.transcript());
    assert!(!beta.iter().any(|l| l.contains("alpha")), "alpha's input reached beta:\n{}", outcome.transcript());
    expect_line(&outcome, None, "vm alpha: stopped: powered off");
    expect_line(&outcome, None, "vm beta: stopped: powered off");
}
