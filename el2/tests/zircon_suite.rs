//! The host-runnable part of Zircon's hypervisor test suite (DESIGN.md Appendix A) against the
//! syscall surface, with the scripted guest standing in for guest code. The same cases run on
//! the boards as QEMU system tests once guests execute there.

use el2::object::exit::{Access, Exit};
use el2::object::packet::{Packet, PortPacket};
use el2::object::port::MAX_USER_PACKETS;
use el2::object::process::Process;
use el2::object::resource::RSRC_KIND_HYPERVISOR;
use el2::object::trap::{GUEST_TRAP_BELL, GUEST_TRAP_MEM};
use el2::object::vcpu::VCPU_IO;
use el2::object::Status;
use std::sync::Arc;

const PAGE: u64 = 4096;
const TRAP_ADDR: u64 = 0xffe000;
const EXIT_TEST_ADDR: u64 = 0xfff000;
const KEY: u64 = 0x1234;

fn guest(process: &Process) -> u32 {
    let resource = process.grant_resource(RSRC_KIND_HYPERVISOR).unwrap();
    let (guest, _vmar) = process.guest_create(resource, 0).unwrap();
    process.guest_set_trap(guest, GUEST_TRAP_MEM, EXIT_TEST_ADDR, PAGE, 0, 0).unwrap();
    guest
}

fn store(address: u64) -> Exit {
    Exit::Access { address, access: Access::new(true, 8, 0, false, true) }
}

fn run(process: &Process, vcpu: u32, exits: &[Exit]) -> Result<Packet, Status> {
    process.vcpu_object(vcpu).unwrap().with_context(|c| c.arch.script.extend(exits.iter().copied()));
    process.vcpu_enter(vcpu).map(|p| p.decode())
}

fn is_exit(packet: Result<Packet, Status>) -> bool {
    matches!(packet, Ok(Packet::Mem { key: 0, mem }) if mem.addr == EXIT_TEST_ADDR)
}

/// 1. VcpuEnter.
#[test]
fn vcpu_enter() {
    std::thread::spawn(|| {
        let process = Process::new(true);
        let vcpu = process.vcpu_create(guest(&process), 0, 0).unwrap();
        assert!(is_exit(run(&process, vcpu, &[store(EXIT_TEST_ADDR)])));
    })
    .join()
    .unwrap();
}

/// 3. VcpuInvalidThreadReuse.
#[test]
fn vcpu_invalid_thread_reuse() {
    std::thread::spawn(|| {
        let process = Process::new(true);
        let guest = guest(&process);
        let _vcpu = process.vcpu_create(guest, 0, 0).unwrap();
        assert_eq!(process.vcpu_create(guest, 0, 0), Err(Status::BAD_STATE));
    })
    .join()
    .unwrap();
}

/// 4. GuestSetTrapWithMem.
#[test]
fn guest_set_trap_with_mem() {
    std::thread::spawn(|| {
        let process = Process::new(true);
        let guest = guest(&process);
        process.guest_set_trap(guest, GUEST_TRAP_MEM, TRAP_ADDR, PAGE, 0, KEY).unwrap();
        let vcpu = process.vcpu_create(guest, 0, 0).unwrap();
        let packet = run(&process, vcpu, &[store(TRAP_ADDR), store(EXIT_TEST_ADDR)]);
        assert!(matches!(packet, Ok(Packet::Mem { key: KEY, mem }) if mem.addr == TRAP_ADDR));
        assert!(is_exit(process.vcpu_enter(vcpu).map(|p| p.decode())));
    })
    .join()
    .unwrap();
}

/// 5. GuestSetTrapWithBell.
#[test]
fn guest_set_trap_with_bell() {
    std::thread::spawn(|| {
        let process = Process::new(true);
        let guest = guest(&process);
        let port = process.port_create(0).unwrap();
        process.guest_set_trap(guest, GUEST_TRAP_BELL, TRAP_ADDR, PAGE, port, KEY).unwrap();
        let vcpu = process.vcpu_create(guest, 0, 0).unwrap();
        assert!(is_exit(run(&process, vcpu, &[store(TRAP_ADDR), store(EXIT_TEST_ADDR)])));
        assert_eq!(process.port_wait(port, 0).unwrap().decode(), Packet::Bell { key: KEY, addr: TRAP_ADDR });
    })
    .join()
    .unwrap();
}

/// 6. GuestSetTrapWithBellDrop: destroy the guest while a BELL packet is queued.
#[test]
fn guest_set_trap_with_bell_drop() {
    std::thread::spawn(|| {
        let process = Process::new(true);
        let guest = guest(&process);
        let port = process.port_create(0).unwrap();
        process.guest_set_trap(guest, GUEST_TRAP_BELL, TRAP_ADDR, PAGE, port, KEY).unwrap();
        let vcpu = process.vcpu_create(guest, 0, 0).unwrap();
        assert!(is_exit(run(&process, vcpu, &[store(TRAP_ADDR), store(EXIT_TEST_ADDR)])));
        process.handle_close(vcpu).unwrap();
        process.handle_close(guest).unwrap();
        // The trap went with the guest, and its queued packet with it; the port is intact.
        assert_eq!(process.port_wait(port, 0), Err(Status::TIMED_OUT));
        process.port_queue(port, &PortPacket::user(1, 0, [0; 4])).unwrap();
        assert_eq!(process.port_wait(port, 0).unwrap().key, 1);
    })
    .join()
    .unwrap();
}

/// 7. GuestSetTrapWithBellAndUser: a user packet with the same key survives the teardown.
#[test]
fn guest_set_trap_with_bell_and_user() {
    std::thread::spawn(|| {
        let process = Process::new(true);
        let guest = guest(&process);
        let port = process.port_create(0).unwrap();
        process.port_queue(port, &PortPacket::user(KEY, 0, [7; 4])).unwrap();
        process.guest_set_trap(guest, GUEST_TRAP_BELL, TRAP_ADDR, PAGE, port, KEY).unwrap();
        let vcpu = process.vcpu_create(guest, 0, 0).unwrap();
        assert!(is_exit(run(&process, vcpu, &[store(TRAP_ADDR), store(EXIT_TEST_ADDR)])));
        process.handle_close(vcpu).unwrap();
        process.handle_close(guest).unwrap();
        assert_eq!(process.port_wait(port, 0).unwrap().decode(), Packet::User { key: KEY, status: 0, data: [7; 4] });
        assert_eq!(process.port_wait(port, 0), Err(Status::TIMED_OUT));
    })
    .join()
    .unwrap();
}

/// 8. GuestSetTrapWithBellAndMaxUser: with the port full of user packets, the bell arrives.
#[test]
fn guest_set_trap_with_bell_and_max_user() {
    std::thread::spawn(|| {
        let process = Process::new(true);
        let guest = guest(&process);
        let port = process.port_create(0).unwrap();
        for i in 0..MAX_USER_PACKETS as u64 {
            process.port_queue(port, &PortPacket::user(i, 0, [0; 4])).unwrap();
        }
        assert_eq!(process.port_queue(port, &PortPacket::user(0, 0, [0; 4])), Err(Status::SHOULD_WAIT));
        process.guest_set_trap(guest, GUEST_TRAP_BELL, TRAP_ADDR, PAGE, port, KEY).unwrap();
        let vcpu = process.vcpu_create(guest, 0, 0).unwrap();
        assert!(is_exit(run(&process, vcpu, &[store(TRAP_ADDR), store(EXIT_TEST_ADDR)])));
        let bells = (0..=MAX_USER_PACKETS)
            .map(|_| process.port_wait(port, 0).unwrap().decode())
            .filter(|p| *p == Packet::Bell { key: KEY, addr: TRAP_ADDR })
            .count();
        assert_eq!(bells, 1);
    })
    .join()
    .unwrap();
}

/// 9. GuestSetTrapClosePort: enter returns BAD_STATE, the next enter exits cleanly.
#[test]
fn guest_set_trap_close_port() {
    std::thread::spawn(|| {
        let process = Process::new(true);
        let guest = guest(&process);
        let port = process.port_create(0).unwrap();
        process.guest_set_trap(guest, GUEST_TRAP_BELL, TRAP_ADDR, PAGE, port, KEY).unwrap();
        let vcpu = process.vcpu_create(guest, 0, 0).unwrap();
        process.handle_close(port).unwrap();
        assert_eq!(run(&process, vcpu, &[store(TRAP_ADDR), store(EXIT_TEST_ADDR)]), Err(Status::BAD_STATE));
        assert!(is_exit(process.vcpu_enter(vcpu).map(|p| p.decode())));
        let skipped = process.vcpu_object(vcpu).unwrap().with_context(|c| c.arch.skipped);
        assert_eq!(skipped, 1, "the doorbell store was skipped, not re-executed");
    })
    .join()
    .unwrap();
}

/// 10. VcpuUseAfterThreadExits / VcpuDeleteFromOtherThread.
#[test]
fn vcpu_use_after_thread_exits() {
    let process = Arc::new(Process::new(true));
    let guest = guest(&process);
    let p = process.clone();
    let vcpu = std::thread::spawn(move || p.vcpu_create(guest, 0, 0).unwrap()).join().unwrap();
    assert_eq!(process.vcpu_interrupt(vcpu, 32), Ok(()));
    assert_eq!(process.vcpu_kick(vcpu), Ok(()));
    assert_eq!(process.vcpu_enter(vcpu), Err(Status::BAD_STATE));
    assert_eq!(process.handle_close(vcpu), Ok(()));
    assert_eq!(process.handle_close(guest), Ok(()));
}

/// 11. VcpuInterruptOutOfBounds: the guest still runs afterwards.
#[test]
fn vcpu_interrupt_out_of_bounds() {
    std::thread::spawn(|| {
        let process = Process::new(true);
        let vcpu = process.vcpu_create(guest(&process), 0, 0).unwrap();
        assert_eq!(process.vcpu_interrupt(vcpu, u32::MAX), Err(Status::OUT_OF_RANGE));
        assert!(is_exit(run(&process, vcpu, &[store(EXIT_TEST_ADDR)])));
    })
    .join()
    .unwrap();
}

/// 20. VcpuWriteStateIo.
#[test]
fn vcpu_write_state_io() {
    std::thread::spawn(|| {
        let process = Process::new(true);
        let vcpu = process.vcpu_create(guest(&process), 0, 0).unwrap();
        assert_eq!(process.vcpu_write_state(vcpu, VCPU_IO, &[0; 8]), Err(Status::INVALID_ARGS));
    })
    .join()
    .unwrap();
}

/// The safe face: the same flow through `el2::api`.
#[test]
fn safe_api_round_trip() {
    use el2::api::{Guest, Port, Vcpu, Vmo};
    std::thread::spawn(|| {
        let process = Process::new(true);
        let resource = process.grant_resource(RSRC_KIND_HYPERVISOR).unwrap();
        let guest = Guest::create(&process, resource).unwrap();
        let memory = Vmo::create(&process, 16 << 20).unwrap();
        memory.write(0, &[0x1f, 0x20, 0x03, 0xd5]).unwrap();
        let rwx =
            el2::object::vmar::VM_PERM_READ | el2::object::vmar::VM_PERM_WRITE | el2::object::vmar::VM_PERM_EXECUTE;
        assert_eq!(guest.map(0, &memory, rwx, 16 << 20), Ok(0));
        let port = Port::create(&process).unwrap();
        guest.set_bell_trap(TRAP_ADDR, PAGE, &port, KEY).unwrap();
        guest.set_mem_trap(EXIT_TEST_ADDR, PAGE, 0).unwrap();
        let vcpu = Vcpu::create(&guest, 0).unwrap();
        let mut state = vcpu.read_state().unwrap();
        state.x[3] = 33;
        vcpu.write_state(&state).unwrap();
        assert_eq!(vcpu.read_state().unwrap().x[3], 33);
        process
            .vcpu_object(vcpu.0.raw())
            .unwrap()
            .with_context(|c| c.arch.script.extend([store(TRAP_ADDR), store(EXIT_TEST_ADDR)]));
        assert!(matches!(vcpu.enter(), Ok(Packet::Mem { key: 0, .. })));
        assert_eq!(port.wait(0), Ok(Packet::Bell { key: KEY, addr: TRAP_ADDR }));
        let handles_before = process.handles().len();
        drop(vcpu);
        drop(guest);
        assert_eq!(process.handles().len(), handles_before - 3);
    })
    .join()
    .unwrap();
}

fn hypercall(process: &Process, vcpu: u32, function: u64) -> Result<Packet, Status> {
    let object = process.vcpu_object(vcpu).unwrap();
    let mut state = [0u8; 264];
    process.vcpu_read_state(vcpu, 0, &mut state).unwrap();
    state[..8].copy_from_slice(&function.to_le_bytes());
    process.vcpu_write_state(vcpu, 0, &state).unwrap();
    object.with_context(|c| c.arch.script.push_back(Exit::Hypercall { smc: true }));
    process.vcpu_enter(vcpu).map(|p| p.decode())
}

/// 19. VcpuPsciSystemOff / VcpuPsciSystemReset.
#[test]
fn vcpu_psci_system_off_and_reset() {
    std::thread::spawn(|| {
        let process = Process::new(true);
        let vcpu = process.vcpu_create(guest(&process), 0, 0).unwrap();
        assert_eq!(hypercall(&process, vcpu, 0x8400_0008), Err(Status::UNAVAILABLE));
        assert_eq!(hypercall(&process, vcpu, 0x8400_0009), Err(Status::CANCELED));
    })
    .join()
    .unwrap();
}

/// PSCI CPU_ON becomes a STARTUP packet; unknown calls answer NOT_SUPPORTED and the guest runs on.
#[test]
fn vcpu_psci_cpu_on_and_unknown_calls() {
    std::thread::spawn(|| {
        let process = Process::new(true);
        let resource = process.grant_resource(RSRC_KIND_HYPERVISOR).unwrap();
        let (guest, vmar) = process.guest_create(resource, 0).unwrap();
        let memory = process.vmo_create(1 << 20, 0).unwrap();
        process.vmar_map(vmar, 0b111 | (1 << 4), 0, memory, 0, 1 << 20).unwrap();
        let vcpu = process.vcpu_create(guest, 0, 0).unwrap();
        let object = process.vcpu_object(vcpu).unwrap();
        let mut state = [0u8; 264];
        // An entry point with no guest memory behind it: INVALID_ADDRESS, and the guest goes on.
        for (i, value) in [0xc400_0003u64, 1, 0x4000_0000, 0x55].iter().enumerate() {
            state[i * 8..i * 8 + 8].copy_from_slice(&value.to_le_bytes());
        }
        process.vcpu_write_state(vcpu, 0, &state).unwrap();
        object.with_context(|c| c.arch.script.extend([Exit::Hypercall { smc: false }, store(EXIT_TEST_ADDR)]));
        process.guest_set_trap(guest, GUEST_TRAP_MEM, EXIT_TEST_ADDR, PAGE, 0, 0).unwrap();
        assert!(is_exit(process.vcpu_enter(vcpu).map(|p| p.decode())));
        process.vcpu_read_state(vcpu, 0, &mut state).unwrap();
        assert_eq!(i64::from_le_bytes(state[..8].try_into().unwrap()), -9, "PSCI INVALID_ADDRESS");
        for (i, value) in [0xc400_0003u64, 1, 0x8_0000, 0x55].iter().enumerate() {
            state[i * 8..i * 8 + 8].copy_from_slice(&value.to_le_bytes());
        }
        process.vcpu_write_state(vcpu, 0, &state).unwrap();
        object.with_context(|c| c.arch.script.push_back(Exit::Hypercall { smc: false }));
        assert_eq!(
            process.vcpu_enter(vcpu).map(|p| p.decode()),
            Ok(Packet::VcpuStartup { key: 0, target: 1, entry: 0x8_0000, context: 0x55 })
        );
        process.vcpu_read_state(vcpu, 0, &mut state).unwrap();
        assert_eq!(u64::from_le_bytes(state[..8].try_into().unwrap()), 0, "PSCI_SUCCESS in x0");
        // An unknown function: x0 = NOT_SUPPORTED, and the guest reaches its exit.
        state[..8].copy_from_slice(&0x8400_00ffu64.to_le_bytes());
        process.vcpu_write_state(vcpu, 0, &state).unwrap();
        object.with_context(|c| c.arch.script.extend([Exit::Hypercall { smc: true }, store(EXIT_TEST_ADDR)]));
        assert!(is_exit(process.vcpu_enter(vcpu).map(|p| p.decode())));
        process.vcpu_read_state(vcpu, 0, &mut state).unwrap();
        assert_eq!(i64::from_le_bytes(state[..8].try_into().unwrap()), -1);
    })
    .join()
    .unwrap();
}

/// Guest RAM is paged in on first touch; an access outside every mapping is a synchronous
/// external abort delivered to the guest's own EL1, which goes on to its exit.
#[test]
fn demand_paging_and_a_stray_access_aborts() {
    std::thread::spawn(|| {
        let process = Process::new(true);
        let resource = process.grant_resource(RSRC_KIND_HYPERVISOR).unwrap();
        let (guest, vmar) = process.guest_create(resource, 0).unwrap();
        process.guest_set_trap(guest, GUEST_TRAP_MEM, EXIT_TEST_ADDR, PAGE, 0, 0).unwrap();
        let memory = process.vmo_create(1 << 20, 0).unwrap();
        process.vmar_map(vmar, 0b111 | (1 << 4), 0, memory, 0, 1 << 20).unwrap();
        let vcpu = process.vcpu_create(guest, 0, 0).unwrap();
        let exits = [Exit::InstructionFetch { address: 0, far: 0 }, store(0x8_0000), store(EXIT_TEST_ADDR)];
        assert!(is_exit(run(&process, vcpu, &exits)));
        let space = process.vmar_object(vmar).unwrap();
        assert!(space.stage2_lookup(0).is_some());
        assert!(space.stage2_lookup(0x8_0000).is_some());
        assert!(space.stage2_lookup(0x4_0000).is_none(), "untouched pages stay unmapped");
        let stray =
            Exit::Access { address: 0x4000_0000, access: Access::new(true, 8, 0, false, false).with_far(0x1234_5000) };
        assert!(is_exit(run(&process, vcpu, &[stray, store(EXIT_TEST_ADDR)])), "the guest carries on");
        let injected = process.vcpu_object(vcpu).unwrap().with_context(|c| c.arch.injected.clone());
        use el2::inject::GuestException;
        assert_eq!(injected, [GuestException::DataAbort { far: 0x1234_5000, write: true }]);
        assert!(space.stage2_lookup(0x4000_0000).is_none(), "nothing is mapped there");
    })
    .join()
    .unwrap();
}

/// An exit Belfry cannot serve kills the guest with NOT_SUPPORTED.
#[test]
fn unhandled_exit_kills_the_guest() {
    std::thread::spawn(|| {
        let process = Process::new(true);
        let vcpu = process.vcpu_create(guest(&process), 0, 0).unwrap();
        assert_eq!(
            run(&process, vcpu, &[Exit::Unhandled { class: 0x3c, syndrome: 0, pc: 0x40 }]),
            Err(Status::NOT_SUPPORTED)
        );
        assert_eq!(process.vcpu_enter(vcpu), Err(Status::BAD_STATE));
    })
    .join()
    .unwrap();
}

/// A guest's ICC_SGI1R_EL1 write becomes a VCPU INTERRUPT packet: the target list names VCPUs
/// by Aff0; IRM means every other VCPU; targets with other affinity levels are nobody.
#[test]
fn guest_sgis_become_vcpu_interrupt_packets() {
    std::thread::spawn(|| {
        let process = Process::new(true);
        let vcpu = process.vcpu_create(guest(&process), 0, 0).unwrap();
        let sgi = |value: u64| run(&process, vcpu, &[Exit::SendSgi { value }, store(EXIT_TEST_ADDR)]);
        assert_eq!(sgi((5 << 24) | 0b110), Ok(Packet::VcpuInterrupt { key: 0, mask: 0b110, vector: 5 }));
        assert!(is_exit(process.vcpu_enter(vcpu).map(|p| p.decode())));
        // IRM with no other VCPU: nothing to send, the guest runs on.
        assert!(is_exit(sgi((1 << 40) | (2 << 24))));
        // Aff1 = 1: no VCPU has it.
        assert!(is_exit(sgi((1 << 16) | 1)));
    })
    .join()
    .unwrap();
}

/// F3: a fetch from a trapped page, or a table walk into one, never maps it: the guest gets an
/// external abort (prefetch or data) and the next access to the page still reaches the trap.
#[test]
fn a_trapped_page_is_never_mapped_by_a_fetch_or_a_walk() {
    std::thread::spawn(|| {
        use el2::inject::GuestException;
        let process = Process::new(true);
        let resource = process.grant_resource(RSRC_KIND_HYPERVISOR).unwrap();
        let (guest, vmar) = process.guest_create(resource, 0).unwrap();
        let memory = process.vmo_create(16 << 20, 0).unwrap();
        process.vmar_map(vmar, 0b111 | (1 << 4), 0, memory, 0, 16 << 20).unwrap();
        process.guest_set_trap(guest, GUEST_TRAP_MEM, EXIT_TEST_ADDR, PAGE, 0, 0).unwrap();
        process.guest_set_trap(guest, GUEST_TRAP_MEM, 0xffe000, PAGE, 0, 0x1234).unwrap();
        let vcpu = process.vcpu_create(guest, 0, 0).unwrap();
        let object = process.vcpu_object(vcpu).unwrap();
        object.with_context(|c| {
            c.arch.script.extend([
                Exit::InstructionFetch { address: 0xffe000, far: 0xffe000 },
                Exit::TableWalk { address: 0xffe008, far: 0x8000, write: true },
                store(0xffe000),
            ])
        });
        let packet = process.vcpu_enter(vcpu).unwrap().decode();
        assert!(matches!(packet, Packet::Mem { key: 0x1234, mem } if mem.addr == 0xffe000), "{packet:?}");
        let injected = object.with_context(|c| c.arch.injected.clone());
        assert_eq!(
            injected,
            [GuestException::PrefetchAbort { far: 0xffe000 }, GuestException::DataAbort { far: 0x8000, write: true }]
        );
    })
    .join()
    .unwrap();
}
