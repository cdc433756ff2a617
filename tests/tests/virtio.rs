//! virtio devices under Linux guests (virtio-mmio on BELL doorbells): Debian's kernel with its
//! virtio drivers loaded from the initramfs, on every board.

use belfry_system_tests::*;
use bundle::writer::VmInput;
use sha2::{Digest, Sha256};
use std::time::Duration;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A Linux VM whose console is virtio-console (hvc0: the shell's input can only come through
/// its receive queue, since keystrokes go to the console the bundle names) and whose root is
/// the ext2 disk xtask writes, on virtio-blk (`root=/dev/vda`): it answers arithmetic, finds
/// its root on /dev/vda, reads the file whose sha256 the test knows, writes 16 MiB with `dd`,
/// syncs, drops its page cache and reads the 16 MiB back identical.
#[test]
fn linux_on_virtio_console_and_a_virtio_disk_on_every_board() {
    let (kernel, _) = xtask::linux::kernel().expect("Debian's arm64 kernel");
    let vm = VmInput {
        name: "disk".into(),
        kernel: std::fs::read(kernel).unwrap(),
        initrd: Some(xtask::linux::initramfs_with(true).expect("the initramfs with the virtio drivers")),
        vcpus: Some(2),
        memory: Some(256 << 20),
        cmdline: Some("console=ttyAMA0 root=/dev/vda".into()),
        disk: Some(std::fs::read(xtask::linux::disk_image().expect("the disk image")).unwrap()),
        virtio_console: true,
        ..VmInput::default()
    };
    let path = pack_bundle("linux-virtio-disk", &[vm]);
    let file = hex(&Sha256::digest(xtask::linux::disk_file()));
    for board in Board::ALL {
        // Each trigger is text only the guest's answer holds, never the echo of what was typed.
        let after_sum = format!("console disk: {file}  /belfry.bin");
        let steps = [
            ("console disk: BOOT-OK", "echo $((6*7))\n"),
            ("console disk: 42", "echo root=$(grep -c '^/dev/vda / ext2' /proc/mounts); sha256sum /belfry.bin\n"),
            (
                after_sum.as_str(),
                "dd if=/dev/urandom of=/big bs=1M count=16 2>/dev/null; sync; sha256sum /big; \
                 echo 3 > /proc/sys/vm/drop_caches; sha256sum /big; echo size=$(wc -c < /big)\n",
            ),
            ("console disk: size=16777216", "poweroff -f\n"),
        ];
        let outcome = run_script(board, path.clone(), &steps, Duration::from_secs(400));
        expect_exit(&outcome, exit_code::SUCCESS);
        let lines = xtask::decode::console_lines(&outcome.lines, "disk");
        let transcript = || outcome.transcript();
        assert!(lines.iter().any(|l| l == "42"), "{}: no 42:\n{}", board.name(), transcript());
        assert!(lines.iter().any(|l| l == "root=1"), "{}: the root is not /dev/vda:\n{}", board.name(), transcript());
        assert!(
            lines.iter().any(|l| *l == format!("{file}  /belfry.bin")),
            "{}: /belfry.bin does not read back as written ({file}):\n{}",
            board.name(),
            transcript()
        );
        let big: Vec<&String> = lines.iter().filter(|l| l.ends_with("  /big")).collect();
        assert_eq!(big.len(), 2, "{}: two sums of /big:\n{}", board.name(), transcript());
        assert_eq!(big[0], big[1], "{}: /big read back from the disk differs:\n{}", board.name(), transcript());
        assert!(lines.iter().any(|l| l == "size=16777216"), "{}: /big is not 16 MiB:\n{}", board.name(), transcript());
        expect_line(&outcome, None, "vm disk: stopped: powered off");
    }
}

/// A Linux VM with the virtio drivers, on link `lan0` with `address`, its console the PL011.
fn on_lan(name: &str, address: &str, cpus: Vec<u32>) -> VmInput {
    let (kernel, _) = xtask::linux::kernel().expect("Debian's arm64 kernel");
    VmInput {
        name: name.into(),
        kernel: std::fs::read(kernel).unwrap(),
        initrd: Some(xtask::linux::initramfs_with(true).expect("the initramfs with the virtio drivers")),
        vcpus: Some(1),
        memory: Some(256 << 20),
        cpus: Some(cpus),
        cmdline: Some(format!("console=ttyAMA0 belfry.ip={address}/24")),
        net: Some("lan0".into()),
        ..VmInput::default()
    }
}

/// Two Linux VMs joined by a virtio-net link: 1000 pings from one to the other with no loss,
/// then 64 MiB over TCP (busybox `nc`) whose sha256 the receiver computes equal to the
/// sender's.
#[test]
fn two_linux_vms_on_a_virtio_net_link_on_every_board() {
    let path =
        pack_bundle("linux-virtio-net", &[on_lan("left", "10.0.0.1", vec![0]), on_lan("right", "10.0.0.2", vec![1])]);
    for board in Board::ALL {
        let steps = [
            // Once left reaches right, right's init has set its address: its shell is next.
            ("console left: BOOT-OK", "until ping -c 1 -W 1 10.0.0.2 >/dev/null 2>&1; do :; done; echo peer-up\n"),
            ("console left: peer-up", "\x01n"),
            ("console: input goes to vm right", "nc -l -p 5000 | sha256sum; echo received\n"),
            // The whole command echoed before the switch (what was typed still goes to right
            // after it, however slowly right takes its input).
            ("nc -l -p 5000 | sha256sum; echo received", "\x01n"),
            (
                "console: input goes to vm left",
                "ping -q -c 1000 -i 0.01 10.0.0.2 | grep transmitted; \
                 dd if=/dev/urandom of=/tmp/f bs=1M count=64 2>/dev/null; sha256sum /tmp/f; \
                 nc 10.0.0.2 5000 < /tmp/f; echo sent\n",
            ),
            // The input is left's: left goes first, then the input is right's (the only VM).
            ("console right: received", "poweroff -f\n"),
            ("vm left: stopped: powered off", "poweroff -f\n"),
        ];
        let outcome = run_script(board, path.clone(), &steps, Duration::from_secs(400));
        expect_exit(&outcome, exit_code::SUCCESS);
        let left = xtask::decode::console_lines(&outcome.lines, "left");
        let right = xtask::decode::console_lines(&outcome.lines, "right");
        let transcript = || outcome.transcript();
        assert!(
            left.iter().any(|l| l == "1000 packets transmitted, 1000 packets received, 0% packet loss"),
            "{}: pings lost:\n{}",
            board.name(),
            transcript()
        );
        let sum =
            |lines: &[String], suffix: &str| lines.iter().find(|l| l.ends_with(suffix)).map(|l| l[..64].to_string());
        let sent = sum(&left, "  /tmp/f")
            .unwrap_or_else(|| panic!("{}: no sum of the sent file:\n{}", board.name(), transcript()));
        let received =
            sum(&right, "  -").unwrap_or_else(|| panic!("{}: no sum received:\n{}", board.name(), transcript()));
        assert_eq!(sent, received, "{}: 64 MiB over TCP arrived changed:\n{}", board.name(), transcript());
        expect_line(&outcome, None, "vm left: stopped: powered off");
        expect_line(&outcome, None, "vm right: stopped: powered off");
    }
}

/// A hostile virtio-blk driver (the `virtio_bad` guest) beside an ordinary VM: a request whose
/// header is at the GIC distributor's address fails alone, a descriptor chain that loops puts
/// the device in DEVICE_NEEDS_RESET; Belfry says each once, naming the VM and the device, and
/// both VMs run to their power-off.
#[test]
fn a_hostile_virtio_driver_breaks_only_its_device_on_every_board() {
    let images = xtask::guests::build().expect("building the test guests");
    let guest = |name: &str| {
        let index = xtask::guests::ALL.iter().position(|g| *g == name).unwrap();
        std::fs::read(&images[index]).unwrap()
    };
    let bad = VmInput {
        name: "bad".into(),
        kernel: guest("virtio_bad"),
        memory: Some(32 << 20),
        cpus: Some(vec![0]),
        disk: Some(vec![0x5a; 64 << 10]),
        ..VmInput::default()
    };
    let hello = VmInput {
        name: "hello".into(),
        kernel: guest("hello"),
        memory: Some(16 << 20),
        cpus: Some(vec![1]),
        ..VmInput::default()
    };
    let path = pack_bundle("virtio-bad", &[bad, hello]);
    for board in Board::ALL {
        let outcome = run_script(board, path.clone(), &[], Duration::from_secs(120));
        expect_exit(&outcome, exit_code::SUCCESS);
        expect_line(
            &outcome,
            None,
            "vm bad: virtio-blk (slot 0): a malformed request, or one with a buffer outside the VM's RAM, failed alone (logged once)",
        );
        expect_line(
            &outcome,
            None,
            "vm bad: virtio-blk (slot 0): a descriptor chain that loops: the device needs a reset (logged once)",
        );
        expect_line(&outcome, None, "vm bad: stopped: powered off");
        expect_line(&outcome, None, "vm hello: stopped: powered off");
        let said = xtask::decode::console_lines(&outcome.lines, "bad");
        assert!(
            said.iter().any(|l| l == "virtio_bad: the request with its header at MMIO failed alone (IOERR)")
                && said.iter().any(|l| l == "virtio_bad: reset; powering off"),
            "{}: {}",
            board.name(),
            outcome.transcript()
        );
    }
}
