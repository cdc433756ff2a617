//! A PL011 UART as a guest sees it (Arm PrimeCell UART r1p5, the one QEMU `virt` has), emulated
//! behind a MEM trap: complete enough for Linux's `amba-pl011` driver, both ways.
//!
//! Transmit: a byte written to UARTDR leaves at once (the TX FIFO never fills, TXFE stays set);
//! bytes are collected into lines, which the VM's console forwards tagged with the VM's name, a
//! line longer than [`LINE`] in pieces, and text without a newline when the console asks
//! ([`Pl011::flush`], when the guest has gone quiet: a shell prompt). Receive: bytes the console
//! hands in ([`Pl011::receive`]) queue in a 32-entry FIFO (1 entry with LCR_H.FEN clear); the
//! console offers what did not fit again later. Interrupts: RXRIS while the
//! FIFO holds at least its trigger level (IFLS), RTRIS while it holds less but is not empty (the
//! receive timeout, taken as already elapsed), TXRIS after a transmit until cleared through
//! UARTICR, OERIS on overrun; the output line is `RIS & IMSC != 0`, level-triggered
//! ([`Pl011::interrupt`]).

/// Register offsets (PL011 TRM, 3.2).
pub const UARTDR: u64 = 0x000;
pub const UARTRSR: u64 = 0x004;
pub const UARTFR: u64 = 0x018;
pub const UARTILPR: u64 = 0x020;
pub const UARTIBRD: u64 = 0x024;
pub const UARTFBRD: u64 = 0x028;
pub const UARTLCR_H: u64 = 0x02c;
pub const UARTCR: u64 = 0x030;
pub const UARTIFLS: u64 = 0x034;
pub const UARTIMSC: u64 = 0x038;
pub const UARTRIS: u64 = 0x03c;
pub const UARTMIS: u64 = 0x040;
pub const UARTICR: u64 = 0x044;
pub const UARTDMACR: u64 = 0x048;

/// UARTFR bits.
pub const FR_BUSY: u32 = 1 << 3;
pub const FR_RXFE: u32 = 1 << 4;
pub const FR_TXFF: u32 = 1 << 5;
pub const FR_RXFF: u32 = 1 << 6;
pub const FR_TXFE: u32 = 1 << 7;
/// Interrupt bits (RIS, MIS, IMSC, ICR).
pub const INT_RX: u32 = 1 << 4;
pub const INT_TX: u32 = 1 << 5;
pub const INT_RT: u32 = 1 << 6;
pub const INT_OE: u32 = 1 << 10;
const INT_ALL: u32 = 0x7ff;
/// UARTLCR_H.FEN: FIFOs enabled.
const LCR_FEN: u32 = 1 << 4;
/// UARTDR's overrun error bit, on the read after an overrun.
const DR_OE: u32 = 1 << 11;

/// The PL011's peripheral and PrimeCell ID registers, 0xFE0..0xFFC.
const ID: [u32; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// Longest piece of output kept before it is passed on without a newline.
pub const LINE: usize = 1024;
/// Entries of the receive FIFO.
pub const RX_FIFO: usize = 32;

/// Output the UART passes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output<'a> {
    /// A line (its newline removed).
    Line(&'a [u8]),
    /// Text without a newline: a full buffer, or what was pending when flushed.
    Piece(&'a [u8]),
}

/// See the module documentation.
#[derive(Debug)]
pub struct Pl011 {
    out: [u8; LINE],
    out_len: usize,
    rx: [u8; RX_FIFO],
    rx_head: usize,
    rx_len: usize,
    overrun: bool,
    /// Latched interrupt status: TX and overrun (RX and RT follow the FIFO).
    latched: u32,
    control: u32,
    line_control: u32,
    baud: (u32, u32),
    ifls: u32,
    imsc: u32,
    dmacr: u32,
    ilpr: u32,
}

impl Default for Pl011 {
    fn default() -> Self {
        Self {
            out: [0; LINE],
            out_len: 0,
            rx: [0; RX_FIFO],
            rx_head: 0,
            rx_len: 0,
            overrun: false,
            latched: 0,
            control: 0x300,
            line_control: 0,
            baud: (0, 0),
            ifls: 0x12,
            imsc: 0,
            dmacr: 0,
            ilpr: 0,
        }
    }
}

impl Pl011 {
    /// A UART after reset.
    pub fn new() -> Self {
        Self::default()
    }

    fn depth(&self) -> usize {
        if self.line_control & LCR_FEN != 0 {
            RX_FIFO
        } else {
            1
        }
    }

    /// The receive FIFO level that raises RXRIS (IFLS.RXIFLSEL: 1/8 .. 7/8 of 32; 1 without
    /// FIFOs).
    fn rx_trigger(&self) -> usize {
        if self.line_control & LCR_FEN == 0 {
            return 1;
        }
        match (self.ifls >> 3) & 0b111 {
            0 => 4,
            1 => 8,
            2 => 16,
            3 => 24,
            _ => 28,
        }
    }

    /// UARTRIS.
    pub fn raw_status(&self) -> u32 {
        let mut status = self.latched;
        if self.rx_len >= self.rx_trigger() {
            status |= INT_RX;
        } else if self.rx_len > 0 {
            status |= INT_RT;
        }
        status
    }

    /// The interrupt output: some unmasked interrupt is raised.
    pub fn interrupt(&self) -> bool {
        self.raw_status() & self.imsc != 0
    }

    /// A guest read of the register at `offset`.
    pub fn read(&mut self, offset: u64) -> u32 {
        match offset {
            UARTDR => self.pop(),
            UARTRSR => u32::from(self.overrun) << 3,
            UARTFR => {
                let mut flags = FR_TXFE;
                if self.rx_len == 0 {
                    flags |= FR_RXFE;
                }
                if self.rx_len >= self.depth() {
                    flags |= FR_RXFF;
                }
                flags
            }
            UARTILPR => self.ilpr,
            UARTIBRD => self.baud.0,
            UARTFBRD => self.baud.1,
            UARTLCR_H => self.line_control,
            UARTCR => self.control,
            UARTIFLS => self.ifls,
            UARTIMSC => self.imsc,
            UARTRIS => self.raw_status(),
            UARTMIS => self.raw_status() & self.imsc,
            UARTDMACR => self.dmacr,
            0xfe0..=0xffc => ID.get(((offset - 0xfe0) / 4) as usize).copied().unwrap_or(0),
            _ => 0,
        }
    }

    fn pop(&mut self) -> u32 {
        if self.rx_len == 0 {
            return 0;
        }
        let byte = self.rx[self.rx_head];
        self.rx_head = (self.rx_head + 1) % RX_FIFO;
        self.rx_len -= 1;
        let error = if self.overrun { DR_OE } else { 0 };
        self.overrun = false;
        u32::from(byte) | error
    }

    /// A guest write; returns output to pass on, if the write completed some.
    pub fn write(&mut self, offset: u64, value: u32) -> Option<Output<'_>> {
        match offset {
            UARTDR => return self.transmit(value as u8),
            UARTRSR => self.overrun = false,
            UARTILPR => self.ilpr = value & 0xff,
            UARTIBRD => self.baud.0 = value & 0xffff,
            UARTFBRD => self.baud.1 = value & 0x3f,
            UARTLCR_H => {
                // Turning the FIFOs off or on empties them (TRM: the FIFOs are flushed).
                if (self.line_control ^ value) & LCR_FEN != 0 {
                    self.rx_len = 0;
                }
                self.line_control = value & 0xff;
            }
            UARTCR => self.control = value & 0xff87,
            UARTIFLS => self.ifls = value & 0x3f,
            UARTIMSC => self.imsc = value & INT_ALL,
            UARTICR => {
                self.latched &= !value;
                if value & INT_OE != 0 {
                    self.overrun = false;
                }
            }
            UARTDMACR => self.dmacr = value & 0x7,
            _ => {}
        }
        None
    }

    fn transmit(&mut self, byte: u8) -> Option<Output<'_>> {
        self.latched |= INT_TX;
        match byte {
            b'\n' => {
                let len = core::mem::take(&mut self.out_len);
                Some(Output::Line(&self.out[..len]))
            }
            b'\r' => None,
            byte => {
                self.out[self.out_len] = byte;
                self.out_len += 1;
                if self.out_len < LINE {
                    return None;
                }
                let len = core::mem::take(&mut self.out_len);
                Some(Output::Piece(&self.out[..len]))
            }
        }
    }

    /// Text transmitted since the last newline, handed out now (the console calls this when
    /// the guest has gone quiet, so a prompt shows); `None` when there is none.
    pub fn flush(&mut self) -> Option<Output<'_>> {
        if self.out_len == 0 {
            return None;
        }
        let len = core::mem::take(&mut self.out_len);
        Some(Output::Piece(&self.out[..len]))
    }

    /// Text not yet passed on.
    pub fn pending(&self) -> &[u8] {
        &self.out[..self.out_len]
    }

    /// Bytes from the console's input into the receive FIFO; returns how many fitted. The
    /// console is a flow-controlled wire: it keeps the rest and offers it again, so nothing is
    /// lost (`overrun` models a sender that does not wait).
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        let taken = bytes.len().min(self.depth().saturating_sub(self.rx_len));
        for &byte in &bytes[..taken] {
            self.rx[(self.rx_head + self.rx_len) % RX_FIFO] = byte;
            self.rx_len += 1;
        }
        taken
    }

    /// A byte arrived with the FIFO full and was lost: the overrun status (OERIS, and the
    /// error bit on the next UARTDR read).
    pub fn overrun(&mut self) {
        self.overrun = true;
        self.latched |= INT_OE;
    }

    /// Whether the receive FIFO has room for another byte.
    pub fn can_receive(&self) -> bool {
        self.rx_len < self.depth()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn type_text(uart: &mut Pl011, text: &[u8]) -> Vec<Output<'static>> {
        let mut out = Vec::new();
        for &byte in text {
            if let Some(o) = uart.write(UARTDR, u32::from(byte)) {
                out.push(match o {
                    Output::Line(l) => Output::Line(Vec::leak(l.to_vec())),
                    Output::Piece(p) => Output::Piece(Vec::leak(p.to_vec())),
                });
            }
        }
        out
    }

    #[test]
    fn output_comes_out_in_lines_and_pieces() {
        let mut uart = Pl011::new();
        assert_eq!(type_text(&mut uart, b"hi\r\n"), [Output::Line(b"hi")]);
        assert_eq!(type_text(&mut uart, b"~ # "), []);
        assert_eq!(uart.pending(), b"~ # ");
        assert_eq!(uart.flush(), Some(Output::Piece(b"~ # ")));
        assert_eq!(uart.flush(), None);
        let long = vec![b'x'; LINE + 5];
        let pieces = type_text(&mut uart, &long);
        assert_eq!(pieces, [Output::Piece(Vec::leak(vec![b'x'; LINE]))], "no limit: a long line in pieces");
        assert_eq!(uart.pending(), b"xxxxx");
    }

    #[test]
    fn receive_fifo_flags_and_interrupts() {
        let mut uart = Pl011::new();
        assert_eq!(uart.read(UARTFR), FR_RXFE | FR_TXFE);
        // Linux: FIFOs on, RX and RT unmasked.
        uart.write(UARTLCR_H, 0x70);
        uart.write(UARTIMSC, INT_RX | INT_RT);
        assert!(!uart.interrupt());
        assert_eq!(uart.receive(b"ab"), 2);
        assert_eq!(uart.read(UARTRIS), INT_RT, "below the trigger (16): the receive timeout");
        assert!(uart.interrupt());
        assert_eq!(uart.read(UARTFR) & FR_RXFE, 0);
        assert_eq!(uart.read(UARTDR), u32::from(b'a'));
        assert_eq!(uart.read(UARTDR), u32::from(b'b'));
        assert!(!uart.interrupt(), "drained: the line drops");
        assert_eq!(uart.receive(&[b'z'; 20]), 20);
        assert_eq!(uart.read(UARTMIS), INT_RX, "at the trigger level");
        assert_eq!(uart.receive(&[b'y'; 20]), 12, "the FIFO holds 32");
        assert_eq!(uart.read(UARTFR) & FR_RXFF, FR_RXFF);
        assert_eq!(uart.receive(b"!"), 0, "full: the console keeps it");
        uart.overrun();
        assert_eq!(uart.read(UARTRIS) & INT_OE, INT_OE);
        assert_eq!(uart.read(UARTDR), u32::from(b'z') | DR_OE, "the next read reports the overrun");
        uart.write(UARTICR, INT_OE);
        assert_eq!(uart.read(UARTRIS) & INT_OE, 0);
        // Without FIFOs the holding register is one byte deep.
        let mut plain = Pl011::new();
        assert_eq!(plain.receive(b"ab"), 1);
        assert_eq!(plain.read(UARTFR) & FR_RXFF, FR_RXFF);
        assert_eq!(plain.read(UARTRIS), INT_RX);
    }

    #[test]
    fn transmit_interrupt_and_registers() {
        let mut uart = Pl011::new();
        uart.write(UARTIMSC, INT_TX);
        assert!(!uart.interrupt());
        uart.write(UARTDR, u32::from(b'x'));
        assert!(uart.interrupt(), "a transmit raises TXRIS");
        uart.write(UARTICR, INT_TX);
        assert!(!uart.interrupt());
        uart.write(UARTIBRD, 13);
        uart.write(UARTFBRD, 0x1ff);
        uart.write(UARTCR, 0x301);
        assert_eq!((uart.read(UARTIBRD), uart.read(UARTFBRD), uart.read(UARTCR)), (13, 0x3f, 0x301));
        assert_eq!(uart.read(UARTIFLS), 0x12);
        assert_eq!(uart.read(0xfe0), 0x11);
        assert_eq!(uart.read(0xffc), 0xb1);
        assert_eq!(uart.read(0x800), 0);
    }
}
