//! The guest-visible GIC distributor model: any sequence of guest accesses (any offset, any
//! width, any value, from any VCPU) and device raises never panics, and every action it asks
//! the VMM to perform names a VCPU that exists and an interrupt ID the GIC has (a GICv2 SGI's
//! senders too).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm::distributor::{Action, Distributor, Version};

fuzz_target!(|data: &[u8]| {
    let Some((&head, mut ops)) = data.split_first() else { return };
    let version = if head & 1 == 0 { Version::V2 } else { Version::V3 };
    let vcpus = usize::from(head >> 1) % 8 + 1;
    let spis = 64;
    let mut model = Distributor::new(version, vcpus, spis);
    let mut check = |action: Action| match action {
        Action::Interrupt { vcpu, vector } | Action::Priority { vcpu, vector, .. } => {
            assert!(vcpu < vcpus, "{action:?}");
            assert!(vector < 32 + spis, "{action:?}");
        }
        // GICv2 SGIs name their senders: VCPUs that exist, at least one.
        Action::Sgi { vcpu, vector, sources } => {
            assert!(version == Version::V2, "{action:?}");
            assert!(vcpu < vcpus && vector < 16, "{action:?}");
            assert!(sources != 0 && u32::from(sources) < (1 << vcpus), "{action:?}");
        }
    };
    while ops.len() >= 12 {
        let (op, rest) = ops.split_at(12);
        ops = rest;
        let vcpu = usize::from(op[1]) % vcpus;
        let offset = u64::from(u32::from_le_bytes([op[2], op[3], op[4], 0]));
        let size = [1u8, 2, 4, 8][usize::from(op[5] & 3)];
        let size = if op[5] & 4 != 0 { op[5] } else { size };
        let value = u64::from_le_bytes([op[6], op[7], op[8], op[9], op[10], op[11], op[6], op[7]]);
        match op[0] % 6 {
            0 => {
                let _ = model.read_distributor(vcpu, offset, size);
            }
            1 => model.write_distributor(vcpu, offset, size, value, &mut check),
            2 => {
                let _ = model.read_redistributor(offset, size);
            }
            3 => model.write_redistributor(offset, size, value, &mut check),
            4 => model.raise_spi(value as u32, &mut check),
            _ => model.send_sgi(value, (value >> 32) as u32, &mut check),
        }
    }
    for vcpu in 0..vcpus {
        let _ = model.priorities(vcpu).count();
    }
});
