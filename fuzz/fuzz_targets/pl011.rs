//! The guest-visible PL011 model: any sequence of register accesses never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm::pl011::Pl011;

fuzz_target!(|data: &[u8]| {
    let mut uart = Pl011::new();
    for op in data.chunks_exact(7) {
        let offset = u64::from(u16::from_le_bytes([op[1], op[2]]));
        let value = u32::from_le_bytes([op[3], op[4], op[5], op[6]]);
        if op[0] & 1 == 0 {
            let _ = uart.read(offset);
        } else {
            let _ = uart.write(offset, value);
        }
        let _ = uart.pending();
    }
});
