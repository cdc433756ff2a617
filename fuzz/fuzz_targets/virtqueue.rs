//! The split-virtqueue parser against a hostile driver: any queue placement and any bytes in
//! guest memory (descriptor tables, rings, indirect tables, indices, chains that loop or point
//! anywhere) give chains or errors, never a panic or a hang; every chain holds at most one
//! table's worth of buffers (plus one indirect table's), none wrapping the address space.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm::virtqueue::{SliceMemory, SplitQueue, MAX_INDIRECT, MAX_QUEUE_SIZE};

const BASE: u64 = 0x4000_0000;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let size = 1u16 << (data[0] % 10);
    let area = |b: u8| BASE + u64::from(b) * 16;
    let (desc, avail, used) = (area(data[1]), area(data[2]), area(data[3]));
    let event_idx = data[4] & 1 != 0;
    let mut memory = vec![0u8; 4096];
    for (slot, byte) in memory.iter_mut().zip(data[8..].iter().cycle()) {
        *slot = *byte;
    }
    // 4 KiB of guest RAM at 0x4000_0000, from the fuzzer's bytes.
    let mut ram = SliceMemory { base: BASE, bytes: memory };
    let Ok(mut queue) = SplitQueue::new(size, desc, avail, used, event_idx) else {
        assert!(size > MAX_QUEUE_SIZE);
        return;
    };
    for round in 0..64u32 {
        match queue.pop(&ram) {
            Ok(Some(chain)) => {
                let buffers = chain.readable.len() + chain.writable.len();
                assert!(buffers >= 1 && buffers <= usize::from(size) + MAX_INDIRECT as usize);
                for segment in chain.readable.iter().chain(&chain.writable) {
                    assert!(segment.address.checked_add(u64::from(segment.len)).is_some());
                }
                let mut scratch = [0u8; 64];
                let _ = chain.read(&ram, u64::from(data[5]), &mut scratch);
                let _ = chain.write(&mut ram, u64::from(data[6]), &scratch[..usize::from(data[7] % 64)]);
                let _ = queue.push_used(&mut ram, chain.head, round);
            }
            Ok(None) | Err(_) => break,
        }
    }
});
