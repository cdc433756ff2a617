//! The user's keystrokes, shared by the VMs of a bundle: the focused VM gets them (the first;
//! Ctrl-A n moves the focus to the next, Ctrl-A Ctrl-A types a Ctrl-A), and what a VM's receive
//! FIFO cannot take yet waits in that VM's own backlog.
//!
//! The console is a flow-controlled wire: a slow guest loses nothing of what was typed to it,
//! even after the focus has moved on (the end of a line typed just before Ctrl-A n still
//! reaches the VM it was typed to), and a slow or stuck VM does not hold up the next VM's input.
//! Generic over what a running VM is (`T`), so the policy is tested on the host; the runner
//! (`vm::run_bundle`) hands it the bundle's running VMs, each with its index in the bundle.

use alloc::collections::{BTreeMap, VecDeque};

/// Ctrl-A: the console's escape key.
pub const ESCAPE: u8 = 0x01;
/// Input held back per VM while its receive FIFO is full (then more typed to it is dropped).
pub const INPUT_BACKLOG: usize = 4096;

/// See the module documentation.
#[derive(Default)]
pub struct Input {
    /// Position of the focused VM among the running ones.
    focus: usize,
    escaped: bool,
    /// Input not yet taken, by the VM's index in the bundle.
    backlogs: BTreeMap<usize, VecDeque<u8>>,
}

impl Input {
    /// The first VM has the focus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes typed `bytes` for the `running` VMs (bundle index, VM); `switched` is told each VM
    /// that Ctrl-A n gives the focus to.
    pub fn feed<T>(&mut self, bytes: &[u8], running: &[(usize, T)], mut switched: impl FnMut(&T)) {
        for &byte in bytes {
            match (self.escaped, byte) {
                (false, ESCAPE) => self.escaped = true,
                (true, b'n') => {
                    self.escaped = false;
                    if !running.is_empty() {
                        self.focus = (self.focus + 1) % running.len();
                        switched(&running[self.focus].1);
                    }
                }
                (escaped, byte) => {
                    self.escaped = false;
                    if escaped && byte != ESCAPE {
                        self.push(running, ESCAPE);
                    }
                    self.push(running, byte);
                }
            }
        }
    }

    /// Offers each running VM its backlog: `take` hands a VM bytes and says how many it took
    /// (0: its FIFO is full, the rest waits). A VM no longer running loses its backlog.
    pub fn drain<T>(&mut self, running: &[(usize, T)], mut take: impl FnMut(&T, &[u8]) -> usize) {
        self.backlogs.retain(|index, _| running.iter().any(|(i, _)| i == index));
        for (index, vm) in running {
            let Some(backlog) = self.backlogs.get_mut(index) else { continue };
            while !backlog.is_empty() {
                let (front, _) = backlog.as_slices();
                let taken = take(vm, front);
                if taken == 0 {
                    break;
                }
                backlog.drain(..taken.min(backlog.len()));
            }
        }
    }

    /// Queues `byte` for the focused VM (none running: dropped).
    fn push<T>(&mut self, running: &[(usize, T)], byte: u8) {
        let Some((index, _)) = running.get(self.focus % running.len().max(1)) else { return };
        let backlog = self.backlogs.entry(*index).or_default();
        if backlog.len() < INPUT_BACKLOG {
            backlog.push_back(byte);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A VM whose receive FIFO takes at most `room` bytes per offer.
    struct Sink {
        name: &'static str,
        room: usize,
        got: RefCell<Vec<u8>>,
    }

    fn sink(name: &'static str, room: usize) -> Sink {
        Sink { name, room, got: RefCell::new(Vec::new()) }
    }

    fn take(vm: &Sink, bytes: &[u8]) -> usize {
        let n = bytes.len().min(vm.room);
        vm.got.borrow_mut().extend_from_slice(&bytes[..n]);
        n
    }

    #[test]
    fn a_line_typed_before_the_switch_reaches_its_vm_however_slowly() {
        let running = [(0, sink("left", 0)), (2, sink("right", 64))];
        let mut input = Input::new();
        let mut switches = Vec::new();
        input.feed(b"echo one\n\x01ntwo\n", &running, |vm| switches.push(vm.name));
        assert_eq!(switches, ["right"]);
        input.drain(&running, take);
        // Left's FIFO is full: nothing of its line is lost, and right is not held up.
        assert_eq!(*running[0].1.got.borrow(), b"");
        assert_eq!(*running[1].1.got.borrow(), b"two\n");
        // Left drains 3 bytes per offer from now on.
        let running = [(0, sink("left", 3)), (2, sink("right", 64))];
        for _ in 0..3 {
            input.drain(&running, take);
        }
        assert_eq!(*running[0].1.got.borrow(), b"echo one\n");
        assert_eq!(*running[1].1.got.borrow(), b"");
    }

    #[test]
    fn escapes_and_the_focus_wrap_around() {
        let running = [(0, sink("a", 64)), (1, sink("b", 64))];
        let mut input = Input::new();
        let mut switches = Vec::new();
        // Ctrl-A Ctrl-A types one Ctrl-A; Ctrl-A and another key types both.
        input.feed(b"\x01\x01\x01x\x01nb\x01na", &running, |vm| switches.push(vm.name));
        input.drain(&running, take);
        assert_eq!(switches, ["b", "a"]);
        assert_eq!(*running[0].1.got.borrow(), b"\x01\x01xa");
        assert_eq!(*running[1].1.got.borrow(), b"b");
    }

    #[test]
    fn a_backlog_is_bounded_and_a_stopped_vm_loses_its_own() {
        let running = [(0, sink("stuck", 0)), (1, sink("next", 64))];
        let mut input = Input::new();
        input.feed(&vec![b'y'; INPUT_BACKLOG + 100], &running, |_| {});
        input.drain(&running, take);
        assert_eq!(input.backlogs[&0].len(), INPUT_BACKLOG);
        // The stuck VM stops: its backlog goes; the focus (position 0) is now the next VM.
        let running = [(1, sink("next", 64))];
        input.drain(&running, take);
        assert!(input.backlogs.is_empty());
        input.feed(b"z", &running, |_| {});
        input.drain(&running, take);
        assert_eq!(*running[0].1.got.borrow(), b"z");
    }
}
