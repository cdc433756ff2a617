//! The virtio-mmio transport, version 2 (VIRTIO 1.2, section 4.2): the register window a
//! driver finds a virtio device through, as the VMM's MEM traps see it, with the device's
//! queues (over [`crate::virtqueue`]) and its interrupt status.
//!
//! One [`Transport`] per device slot. Its registers are served on the VCPUs' threads (MEM
//! traps: feature negotiation, status, queue setup, configuration space, interrupt status and
//! acknowledgement); the device's own thread takes the queues through it when a doorbell rings.
//! QueueNotify (offset 0x50) is not served here: it is a doorbell word (a BELL trap inside the
//! window's MEM trap), whose packets wake the device thread without the guest waiting for it.
//! The notification carries no queue index (a BELL packet has only its address), so the device
//! looks at every queue it has.
//!
//! What a driver gets wrong is its own problem, never Belfry's: registers accept only 32-bit
//! aligned accesses (others read 0 and are ignored, as the specification allows), queue setup
//! is ignored while the queue is ready, features outside the offer fail FEATURES_OK, and a
//! queue whose areas are misaligned or of a bad size, or whose rings or descriptors break a
//! rule ([`QueueError`]), puts the device in DEVICE_NEEDS_RESET (with a configuration-change
//! interrupt) until the driver resets it. The interrupt line is level: high while
//! InterruptStatus is non-zero.

use crate::virtqueue::{QueueError, SplitQueue};
use alloc::vec::Vec;

/// "virt" in little-endian.
pub const MAGIC: u32 = 0x7472_6976;
/// The modern (virtio 1.x) register layout.
pub const VERSION: u32 = 2;
/// Belfry's vendor ID: "BLFY".
pub const VENDOR: u32 = u32::from_le_bytes(*b"BLFY");

/// Register offsets (section 4.2.2).
pub const MAGIC_VALUE: u64 = 0x000;
pub const VERSION_REG: u64 = 0x004;
pub const DEVICE_ID: u64 = 0x008;
pub const VENDOR_ID: u64 = 0x00c;
pub const DEVICE_FEATURES: u64 = 0x010;
pub const DEVICE_FEATURES_SEL: u64 = 0x014;
pub const DRIVER_FEATURES: u64 = 0x020;
pub const DRIVER_FEATURES_SEL: u64 = 0x024;
pub const QUEUE_SEL: u64 = 0x030;
pub const QUEUE_NUM_MAX: u64 = 0x034;
pub const QUEUE_NUM: u64 = 0x038;
pub const QUEUE_READY: u64 = 0x044;
pub const QUEUE_NOTIFY: u64 = 0x050;
pub const INTERRUPT_STATUS: u64 = 0x060;
pub const INTERRUPT_ACK: u64 = 0x064;
pub const STATUS: u64 = 0x070;
pub const QUEUE_DESC_LOW: u64 = 0x080;
pub const QUEUE_DESC_HIGH: u64 = 0x084;
pub const QUEUE_DRIVER_LOW: u64 = 0x090;
pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
pub const SHM_SEL: u64 = 0x0ac;
pub const SHM_LEN_LOW: u64 = 0x0b0;
pub const SHM_LEN_HIGH: u64 = 0x0b4;
pub const SHM_BASE_LOW: u64 = 0x0b8;
pub const SHM_BASE_HIGH: u64 = 0x0bc;
pub const CONFIG_GENERATION: u64 = 0x0fc;
pub const CONFIG: u64 = 0x100;
/// The window's size (a slot of the layout).
pub const WINDOW: u64 = crate::layout::VIRTIO_STRIDE;

/// Device status bits (section 2.1).
pub const ACKNOWLEDGE: u32 = 1;
pub const DRIVER: u32 = 2;
pub const DRIVER_OK: u32 = 4;
pub const FEATURES_OK: u32 = 8;
pub const DEVICE_NEEDS_RESET: u32 = 64;
pub const FAILED: u32 = 128;

/// InterruptStatus bits: a used buffer, a configuration change.
pub const USED_BUFFER: u32 = 1;
pub const CONFIG_CHANGE: u32 = 2;

/// Reserved feature bits every Belfry device offers (section 6).
pub const F_INDIRECT_DESC: u64 = 1 << 28;
pub const F_EVENT_IDX: u64 = 1 << 29;
pub const F_VERSION_1: u64 = 1 << 32;

/// One queue's setup, as the driver wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queue {
    /// QueueNumMax.
    pub max: u16,
    /// QueueNum.
    pub size: u16,
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
    /// Built when the driver sets QueueReady (checked then); `None` while not ready.
    pub split: Option<SplitQueue>,
}

/// What a register access did that the VMM should know of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing.
    None,
    /// The driver reset the device (status 0): the device thread drops what it holds.
    Reset,
    /// The driver set DRIVER_OK: the device may use its queues.
    DriverOk,
    /// A queue could not be set up: the device now needs a reset.
    Broken(QueueError),
}

/// See the module documentation.
#[derive(Debug)]
pub struct Transport {
    device_id: u32,
    offered: u64,
    accepted: u64,
    device_features_sel: u32,
    driver_features_sel: u32,
    queue_sel: u32,
    queues: Vec<Queue>,
    status: u32,
    interrupt_status: u32,
    config_generation: u32,
    config: Vec<u8>,
}

impl Transport {
    /// A device `device_id` offering `features` (device-specific bits; VERSION_1,
    /// INDIRECT_DESC and EVENT_IDX are added), with a queue of at most `max` entries for each
    /// element of `queue_max`, and a read-only configuration space `config`.
    pub fn new(device_id: u32, features: u64, queue_max: &[u16], config: Vec<u8>) -> Self {
        let queues =
            queue_max.iter().map(|&max| Queue { max, size: max, desc: 0, driver: 0, device: 0, split: None }).collect();
        Self {
            device_id,
            offered: features | F_VERSION_1 | F_INDIRECT_DESC | F_EVENT_IDX,
            accepted: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            queue_sel: 0,
            queues,
            status: 0,
            interrupt_status: 0,
            config_generation: 0,
            config,
        }
    }

    /// The virtio device ID.
    pub fn device_id(&self) -> u32 {
        self.device_id
    }

    /// Whether the driver accepted feature `bit` (a mask) and the negotiation completed.
    pub fn negotiated(&self, bit: u64) -> bool {
        self.status & FEATURES_OK != 0 && self.accepted & bit != 0
    }

    /// Whether the device may use its queues: DRIVER_OK, and not waiting for a reset.
    pub fn live(&self) -> bool {
        self.status & (DRIVER_OK | DEVICE_NEEDS_RESET | FAILED) == DRIVER_OK
    }

    /// The device status register.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// Queue `index` if the driver made it ready (and the device is live).
    pub fn queue(&mut self, index: usize) -> Option<&mut SplitQueue> {
        if !self.live() {
            return None;
        }
        self.queues.get_mut(index)?.split.as_mut()
    }

    /// The device returned buffers the driver wants to hear of: the line goes high.
    pub fn used_buffers(&mut self) {
        self.interrupt_status |= USED_BUFFER;
    }

    /// The driver broke a queue's rules: DEVICE_NEEDS_RESET and a configuration-change
    /// interrupt (section 2.1.2); the queues are not used again until a reset.
    pub fn fail(&mut self) {
        if self.status & DRIVER_OK != 0 {
            self.status |= DEVICE_NEEDS_RESET;
            self.interrupt_status |= CONFIG_CHANGE;
        }
    }

    /// The interrupt line: high while an interrupt is unacknowledged.
    pub fn interrupt(&self) -> bool {
        self.interrupt_status != 0
    }

    /// Changes the configuration space (a device's own change, e.g. a link coming up): the
    /// generation moves and the driver is told.
    pub fn set_config(&mut self, offset: usize, bytes: &[u8]) {
        if let Some(target) = offset.checked_add(bytes.len()).and_then(|end| self.config.get_mut(offset..end)) {
            target.copy_from_slice(bytes);
            self.config_generation = self.config_generation.wrapping_add(1);
            if self.status & DRIVER_OK != 0 {
                self.interrupt_status |= CONFIG_CHANGE;
            }
        }
    }

    fn selected(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    /// A read of `size` bytes at `offset` into the window.
    pub fn read(&self, offset: u64, size: u8) -> u64 {
        if offset >= CONFIG {
            return self.read_config(offset - CONFIG, size);
        }
        if size != 4 || !offset.is_multiple_of(4) {
            return 0;
        }
        let queue = self.queues.get(self.queue_sel as usize);
        let value: u32 = match offset {
            MAGIC_VALUE => MAGIC,
            VERSION_REG => VERSION,
            DEVICE_ID => self.device_id,
            VENDOR_ID => VENDOR,
            DEVICE_FEATURES => match self.device_features_sel {
                0 => self.offered as u32,
                1 => (self.offered >> 32) as u32,
                _ => 0,
            },
            QUEUE_NUM_MAX => queue.map_or(0, |q| u32::from(q.max)),
            QUEUE_READY => u32::from(queue.is_some_and(|q| q.split.is_some())),
            INTERRUPT_STATUS => self.interrupt_status,
            STATUS => self.status,
            // No shared-memory regions: their length and base read as all ones.
            SHM_LEN_LOW | SHM_LEN_HIGH | SHM_BASE_LOW | SHM_BASE_HIGH => u32::MAX,
            CONFIG_GENERATION => self.config_generation,
            _ => 0,
        };
        u64::from(value)
    }

    fn read_config(&self, offset: u64, size: u8) -> u64 {
        let Ok(start) = usize::try_from(offset) else { return 0 };
        let Some(bytes) = start.checked_add(usize::from(size)).and_then(|end| self.config.get(start..end)) else {
            return 0;
        };
        if !matches!(size, 1 | 2 | 4 | 8) {
            return 0;
        }
        bytes.iter().rev().fold(0, |value, &byte| (value << 8) | u64::from(byte))
    }

    /// A write of `size` bytes at `offset`; what the VMM must act on.
    pub fn write(&mut self, offset: u64, size: u8, value: u64) -> Event {
        if offset >= CONFIG || size != 4 || !offset.is_multiple_of(4) {
            // The configuration spaces Belfry offers are read-only; other accesses are ignored.
            return Event::None;
        }
        let value = value as u32;
        match offset {
            DEVICE_FEATURES_SEL => self.device_features_sel = value,
            DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            DRIVER_FEATURES if self.status & FEATURES_OK == 0 => match self.driver_features_sel {
                0 => self.accepted = (self.accepted & !0xffff_ffff) | u64::from(value),
                1 => self.accepted = (self.accepted & 0xffff_ffff) | (u64::from(value) << 32),
                _ => {}
            },
            QUEUE_SEL => self.queue_sel = value,
            INTERRUPT_ACK => self.interrupt_status &= !value,
            STATUS => return self.write_status(value),
            QUEUE_READY => return self.write_ready(value),
            QUEUE_NUM | QUEUE_DESC_LOW | QUEUE_DESC_HIGH | QUEUE_DRIVER_LOW | QUEUE_DRIVER_HIGH | QUEUE_DEVICE_LOW
            | QUEUE_DEVICE_HIGH => {
                let Some(queue) = self.selected().filter(|q| q.split.is_none()) else { return Event::None };
                let low = |field: &mut u64| *field = (*field & !0xffff_ffff) | u64::from(value);
                let high = |field: &mut u64| *field = (*field & 0xffff_ffff) | (u64::from(value) << 32);
                match offset {
                    QUEUE_NUM => queue.size = value.min(u32::from(u16::MAX)) as u16,
                    QUEUE_DESC_LOW => low(&mut queue.desc),
                    QUEUE_DESC_HIGH => high(&mut queue.desc),
                    QUEUE_DRIVER_LOW => low(&mut queue.driver),
                    QUEUE_DRIVER_HIGH => high(&mut queue.driver),
                    QUEUE_DEVICE_LOW => low(&mut queue.device),
                    _ => high(&mut queue.device),
                }
            }
            _ => {}
        }
        Event::None
    }

    fn write_status(&mut self, value: u32) -> Event {
        if value == 0 {
            self.reset();
            return Event::Reset;
        }
        // Bits are only ever added (section 3.1.1); DEVICE_NEEDS_RESET is the device's.
        let mut value = (value | self.status) & !DEVICE_NEEDS_RESET | (self.status & DEVICE_NEEDS_RESET);
        if value & FEATURES_OK != 0 && self.status & FEATURES_OK == 0 {
            let acceptable = self.accepted & !self.offered == 0 && self.accepted & F_VERSION_1 != 0;
            if !acceptable {
                value &= !FEATURES_OK;
            }
        }
        if value & DRIVER_OK != 0 && value & FEATURES_OK == 0 {
            // DRIVER_OK without a completed negotiation is not an operational device.
            value &= !DRIVER_OK;
        }
        let became_ok = value & DRIVER_OK != 0 && self.status & DRIVER_OK == 0;
        self.status = value;
        if became_ok {
            Event::DriverOk
        } else {
            Event::None
        }
    }

    fn write_ready(&mut self, value: u32) -> Event {
        let event_idx = self.accepted & F_EVENT_IDX != 0;
        let Some(queue) = self.selected() else { return Event::None };
        if value & 1 == 0 {
            queue.split = None;
            return Event::None;
        }
        if queue.split.is_some() {
            return Event::None;
        }
        let size = if queue.size > queue.max { 0 } else { queue.size };
        match SplitQueue::new(size, queue.desc, queue.driver, queue.device, event_idx) {
            Ok(split) => {
                queue.split = Some(split);
                Event::None
            }
            Err(error) => {
                self.status |= DEVICE_NEEDS_RESET;
                self.interrupt_status |= CONFIG_CHANGE;
                Event::Broken(error)
            }
        }
    }

    /// Status 0: everything the driver set is forgotten.
    fn reset(&mut self) {
        self.accepted = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        self.status = 0;
        self.interrupt_status = 0;
        for queue in &mut self.queues {
            *queue = Queue { max: queue.max, size: queue.max, desc: 0, driver: 0, device: 0, split: None };
        }
    }
}

/// A driver for the devices' host tests: the initialisation sequence and one-buffer offers.
#[cfg(test)]
pub(crate) mod driver {
    use super::*;
    use crate::virtqueue::Memory;

    /// One queue's areas in the test's RAM, and how many buffers were offered on it.
    pub struct Ring {
        pub desc: u64,
        pub avail: u64,
        pub used: u64,
        pub size: u16,
        pub offered: u16,
    }

    impl Ring {
        pub fn new(at: u64, size: u16) -> Self {
            Self { desc: at, avail: at + 0x1000, used: at + 0x2000, size, offered: 0 }
        }

        /// Offers one buffer (a chain of one descriptor); returns its used-ring slot.
        pub fn offer(&mut self, ram: &mut impl Memory, address: u64, len: u32, writable: bool) -> u64 {
            let index = u64::from(self.offered % self.size);
            let mut d = [0u8; 16];
            d[..8].copy_from_slice(&address.to_le_bytes());
            d[8..12].copy_from_slice(&len.to_le_bytes());
            d[12..14].copy_from_slice(&(if writable { 2u16 } else { 0 }).to_le_bytes());
            ram.write(self.desc + 16 * index, &d).unwrap();
            ram.write(self.avail + 4 + 2 * index, &(index as u16).to_le_bytes()).unwrap();
            self.offered = self.offered.wrapping_add(1);
            ram.write(self.avail + 2, &self.offered.to_le_bytes()).unwrap();
            index
        }

        /// Used-ring element `slot`: (head, length).
        pub fn used(&self, ram: &impl Memory, slot: u64) -> (u32, u32) {
            let mut e = [0u8; 8];
            ram.read(self.used + 4 + 8 * slot, &mut e).unwrap();
            (u32::from_le_bytes(e[..4].try_into().unwrap()), u32::from_le_bytes(e[4..].try_into().unwrap()))
        }

        /// The used ring's index.
        pub fn used_idx(&self, ram: &impl Memory) -> u16 {
            let mut e = [0u8; 2];
            ram.read(self.used + 2, &mut e).unwrap();
            u16::from_le_bytes(e)
        }
    }

    /// The initialisation of section 3.1.1 with `features` (VERSION_1 added) and `rings`;
    /// what the DRIVER_OK write returned.
    pub fn bring_up(t: &mut Transport, features: u64, rings: &[&Ring]) -> Event {
        let features = features | F_VERSION_1;
        let mut w = |offset, value| t.write(offset, 4, value);
        w(STATUS, u64::from(ACKNOWLEDGE | DRIVER));
        w(DRIVER_FEATURES_SEL, 0);
        w(DRIVER_FEATURES, features & 0xffff_ffff);
        w(DRIVER_FEATURES_SEL, 1);
        w(DRIVER_FEATURES, features >> 32);
        w(STATUS, u64::from(ACKNOWLEDGE | DRIVER | FEATURES_OK));
        for (index, ring) in rings.iter().enumerate() {
            w(QUEUE_SEL, index as u64);
            w(QUEUE_NUM, u64::from(ring.size));
            w(QUEUE_DESC_LOW, ring.desc);
            w(QUEUE_DRIVER_LOW, ring.avail);
            w(QUEUE_DEVICE_LOW, ring.used);
            w(QUEUE_READY, 1);
        }
        w(STATUS, u64::from(ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn w(t: &mut Transport, offset: u64, value: u64) -> Event {
        t.write(offset, 4, value)
    }

    /// The driver's initialisation (section 3.1.1) for a device with one queue of 8.
    fn bring_up(t: &mut Transport, features: u64) -> Event {
        w(t, STATUS, u64::from(ACKNOWLEDGE));
        w(t, STATUS, u64::from(ACKNOWLEDGE | DRIVER));
        w(t, DRIVER_FEATURES_SEL, 0);
        w(t, DRIVER_FEATURES, features & 0xffff_ffff);
        w(t, DRIVER_FEATURES_SEL, 1);
        w(t, DRIVER_FEATURES, features >> 32);
        w(t, STATUS, u64::from(ACKNOWLEDGE | DRIVER | FEATURES_OK));
        w(t, QUEUE_SEL, 0);
        w(t, QUEUE_NUM, 8);
        w(t, QUEUE_DESC_LOW, 0x4000_0000);
        w(t, QUEUE_DRIVER_LOW, 0x4000_1000);
        w(t, QUEUE_DEVICE_LOW, 0x4000_2000);
        w(t, QUEUE_READY, 1);
        w(t, STATUS, u64::from(ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK))
    }

    #[test]
    fn identity_and_feature_negotiation() {
        let mut t = Transport::new(2, 1 << 5, &[8], vec![1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let r = |t: &Transport, offset| t.read(offset, 4);
        assert_eq!(
            (r(&t, MAGIC_VALUE), r(&t, VERSION_REG), r(&t, DEVICE_ID), r(&t, VENDOR_ID)),
            (0x7472_6976, 2, 2, 0x5946_4c42)
        );
        assert_eq!(r(&t, DEVICE_FEATURES), (1 << 5) | (1 << 28) | (1 << 29));
        w(&mut t, DEVICE_FEATURES_SEL, 1);
        assert_eq!(r(&t, DEVICE_FEATURES), 1, "VERSION_1 is bit 32");
        w(&mut t, DEVICE_FEATURES_SEL, 2);
        assert_eq!(r(&t, DEVICE_FEATURES), 0);
        assert_eq!(r(&t, QUEUE_NUM_MAX), 8);
        w(&mut t, QUEUE_SEL, 1);
        assert_eq!(r(&t, QUEUE_NUM_MAX), 0, "no second queue");
        assert_eq!(r(&t, SHM_LEN_LOW), 0xffff_ffff, "no shared memory");
        // Configuration space: little-endian, any natural size inside it.
        assert_eq!(t.read(CONFIG, 4), 0x0403_0201);
        assert_eq!(t.read(CONFIG + 1, 2), 0x0302);
        assert_eq!(t.read(CONFIG, 8), 0x0807_0605_0403_0201);
        assert_eq!(t.read(CONFIG + 8, 1), 9);
        assert_eq!(t.read(CONFIG + 8, 2), 0, "past its end");
        assert_eq!(t.read(CONFIG + 2, 3), 0, "not a natural size");
        assert_eq!(t.read(u64::MAX, 4), 0);
        // Registers take only aligned 32-bit accesses.
        assert_eq!(t.read(MAGIC_VALUE, 2), 0);
        assert_eq!(t.read(MAGIC_VALUE + 1, 4), 0);
        assert_eq!(bring_up(&mut t, F_VERSION_1 | F_EVENT_IDX | (1 << 5)), Event::DriverOk);
        assert!(t.live() && t.negotiated(F_EVENT_IDX) && t.negotiated(1 << 5) && !t.negotiated(F_INDIRECT_DESC));
        assert_eq!(r(&t, QUEUE_READY), 1);
        assert!(t.queue(0).is_some() && t.queue(1).is_none());
    }

    #[test]
    fn features_outside_the_offer_or_without_version_1_fail_negotiation() {
        for features in [1 << 6, 0, F_VERSION_1 | (1 << 40)] {
            let mut t = Transport::new(2, 1 << 5, &[8], vec![]);
            assert_eq!(bring_up(&mut t, features), Event::None);
            assert_eq!(t.status() & (FEATURES_OK | DRIVER_OK), 0, "{features:#x}");
            assert!(!t.live() && t.queue(0).is_none());
        }
    }

    #[test]
    fn queue_setup_is_checked_and_frozen_while_ready() {
        let mut t = Transport::new(3, 0, &[8], vec![]);
        assert_eq!(bring_up(&mut t, F_VERSION_1), Event::DriverOk);
        w(&mut t, QUEUE_DESC_LOW, 0x5000_0000);
        assert_eq!(t.queues[0].desc, 0x4000_0000, "ignored while ready");
        // A misaligned ring or a size over the maximum: DEVICE_NEEDS_RESET, a config interrupt.
        for (register, value) in [(QUEUE_DESC_LOW, 0x4000_0008), (QUEUE_NUM, 16), (QUEUE_NUM, 6)] {
            let mut t = Transport::new(3, 0, &[8], vec![]);
            bring_up(&mut t, F_VERSION_1);
            w(&mut t, QUEUE_READY, 0);
            w(&mut t, register, value);
            assert!(matches!(w(&mut t, QUEUE_READY, 1), Event::Broken(_)), "{register:#x} = {value:#x}");
            assert_eq!(t.status() & DEVICE_NEEDS_RESET, DEVICE_NEEDS_RESET);
            assert_eq!(t.read(INTERRUPT_STATUS, 4), u64::from(CONFIG_CHANGE));
            assert!(t.interrupt() && !t.live() && t.queue(0).is_none());
            // The driver cannot clear DEVICE_NEEDS_RESET by writing status; a reset does.
            w(&mut t, STATUS, u64::from(ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK));
            assert_eq!(t.status() & DEVICE_NEEDS_RESET, DEVICE_NEEDS_RESET);
            assert_eq!(w(&mut t, STATUS, 0), Event::Reset);
            assert_eq!((t.status(), t.read(INTERRUPT_STATUS, 4), t.read(QUEUE_READY, 4)), (0, 0, 0));
            assert_eq!(bring_up(&mut t, F_VERSION_1), Event::DriverOk, "usable again after the reset");
        }
    }

    #[test]
    fn interrupts_are_level_until_acknowledged() {
        let mut t = Transport::new(3, 0, &[8], vec![0; 8]);
        bring_up(&mut t, F_VERSION_1);
        assert!(!t.interrupt());
        t.used_buffers();
        assert!(t.interrupt());
        assert_eq!(t.read(INTERRUPT_STATUS, 4), 1);
        w(&mut t, INTERRUPT_ACK, 1);
        assert!(!t.interrupt());
        t.set_config(0, &[1, 0]);
        assert_eq!((t.read(INTERRUPT_STATUS, 4), t.read(CONFIG_GENERATION, 4), t.read(CONFIG, 2)), (2, 1, 1));
        t.fail();
        assert!(!t.live());
        assert_eq!(t.status() & DEVICE_NEEDS_RESET, DEVICE_NEEDS_RESET);
    }
}
