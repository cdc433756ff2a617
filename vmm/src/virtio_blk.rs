//! virtio-blk (VIRTIO 1.2, section 5.2): a disk for the guest, backed by a disk image from the
//! bundle, read-write.
//!
//! Writes are kept in RAM for the VM's life (and lost with it): an [`Overlay`] over the
//! bundle's read-only image holds every sector the guest wrote, in a VMO charged to the VM when
//! it is built (the disk's size, so the VM is refused up front rather than failing a write
//! later), and a bitmap says which sectors it holds. Reads take each sector from the overlay
//! if it was written, else from the image. Nothing is copied at boot.
//!
//! Requests: IN (read), OUT (write), FLUSH (nothing to do: the overlay is the disk) and
//! GET_ID; anything else is UNSUPP. A request whose header or status byte is missing, whose
//! data is not whole sectors, or that reaches past the disk's end fails alone (IOERR, or no
//! status when there is no byte to put it in); the queue goes on. A queue that breaks
//! virtqueue rules puts the device in DEVICE_NEEDS_RESET ([`Transport::fail`]).

use crate::virtio_mmio::Transport;
use crate::virtqueue::{Chain, Memory, QueueError};
use alloc::vec;
use alloc::vec::Vec;

/// The virtio device ID of a block device.
pub const DEVICE_ID: u32 = 2;
/// Sector size, as virtio-blk counts.
pub const SECTOR: u64 = 512;
/// Feature bits: the disk gives a maximum segment count, and supports FLUSH.
pub const F_SEG_MAX: u64 = 1 << 2;
pub const F_FLUSH: u64 = 1 << 9;
/// Segments per request Belfry accepts (what the driver may put in one chain, besides the
/// header and the status): the queue size minus two.
pub const SEG_MAX: u32 = crate::virtqueue::MAX_QUEUE_SIZE as u32 - 2;
/// Request types.
pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;
pub const T_GET_ID: u32 = 8;
/// Request status.
pub const S_OK: u8 = 0;
pub const S_IOERR: u8 = 1;
pub const S_UNSUPP: u8 = 2;
/// Bytes of a request header: type, reserved, sector.
const HEADER: u64 = 16;
/// Bytes of the ID GET_ID returns.
pub const ID_BYTES: usize = 20;
/// Bytes moved between the guest and the disk at a time.
const CHUNK: usize = 4096;

/// Where a disk's bytes are: read and written at byte offsets, in whole sectors.
pub trait Disk: Send {
    /// Bytes on the disk.
    fn len(&self) -> u64;
    /// Whether the disk holds no byte.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fills `out` from `offset` (in range: the caller checked).
    fn read(&mut self, offset: u64, out: &mut [u8]) -> Result<(), DiskError>;
    /// Writes `data` at `offset` (in range: the caller checked).
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError>;
}

/// A disk access failed (the overlay's memory refused it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskError;

/// Memory the overlay keeps written sectors in (a VMO on the target; a vector in tests).
pub trait Store: Send {
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), DiskError>;
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError>;
}

/// See the module documentation: the bundle's image, and the sectors written since boot.
pub struct Overlay<S> {
    image: &'static [u8],
    store: S,
    len: u64,
    /// Bit n: sector n is in `store`.
    written: Vec<u64>,
}

impl<S: Store> Overlay<S> {
    /// A disk of `image`'s bytes rounded up to whole sectors (the tail reads as zeros), whose
    /// writes go to `store` (at least that many bytes).
    pub fn new(image: &'static [u8], store: S) -> Self {
        let len = (image.len() as u64).next_multiple_of(SECTOR);
        let sectors = len / SECTOR;
        Self { image, store, len, written: vec![0; sectors.div_ceil(64) as usize] }
    }

    fn is_written(&self, sector: u64) -> bool {
        self.written.get((sector / 64) as usize).is_some_and(|word| word & (1 << (sector % 64)) != 0)
    }
}

impl<S: Store> Disk for Overlay<S> {
    fn len(&self) -> u64 {
        self.len
    }

    fn read(&mut self, offset: u64, out: &mut [u8]) -> Result<(), DiskError> {
        for (index, sector) in out.chunks_mut(SECTOR as usize).enumerate() {
            let at = offset + index as u64 * SECTOR;
            if self.is_written(at / SECTOR) {
                self.store.read(at, sector)?;
            } else {
                let start = (at as usize).min(self.image.len());
                let end = (start + sector.len()).min(self.image.len());
                let n = end - start;
                sector[..n].copy_from_slice(&self.image[start..end]);
                sector[n..].fill(0);
            }
        }
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        self.store.write(offset, data)?;
        for sector in offset / SECTOR..(offset + data.len() as u64).div_ceil(SECTOR) {
            if let Some(word) = self.written.get_mut((sector / 64) as usize) {
                *word |= 1 << (sector % 64);
            }
        }
        Ok(())
    }
}

/// The configuration space: capacity in sectors, size_max (0: none), seg_max.
pub fn config(capacity_bytes: u64) -> Vec<u8> {
    let mut config = vec![0u8; 24];
    config[..8].copy_from_slice(&(capacity_bytes / SECTOR).to_le_bytes());
    config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
    config
}

/// What one pass over the queue did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// Requests completed (whatever their status).
    pub requests: u32,
    /// Of which failed because the driver got them wrong (the VMM logs the first).
    pub bad: u32,
    /// Bytes moved from or to the disk.
    pub bytes: u64,
}

/// The block device: its disk and its ID.
pub struct Blk<D> {
    disk: D,
    id: [u8; ID_BYTES],
}

impl<D: Disk> Blk<D> {
    /// A device serving `disk`, whose GET_ID answers `id` (at most 20 bytes; padded with 0).
    pub fn new(disk: D, id: &[u8]) -> Self {
        let mut padded = [0; ID_BYTES];
        let n = id.len().min(ID_BYTES);
        padded[..n].copy_from_slice(&id[..n]);
        Self { disk, id: padded }
    }

    /// A transport for this device: one queue of the largest size.
    pub fn transport(&self) -> Transport {
        Transport::new(DEVICE_ID, F_SEG_MAX | F_FLUSH, &[crate::virtqueue::MAX_QUEUE_SIZE], config(self.disk.len()))
    }

    /// Serves every request the driver has made available. A queue error fails the device
    /// (DEVICE_NEEDS_RESET) and is returned.
    pub fn process(&mut self, transport: &mut Transport, memory: &mut impl Memory) -> Result<Served, QueueError> {
        let mut served = Served::default();
        let mut notify = false;
        while let Some(queue) = transport.queue(0) {
            let chain = match queue.pop(memory) {
                Ok(Some(chain)) => chain,
                Ok(None) => break,
                Err(error) => {
                    transport.fail();
                    return Err(error);
                }
            };
            let (used, ok, bytes) = self.request(&chain, memory);
            served.requests += 1;
            served.bad += u32::from(!ok);
            served.bytes += bytes;
            let Some(queue) = transport.queue(0) else { break };
            match queue.push_used(memory, chain.head, used) {
                Ok(wanted) => notify |= wanted,
                Err(error) => {
                    transport.fail();
                    return Err(error);
                }
            }
        }
        if notify {
            transport.used_buffers();
        }
        Ok(served)
    }

    /// One request: (bytes written into the chain, whether the driver formed it well, bytes
    /// moved to or from the disk).
    fn request(&mut self, chain: &Chain, memory: &mut impl Memory) -> (u32, bool, u64) {
        let writable = chain.writable_len();
        if writable == 0 {
            // No byte for the status: nothing can be said to the driver.
            return (0, false, 0);
        }
        let status_at = writable - 1;
        let (status, data, ok, moved) = self.perform(chain, memory, status_at);
        let put = matches!(chain.write(memory, status_at, &[status]), Ok(1));
        let used = if put { data + 1 } else { 0 };
        (used.min(u64::from(u32::MAX)) as u32, ok && put, moved)
    }

    /// The request's work: (status, bytes of data put into the chain, well formed, bytes moved).
    fn perform(&mut self, chain: &Chain, memory: &mut impl Memory, status_at: u64) -> (u8, u64, bool, u64) {
        let mut header = [0u8; HEADER as usize];
        if chain.readable_len() < HEADER || !matches!(chain.read(memory, 0, &mut header), Ok(16)) {
            return (S_IOERR, 0, false, 0);
        }
        let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let sector = u64::from_le_bytes(core::array::from_fn(|i| header[8 + i]));
        match kind {
            T_IN => self.transfer(chain, memory, sector, status_at, true),
            T_OUT => self.transfer(chain, memory, sector, chain.readable_len() - HEADER, false),
            T_FLUSH => (S_OK, 0, true, 0),
            T_GET_ID => {
                let n = (status_at as usize).min(ID_BYTES);
                match chain.write(memory, 0, &self.id[..n]) {
                    Ok(done) if done == n => (S_OK, n as u64, true, 0),
                    _ => (S_IOERR, 0, false, 0),
                }
            }
            _ => (S_UNSUPP, 0, true, 0),
        }
    }

    /// A read (`into_guest`) or write of `len` bytes at `sector`: (status, bytes of data put
    /// into the chain, well formed, bytes moved).
    fn transfer(
        &mut self,
        chain: &Chain,
        memory: &mut impl Memory,
        sector: u64,
        len: u64,
        into_guest: bool,
    ) -> (u8, u64, bool, u64) {
        let start = sector.checked_mul(SECTOR);
        let in_range = start.and_then(|s| s.checked_add(len)).is_some_and(|end| end <= self.disk.len());
        if !len.is_multiple_of(SECTOR) || !in_range {
            return (S_IOERR, 0, false, 0);
        }
        let start = sector * SECTOR;
        let mut buffer = [0u8; CHUNK];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(CHUNK as u64) as usize;
            let piece = &mut buffer[..n];
            let ok = if into_guest {
                self.disk.read(start + done, piece).is_ok()
                    && matches!(chain.write(memory, done, piece), Ok(m) if m == n)
            } else {
                matches!(chain.read(memory, HEADER + done, piece), Ok(m) if m == n)
                    && self.disk.write(start + done, piece).is_ok()
            };
            if !ok {
                return (S_IOERR, if into_guest { done } else { 0 }, false, done);
            }
            done += n as u64;
        }
        (S_OK, if into_guest { len } else { 0 }, true, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio_mmio::{self as mmio, Event};
    use crate::virtqueue::SliceMemory;
    use alloc::boxed::Box;

    const BASE: u64 = 0x4000_0000;
    const DESC: u64 = BASE;
    const AVAIL: u64 = BASE + 0x1000;
    const USED: u64 = BASE + 0x2000;
    const DATA: u64 = BASE + 0x1_0000;

    struct VecStore(Vec<u8>);
    impl Store for VecStore {
        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), DiskError> {
            let at = offset as usize;
            out.copy_from_slice(self.0.get(at..at + out.len()).ok_or(DiskError)?);
            Ok(())
        }
        fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
            let at = offset as usize;
            self.0.get_mut(at..at + data.len()).ok_or(DiskError)?.copy_from_slice(data);
            Ok(())
        }
    }

    fn image() -> &'static [u8] {
        // 8 sectors and a half: sector n is filled with n; the last half sector with 0xee.
        let mut bytes = vec![0u8; 8 * 512 + 256];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = if i >= 8 * 512 { 0xee } else { (i / 512) as u8 };
        }
        Box::leak(bytes.into_boxed_slice())
    }

    struct Rig {
        ram: SliceMemory<Vec<u8>>,
        transport: Transport,
        blk: Blk<Overlay<VecStore>>,
        next: u16,
    }

    impl Rig {
        fn new() -> Self {
            let image = image();
            let blk = Blk::new(Overlay::new(image, VecStore(vec![0; 9 * 512])), b"belfry-disk");
            let mut transport = blk.transport();
            let w = |t: &mut Transport, offset, value| t.write(offset, 4, value);
            w(&mut transport, mmio::STATUS, 3);
            w(&mut transport, mmio::DRIVER_FEATURES_SEL, 1);
            w(&mut transport, mmio::DRIVER_FEATURES, 1);
            w(&mut transport, mmio::STATUS, 11);
            w(&mut transport, mmio::QUEUE_NUM, 16);
            w(&mut transport, mmio::QUEUE_DESC_LOW, DESC);
            w(&mut transport, mmio::QUEUE_DRIVER_LOW, AVAIL);
            w(&mut transport, mmio::QUEUE_DEVICE_LOW, USED);
            w(&mut transport, mmio::QUEUE_READY, 1);
            assert_eq!(w(&mut transport, mmio::STATUS, 15), Event::DriverOk);
            Self { ram: SliceMemory { base: BASE, bytes: vec![0; 0x4_0000] }, transport, blk, next: 0 }
        }

        fn desc(&mut self, index: u64, address: u64, len: u32, flags: u16, next: u16) {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&address.to_le_bytes());
            bytes[8..12].copy_from_slice(&len.to_le_bytes());
            bytes[12..14].copy_from_slice(&flags.to_le_bytes());
            bytes[14..].copy_from_slice(&next.to_le_bytes());
            self.ram.write(DESC + 16 * index, &bytes).unwrap();
        }

        /// A request: header at DATA, `data` buffers, status byte; returns (status, used len).
        fn request(&mut self, kind: u32, sector: u64, data: &[(u64, u32, bool)]) -> (u8, u32) {
            let mut header = [0u8; 16];
            header[..4].copy_from_slice(&kind.to_le_bytes());
            header[8..].copy_from_slice(&sector.to_le_bytes());
            self.ram.write(DATA, &header).unwrap();
            self.ram.write(DATA + 0x100, &[0xff]).unwrap();
            let count = data.len() as u16 + 2;
            self.desc(0, DATA, 16, 1, 1);
            for (i, &(address, len, writable)) in data.iter().enumerate() {
                self.desc(1 + i as u64, address, len, 1 | if writable { 2 } else { 0 }, 2 + i as u16);
            }
            self.desc(u64::from(count) - 1, DATA + 0x100, 1, 2, 0);
            let slot = self.next;
            self.ram.write(AVAIL + 4 + 2 * u64::from(slot % 16), &0u16.to_le_bytes()).unwrap();
            self.next += 1;
            self.ram.write(AVAIL + 2, &self.next.to_le_bytes()).unwrap();
            let served = self.blk.process(&mut self.transport, &mut self.ram).unwrap();
            assert_eq!(served.requests, 1);
            let mut status = [0u8];
            self.ram.read(DATA + 0x100, &mut status).unwrap();
            let mut used = [0u8; 8];
            self.ram.read(USED + 4 + 8 * u64::from(slot % 16), &mut used).unwrap();
            (status[0], u32::from_le_bytes([used[4], used[5], used[6], used[7]]))
        }

        fn bytes(&self, address: u64, len: usize) -> Vec<u8> {
            let mut out = vec![0; len];
            self.ram.read(address, &mut out).unwrap();
            out
        }
    }

    #[test]
    fn configuration_says_capacity_and_segments() {
        let rig = Rig::new();
        assert_eq!(rig.transport.read(mmio::DEVICE_ID, 4), 2);
        assert_eq!(rig.transport.read(mmio::CONFIG, 8), 9, "8.5 sectors round up to 9");
        assert_eq!(rig.transport.read(mmio::CONFIG + 12, 4), 254);
        assert_eq!(rig.transport.read(mmio::DEVICE_FEATURES, 4) & (F_FLUSH | F_SEG_MAX), F_FLUSH | F_SEG_MAX);
    }

    #[test]
    fn reads_writes_flush_and_id() {
        let mut rig = Rig::new();
        // Read sectors 2 and 3 into two buffers.
        assert_eq!(rig.request(T_IN, 2, &[(DATA + 0x1000, 512, true), (DATA + 0x2000, 512, true)]), (S_OK, 1025));
        assert_eq!(rig.bytes(DATA + 0x1000, 512), vec![2; 512]);
        assert_eq!(rig.bytes(DATA + 0x2000, 512), vec![3; 512]);
        assert!(rig.transport.interrupt(), "the driver asked for used-buffer interrupts");
        // Write sector 3 from guest memory, read 2..=4 back: the write, around the image.
        rig.ram.write(DATA + 0x3000, &[0xab; 512]).unwrap();
        assert_eq!(rig.request(T_OUT, 3, &[(DATA + 0x3000, 512, false)]), (S_OK, 1));
        assert_eq!(rig.request(T_IN, 2, &[(DATA + 0x4000, 1536, true)]), (S_OK, 1537));
        let back = rig.bytes(DATA + 0x4000, 1536);
        assert_eq!((&back[..512], &back[512..1024], &back[1024..]), (&[2u8; 512][..], &[0xab; 512][..], &[4; 512][..]));
        // The last sector: half image, half zero.
        assert_eq!(rig.request(T_IN, 8, &[(DATA + 0x5000, 512, true)]), (S_OK, 513));
        assert_eq!(rig.bytes(DATA + 0x5000, 512), [vec![0xee; 256], vec![0; 256]].concat());
        assert_eq!(rig.request(T_FLUSH, 0, &[]), (S_OK, 1));
        assert_eq!(rig.request(T_GET_ID, 0, &[(DATA + 0x6000, 20, true)]), (S_OK, 21));
        assert_eq!(&rig.bytes(DATA + 0x6000, 20)[..11], b"belfry-disk");
        assert_eq!(rig.request(99, 0, &[]), (S_UNSUPP, 1));
    }

    #[test]
    fn bad_requests_fail_alone() {
        let mut rig = Rig::new();
        // Past the end, straddling it, a sector number that overflows, not whole sectors.
        assert_eq!(rig.request(T_IN, 9, &[(DATA + 0x1000, 512, true)]), (S_IOERR, 1));
        assert_eq!(rig.request(T_IN, 8, &[(DATA + 0x1000, 1024, true)]), (S_IOERR, 1));
        assert_eq!(rig.request(T_OUT, u64::MAX / 256, &[(DATA + 0x1000, 512, false)]), (S_IOERR, 1));
        assert_eq!(rig.request(T_IN, 0, &[(DATA + 0x1000, 100, true)]), (S_IOERR, 1));
        // A data buffer outside RAM: the request fails, the device goes on.
        assert_eq!(rig.request(T_IN, 0, &[(0x1000, 512, true)]), (S_IOERR, 1));
        assert_eq!(rig.request(T_OUT, 0, &[(0x9000_0000, 512, false)]), (S_IOERR, 1));
        assert_eq!(rig.request(T_IN, 1, &[(DATA + 0x1000, 512, true)]), (S_OK, 513));
        assert!(rig.transport.live());
        assert_eq!(rig.bytes(DATA + 0x1000, 512), vec![1; 512]);
    }

    #[test]
    fn a_broken_queue_needs_a_reset() {
        let mut rig = Rig::new();
        // A head index outside the table.
        rig.ram.write(AVAIL + 4, &200u16.to_le_bytes()).unwrap();
        rig.ram.write(AVAIL + 2, &1u16.to_le_bytes()).unwrap();
        assert!(rig.blk.process(&mut rig.transport, &mut rig.ram).is_err());
        assert_eq!(rig.transport.status() & mmio::DEVICE_NEEDS_RESET, mmio::DEVICE_NEEDS_RESET);
        assert_eq!(rig.blk.process(&mut rig.transport, &mut rig.ram), Ok(Served::default()), "not used again");
    }
}
