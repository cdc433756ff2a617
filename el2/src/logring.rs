//! The log's ring: frames wait here for the UART, which takes them only as fast as its FIFO
//! empties (at 115 200 baud a line takes milliseconds). Pure logic over a [`Sink`], so the
//! policy is host-tested; `logger` drives it with the board's PL011 under the log lock.
//!
//! - Only whole frames go out: the frame being written stays until it ends.
//! - A droppable frame (a guest's console output) may fill the ring only to half: a frame that
//!   would go beyond is taken back whole and counted, so a guest flooding its console slows no
//!   CPU and leaves the other half to Belfry's own frames.
//! - Belfry's own frames are never lost: when the ring cannot hold one, the writer waits for the
//!   sink (a frame larger than the whole ring goes straight out after the ones before it).

/// Where the ring's bytes go: the UART's transmit FIFO.
pub trait Sink {
    /// The sink takes no byte now.
    fn full(&self) -> bool;
    /// Takes one byte (only when not [`Sink::full`]).
    fn write(&mut self, byte: u8);
}

/// See the module documentation.
pub struct Ring<const N: usize> {
    bytes: [u8; N],
    /// Next byte to send.
    tail: usize,
    /// Bytes held.
    len: usize,
    /// Bytes held before the frame being written.
    before_frame: usize,
    /// The frame being written may be dropped.
    droppable: bool,
    /// The frame being written did not fit and is being dropped.
    dropping: bool,
    /// Droppable frames dropped so far.
    dropped: u64,
}

impl<const N: usize> Default for Ring<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Ring<N> {
    pub const fn new() -> Self {
        Self { bytes: [0; N], tail: 0, len: 0, before_frame: 0, droppable: false, dropping: false, dropped: 0 }
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Droppable frames dropped since the last call.
    pub fn take_dropped(&mut self) -> u64 {
        core::mem::take(&mut self.dropped)
    }

    /// Starts a frame.
    pub fn begin(&mut self, droppable: bool) {
        self.before_frame = self.len;
        self.droppable = droppable;
        self.dropping = false;
    }

    /// Appends bytes of the current frame.
    pub fn put(&mut self, sink: &mut impl Sink, bytes: &[u8]) {
        if self.dropping {
            return;
        }
        let limit = if self.droppable { N / 2 } else { N };
        if self.len + bytes.len() > limit {
            if self.droppable {
                self.dropping = true;
                self.len = self.before_frame;
                return;
            }
            self.send(sink, true);
            if self.len + bytes.len() > N {
                // Larger than the ring: what is held (this frame's start included) goes first.
                self.before_frame = self.len;
                self.send(sink, true);
                for &byte in bytes {
                    while sink.full() {
                        core::hint::spin_loop();
                    }
                    sink.write(byte);
                }
                return;
            }
        }
        for &byte in bytes {
            let at = (self.tail + self.len) % N;
            self.bytes[at] = byte;
            self.len += 1;
        }
    }

    /// Ends the current frame: it may go out.
    pub fn end(&mut self) {
        if self.dropping {
            self.dropped += 1;
        }
        self.before_frame = self.len;
        self.dropping = false;
        self.droppable = false;
    }

    /// Sends whole frames while the sink takes bytes; with `wait`, until they are all out.
    pub fn send(&mut self, sink: &mut impl Sink, wait: bool) {
        while self.before_frame > 0 {
            if sink.full() {
                if !wait {
                    return;
                }
                core::hint::spin_loop();
                continue;
            }
            sink.write(self.bytes[self.tail]);
            self.tail = (self.tail + 1) % N;
            self.len -= 1;
            self.before_frame -= 1;
        }
    }

    /// Forgets everything held (no sink to send it to).
    pub fn clear(&mut self) {
        self.len = 0;
        self.before_frame = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO of `room` bytes that empties only when the test says (the line's baud rate).
    #[derive(Default)]
    struct Uart {
        sent: Vec<u8>,
        room: usize,
        waits: usize,
    }

    impl Sink for Uart {
        fn full(&self) -> bool {
            self.room == 0
        }
        fn write(&mut self, byte: u8) {
            self.sent.push(byte);
            self.room -= 1;
        }
    }

    /// A sink that is full on every other look (a wait makes progress).
    struct Slow(Uart);

    impl Sink for Slow {
        fn full(&self) -> bool {
            false
        }
        fn write(&mut self, byte: u8) {
            self.0.waits += 1;
            self.0.sent.push(byte);
        }
    }

    fn frame<const N: usize>(ring: &mut Ring<N>, uart: &mut impl Sink, droppable: bool, bytes: &[u8]) {
        ring.begin(droppable);
        ring.put(uart, &bytes[..bytes.len() / 2]);
        ring.put(uart, &bytes[bytes.len() / 2..]);
        ring.end();
        ring.send(uart, false);
    }

    #[test]
    fn only_whole_frames_go_out_as_fast_as_the_uart_takes_them() {
        let mut ring = Ring::<64>::new();
        let mut uart = Uart { room: 3, ..Default::default() };
        ring.begin(false);
        ring.put(&mut uart, b"abcd");
        ring.send(&mut uart, false);
        assert!(uart.sent.is_empty(), "the frame being written stays");
        ring.end();
        ring.send(&mut uart, false);
        assert_eq!(uart.sent, b"abc", "what the FIFO has room for, no wait");
        uart.room = 10;
        ring.send(&mut uart, false);
        assert_eq!(uart.sent, b"abcd");
        assert!(ring.is_empty());
    }

    #[test]
    fn a_flood_is_dropped_whole_at_half_and_belfry_keeps_the_other_half() {
        let mut ring = Ring::<64>::new();
        let mut uart = Uart::default();
        for _ in 0..4 {
            frame(&mut ring, &mut uart, true, b"0123456789");
        }
        assert_eq!(ring.len(), 30, "three console frames fit in half");
        assert_eq!(ring.take_dropped(), 1, "the fourth is dropped whole");
        frame(&mut ring, &mut uart, false, b"belfry: own frame, 30 bytes..");
        assert_eq!(ring.len(), 59, "Belfry's frame goes into the other half");
        assert!(uart.sent.is_empty(), "nobody waited");
        uart.room = 64;
        ring.send(&mut uart, false);
        assert_eq!(&uart.sent[..10], b"0123456789");
        assert_eq!(&uart.sent[30..], b"belfry: own frame, 30 bytes..");
        assert_eq!(ring.take_dropped(), 0);
    }

    #[test]
    fn belfry_waits_for_the_uart_rather_than_lose_a_frame() {
        let mut ring = Ring::<16>::new();
        let mut uart = Slow(Uart::default());
        frame(&mut ring, &mut uart, false, b"0123456789");
        // Slow takes everything on each send: drain into a fresh ring state first.
        assert_eq!(uart.0.sent, b"0123456789");
        let mut stuck = Uart::default();
        frame(&mut ring, &mut stuck, false, b"abcdefghij");
        assert_eq!(ring.len(), 10, "held: the UART is full");
        // The next own frame does not fit: the writer waits (Slow stands for the FIFO emptying).
        frame(&mut ring, &mut uart, false, b"KLMNOPQRST");
        assert_eq!(&uart.0.sent[10..], b"abcdefghijKLMNOPQRST");
        // Larger than the ring: straight out after what was held.
        frame(&mut ring, &mut stuck, false, b"xy");
        frame(&mut ring, &mut uart, false, b"a frame of more than sixteen bytes");
        assert_eq!(&uart.0.sent[30..], b"xya frame of more than sixteen bytes");
        assert!(ring.is_empty());
    }
}
