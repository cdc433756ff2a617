//! Split virtqueues (VIRTIO 1.2, section 2.7), as a device reads and completes them, over any
//! guest memory.
//!
//! Everything here reads memory the guest owns and may change at any moment, from another VCPU,
//! while the device looks at it. So a descriptor is read once, whole, into the [`Chain`] the
//! device then works from (the guest rewriting it afterwards changes nothing the device does:
//! no time-of-check-to-time-of-use); every index is checked against the queue size before it is
//! used; a chain is at most as long as the table it lives in (a loop ends as an error, not a
//! hang); every address range is checked for overflow before memory is touched, and memory is
//! touched only through [`Memory`], whose implementation checks that the range is the VM's RAM.
//! Any violation is a [`QueueError`]: the device then sets DEVICE_NEEDS_RESET (or fails the one
//! request) and the queue is not used again until the driver resets it; nothing here panics on
//! guest input, which the `virtqueue` fuzz target checks.

use alloc::vec::Vec;
#[cfg(not(loom))]
use core::sync::atomic::fence;
use core::sync::atomic::Ordering;
#[cfg(loom)]
use loom::sync::atomic::fence;

/// The largest queue Belfry's devices offer (QueueNumMax).
pub const MAX_QUEUE_SIZE: u16 = 256;
/// The most descriptors an indirect table may hold.
pub const MAX_INDIRECT: u32 = 256;

/// `flags` of a descriptor: the chain continues at `next`.
pub const DESC_F_NEXT: u16 = 1;
/// The buffer is device-writable (otherwise device-readable).
pub const DESC_F_WRITE: u16 = 2;
/// The buffer is a table of descriptors (VIRTIO_F_INDIRECT_DESC).
pub const DESC_F_INDIRECT: u16 = 4;
/// `flags` of the available ring: the driver asks for no used-buffer notification (without
/// VIRTIO_F_EVENT_IDX).
pub const AVAIL_F_NO_INTERRUPT: u16 = 1;

/// Bytes of one descriptor.
const DESC_SIZE: u64 = 16;

/// The guest's memory, as a device sees it: guest-physical addresses, every access checked.
pub trait Memory {
    /// Fills `out` from guest-physical `address`; `Err` when any byte is not the VM's RAM.
    fn read(&self, address: u64, out: &mut [u8]) -> Result<(), OutsideRam>;
    /// Writes `data` at guest-physical `address`; `Err` when any byte is not the VM's RAM.
    fn write(&mut self, address: u64, data: &[u8]) -> Result<(), OutsideRam>;
}

/// An access that [`Memory`] refused: not the VM's RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutsideRam;

/// Why a queue cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// QueueNum not a power of two in 1..=[`MAX_QUEUE_SIZE`].
    BadSize(u16),
    /// A ring or table not aligned as section 2.7 requires (table 16, available 2, used 4).
    Misaligned(u64),
    /// A ring, table or buffer whose end is past 2^64.
    Overflow(u64),
    /// The available index moved by more than the queue size since the device last looked.
    IndexJump { seen: u16, now: u16 },
    /// A head or `next` index outside its table.
    BadIndex(u16),
    /// A chain longer than its table: a loop.
    Loop,
    /// An indirect descriptor inside an indirect table, or one that also has NEXT.
    NestedIndirect,
    /// An indirect table whose length is zero, not a multiple of 16, or over [`MAX_INDIRECT`].
    BadIndirect(u32),
    /// A device-readable buffer after a device-writable one.
    ReadableAfterWritable,
    /// A buffer, ring or table outside the VM's RAM, at this address.
    OutsideRam(u64),
}

/// One buffer of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub address: u64,
    pub len: u32,
}

/// A descriptor chain as the device took it: its head (what the used ring returns) and its
/// buffers, device-readable ones first, copied out of guest memory once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    pub head: u16,
    pub readable: Vec<Segment>,
    pub writable: Vec<Segment>,
}

impl Chain {
    /// Bytes in the device-readable buffers.
    pub fn readable_len(&self) -> u64 {
        self.readable.iter().map(|s| u64::from(s.len)).sum()
    }

    /// Bytes in the device-writable buffers.
    pub fn writable_len(&self) -> u64 {
        self.writable.iter().map(|s| u64::from(s.len)).sum()
    }

    /// Copies up to `out.len()` bytes of the readable buffers, from byte `skip` on; returns how
    /// many.
    pub fn read(&self, memory: &impl Memory, skip: u64, out: &mut [u8]) -> Result<usize, QueueError> {
        transfer(&self.readable, skip, out.len(), |address, range| {
            memory.read(address, &mut out[range]).map_err(|_| QueueError::OutsideRam(address))
        })
    }

    /// Copies `data` into the writable buffers from byte `skip` on, as much as fits; returns how
    /// many bytes.
    pub fn write(&self, memory: &mut impl Memory, skip: u64, data: &[u8]) -> Result<usize, QueueError> {
        transfer(&self.writable, skip, data.len(), |address, range| {
            memory.write(address, &data[range]).map_err(|_| QueueError::OutsideRam(address))
        })
    }
}

impl Chain {
    /// The guest-physical pieces of the readable (or writable) buffers from byte `skip` on, for
    /// up to `len` bytes: `each(address, range)` with `range` the piece's place in those bytes
    /// (from `skip`). Returns the bytes covered. For moving bytes without a copy in between.
    pub fn pieces(
        &self,
        writable: bool,
        skip: u64,
        len: usize,
        each: impl FnMut(u64, core::ops::Range<usize>) -> Result<(), QueueError>,
    ) -> Result<usize, QueueError> {
        transfer(if writable { &self.writable } else { &self.readable }, skip, len, each)
    }
}

/// Walks `segments` from byte `skip` on for up to `len` bytes, calling `copy(address, range)`
/// for each piece (`range`: where it goes in the caller's buffer); returns the bytes covered.
fn transfer(
    segments: &[Segment],
    mut skip: u64,
    len: usize,
    mut copy: impl FnMut(u64, core::ops::Range<usize>) -> Result<(), QueueError>,
) -> Result<usize, QueueError> {
    let mut done = 0;
    for segment in segments {
        if done == len {
            break;
        }
        let size = u64::from(segment.len);
        if skip >= size {
            skip -= size;
            continue;
        }
        let n = ((size - skip) as usize).min(len - done);
        copy(segment.address + skip, done..done + n)?;
        done += n;
        skip = 0;
    }
    Ok(done)
}

/// Guest RAM as one byte buffer at guest-physical `base`: the [`Memory`] of the tests and the
/// fuzz target (every range checked, none wrapping).
pub struct SliceMemory<B> {
    pub base: u64,
    pub bytes: B,
}

impl<B: AsRef<[u8]>> SliceMemory<B> {
    fn range(&self, address: u64, len: usize) -> Result<core::ops::Range<usize>, OutsideRam> {
        let start = usize::try_from(address.checked_sub(self.base).ok_or(OutsideRam)?).map_err(|_| OutsideRam)?;
        let end = start.checked_add(len).ok_or(OutsideRam)?;
        if end > self.bytes.as_ref().len() {
            return Err(OutsideRam);
        }
        Ok(start..end)
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Memory for SliceMemory<B> {
    fn read(&self, address: u64, out: &mut [u8]) -> Result<(), OutsideRam> {
        out.copy_from_slice(&self.bytes.as_ref()[self.range(address, out.len())?]);
        Ok(())
    }

    fn write(&mut self, address: u64, data: &[u8]) -> Result<(), OutsideRam> {
        let range = self.range(address, data.len())?;
        self.bytes.as_mut()[range].copy_from_slice(data);
        Ok(())
    }
}

/// One split virtqueue, from the device's side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitQueue {
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
    event_idx: bool,
    /// The next available-ring entry the device will take.
    next_avail: u16,
    /// The next used-ring entry the device will fill.
    next_used: u16,
}

fn read_u16(memory: &impl Memory, address: u64) -> Result<u16, QueueError> {
    let mut bytes = [0; 2];
    memory.read(address, &mut bytes).map_err(|_| QueueError::OutsideRam(address))?;
    Ok(u16::from_le_bytes(bytes))
}

fn write_bytes(memory: &mut impl Memory, address: u64, data: &[u8]) -> Result<(), QueueError> {
    memory.write(address, data).map_err(|_| QueueError::OutsideRam(address))
}

/// A descriptor as read, once, from guest memory.
#[derive(Clone, Copy, Debug)]
struct Descriptor {
    address: u64,
    len: u32,
    flags: u16,
    next: u16,
}

fn read_descriptor(memory: &impl Memory, table: u64, index: u64) -> Result<Descriptor, QueueError> {
    let at = table.checked_add(index * DESC_SIZE).ok_or(QueueError::Overflow(table))?;
    let mut bytes = [0u8; 16];
    memory.read(at, &mut bytes).map_err(|_| QueueError::OutsideRam(at))?;
    let word = |range: core::ops::Range<usize>| bytes[range].iter().rev().fold(0u64, |v, &b| (v << 8) | u64::from(b));
    Ok(Descriptor {
        address: word(0..8),
        len: word(8..12) as u32,
        flags: word(12..14) as u16,
        next: word(14..16) as u16,
    })
}

/// VIRTIO's `vring_need_event`: whether moving the used index from `old` to `new` passes the
/// driver's `event` (all modulo 2^16).
pub fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

impl SplitQueue {
    /// A queue of `size` entries whose descriptor table, available ring and used ring the driver
    /// put at `desc`, `avail` and `used` (QueueDesc, QueueDriver, QueueDevice), with
    /// VIRTIO_F_EVENT_IDX negotiated or not. Checks the size, the alignments and that no area
    /// wraps past 2^64; whether the areas are RAM is checked on each access.
    pub fn new(size: u16, desc: u64, avail: u64, used: u64, event_idx: bool) -> Result<Self, QueueError> {
        if size == 0 || size > MAX_QUEUE_SIZE || !size.is_power_of_two() {
            return Err(QueueError::BadSize(size));
        }
        let n = u64::from(size);
        for (address, align, bytes) in [(desc, 16, DESC_SIZE * n), (avail, 2, 6 + 2 * n), (used, 4, 6 + 8 * n)] {
            if address % align != 0 {
                return Err(QueueError::Misaligned(address));
            }
            address.checked_add(bytes).ok_or(QueueError::Overflow(address))?;
        }
        Ok(Self { size, desc, avail, used, event_idx, next_avail: 0, next_used: 0 })
    }

    pub fn size(&self) -> u16 {
        self.size
    }

    /// Takes the next available chain, or `None` when the driver has made none available.
    pub fn pop(&mut self, memory: &impl Memory) -> Result<Option<Chain>, QueueError> {
        let now = read_u16(memory, self.avail + 2)?;
        let pending = now.wrapping_sub(self.next_avail);
        if pending == 0 {
            return Ok(None);
        }
        if pending > self.size {
            return Err(QueueError::IndexJump { seen: self.next_avail, now });
        }
        // The driver wrote the ring entry and the descriptors before the index, with a write
        // barrier between: read them only after the index (the `loom` model shows a stale
        // descriptor without this).
        fence(Ordering::Acquire);
        let slot = u64::from(self.next_avail % self.size);
        let head = read_u16(memory, self.avail + 4 + 2 * slot)?;
        let chain = self.walk(memory, head)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        Ok(Some(chain))
    }

    fn walk(&self, memory: &impl Memory, head: u16) -> Result<Chain, QueueError> {
        if head >= self.size {
            return Err(QueueError::BadIndex(head));
        }
        let mut chain = Chain { head, ..Chain::default() };
        // (table, entries, whether it is an indirect one)
        let mut table = (self.desc, u32::from(self.size), false);
        let mut index = u32::from(head);
        let mut visited = 0u32;
        loop {
            visited += 1;
            if visited > table.1 {
                return Err(QueueError::Loop);
            }
            let d = read_descriptor(memory, table.0, u64::from(index))?;
            if d.flags & DESC_F_INDIRECT != 0 {
                if table.2 || d.flags & DESC_F_NEXT != 0 {
                    return Err(QueueError::NestedIndirect);
                }
                if d.len == 0 || d.len % DESC_SIZE as u32 != 0 || d.len / DESC_SIZE as u32 > MAX_INDIRECT {
                    return Err(QueueError::BadIndirect(d.len));
                }
                if d.address % 16 != 0 {
                    return Err(QueueError::Misaligned(d.address));
                }
                d.address.checked_add(u64::from(d.len)).ok_or(QueueError::Overflow(d.address))?;
                table = (d.address, d.len / DESC_SIZE as u32, true);
                index = 0;
                visited = 0;
                continue;
            }
            d.address.checked_add(u64::from(d.len)).ok_or(QueueError::Overflow(d.address))?;
            let segment = Segment { address: d.address, len: d.len };
            if d.flags & DESC_F_WRITE != 0 {
                chain.writable.push(segment);
            } else if chain.writable.is_empty() {
                chain.readable.push(segment);
            } else {
                return Err(QueueError::ReadableAfterWritable);
            }
            if d.flags & DESC_F_NEXT == 0 {
                return Ok(chain);
            }
            if u32::from(d.next) >= table.1 {
                return Err(QueueError::BadIndex(d.next));
            }
            index = u32::from(d.next);
        }
    }

    /// Returns chain `head` to the driver with `len` bytes written into it: the used element,
    /// then (after a release fence, so a driver that sees the index sees the element) the used
    /// index. With VIRTIO_F_EVENT_IDX, also tells the driver (avail_event) to notify again once
    /// it makes the next chain available. Returns whether the driver wants a used-buffer
    /// notification for it.
    pub fn push_used(&mut self, memory: &mut impl Memory, head: u16, len: u32) -> Result<bool, QueueError> {
        let slot = u64::from(self.next_used % self.size);
        let mut element = [0u8; 8];
        element[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        element[4..].copy_from_slice(&len.to_le_bytes());
        write_bytes(memory, self.used + 4 + 8 * slot, &element)?;
        let old = self.next_used;
        self.next_used = self.next_used.wrapping_add(1);
        fence(Ordering::Release);
        write_bytes(memory, self.used + 2, &self.next_used.to_le_bytes())?;
        if self.event_idx {
            let avail_event = self.used + 4 + 8 * u64::from(self.size);
            write_bytes(memory, avail_event, &self.next_avail.to_le_bytes())?;
        }
        // Dekker's pattern with the driver, which writes the available index, then a full barrier,
        // then reads avail_event (and reads used_event after its own used-index check): each
        // side's store is seen by the other's load, so no notification is lost either way.
        fence(Ordering::SeqCst);
        if self.event_idx {
            let used_event = read_u16(memory, self.avail + 4 + 2 * u64::from(self.size))?;
            Ok(need_event(used_event, self.next_used, old))
        } else {
            Ok(read_u16(memory, self.avail)? & AVAIL_F_NO_INTERRUPT == 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// Guest RAM at [0x4000_0000, +64 KiB), with the helpers the tests write it with.
    type Ram = SliceMemory<Vec<u8>>;
    const BASE: u64 = 0x4000_0000;

    trait Driver {
        fn new() -> Self;
        fn put(&mut self, address: u64, data: &[u8]);
        fn desc(&mut self, table: u64, index: u64, address: u64, len: u32, flags: u16, next: u16);
        fn offer(&mut self, queue: &Layout, slot: u16, head: u16, idx: u16);
        fn u16_at(&self, address: u64) -> u16;
    }

    impl Driver for Ram {
        fn new() -> Self {
            SliceMemory { base: BASE, bytes: vec![0; 0x10000] }
        }
        fn put(&mut self, address: u64, data: &[u8]) {
            self.write(address, data).unwrap();
        }
        fn desc(&mut self, table: u64, index: u64, address: u64, len: u32, flags: u16, next: u16) {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&address.to_le_bytes());
            bytes[8..12].copy_from_slice(&len.to_le_bytes());
            bytes[12..14].copy_from_slice(&flags.to_le_bytes());
            bytes[14..].copy_from_slice(&next.to_le_bytes());
            self.put(table + 16 * index, &bytes);
        }
        fn offer(&mut self, queue: &Layout, slot: u16, head: u16, idx: u16) {
            self.put(queue.avail + 4 + 2 * u64::from(slot), &head.to_le_bytes());
            self.put(queue.avail + 2, &idx.to_le_bytes());
        }
        fn u16_at(&self, address: u64) -> u16 {
            let mut b = [0; 2];
            self.read(address, &mut b).unwrap();
            u16::from_le_bytes(b)
        }
    }

    struct Layout {
        desc: u64,
        avail: u64,
        used: u64,
    }
    const Q: Layout = Layout { desc: BASE, avail: BASE + 0x1000, used: BASE + 0x2000 };

    fn queue(size: u16, event_idx: bool) -> SplitQueue {
        SplitQueue::new(size, Q.desc, Q.avail, Q.used, event_idx).unwrap()
    }

    #[test]
    fn a_request_and_its_reply() {
        let mut ram = Ram::new();
        ram.desc(Q.desc, 3, BASE + 0x8000, 16, DESC_F_NEXT, 5);
        ram.desc(Q.desc, 5, BASE + 0x9000, 512, DESC_F_WRITE | DESC_F_NEXT, 6);
        ram.desc(Q.desc, 6, BASE + 0xa000, 1, DESC_F_WRITE, 0);
        ram.put(BASE + 0x8000, b"sixteen bytes!!!");
        let mut q = queue(8, false);
        assert_eq!(q.pop(&ram), Ok(None));
        ram.offer(&Q, 0, 3, 1);
        let chain = q.pop(&ram).unwrap().unwrap();
        assert_eq!(chain.head, 3);
        assert_eq!(chain.readable, [Segment { address: BASE + 0x8000, len: 16 }]);
        assert_eq!(chain.writable.len(), 2);
        assert_eq!((chain.readable_len(), chain.writable_len()), (16, 513));
        let mut request = [0u8; 16];
        assert_eq!(chain.read(&ram, 0, &mut request), Ok(16));
        assert_eq!(&request, b"sixteen bytes!!!");
        let mut tail = [0u8; 4];
        assert_eq!(chain.read(&ram, 12, &mut tail), Ok(4));
        assert_eq!(&tail, b"s!!!");
        assert_eq!(chain.write(&mut ram, 510, b"abc"), Ok(3), "across the two writable buffers");
        assert_eq!(ram.u16_at(BASE + 0x9000 + 510), u16::from_le_bytes(*b"ab"));
        assert_eq!(q.pop(&ram), Ok(None));
        // The used ring: element (3, 513), index 1; the driver asked for interrupts.
        assert_eq!(q.push_used(&mut ram, chain.head, 513), Ok(true));
        assert_eq!(ram.u16_at(Q.used + 2), 1);
        assert_eq!(ram.u16_at(Q.used + 4), 3);
        assert_eq!(ram.u16_at(Q.used + 8), 513);
        ram.put(Q.avail, &AVAIL_F_NO_INTERRUPT.to_le_bytes());
        assert_eq!(q.push_used(&mut ram, 0, 0), Ok(false));
    }

    /// The descriptor is copied when the chain is taken: rewriting it afterwards (another VCPU,
    /// while the device works) changes nothing the device does.
    #[test]
    fn a_descriptor_changed_after_it_was_taken_changes_nothing() {
        let mut ram = Ram::new();
        ram.desc(Q.desc, 0, BASE + 0x8000, 64, 0, 0);
        ram.offer(&Q, 0, 0, 1);
        let mut q = queue(4, false);
        let chain = q.pop(&ram).unwrap().unwrap();
        ram.desc(Q.desc, 0, 0xffff_ffff_ffff_0000, 0xffff_ffff, DESC_F_WRITE, 0);
        assert_eq!(chain.readable, [Segment { address: BASE + 0x8000, len: 64 }]);
    }

    #[test]
    fn hostile_queues_are_errors() {
        let mut q = queue(4, false);
        let mut ram = Ram::new();
        // The index jumps past the queue size.
        ram.offer(&Q, 0, 0, 5);
        assert_eq!(q.pop(&ram), Err(QueueError::IndexJump { seen: 0, now: 5 }));
        // A head outside the table.
        ram.offer(&Q, 0, 4, 1);
        assert_eq!(q.pop(&ram), Err(QueueError::BadIndex(4)));
        // A loop: 0 -> 1 -> 0.
        ram.desc(Q.desc, 0, BASE + 0x8000, 8, DESC_F_NEXT, 1);
        ram.desc(Q.desc, 1, BASE + 0x8000, 8, DESC_F_NEXT, 0);
        ram.offer(&Q, 0, 0, 1);
        assert_eq!(q.pop(&ram), Err(QueueError::Loop));
        // A next outside the table.
        ram.desc(Q.desc, 1, BASE + 0x8000, 8, DESC_F_NEXT, 9);
        assert_eq!(q.pop(&ram), Err(QueueError::BadIndex(9)));
        // A length that wraps the address space.
        ram.desc(Q.desc, 0, u64::MAX - 4, 8, 0, 0);
        assert_eq!(q.pop(&ram), Err(QueueError::Overflow(u64::MAX - 4)));
        // Readable after writable.
        ram.desc(Q.desc, 0, BASE + 0x8000, 8, DESC_F_WRITE | DESC_F_NEXT, 1);
        ram.desc(Q.desc, 1, BASE + 0x8000, 8, 0, 0);
        assert_eq!(q.pop(&ram), Err(QueueError::ReadableAfterWritable));
        // A buffer outside RAM is taken (the device fails the request when it touches it).
        ram.desc(Q.desc, 0, 0x0900_0000, 8, 0, 0);
        let chain = q.pop(&ram).unwrap().unwrap();
        assert_eq!(chain.read(&ram, 0, &mut [0; 8]), Err(QueueError::OutsideRam(0x0900_0000)));
        // Rings outside RAM.
        let mut outside = SplitQueue::new(4, 0x1000, 0x2000, 0x3000, false).unwrap();
        assert_eq!(outside.pop(&ram), Err(QueueError::OutsideRam(0x2002)));
        // Setup checks.
        assert_eq!(SplitQueue::new(3, Q.desc, Q.avail, Q.used, false), Err(QueueError::BadSize(3)));
        assert_eq!(SplitQueue::new(512, Q.desc, Q.avail, Q.used, false), Err(QueueError::BadSize(512)));
        assert_eq!(SplitQueue::new(0, Q.desc, Q.avail, Q.used, false), Err(QueueError::BadSize(0)));
        assert_eq!(SplitQueue::new(4, Q.desc + 8, Q.avail, Q.used, false), Err(QueueError::Misaligned(Q.desc + 8)));
        assert_eq!(SplitQueue::new(4, Q.desc, Q.avail, Q.used + 2, false), Err(QueueError::Misaligned(Q.used + 2)));
        assert_eq!(SplitQueue::new(4, u64::MAX - 15, Q.avail, Q.used, false), Err(QueueError::Overflow(u64::MAX - 15)));
    }

    #[test]
    fn indirect_tables() {
        let mut ram = Ram::new();
        let table = BASE + 0x4000;
        ram.desc(table, 0, BASE + 0x8000, 8, DESC_F_NEXT, 1);
        ram.desc(table, 1, BASE + 0x9000, 8, DESC_F_WRITE, 0);
        ram.desc(Q.desc, 2, table, 32, DESC_F_INDIRECT, 0);
        ram.offer(&Q, 0, 2, 1);
        let mut q = queue(4, false);
        let chain = q.pop(&ram).unwrap().unwrap();
        assert_eq!((chain.head, chain.readable.len(), chain.writable.len()), (2, 1, 1));
        // Nested, with NEXT, badly sized, looping inside the table.
        for (len, flags, error) in [
            (32, DESC_F_INDIRECT | DESC_F_NEXT, QueueError::NestedIndirect),
            (24, DESC_F_INDIRECT, QueueError::BadIndirect(24)),
            (0, DESC_F_INDIRECT, QueueError::BadIndirect(0)),
            (16 * (MAX_INDIRECT + 1), DESC_F_INDIRECT, QueueError::BadIndirect(16 * (MAX_INDIRECT + 1))),
        ] {
            ram.desc(Q.desc, 2, table, len, flags, 0);
            let mut q = queue(4, false);
            assert_eq!(q.pop(&ram), Err(error));
        }
        ram.desc(Q.desc, 2, table, 32, DESC_F_INDIRECT, 0);
        ram.desc(table, 1, table, 32, DESC_F_INDIRECT, 0);
        assert_eq!(queue(4, false).pop(&ram), Err(QueueError::NestedIndirect));
        ram.desc(table, 1, BASE + 0x9000, 8, DESC_F_NEXT, 0);
        assert_eq!(queue(4, false).pop(&ram), Err(QueueError::Loop));
    }

    #[test]
    fn event_index_suppresses_notifications() {
        assert!(need_event(0, 1, 0));
        assert!(!need_event(1, 1, 0), "the driver wants to hear after index 1 is passed");
        assert!(need_event(1, 2, 0));
        assert!(need_event(0xffff, 0, 0xffff), "across the wrap");
        let mut ram = Ram::new();
        ram.desc(Q.desc, 0, BASE + 0x8000, 8, 0, 0);
        ram.offer(&Q, 0, 0, 1);
        let mut q = queue(4, true);
        let chain = q.pop(&ram).unwrap().unwrap();
        // used_event = 5: no notification for the first used buffer.
        ram.put(Q.avail + 4 + 2 * 4, &5u16.to_le_bytes());
        assert_eq!(q.push_used(&mut ram, chain.head, 0), Ok(false));
        // avail_event tells the driver where the device will look next.
        assert_eq!(ram.u16_at(Q.used + 4 + 8 * 4), 1);
        ram.put(Q.avail + 4 + 2 * 4, &1u16.to_le_bytes());
        assert_eq!(q.push_used(&mut ram, chain.head, 0), Ok(true));
    }
}

/// A `loom` model of the race between a driver (a guest VCPU) and the device thread on one
/// queue's indices: `cargo xtask test` runs it (`RUSTFLAGS="--cfg loom" cargo test -p vmm --lib
/// --release loom`).
///
/// Guest memory is a row of 64-bit cells, each written by one side only (the driver writes the
/// table and the available ring with `used_event`, the device the used ring with
/// `avail_event`: VIRTIO's layout gives every word one writer), read and written relaxed, as
/// plain guest memory is; every ordering comes from the fences, as on the hardware. The driver
/// is Linux's, step for step, with EVENT_IDX (`virtqueue_add_split`,
/// `virtqueue_kick_prepare_split`, `virtqueue_get_buf_ctx_split`, `virtqueue_enable_cb`); the
/// device is Belfry's: [`SplitQueue`] itself, woken by a kick that stays pending while it
/// serves (`devices::Virtio::kick`/`kicked`). The model checks that every chain reaches the
/// device as the driver wrote it, that the device never stops with a chain the driver made
/// available without a kick (a lost kick), and that the driver never stops with a used entry
/// it was not interrupted for (a lost interrupt). Taking out any of [`SplitQueue`]'s three
/// fences (the acquire in `pop`, the release and the full one in `push_used`) makes it fail.
#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
    use loom::sync::Arc;

    const SIZE: u16 = 2;
    const TABLE: u64 = 0x00;
    const AVAIL: u64 = 0x20;
    const USED: u64 = 0x40;
    const BYTES: usize = 0x60;

    /// Guest RAM as 64-bit cells, each with one writer (so a write is a read-modify-write of its
    /// own last value, which the writer always reads back).
    #[derive(Clone)]
    struct Cells(Arc<Vec<AtomicU64>>);

    impl Cells {
        fn new() -> Self {
            Self(Arc::new((0..BYTES / 8).map(|_| AtomicU64::new(0)).collect()))
        }

        fn u16_at(&self, address: u64) -> u16 {
            read_u16(self, address).unwrap()
        }
    }

    impl Memory for Cells {
        fn read(&self, address: u64, out: &mut [u8]) -> Result<(), OutsideRam> {
            let start = usize::try_from(address).map_err(|_| OutsideRam)?;
            let end = start.checked_add(out.len()).filter(|&end| end <= BYTES).ok_or(OutsideRam)?;
            for cell in start / 8..end.div_ceil(8) {
                let bytes = self.0[cell].load(Ordering::Relaxed).to_le_bytes();
                for (offset, byte) in bytes.iter().enumerate() {
                    if let Some(slot) = (cell * 8 + offset).checked_sub(start).and_then(|i| out.get_mut(i)) {
                        *slot = *byte;
                    }
                }
            }
            Ok(())
        }

        fn write(&mut self, address: u64, data: &[u8]) -> Result<(), OutsideRam> {
            let start = usize::try_from(address).map_err(|_| OutsideRam)?;
            let end = start.checked_add(data.len()).filter(|&end| end <= BYTES).ok_or(OutsideRam)?;
            for cell in start / 8..end.div_ceil(8) {
                let mut bytes = self.0[cell].load(Ordering::Relaxed).to_le_bytes();
                for (offset, byte) in bytes.iter_mut().enumerate() {
                    if let Some(value) = (cell * 8 + offset).checked_sub(start).and_then(|i| data.get(i)) {
                        *byte = *value;
                    }
                }
                self.0[cell].store(u64::from_le_bytes(bytes), Ordering::Relaxed);
            }
            Ok(())
        }
    }

    /// One direction's wake-ups: the kick (a packet posted unless one is pending) or the
    /// interrupt (counted), and whether the other side is done sending them.
    #[derive(Default)]
    struct Signal {
        pending: AtomicBool,
        count: AtomicUsize,
        done: AtomicBool,
    }

    impl Signal {
        /// Waits for a signal after the `seen`th; `false` once the sender is done and none came.
        fn wait(&self, seen: &mut usize) -> bool {
            loop {
                if self.count.load(Ordering::Acquire) > *seen {
                    *seen += 1;
                    return true;
                }
                if self.done.load(Ordering::Acquire) && self.count.load(Ordering::Acquire) == *seen {
                    return false;
                }
                loom::thread::yield_now();
            }
        }
    }

    /// The driver makes `SIZE` one-descriptor chains available one at a time (chain i at
    /// 0x1000 * (i + 1), 0x10 + i bytes), kicking when avail_event asks for it; then takes the
    /// used entries as interrupts come, re-enabling them (used_event) and re-checking before it
    /// waits. Returns how many used entries it took.
    fn driver(mut memory: Cells, kick: &Signal, interrupt: &Signal) -> u16 {
        for i in 0..SIZE {
            let mut descriptor = [0u8; 16];
            descriptor[..8].copy_from_slice(&(0x1000 * u64::from(i + 1)).to_le_bytes());
            descriptor[8..12].copy_from_slice(&(0x10 + u32::from(i)).to_le_bytes());
            memory.write(TABLE + 16 * u64::from(i), &descriptor).unwrap();
            memory.write(AVAIL + 4 + 2 * u64::from(i), &i.to_le_bytes()).unwrap();
            fence(Ordering::Release); // virtio_wmb
            memory.write(AVAIL + 2, &(i + 1).to_le_bytes()).unwrap();
            fence(Ordering::SeqCst); // virtio_mb, then avail_event
            if need_event(memory.u16_at(USED + 4 + 8 * u64::from(SIZE)), i + 1, i)
                && !kick.pending.swap(true, Ordering::AcqRel)
            {
                kick.count.fetch_add(1, Ordering::Release);
            }
        }
        kick.done.store(true, Ordering::Release);
        let (mut used, mut interrupts) = (0u16, 0);
        while interrupt.wait(&mut interrupts) {
            loop {
                if memory.u16_at(USED + 2) != used {
                    fence(Ordering::Acquire); // virtio_rmb
                    let head = memory.u16_at(USED + 4 + 8 * u64::from(used % SIZE));
                    assert_eq!(head, used % SIZE, "the used entry the device wrote");
                    used += 1;
                    continue;
                }
                memory.write(AVAIL + 4 + 2 * u64::from(SIZE), &used.to_le_bytes()).unwrap();
                fence(Ordering::SeqCst); // virtio_mb, then the used index again
                if memory.u16_at(USED + 2) == used {
                    break;
                }
            }
        }
        used
    }

    /// The device: waits for a kick, re-arms it, takes every available chain and completes
    /// it, interrupting when used_event asks for it. Returns how many chains it took.
    fn device(mut memory: Cells, kick: &Signal, interrupt: &Signal) -> u16 {
        let mut queue = SplitQueue::new(SIZE, TABLE, AVAIL, USED, true).unwrap();
        let (mut taken, mut kicks) = (0u16, 0);
        while kick.wait(&mut kicks) {
            kick.pending.store(false, Ordering::Release);
            while let Some(chain) = queue.pop(&memory).unwrap() {
                assert_eq!(chain.head, taken % SIZE, "the ring entry the driver wrote");
                let expected = Segment { address: 0x1000 * u64::from(taken + 1), len: 0x10 + u32::from(taken) };
                assert_eq!(chain.readable, [expected], "the descriptor the driver wrote");
                if queue.push_used(&mut memory, chain.head, 0).unwrap() {
                    interrupt.count.fetch_add(1, Ordering::Release);
                }
                taken += 1;
            }
        }
        interrupt.done.store(true, Ordering::Release);
        taken
    }

    #[test]
    fn loom_no_lost_kick_no_lost_interrupt_no_stale_descriptor() {
        // Unbounded, the model passes in about twelve minutes; bounded to four preemptions it
        // takes three seconds and still finds each missing fence.
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(4);
        model.check(|| {
            let memory = Cells::new();
            let (kick, interrupt) = (Arc::new(Signal::default()), Arc::new(Signal::default()));
            let (ram, k, i) = (memory.clone(), kick.clone(), interrupt.clone());
            let guest = loom::thread::spawn(move || driver(ram, &k, &i));
            let taken = device(memory, &kick, &interrupt);
            assert_eq!(taken, SIZE, "a chain made available without a kick the device heeds");
            assert_eq!(guest.join().unwrap(), SIZE, "a used entry without an interrupt the driver heeds");
        });
    }
}
