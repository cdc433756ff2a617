//! The VM's MMIO bus: devices behind one trait, each in a guest-physical window, each with an
//! optional interrupt line into the guest's distributor (an SPI, edge- or level-triggered).
//!
//! The bus routes a trapped access to the device whose window holds it, with the offset into
//! the window and the access size, then samples the device's interrupt output: an edge line
//! raises its SPI each time the device reports a pulse; a level line raises it when it goes
//! high, and again after any write (or host-side input) that leaves it high. The distributor
//! model does not see the guest's EOI, so a level interrupt whose handler wrote the device but
//! left the line up (a transmit interrupt that wants more) must be raised again to be taken
//! again; a handler that only read, or that lowered the line, is not interrupted again. The
//! GIC itself is not on the bus: its model is the interrupt sink, served by the VM.

use alloc::boxed::Box;
use alloc::vec::Vec;

/// How a device's interrupt line is sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The SPI is raised each time the device reports a pulse.
    Edge,
    /// The SPI is raised when the line goes from low to high.
    Level,
}

/// A device model: pure, host-tested, reached only through the bus.
pub trait Device: Send {
    /// A read of `size` bytes at `offset` into the device's window.
    fn read(&mut self, offset: u64, size: u8) -> u64;
    /// A write of `size` bytes at `offset`.
    fn write(&mut self, offset: u64, size: u8, value: u64);
    /// The interrupt output: for a level line whether it is high now; for an edge line whether
    /// a pulse happened since the last call.
    fn interrupt(&mut self) -> bool {
        false
    }

    /// Input from the host side (console keystrokes); returns how many bytes were taken.
    fn receive(&mut self, _bytes: &[u8]) -> usize {
        0
    }

    /// Called on the VMM's periodic tick (the console passes on output the guest left without
    /// a newline once it has gone quiet).
    fn tick(&mut self) {}
}

/// One device on the bus.
pub struct Slot {
    pub base: u64,
    pub size: u64,
    /// The SPI number (INTID - 32) and trigger of the device's line, if it has one.
    pub line: Option<(u32, Trigger)>,
    device: spin::Mutex<Box<dyn Device>>,
    high: core::sync::atomic::AtomicBool,
}

impl Slot {
    /// The SPI to raise for the device's output `output` after an access (`write`: one that
    /// may have changed why the line is up).
    fn sample(&self, output: bool, write: bool) -> Option<u32> {
        match self.line {
            Some((spi, Trigger::Edge)) if output => Some(spi),
            Some((spi, Trigger::Level)) => {
                let was = self.high.swap(output, core::sync::atomic::Ordering::AcqRel);
                (output && (!was || write)).then_some(spi)
            }
            _ => None,
        }
    }
}

/// An access the bus served: the value a read returns, and the SPI to raise, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Served {
    pub value: u64,
    pub raise: Option<u32>,
}

/// See the module documentation.
#[derive(Default)]
pub struct Bus {
    slots: Vec<Slot>,
}

/// Why a device was not added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overlap;

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `device` at `[base, base + size)`; refused if the window overlaps another.
    pub fn add(
        &mut self,
        base: u64,
        size: u64,
        line: Option<(u32, Trigger)>,
        device: Box<dyn Device>,
    ) -> Result<(), Overlap> {
        let end = base.checked_add(size).filter(|_| size > 0).ok_or(Overlap)?;
        if self.slots.iter().any(|s| base < s.base + s.size && s.base < end) {
            return Err(Overlap);
        }
        self.slots.push(Slot {
            base,
            size,
            line,
            device: spin::Mutex::new(device),
            high: core::sync::atomic::AtomicBool::new(false),
        });
        Ok(())
    }

    /// The devices' windows, for trapping them.
    pub fn windows(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.slots.iter().map(|s| (s.base, s.size))
    }

    /// Serves an access at `address`; `None` when no device is there.
    pub fn access(&self, address: u64, size: u8, write: Option<u64>) -> Option<Served> {
        let slot = self.slots.iter().find(|s| address >= s.base && address - s.base < s.size)?;
        let offset = address - slot.base;
        let mut device = slot.device.lock();
        let value = match write {
            Some(value) => {
                device.write(offset, size, value);
                0
            }
            None => device.read(offset, size),
        };
        let output = device.interrupt();
        drop(device);
        Some(Served { value, raise: slot.sample(output, write.is_some()) })
    }

    /// Runs `f` on the device at `base` from the host side (console input, the periodic tick)
    /// and samples its line as after a write; the SPI to raise, if any.
    pub fn poke(&self, base: u64, f: impl FnOnce(&mut dyn Device)) -> Option<u32> {
        let slot = self.slots.iter().find(|s| s.base == base)?;
        let mut device = slot.device.lock();
        f(&mut **device);
        let output = device.interrupt();
        drop(device);
        slot.sample(output, true)
    }

    /// Runs `f` on the device at `base` (the VM's console reads its UART this way).
    pub fn with_device<R>(&self, base: u64, f: impl FnOnce(&mut dyn Device) -> R) -> Option<R> {
        let slot = self.slots.iter().find(|s| s.base == base)?;
        let mut device = slot.device.lock();
        Some(f(&mut **device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A register at 0; writing 1 to 4 raises the line, 0 lowers it.
    #[derive(Default)]
    struct Toy {
        register: u64,
        line: bool,
    }

    impl Device for Toy {
        fn read(&mut self, offset: u64, _: u8) -> u64 {
            if offset == 0 {
                self.register
            } else {
                0
            }
        }
        fn write(&mut self, offset: u64, _: u8, value: u64) {
            match offset {
                0 => self.register = value,
                4 => self.line = value != 0,
                _ => {}
            }
        }
        fn interrupt(&mut self) -> bool {
            self.line
        }
    }

    #[test]
    fn accesses_reach_their_device_and_lines_rise() {
        let mut bus = Bus::new();
        bus.add(0x1000, 0x100, Some((5, Trigger::Level)), Box::new(Toy::default())).unwrap();
        bus.add(0x2000, 0x100, Some((6, Trigger::Edge)), Box::new(Toy::default())).unwrap();
        assert_eq!(bus.add(0x10ff, 2, None, Box::new(Toy::default())), Err(Overlap));
        assert_eq!(bus.add(0x3000, 0, None, Box::new(Toy::default())), Err(Overlap));
        assert_eq!(bus.add(u64::MAX, 2, None, Box::new(Toy::default())), Err(Overlap));
        assert_eq!(bus.access(0x1000, 8, Some(0xabc)), Some(Served { value: 0, raise: None }));
        assert_eq!(bus.access(0x1000, 8, None), Some(Served { value: 0xabc, raise: None }));
        assert_eq!(bus.access(0x2000, 8, None), Some(Served { value: 0, raise: None }), "a separate device");
        assert_eq!(bus.access(0x1004, 4, Some(1)).unwrap().raise, Some(5), "level: raised when it goes high");
        assert_eq!(bus.access(0x1000, 4, None).unwrap().raise, None, "not again on a read while it stays high");
        assert_eq!(bus.access(0x1000, 4, Some(7)).unwrap().raise, Some(5), "again after a write that leaves it high");
        assert_eq!(bus.access(0x1004, 4, Some(0)).unwrap().raise, None);
        assert_eq!(bus.access(0x1004, 4, Some(1)).unwrap().raise, Some(5));
        assert_eq!(bus.poke(0x1000, |d| d.write(4, 4, 0)), None, "host side: lowered");
        assert_eq!(bus.poke(0x1000, |d| d.write(4, 4, 1)), Some(5), "host side: raised");
        assert_eq!(bus.poke(0x3000, |_| {}), None, "no device there");
        assert_eq!(bus.access(0x2004, 4, Some(1)).unwrap().raise, Some(6), "edge: each pulse");
        assert_eq!(bus.access(0x2000, 4, None).unwrap().raise, Some(6));
        assert_eq!(bus.access(0x3000, 4, None), None, "nothing there");
        assert_eq!(bus.windows().collect::<Vec<_>>(), [(0x1000, 0x100), (0x2000, 0x100)]);
        assert_eq!(bus.with_device(0x1000, |d| d.read(0, 8)), Some(7), "the register written above");
    }
}
