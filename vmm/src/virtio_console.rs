//! virtio-console (VIRTIO 1.2, section 5.3): one port, Linux's `hvc0`, as the VM's console.
//!
//! No optional feature is offered (no multiport, no size): queue 0 (receiveq) carries the
//! user's keystrokes to the guest, queue 1 (transmitq) the guest's output to Belfry's log,
//! where it is tagged with the VM's name exactly as the PL011's is: one log line per guest line,
//! a line longer than [`LINE`] in pieces, and text without a newline handed out once the guest
//! has gone quiet (the VMM's tick), so a prompt shows. Input waits in a bounded buffer until the
//! driver has posted receive buffers; what does not fit is refused, and the console offers it
//! again (a flow-controlled wire, as for the PL011).

use crate::pl011::{Output, LINE};
use crate::virtio_mmio::Transport;
use crate::virtqueue::{Memory, QueueError};
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

/// The virtio device ID of a console.
pub const DEVICE_ID: u32 = 3;
/// Queues: the port's receive and transmit queues.
pub const RECEIVEQ: usize = 0;
pub const TRANSMITQ: usize = 1;
/// Keystrokes held for the guest at most.
pub const INPUT_BUFFER: usize = 4096;
/// Bytes taken from one transmit buffer at a time.
const CHUNK: usize = 256;

/// What one pass over the queues did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// Bytes the guest transmitted.
    pub transmitted: u64,
    /// Bytes given to the guest.
    pub received: u64,
}

/// See the module documentation.
pub struct Console {
    input: VecDeque<u8>,
    line: Vec<u8>,
    transmitted: u64,
    at_last_tick: u64,
}

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}

impl Console {
    pub fn new() -> Self {
        Self { input: VecDeque::new(), line: Vec::with_capacity(LINE), transmitted: 0, at_last_tick: 0 }
    }

    /// A transport for this device: two queues of 64, a configuration space of zeros (cols,
    /// rows, max_nr_ports, emerg_wr: none of their features is offered).
    pub fn transport(&self) -> Transport {
        Transport::new(DEVICE_ID, 0, &[64, 64], vec![0; 12])
    }

    /// Keystrokes for the guest; returns how many fitted.
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(INPUT_BUFFER - self.input.len());
        self.input.extend(&bytes[..n]);
        n
    }

    /// Keystrokes not yet given to the guest.
    pub fn pending_input(&self) -> usize {
        self.input.len()
    }

    /// Passes the guest's output on to `emit` and gives it the keystrokes it has buffers for.
    /// A queue error fails the device (DEVICE_NEEDS_RESET) and is returned.
    pub fn process(
        &mut self,
        transport: &mut Transport,
        memory: &mut impl Memory,
        emit: &mut dyn FnMut(Output<'_>),
    ) -> Result<Served, QueueError> {
        let mut served = Served::default();
        let mut notify = false;
        let result = self.transmit(transport, memory, emit, &mut served, &mut notify);
        let result = result.and_then(|()| self.deliver(transport, memory, &mut served, &mut notify));
        if let Err(error) = result {
            transport.fail();
            return Err(error);
        }
        if notify {
            transport.used_buffers();
        }
        Ok(served)
    }

    fn transmit(
        &mut self,
        transport: &mut Transport,
        memory: &mut impl Memory,
        emit: &mut dyn FnMut(Output<'_>),
        served: &mut Served,
        notify: &mut bool,
    ) -> Result<(), QueueError> {
        while let Some(queue) = transport.queue(TRANSMITQ) {
            let Some(chain) = queue.pop(memory)? else { break };
            let mut buffer = [0u8; CHUNK];
            let mut skip = 0;
            // A buffer outside RAM ends this chain's text; the chain is still returned.
            while let Ok(n @ 1..) = chain.read(memory, skip, &mut buffer) {
                self.output(&buffer[..n], emit);
                skip += n as u64;
            }
            served.transmitted += skip;
            self.transmitted += skip;
            if let Some(queue) = transport.queue(TRANSMITQ) {
                *notify |= queue.push_used(memory, chain.head, 0)?;
            }
        }
        Ok(())
    }

    fn deliver(
        &mut self,
        transport: &mut Transport,
        memory: &mut impl Memory,
        served: &mut Served,
        notify: &mut bool,
    ) -> Result<(), QueueError> {
        while !self.input.is_empty() {
            let Some(queue) = transport.queue(RECEIVEQ) else { break };
            let Some(chain) = queue.pop(memory)? else { break };
            let (front, _) = self.input.as_slices();
            let n = chain.write(memory, 0, front).unwrap_or(0);
            self.input.drain(..n);
            served.received += n as u64;
            if let Some(queue) = transport.queue(RECEIVEQ) {
                *notify |= queue.push_used(memory, chain.head, n as u32)?;
            }
        }
        Ok(())
    }

    fn output(&mut self, bytes: &[u8], emit: &mut dyn FnMut(Output<'_>)) {
        for &byte in bytes {
            match byte {
                b'\n' => {
                    emit(Output::Line(&self.line));
                    self.line.clear();
                }
                b'\r' => {}
                byte => {
                    self.line.push(byte);
                    if self.line.len() == LINE {
                        emit(Output::Piece(&self.line));
                        self.line.clear();
                    }
                }
            }
        }
    }

    /// The VMM's periodic tick: text without a newline is handed out once the guest has been
    /// quiet for a tick.
    pub fn tick(&mut self, emit: &mut dyn FnMut(Output<'_>)) {
        if self.transmitted == self.at_last_tick && !self.line.is_empty() {
            emit(Output::Piece(&self.line));
            self.line.clear();
        }
        self.at_last_tick = self.transmitted;
    }

    /// The driver reset the device: keystrokes still held stay for the next driver, text not
    /// yet passed on is passed on.
    pub fn reset(&mut self, emit: &mut dyn FnMut(Output<'_>)) {
        if !self.line.is_empty() {
            emit(Output::Piece(&self.line));
            self.line.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio_mmio::{self as mmio, driver, driver::Ring};
    use crate::virtqueue::SliceMemory;
    use alloc::string::String;

    const BASE: u64 = 0x4000_0000;

    struct Rig {
        ram: SliceMemory<Vec<u8>>,
        transport: Transport,
        console: Console,
        rings: [Ring; 2],
        lines: Vec<String>,
    }

    impl Rig {
        fn new() -> Self {
            let console = Console::new();
            let mut transport = console.transport();
            let rings = [Ring::new(BASE, 8), Ring::new(BASE + 0x4000, 8)];
            assert_eq!(driver::bring_up(&mut transport, 0, &[&rings[0], &rings[1]]), mmio::Event::DriverOk);
            let ram = SliceMemory { base: BASE, bytes: vec![0; 0x2_0000] };
            Self { ram, transport, console, rings, lines: Vec::new() }
        }

        /// Offers one buffer on `queue` (writable for the receive queue).
        fn offer(&mut self, queue: usize, address: u64, len: u32) {
            self.rings[queue].offer(&mut self.ram, address, len, queue == RECEIVEQ);
        }

        fn process(&mut self) -> Served {
            let lines = &mut self.lines;
            let mut emit = |output: Output<'_>| {
                let (Output::Line(bytes) | Output::Piece(bytes)) = output;
                let tag = if matches!(output, Output::Line(_)) { "line" } else { "piece" };
                lines.push(alloc::format!("{tag}: {}", String::from_utf8_lossy(bytes)));
            };
            self.console.process(&mut self.transport, &mut self.ram, &mut emit).unwrap()
        }

        fn used(&self, queue: usize, slot: u64) -> (u32, u32) {
            self.rings[queue].used(&self.ram, slot)
        }
    }

    #[test]
    fn output_becomes_lines_and_pieces() {
        let mut rig = Rig::new();
        rig.ram.write(BASE + 0x1_0000, b"hello\r\nwor").unwrap();
        rig.offer(1, BASE + 0x1_0000, 10);
        assert_eq!(rig.process(), Served { transmitted: 10, received: 0 });
        assert_eq!(rig.lines, ["line: hello"]);
        assert_eq!(rig.used(1, 0), (0, 0));
        assert!(rig.transport.interrupt());
        // Quiet for a tick: the prompt-like rest shows.
        let lines = &mut rig.lines;
        rig.console.tick(&mut |o: Output<'_>| {
            let (Output::Line(b) | Output::Piece(b)) = o;
            lines.push(alloc::format!("tick: {}", String::from_utf8_lossy(b)));
        });
        let lines = &mut rig.lines;
        rig.console.tick(&mut |o: Output<'_>| {
            let (Output::Line(b) | Output::Piece(b)) = o;
            lines.push(alloc::format!("tick: {}", String::from_utf8_lossy(b)));
        });
        assert_eq!(rig.lines, ["line: hello", "tick: wor"]);
    }

    #[test]
    fn keystrokes_wait_for_receive_buffers() {
        let mut rig = Rig::new();
        assert_eq!(rig.console.receive(b"echo $((6*7))\n"), 14);
        assert_eq!(rig.process(), Served::default(), "no receive buffer yet");
        assert_eq!(rig.console.pending_input(), 14);
        rig.offer(0, BASE + 0x1_1000, 8);
        rig.offer(0, BASE + 0x1_2000, 64);
        assert_eq!(rig.process(), Served { transmitted: 0, received: 14 });
        assert_eq!((rig.used(0, 0), rig.used(0, 1)), ((0, 8), (1, 6)));
        let mut back = [0u8; 14];
        rig.ram.read(BASE + 0x1_1000, &mut back[..8]).unwrap();
        rig.ram.read(BASE + 0x1_2000, &mut back[8..]).unwrap();
        assert_eq!(&back, b"echo $((6*7))\n");
        // The buffer is bounded: the rest is refused for the console to offer again.
        assert_eq!(rig.console.receive(&[b'x'; INPUT_BUFFER + 10]), INPUT_BUFFER);
    }

    #[test]
    fn a_transmit_buffer_outside_ram_is_returned_without_text() {
        let mut rig = Rig::new();
        rig.offer(1, 0x1000, 100);
        rig.ram.write(BASE + 0x1_0000, b"ok\n").unwrap();
        rig.offer(1, BASE + 0x1_0000, 3);
        assert_eq!(rig.process().transmitted, 3);
        assert_eq!(rig.lines, ["line: ok"]);
        assert_eq!((rig.used(1, 0).0, rig.used(1, 1).0), (0, 1), "both returned");
        assert!(rig.transport.live());
    }
}
