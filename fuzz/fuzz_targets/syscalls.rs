//! The syscall layer through the scripted fake guest: random call sequences with random
//! arguments (handles real or made up, sizes, addresses, kinds, options), and guests whose
//! exits are random too. Nothing may panic; every call answers with a status.
#![no_main]

use el2::object::exit::{Access, Exit};
use el2::object::packet::PortPacket;
use el2::object::process::Process;
use el2::object::resource::RSRC_KIND_HYPERVISOR;
use el2::object::Rights;
use libfuzzer_sys::fuzz_target;

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        b
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
    /// A guest-physical address: mostly page multiples in the first 16 MiB, sometimes anything.
    fn address(&mut self) -> u64 {
        match self.byte() % 4 {
            0 => self.u64(),
            _ => u64::from(self.byte()) << 16 | u64::from(self.byte() & 0xf) << 12,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let process = Process::new(true);
    let mut handles: Vec<u32> = Vec::new();
    if let Ok(resource) = process.grant_resource(RSRC_KIND_HYPERVISOR) {
        handles.push(resource);
    }
    let mut bells = 0;
    let mut steps = 0;
    while !input.0.is_empty() && steps < 256 {
        steps += 1;
        let op = input.byte();
        let pick = |input: &mut Input| {
            let b = input.byte();
            if b == 0xff || handles.is_empty() {
                input.u32()
            } else {
                handles[usize::from(b) % handles.len()]
            }
        };
        match op % 16 {
            0 => {
                let resource = pick(&mut input);
                if let Ok((guest, vmar)) = process.guest_create(resource, u32::from(input.byte() & 1)) {
                    handles.extend([guest, vmar]);
                }
            }
            1 => {
                let size = (u64::from(input.byte()) + 1) * 4096;
                if let Ok(vmo) = process.vmo_create(size, 0) {
                    handles.push(vmo);
                }
            }
            2 => {
                let (vmar, vmo) = (pick(&mut input), pick(&mut input));
                let options = input.u32() & 0x3f;
                let (addr, offset) = (input.address(), u64::from(input.byte()) << 12);
                let len = (u64::from(input.byte()) + 1) << 12;
                let _ = process.vmar_map(vmar, options, addr, vmo, offset, len);
            }
            3 => {
                let (guest, port) = (pick(&mut input), pick(&mut input));
                let kind = u32::from(input.byte() % 4);
                let (addr, size, key) = (input.address(), (u64::from(input.byte()) + 1) << 12, input.u64());
                let _ = process.guest_set_trap(guest, kind, addr, size, port, key);
            }
            4 => {
                if let Ok(port) = process.port_create(u32::from(input.byte() & 1)) {
                    handles.push(port);
                }
            }
            5 => {
                let guest = pick(&mut input);
                if let Ok(vcpu) = process.vcpu_create(guest, u32::from(input.byte() & 1), input.address()) {
                    handles.push(vcpu);
                }
            }
            6 => {
                let vcpu = pick(&mut input);
                if let Ok(object) = process.vcpu_object(vcpu) {
                    let mut script = Vec::new();
                    for _ in 0..input.byte() % 8 {
                        let exit = match input.byte() % 8 {
                            0 | 1 => {
                                let write = input.byte() & 1 == 1;
                                if write {
                                    bells += 1;
                                }
                                let size = [1, 2, 4, 8][usize::from(input.byte() % 4)];
                                let access = Access::new(write, size, input.byte() % 32, false, false)
                                    .with_value(input.u64());
                                Exit::Access { address: input.address(), access }
                            }
                            2 => Exit::Hypercall { smc: input.byte() & 1 == 1 },
                            3 => Exit::InstructionFetch { address: input.address(), far: input.u64() },
                            4 => Exit::TableWalk {
                                address: input.address(),
                                far: input.u64(),
                                write: input.byte() & 1 == 1,
                            },
                            5 => Exit::SendSgi { value: input.u64() },
                            6 => Exit::WaitForInterrupt { pending: true, deadline: None },
                            _ => Exit::Interrupted,
                        };
                        script.push(exit);
                    }
                    // A full doorbell ring pauses the VCPU until a packet is taken: keep below it.
                    if bells > 200 {
                        script.retain(|e| !matches!(e, Exit::Access { .. }));
                    }
                    script.push(Exit::Unsupported);
                    object.with_context(|c| c.arch.script.extend(script));
                    let mut state = [0u8; 264];
                    for (i, chunk) in state[..32].chunks_mut(8).enumerate() {
                        let value = if i == 0 {
                            0x8400_0000 | u64::from(input.byte() % 12) | (u64::from(input.byte() & 0x40) << 24)
                        } else {
                            input.u64()
                        };
                        chunk.copy_from_slice(&value.to_le_bytes());
                    }
                    let _ = process.vcpu_write_state(vcpu, 0, &state);
                    let _ = process.vcpu_enter(vcpu);
                }
            }
            7 => {
                let vcpu = pick(&mut input);
                let _ = process.vcpu_interrupt(vcpu, input.u32() % 2048);
            }
            8 => {
                let vcpu = pick(&mut input);
                let _ = process.vcpu_kick(vcpu);
            }
            9 => {
                let vcpu = pick(&mut input);
                let kind = [0, 1, 0x4246_0001, input.u32()][usize::from(input.byte() % 4)];
                let mut buffer = vec![0u8; [264, 16, 8, 300][usize::from(input.byte() % 4)]];
                if input.byte() & 1 == 0 {
                    let _ = process.vcpu_read_state(vcpu, kind, &mut buffer);
                } else {
                    buffer.iter_mut().for_each(|b| *b = input.byte());
                    let _ = process.vcpu_write_state(vcpu, kind, &buffer);
                }
            }
            10 => {
                let port = pick(&mut input);
                if input.byte() & 1 == 0 {
                    let _ = process.port_queue(port, &PortPacket::user(input.u64(), 0, [input.u64(); 4]));
                } else {
                    let _ = process.port_wait(port, 0);
                    bells = 0;
                }
            }
            11 => {
                let handle = pick(&mut input);
                let _ = process.handle_close(handle);
            }
            12 => {
                let handle = pick(&mut input);
                if let Ok(copy) = process.handle_duplicate(handle, Rights(input.u32())) {
                    handles.push(copy);
                }
            }
            13 => {
                let vmar = pick(&mut input);
                let (addr, len) = (input.address(), (u64::from(input.byte()) + 1) << 12);
                if input.byte() & 1 == 0 {
                    let _ = process.vmar_unmap(vmar, addr, len);
                } else {
                    let _ = process.vmar_protect(vmar, input.u32() & 0x3f, addr, len);
                }
            }
            14 => {
                let vmo = pick(&mut input);
                let offset = input.u64() % (1 << 21);
                let mut buffer = vec![0u8; usize::from(input.byte() % 64)];
                match input.byte() % 3 {
                    0 => {
                        let _ = process.vmo_read(vmo, &mut buffer, offset);
                    }
                    1 => {
                        let _ = process.vmo_write(vmo, &buffer, offset);
                    }
                    _ => {
                        // Belfry's vmo_transfer: any two handles (possibly one VMO), any range.
                        let source = pick(&mut input);
                        let (from, len) = (input.u64() % (1 << 21), u64::from(input.u32() % 20_000));
                        let _ = process.vmo_transfer(vmo, offset, source, from, len);
                    }
                }
            }
            _ => {
                let vcpu = pick(&mut input);
                let _ = process.vcpu_set_interrupt_priority(vcpu, input.u32() % 2048, input.byte());
            }
        }
    }
});
