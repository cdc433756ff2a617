//! The virtio devices against a hostile driver: arbitrary register writes to the virtio-mmio
//! transport (feature negotiation, status, queue setup in any order and with any values) and
//! arbitrary guest memory behind the queues, then the block, console and network devices
//! serving them. Nothing panics or hangs; a broken queue leaves the device in
//! DEVICE_NEEDS_RESET, where it serves nothing until a reset; every frame delivered fits a
//! receive chain.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm::virtio_blk::{Blk, DiskError, Overlay, Store};
use vmm::virtio_console::Console;
use vmm::virtio_mmio::{Transport, DEVICE_NEEDS_RESET, STATUS};
use vmm::virtio_net::{self, Taken};
use vmm::virtqueue::{Memory, SliceMemory};

const BASE: u64 = 0x4000_0000;
/// The disk's image: 8 sectors.
static IMAGE: [u8; 4096] = [0x5a; 4096];

struct VecStore(Vec<u8>);

impl Store for VecStore {
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), DiskError> {
        let at = usize::try_from(offset).map_err(|_| DiskError)?;
        out.copy_from_slice(self.0.get(at..at + out.len()).ok_or(DiskError)?);
        Ok(())
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        let at = usize::try_from(offset).map_err(|_| DiskError)?;
        self.0.get_mut(at..at + data.len()).ok_or(DiskError)?.copy_from_slice(data);
        Ok(())
    }
}

/// Register writes from the fuzzer: (offset, value) pairs of 5 bytes each, then the memory.
fn drive(transport: &mut Transport, data: &[u8]) -> usize {
    let count = usize::from(data[0] % 40);
    let writes = &data[1..];
    for chunk in writes.chunks_exact(5).take(count) {
        let offset = u64::from(chunk[0] & 0xfc);
        let value = u32::from_le_bytes([chunk[1], chunk[2], chunk[3], chunk[4]]);
        // Queue addresses land in the fuzzer's RAM most of the time.
        let value =
            if (0x80..0xa8).contains(&offset) && offset & 4 == 0 { BASE as u32 | (value & 0xfff0) } else { value };
        let _ = transport.write(offset, 4, u64::from(value));
        let _ = transport.read(offset, 4);
    }
    1 + 5 * count.min(writes.len() / 5)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 32 {
        return;
    }
    let device = data[0] % 3;
    let data = &data[1..];
    let mut bytes = vec![0u8; 0x1_0000];
    let mut transport = match device {
        0 => Blk::new(Overlay::new(&[], VecStore(Vec::new())), b"f").transport(),
        1 => Console::new().transport(),
        _ => virtio_net::transport(virtio_net::mac(1)),
    };
    // Usually a driver's bring-up first (queues where the fuzzer says), so the devices serve
    // queues; then the fuzzer's own register writes, in any order.
    if data[1] & 1 == 0 {
        let features = [1u64 << 5, 1 << 9, 1 << 28, 1 << 29].iter().fold(1 << 32, |f, bit| {
            if u64::from(data[2]) & (bit >> 5 & 0xff | 1) != 0 {
                f | bit
            } else {
                f
            }
        });
        let mut w = |offset: u64, value: u64| {
            let _ = transport.write(offset, 4, value);
        };
        w(STATUS, 3);
        w(0x024, 0);
        w(0x020, features & 0xffff_ffff);
        w(0x024, 1);
        w(0x020, features >> 32);
        w(STATUS, 11);
        for queue in 0..2u64 {
            let area = |b: u8| BASE + u64::from(b) * 0x100;
            w(0x030, queue);
            w(0x038, 1 << (data[3 + queue as usize] % 9));
            w(0x080, area(data[5 + 3 * queue as usize] & 0x7f));
            w(0x090, area(data[6 + 3 * queue as usize] & 0x7f) + 2 * u64::from(data[4] & 1));
            w(0x0a0, area(data[7 + 3 * queue as usize] & 0x7f));
            w(0x044, 1);
        }
        w(STATUS, 15);
    }
    let consumed = drive(&mut transport, &data[12..]) + 12;
    for (slot, byte) in bytes.iter_mut().zip(data[consumed.min(data.len())..].iter().cycle()) {
        *slot = *byte;
    }
    let mut ram = SliceMemory { base: BASE, bytes };
    let mut blk = Blk::new(Overlay::new(&IMAGE, VecStore(vec![0; 4096])), b"fuzz");
    let mut console = Console::new();
    console.receive(b"input");
    for _ in 0..4 {
        let broken_before = transport.status() & DEVICE_NEEDS_RESET != 0;
        let result = match device {
            0 => blk.process(&mut transport, &mut ram).map(|_| ()),
            1 => console.process(&mut transport, &mut ram, &mut |_| {}).map(|_| ()),
            _ => match virtio_net::take(&mut transport, &mut ram) {
                Ok(Taken::Frame(out)) => {
                    let chain = out.chain.clone();
                    let memory: &SliceMemory<Vec<u8>> = &ram;
                    let mut frame = vec![0u8; out.len];
                    let readable = chain.read(memory, virtio_net::HEADER as u64, &mut frame).is_ok();
                    // The pieces are written after `deliver` returns (as the VMO copy does).
                    let mut pieces: Vec<(u64, Vec<u8>)> = Vec::new();
                    let mut copy = |from: u64, address: u64, n: usize| {
                        let start = from as usize;
                        let fits = readable && start + n <= frame.len();
                        if fits {
                            pieces.push((address, frame[start..start + n].to_vec()));
                        }
                        fits
                    };
                    // Into its own receive queue (a loopback cable).
                    let delivered = virtio_net::deliver(&mut transport, &mut ram, out.len, &mut copy).map(|_| ());
                    for (address, bytes) in pieces {
                        let _ = ram.write(address, &bytes);
                    }
                    delivered.and_then(|()| virtio_net::complete(&mut transport, &mut ram, out.chain.head))
                }
                Ok(_) => Ok(()),
                Err(error) => {
                    transport.fail();
                    Err(error)
                }
            },
        };
        if broken_before {
            assert!(transport.status() & DEVICE_NEEDS_RESET != 0, "only a reset clears DEVICE_NEEDS_RESET");
        }
        if result.is_err() {
            assert!(!transport.live(), "a queue error leaves the device needing a reset");
        }
        let _ = transport.read(STATUS, 4);
        let _ = ram.read(BASE, &mut [0u8; 8]);
    }
});
