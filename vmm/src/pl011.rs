//! A PL011 UART as a guest sees it, emulated behind a MEM trap: enough for a guest (or
//! Linux's early console) to print. Transmitted bytes are collected into lines, which the VMM
//! forwards to Belfry's log tagged with the guest; the transmit FIFO never fills.

/// Register offsets (PL011 TRM).
pub const UARTDR: u64 = 0x000;
pub const UARTFR: u64 = 0x018;
pub const UARTIBRD: u64 = 0x024;
pub const UARTFBRD: u64 = 0x028;
pub const UARTLCR_H: u64 = 0x02c;
pub const UARTCR: u64 = 0x030;
pub const UARTIMSC: u64 = 0x038;
pub const UARTRIS: u64 = 0x03c;
pub const UARTMIS: u64 = 0x040;
pub const UARTICR: u64 = 0x044;
/// UARTFR: receive FIFO empty, transmit FIFO empty.
const FR_RXFE: u32 = 1 << 4;
const FR_TXFE: u32 = 1 << 7;
/// The PL011's peripheral and PrimeCell ID registers, 0xFE0..0xFFC.
const ID: [u32; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// Longest line kept before it is flushed anyway.
pub const LINE: usize = 120;

/// See the module documentation.
#[derive(Debug)]
pub struct Pl011 {
    line: [u8; LINE],
    len: usize,
    control: u32,
    line_control: u32,
    baud: (u32, u32),
    interrupt_mask: u32,
}

impl Default for Pl011 {
    fn default() -> Self {
        Self { line: [0; LINE], len: 0, control: 0x300, line_control: 0, baud: (0, 0), interrupt_mask: 0 }
    }
}

impl Pl011 {
    /// A UART after reset.
    pub fn new() -> Self {
        Self::default()
    }

    /// A guest read of `size` bytes at `offset`.
    pub fn read(&self, offset: u64) -> u32 {
        match offset {
            UARTDR => 0,
            UARTFR => FR_RXFE | FR_TXFE,
            UARTIBRD => self.baud.0,
            UARTFBRD => self.baud.1,
            UARTLCR_H => self.line_control,
            UARTCR => self.control,
            UARTIMSC => self.interrupt_mask,
            UARTRIS | UARTMIS => 0,
            0xfe0..=0xffc => ID.get(((offset - 0xfe0) / 4) as usize).copied().unwrap_or(0),
            _ => 0,
        }
    }

    /// A guest write; returns a completed line, if the write ended one.
    pub fn write(&mut self, offset: u64, value: u32) -> Option<&[u8]> {
        match offset {
            UARTDR => return self.transmit(value as u8),
            UARTIBRD => self.baud.0 = value & 0xffff,
            UARTFBRD => self.baud.1 = value & 0x3f,
            UARTLCR_H => self.line_control = value & 0xff,
            UARTCR => self.control = value & 0xffff,
            UARTIMSC => self.interrupt_mask = value & 0x7ff,
            _ => {}
        }
        None
    }

    fn transmit(&mut self, byte: u8) -> Option<&[u8]> {
        match byte {
            b'\n' => {}
            b'\r' => return None,
            byte => {
                if let Some(slot) = self.line.get_mut(self.len) {
                    *slot = byte;
                    self.len += 1;
                }
                if self.len < LINE {
                    return None;
                }
            }
        }
        let len = core::mem::take(&mut self.len);
        Some(&self.line[..len])
    }

    /// Text not yet ended by a newline.
    pub fn pending(&self) -> &[u8] {
        &self.line[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_out_whole() {
        let mut uart = Pl011::new();
        for &byte in b"hi\r" {
            assert_eq!(uart.write(UARTDR, u32::from(byte)), None);
        }
        assert_eq!(uart.pending(), b"hi");
        assert_eq!(uart.write(UARTDR, u32::from(b'\n')), Some(&b"hi"[..]));
        assert_eq!(uart.pending(), b"");
        let long = [b'x'; LINE];
        let mut flushed = None;
        for &byte in &long {
            flushed = uart.write(UARTDR, u32::from(byte)).map(<[u8]>::len);
        }
        assert_eq!(flushed, Some(LINE), "an overlong line is flushed");
    }

    #[test]
    fn registers() {
        let mut uart = Pl011::new();
        assert_eq!(uart.read(UARTFR), FR_RXFE | FR_TXFE, "never busy, nothing received");
        uart.write(UARTIBRD, 13);
        uart.write(UARTFBRD, 0x1ff);
        uart.write(UARTCR, 0x301);
        assert_eq!((uart.read(UARTIBRD), uart.read(UARTFBRD), uart.read(UARTCR)), (13, 0x3f, 0x301));
        assert_eq!(uart.read(0xfe0), 0x11);
        assert_eq!(uart.read(0xffc), 0xb1);
        assert_eq!(uart.read(0x800), 0);
    }
}
