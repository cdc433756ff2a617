//! The syndrome, system-register and instruction decoders, and the exception entry Belfry
//! builds for a guest: every value a guest's exit can produce decodes without a panic, and the
//! decoders agree with each other.
#![no_main]

use el2::inject::{entry, GuestException};
use el2::traps::{system_action, SystemAccess};
use libfuzzer_sys::fuzz_target;
use stage2::syndrome::{Esr, FaultStatus};

fuzz_target!(|data: &[u8]| {
    let mut word = [0u8; 8];
    let n = data.len().min(8);
    word[..n].copy_from_slice(&data[..n]);
    let value = u64::from_le_bytes(word);
    let esr = Esr(value);
    let class = esr.class();
    assert_eq!(class.bits(), esr.class_bits());
    assert!(!class.name().is_empty());
    let _ = esr.data_abort();
    let _ = esr.instruction_abort_status().map(FaultStatus::name);
    let access = SystemAccess::from_iss(esr.iss());
    let _ = system_action(access);
    if let Some(decoded) = stage2::insn::decode(value as u32) {
        assert!(matches!(decoded.size, 1 | 2 | 4 | 8));
        assert!(decoded.count == 1 || decoded.count == 2);
    }
    let far = data.get(8..16).map_or(0, |b| b.iter().fold(0u64, |v, &x| (v << 8) | u64::from(x)));
    let exception = match data.first().map_or(0, |b| b % 3) {
        0 => GuestException::Undefined,
        1 => GuestException::PrefetchAbort { far },
        _ => GuestException::DataAbort { far, write: value & 1 == 1 },
    };
    let e = entry(exception, far, value, value.rotate_left(17), value & 2 == 2);
    // The guest is always entered at EL1h with every exception masked, at one of its vectors.
    assert_eq!(e.pstate & 0x3cf, 0x3c5);
    assert_eq!(e.pc & 0x1ff, 0);
});
