//! The guest-visible PL011 model: any sequence of register accesses and console input never
//! panics, and the interrupt output always agrees with MIS.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm::pl011::{Pl011, UARTMIS};

fuzz_target!(|data: &[u8]| {
    let mut uart = Pl011::new();
    for op in data.chunks_exact(7) {
        let offset = u64::from(u16::from_le_bytes([op[1], op[2]]));
        let value = u32::from_le_bytes([op[3], op[4], op[5], op[6]]);
        match op[0] % 4 {
            0 => {
                let _ = uart.read(offset);
            }
            1 => {
                let _ = uart.write(offset, value);
            }
            2 => {
                let _ = uart.receive(&op[3..]);
            }
            _ => {
                let _ = uart.flush();
            }
        }
        assert_eq!(uart.interrupt(), uart.read(UARTMIS) != 0);
        let _ = uart.pending();
    }
});
