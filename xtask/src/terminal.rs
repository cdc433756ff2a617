//! `cargo xtask run`'s keyboard: the terminal in raw mode, every keystroke sent to the board's
//! console (QEMU's serial port), so Ctrl-C reaches the guest. Ctrl-A x quits; Ctrl-A n (which
//! Belfry handles) gives the next VM the input.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Restores the terminal when dropped.
pub struct RawMode {
    saved: libc::termios,
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the settings read from the same descriptor.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved) };
    }
}

/// Puts the terminal in raw mode and starts a thread that copies keystrokes to `to`, setting
/// `quit` on Ctrl-A x; `None` when stdin is not a terminal (nothing is forwarded).
pub fn forward(to: Arc<Mutex<std::process::ChildStdin>>, quit: Arc<AtomicBool>) -> Option<RawMode> {
    // SAFETY: isatty only inspects the descriptor.
    if unsafe { libc::isatty(libc::STDIN_FILENO) } != 1 {
        return None;
    }
    // SAFETY: a zeroed termios is a valid buffer for tcgetattr to fill.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: reads the terminal's settings into `saved`.
    if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut saved) } != 0 {
        return None;
    }
    let mut raw = saved;
    // SAFETY: cfmakeraw edits the copy; tcsetattr applies it to our own terminal.
    unsafe {
        libc::cfmakeraw(&mut raw);
        // Output keeps its newline translation, so the log stays readable.
        raw.c_oflag |= libc::OPOST;
        libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw);
    }
    eprint!("xtask: the keyboard goes to the guest; Ctrl-A n: next VM, Ctrl-A x: quit\r\n");
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut byte = [0u8; 1];
        let mut escaped = false;
        while stdin.read(&mut byte).is_ok_and(|n| n == 1) {
            if escaped && (byte[0] == b'x' || byte[0] == b'X') {
                quit.store(true, Ordering::Relaxed);
                return;
            }
            escaped = byte[0] == 0x01 && !escaped;
            let mut qemu = to.lock().unwrap_or_else(|e| e.into_inner());
            if qemu.write_all(&byte).and_then(|()| qemu.flush()).is_err() {
                return;
            }
        }
    });
    Some(RawMode { saved })
}
