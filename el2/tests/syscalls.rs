//! One test per error sentence of the three Zircon seeds (guest_create, guest_set_trap, the
//! Vcpu protocol), against the syscall surface. `docs/zircon-api-tests.md` maps each sentence
//! to its test. Guest execution is the host's scripted guest (`el2::arch::fake`).

use el2::object::exit::EXIT_KINDS;
use el2::object::exit::{Access, Exit};
use el2::object::packet::{GuestMemPacket, Packet, PortPacket, PKT_TYPE_GUEST_BELL, PKT_TYPE_GUEST_MEM};
use el2::object::process::Process;
use el2::object::resource::{RSRC_KIND_HYPERVISOR, RSRC_KIND_MMIO};
use el2::object::ring::TRAP_PACKETS;
use el2::object::trap::{GUEST_TRAP_BELL, GUEST_TRAP_IO, GUEST_TRAP_MEM};
use el2::object::vcpu::{BELFRY_VCPU_EXITS, BELFRY_VCPU_REGISTER, VCPU_IO, VCPU_STATE};
use el2::object::vmar::GUEST_PHYSICAL_SIZE;
use el2::object::{Rights, Status};
use el2::sync::INFINITE;
use std::sync::Arc;

const PAGE: u64 = 4096;
const TRAP_ADDR: u64 = 0xffe000;
const EXIT_TEST_ADDR: u64 = 0xfff000;
const KEY: u64 = 0x1234;
const STATE_SIZE: usize = 264;

struct Fixture {
    process: Arc<Process>,
    resource: u32,
    guest: u32,
    vmar: u32,
}

fn fixture() -> Fixture {
    let process = Arc::new(Process::new(true));
    let resource = process.grant_resource(RSRC_KIND_HYPERVISOR).unwrap();
    let (guest, vmar) = process.guest_create(resource, 0).unwrap();
    Fixture { process, resource, guest, vmar }
}

fn write(address: u64, value: u64) -> Exit {
    Exit::Access { address, access: Access::new(true, 4, 1, false, false).with_value(value) }
}

fn read(address: u64, register: u8) -> Exit {
    Exit::Access { address, access: Access::new(false, 8, register, false, true) }
}

fn script(f: &Fixture, vcpu: u32, exits: &[Exit]) {
    f.process.vcpu_object(vcpu).unwrap().with_context(|c| c.arch.script.extend(exits.iter().copied()));
}

fn skipped(f: &Fixture, vcpu: u32) -> usize {
    f.process.vcpu_object(vcpu).unwrap().with_context(|c| c.arch.skipped)
}

fn restricted(f: &Fixture, handle: u32, without: Rights) -> u32 {
    let rights = f.process.handles().get(handle).unwrap().rights & !without & !Rights::SAME_RIGHTS;
    f.process.handle_duplicate(handle, rights).unwrap()
}

/// Runs `body` on a fresh thread (VCPUs bind to threads) and returns its result.
fn on_thread<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(body).join().unwrap()
}

// ---- zx_guest_create ----

#[test]
fn guest_create_gives_the_documented_rights() {
    let f = fixture();
    assert_eq!(
        f.process.handles().get(f.guest).unwrap().rights,
        Rights::TRANSFER | Rights::DUPLICATE | Rights::WRITE | Rights::MANAGE_PROCESS
    );
}

#[test]
fn guest_create_vmar_is_the_guest_physical_space() {
    let f = fixture();
    let vmo = f.process.vmo_create(16 << 20, 0).unwrap();
    let options = el2::object::vmar::VM_PERM_READ | el2::object::vmar::VM_PERM_WRITE | el2::object::vmar::VM_SPECIFIC;
    assert_eq!(f.process.vmar_map(f.vmar, options, 0, vmo, 0, 16 << 20), Ok(0));
    let vmar = f.process.vmar_object(f.vmar).unwrap();
    assert_eq!(vmar.translate(0xfff000).unwrap().1, 0xfff000);
}

#[test]
fn guest_create_not_supported_without_el2() {
    let process = Process::new(false);
    let resource = process.grant_resource(RSRC_KIND_HYPERVISOR).unwrap();
    assert_eq!(process.guest_create(resource, 0), Err(Status::NOT_SUPPORTED));
}

#[test]
fn guest_create_access_denied_for_another_resource_kind() {
    let f = fixture();
    let mmio = f.process.grant_resource(RSRC_KIND_MMIO).unwrap();
    assert_eq!(f.process.guest_create(mmio, 0), Err(Status::ACCESS_DENIED));
}

#[test]
fn guest_create_invalid_args_for_options() {
    let f = fixture();
    assert_eq!(f.process.guest_create(f.resource, 1), Err(Status::INVALID_ARGS));
}

#[test]
fn guest_create_wrong_type_for_a_non_resource() {
    let f = fixture();
    let port = f.process.port_create(0).unwrap();
    assert_eq!(f.process.guest_create(port, 0), Err(Status::WRONG_TYPE));
}

#[test]
fn guest_create_bad_handle() {
    let f = fixture();
    assert_eq!(f.process.guest_create(0x7fff_fff3, 0), Err(Status::BAD_HANDLE));
}

// ---- zx_guest_set_trap ----

#[test]
fn set_trap_requires_page_alignment_for_bell_and_mem() {
    let f = fixture();
    let port = f.process.port_create(0).unwrap();
    for (addr, size) in [(TRAP_ADDR + 1, PAGE), (TRAP_ADDR, PAGE - 1)] {
        assert_eq!(f.process.guest_set_trap(f.guest, GUEST_TRAP_MEM, addr, size, 0, KEY), Err(Status::INVALID_ARGS));
        assert_eq!(
            f.process.guest_set_trap(f.guest, GUEST_TRAP_BELL, addr, size, port, KEY),
            Err(Status::INVALID_ARGS)
        );
    }
}

#[test]
fn set_trap_mem_with_a_port_is_invalid_args() {
    let f = fixture();
    let port = f.process.port_create(0).unwrap();
    assert_eq!(
        f.process.guest_set_trap(f.guest, GUEST_TRAP_MEM, TRAP_ADDR, PAGE, port, KEY),
        Err(Status::INVALID_ARGS)
    );
}

#[test]
fn set_trap_bell_without_a_port_is_invalid_args() {
    let f = fixture();
    assert_eq!(f.process.guest_set_trap(f.guest, GUEST_TRAP_BELL, TRAP_ADDR, PAGE, 0, KEY), Err(Status::INVALID_ARGS));
}

#[test]
fn set_trap_invalid_kind_is_invalid_args() {
    let f = fixture();
    assert_eq!(f.process.guest_set_trap(f.guest, 3, TRAP_ADDR, PAGE, 0, KEY), Err(Status::INVALID_ARGS));
    assert_eq!(f.process.guest_set_trap(f.guest, u32::MAX, TRAP_ADDR, PAGE, 0, KEY), Err(Status::INVALID_ARGS));
}

#[test]
fn set_trap_io_is_not_supported_on_aarch64() {
    let f = fixture();
    assert_eq!(f.process.guest_set_trap(f.guest, GUEST_TRAP_IO, 0x3f8, 8, 0, KEY), Err(Status::NOT_SUPPORTED));
}

#[test]
fn set_trap_guest_needs_write_access_denied() {
    let f = fixture();
    let guest = restricted(&f, f.guest, Rights::WRITE);
    assert_eq!(f.process.guest_set_trap(guest, GUEST_TRAP_MEM, TRAP_ADDR, PAGE, 0, KEY), Err(Status::ACCESS_DENIED));
}

#[test]
fn set_trap_port_needs_write_access_denied() {
    let f = fixture();
    let port = f.process.port_create(0).unwrap();
    let port = restricted(&f, port, Rights::WRITE);
    assert_eq!(
        f.process.guest_set_trap(f.guest, GUEST_TRAP_BELL, TRAP_ADDR, PAGE, port, KEY),
        Err(Status::ACCESS_DENIED)
    );
}

#[test]
fn set_trap_overlap_is_already_exists_and_adjacent_is_fine() {
    let f = fixture();
    f.process.guest_set_trap(f.guest, GUEST_TRAP_MEM, TRAP_ADDR, 2 * PAGE, 0, KEY).unwrap();
    assert_eq!(
        f.process.guest_set_trap(f.guest, GUEST_TRAP_MEM, TRAP_ADDR + PAGE, PAGE, 0, KEY),
        Err(Status::ALREADY_EXISTS)
    );
    assert_eq!(f.process.guest_set_trap(f.guest, GUEST_TRAP_MEM, TRAP_ADDR + 2 * PAGE, PAGE, 0, KEY), Ok(()));
    assert_eq!(f.process.guest_set_trap(f.guest, GUEST_TRAP_MEM, TRAP_ADDR - PAGE, PAGE, 0, KEY), Ok(()));
}

#[test]
fn set_trap_bell_and_mem_share_one_address_space() {
    let f = fixture();
    let port = f.process.port_create(0).unwrap();
    f.process.guest_set_trap(f.guest, GUEST_TRAP_MEM, TRAP_ADDR, PAGE, 0, KEY).unwrap();
    assert_eq!(
        f.process.guest_set_trap(f.guest, GUEST_TRAP_BELL, TRAP_ADDR, PAGE, port, KEY),
        Err(Status::ALREADY_EXISTS)
    );
}

#[test]
fn set_trap_bad_handle_for_guest_or_port() {
    let f = fixture();
    assert_eq!(f.process.guest_set_trap(0x7fff_fff3, GUEST_TRAP_MEM, TRAP_ADDR, PAGE, 0, KEY), Err(Status::BAD_HANDLE));
    assert_eq!(
        f.process.guest_set_trap(f.guest, GUEST_TRAP_BELL, TRAP_ADDR, PAGE, 0x7fff_fff3, KEY),
        Err(Status::BAD_HANDLE)
    );
}

#[test]
fn set_trap_out_of_range() {
    let f = fixture();
    let t = |addr, size| f.process.guest_set_trap(f.guest, GUEST_TRAP_MEM, addr, size, 0, KEY);
    assert_eq!(t(TRAP_ADDR, 0), Err(Status::OUT_OF_RANGE), "size 0");
    assert_eq!(t(!(PAGE - 1), 2 * PAGE), Err(Status::OUT_OF_RANGE), "overflow");
    assert_eq!(t(GUEST_PHYSICAL_SIZE, PAGE), Err(Status::OUT_OF_RANGE), "outside the guest space");
    assert_eq!(t(GUEST_PHYSICAL_SIZE - PAGE, PAGE), Ok(()), "the last page is inside");
}

#[test]
fn set_trap_wrong_type_for_guest_or_port() {
    let f = fixture();
    let port = f.process.port_create(0).unwrap();
    assert_eq!(f.process.guest_set_trap(port, GUEST_TRAP_MEM, TRAP_ADDR, PAGE, 0, KEY), Err(Status::WRONG_TYPE));
    assert_eq!(
        f.process.guest_set_trap(f.guest, GUEST_TRAP_BELL, TRAP_ADDR, PAGE, f.guest, KEY),
        Err(Status::WRONG_TYPE)
    );
}

#[test]
fn mem_trap_packet_comes_from_enter_with_the_key_and_type() {
    let f = fixture();
    f.process.guest_set_trap(f.guest, GUEST_TRAP_MEM, TRAP_ADDR, PAGE, 0, KEY).unwrap();
    f.process.guest_set_trap(f.guest, GUEST_TRAP_MEM, EXIT_TEST_ADDR, PAGE, 0, 0).unwrap();
    let p = f.process.clone();
    let guest = f.guest;
    let (packets, skipped) = on_thread(move || {
        let f = Fixture { process: p, resource: 0, guest, vmar: 0 };
        let vcpu = f.process.vcpu_create(f.guest, 0, 0).unwrap();
        script(&f, vcpu, &[write(TRAP_ADDR + 8, 0xabcd), read(EXIT_TEST_ADDR, 31)]);
        let first = f.process.vcpu_enter(vcpu).unwrap();
        let second = f.process.vcpu_enter(vcpu).unwrap();
        ([first, second], skipped(&f, vcpu))
    });
    assert_eq!(packets[0].packet_type, PKT_TYPE_GUEST_MEM);
    assert_eq!(packets[0].key, KEY);
    let Packet::Mem { mem, .. } = packets[0].decode() else { panic!() };
    assert_eq!(
        mem,
        GuestMemPacket { addr: TRAP_ADDR + 8, access_size: 4, xt: 1, read: false, data: 0xabcd, ..Default::default() }
    );
    let Packet::Mem { key, mem } = packets[1].decode() else { panic!() };
    assert_eq!((key, mem.addr, mem.read, mem.xt, mem.access_size), (0, EXIT_TEST_ADDR, true, 31, 8));
    assert_eq!(skipped, 1, "the first MEM access was skipped when the VCPU re-entered");
}

#[test]
fn bell_trap_packet_goes_to_the_port_and_the_guest_continues() {
    let f = fixture();
    let port = f.process.port_create(0).unwrap();
    f.process.guest_set_trap(f.guest, GUEST_TRAP_BELL, TRAP_ADDR, PAGE, port, KEY).unwrap();
    f.process.guest_set_trap(f.guest, GUEST_TRAP_MEM, EXIT_TEST_ADDR, PAGE, 0, 0).unwrap();
    let (p, guest) = (f.process.clone(), f.guest);
    let exit = on_thread(move || {
        let f = Fixture { process: p, resource: 0, guest, vmar: 0 };
        let vcpu = f.process.vcpu_create(f.guest, 0, 0).unwrap();
        script(&f, vcpu, &[write(TRAP_ADDR, 1), write(EXIT_TEST_ADDR, 0)]);
        f.process.vcpu_enter(vcpu).unwrap()
    });
    assert_eq!(
        exit.decode(),
        Packet::Mem {
            key: 0,
            mem: GuestMemPacket { addr: EXIT_TEST_ADDR, access_size: 4, xt: 1, ..Default::default() }
        }
    );
    let bell = f.process.port_wait(port, 0).unwrap();
    assert_eq!(bell.packet_type, PKT_TYPE_GUEST_BELL);
    assert_eq!(bell.decode(), Packet::Bell { key: KEY, addr: TRAP_ADDR });
}

#[test]
fn bell_exhaustion_pauses_the_vcpu_until_a_packet_is_dequeued() {
    let f = fixture();
    let port = f.process.port_create(0).unwrap();
    f.process.guest_set_trap(f.guest, GUEST_TRAP_BELL, TRAP_ADDR, PAGE, port, KEY).unwrap();
    f.process.guest_set_trap(f.guest, GUEST_TRAP_MEM, EXIT_TEST_ADDR, PAGE, 0, 0).unwrap();
    let (p, guest) = (f.process.clone(), f.guest);
    let runner = std::thread::spawn(move || {
        let f = Fixture { process: p, resource: 0, guest, vmar: 0 };
        let vcpu = f.process.vcpu_create(f.guest, 0, 0).unwrap();
        let mut exits: Vec<Exit> = (0..TRAP_PACKETS as u64 + 10).map(|i| write(TRAP_ADDR, i)).collect();
        exits.push(write(EXIT_TEST_ADDR, 0));
        script(&f, vcpu, &exits);
        f.process.vcpu_enter(vcpu).unwrap()
    });
    // The VCPU fills the trap's packets and pauses; it can only finish if we dequeue.
    let port_object = f.process.port_object(port).unwrap();
    while port_object.pending() < TRAP_PACKETS {
        std::thread::yield_now();
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(!runner.is_finished(), "the VCPU is paused while every packet is in flight");
    assert_eq!(port_object.pending(), TRAP_PACKETS);
    for _ in 0..TRAP_PACKETS + 10 {
        assert_eq!(f.process.port_wait(port, INFINITE).unwrap().packet_type, PKT_TYPE_GUEST_BELL);
    }
    assert_eq!(
        runner.join().unwrap().decode(),
        Packet::Mem {
            key: 0,
            mem: GuestMemPacket { addr: EXIT_TEST_ADDR, access_size: 4, xt: 1, ..Default::default() }
        }
    );
}

#[test]
fn bell_read_is_not_supported() {
    let f = fixture();
    let port = f.process.port_create(0).unwrap();
    f.process.guest_set_trap(f.guest, GUEST_TRAP_BELL, TRAP_ADDR, PAGE, port, KEY).unwrap();
    let (p, guest) = (f.process.clone(), f.guest);
    let result = on_thread(move || {
        let f = Fixture { process: p, resource: 0, guest, vmar: 0 };
        let vcpu = f.process.vcpu_create(f.guest, 0, 0).unwrap();
        script(&f, vcpu, &[read(TRAP_ADDR, 0)]);
        f.process.vcpu_enter(vcpu)
    });
    assert_eq!(result, Err(Status::NOT_SUPPORTED));
}

#[test]
fn several_threads_dequeue_from_one_port() {
    let f = fixture();
    let port = f.process.port_create(0).unwrap();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let p = f.process.clone();
            std::thread::spawn(move || p.port_wait(port, INFINITE).unwrap().key)
        })
        .collect();
    for key in 10..13 {
        f.process.port_queue(port, &PortPacket::user(key, 0, [0; 4])).unwrap();
    }
    let mut keys: Vec<u64> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
    keys.sort();
    assert_eq!(keys, vec![10, 11, 12]);
}

// ---- zx_vcpu_create ----

#[test]
fn vcpu_create_gives_the_documented_rights() {
    let f = fixture();
    let (p, guest) = (f.process.clone(), f.guest);
    let rights = on_thread(move || {
        let vcpu = p.vcpu_create(guest, 0, 0).unwrap();
        p.handles().get(vcpu).unwrap().rights
    });
    assert_eq!(
        rights,
        Rights::DUPLICATE | Rights::TRANSFER | Rights::EXECUTE | Rights::SIGNAL | Rights::READ | Rights::WRITE
    );
}

#[test]
fn vcpu_create_needs_manage_process_access_denied() {
    let f = fixture();
    let guest = restricted(&f, f.guest, Rights::MANAGE_PROCESS);
    let p = f.process.clone();
    assert_eq!(on_thread(move || p.vcpu_create(guest, 0, 0)), Err(Status::ACCESS_DENIED));
}

#[test]
fn vcpu_create_bad_handle() {
    let f = fixture();
    assert_eq!(f.process.vcpu_create(0x7fff_fff3, 0, 0), Err(Status::BAD_HANDLE));
}

#[test]
fn vcpu_create_one_per_thread_bad_state_until_closed() {
    let f = fixture();
    let (p, guest) = (f.process.clone(), f.guest);
    on_thread(move || {
        let first = p.vcpu_create(guest, 0, 0).unwrap();
        assert_eq!(p.vcpu_create(guest, 0, 0), Err(Status::BAD_STATE));
        p.handle_close(first).unwrap();
        let second = p.vcpu_create(guest, 0, 0).unwrap();
        p.handle_close(second).unwrap();
    });
}

#[test]
fn vcpu_create_invalid_args_for_options_or_entry() {
    let f = fixture();
    let (p, guest) = (f.process.clone(), f.guest);
    on_thread(move || {
        assert_eq!(p.vcpu_create(guest, 1, 0), Err(Status::INVALID_ARGS));
        assert_eq!(p.vcpu_create(guest, 0, GUEST_PHYSICAL_SIZE), Err(Status::INVALID_ARGS));
        // A refused create leaves the thread free.
        assert!(p.vcpu_create(guest, 0, 0x1000).is_ok());
    });
}

#[test]
fn vcpu_create_wrong_type() {
    let f = fixture();
    assert_eq!(f.process.vcpu_create(f.vmar, 0, 0), Err(Status::WRONG_TYPE));
}

#[test]
fn vcpu_create_at_most_eight_per_guest() {
    let f = fixture();
    let mut threads = Vec::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let done_rx = Arc::new(std::sync::Mutex::new(done_rx));
    for _ in 0..9 {
        let (p, guest, tx, done_rx) = (f.process.clone(), f.guest, tx.clone(), done_rx.clone());
        threads.push(std::thread::spawn(move || {
            tx.send(p.vcpu_create(guest, 0, 0).map(|_| ())).unwrap();
            let _ = done_rx.lock().unwrap().recv();
        }));
    }
    let results: Vec<_> = (0..9).map(|_| rx.recv().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 8);
    assert_eq!(results.iter().filter(|r| **r == Err(Status::NO_RESOURCES)).count(), 1);
    drop(done_tx);
    threads.into_iter().for_each(|t| t.join().unwrap());
}

// ---- zx_vcpu_enter / kick ----

#[test]
fn enter_from_another_thread_is_bad_state() {
    let f = fixture();
    let (p, guest) = (f.process.clone(), f.guest);
    let vcpu = on_thread(move || p.vcpu_create(guest, 0, 0).unwrap());
    assert_eq!(f.process.vcpu_enter(vcpu), Err(Status::BAD_STATE));
}

#[test]
fn enter_needs_execute_access_denied_and_a_vcpu_wrong_type() {
    let f = fixture();
    let (p, guest) = (f.process.clone(), f.guest);
    on_thread(move || {
        let vcpu = p.vcpu_create(guest, 0, 0).unwrap();
        let weak = p.handle_duplicate(vcpu, Rights::READ | Rights::WRITE).unwrap();
        assert_eq!(p.vcpu_enter(weak), Err(Status::ACCESS_DENIED));
        assert_eq!(p.vcpu_kick(weak), Err(Status::ACCESS_DENIED));
        assert_eq!(p.vcpu_enter(guest), Err(Status::WRONG_TYPE));
        assert_eq!(p.vcpu_kick(guest), Err(Status::WRONG_TYPE));
        assert_eq!(p.vcpu_enter(0x7fff_fff3), Err(Status::BAD_HANDLE));
        assert_eq!(p.vcpu_kick(0x7fff_fff3), Err(Status::BAD_HANDLE));
    });
}

#[test]
fn kick_from_another_thread_cancels_the_current_enter_and_the_next_one_resumes() {
    let f = fixture();
    f.process.guest_set_trap(f.guest, GUEST_TRAP_MEM, EXIT_TEST_ADDR, PAGE, 0, 0).unwrap();
    let (p, guest) = (f.process.clone(), f.guest);
    let (tx, rx) = std::sync::mpsc::channel();
    let runner = std::thread::spawn(move || {
        let vcpu = p.vcpu_create(guest, 0, 0).unwrap();
        tx.send(vcpu).unwrap();
        // The scripted guest spins until kicked.
        let first = p.vcpu_enter(vcpu);
        p.vcpu_object(vcpu).unwrap().with_context(|c| c.arch.script.push_back(write(EXIT_TEST_ADDR, 0)));
        (first, p.vcpu_enter(vcpu).map(|packet| packet.decode()))
    });
    let vcpu = rx.recv().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(10));
    f.process.vcpu_kick(vcpu).unwrap();
    let (first, second) = runner.join().unwrap();
    assert_eq!(first, Err(Status::CANCELED));
    assert!(matches!(second, Ok(Packet::Mem { key: 0, .. })));
}

#[test]
fn kick_affects_only_the_current_or_next_enter() {
    let f = fixture();
    f.process.guest_set_trap(f.guest, GUEST_TRAP_MEM, EXIT_TEST_ADDR, PAGE, 0, 0).unwrap();
    let (p, guest) = (f.process.clone(), f.guest);
    on_thread(move || {
        let vcpu = p.vcpu_create(guest, 0, 0).unwrap();
        p.vcpu_kick(vcpu).unwrap();
        p.vcpu_kick(vcpu).unwrap();
        p.vcpu_kick(vcpu).unwrap();
        assert_eq!(p.vcpu_enter(vcpu), Err(Status::CANCELED));
        p.vcpu_object(vcpu).unwrap().with_context(|c| c.arch.script.push_back(write(EXIT_TEST_ADDR, 0)));
        assert!(p.vcpu_enter(vcpu).is_ok(), "three kicks cancel one enter");
    });
}

// ---- zx_vcpu_interrupt ----

#[test]
fn interrupt_from_any_thread_and_out_of_range() {
    let f = fixture();
    let (p, guest) = (f.process.clone(), f.guest);
    let vcpu = on_thread(move || p.vcpu_create(guest, 0, 0).unwrap());
    assert_eq!(f.process.vcpu_interrupt(vcpu, 32), Ok(()));
    assert!(f.process.vcpu_object(vcpu).unwrap().is_pending(32));
    assert_eq!(f.process.vcpu_interrupt(vcpu, u32::MAX), Err(Status::OUT_OF_RANGE));
    assert_eq!(f.process.vcpu_interrupt(vcpu, 1020), Err(Status::OUT_OF_RANGE));
    assert_eq!(f.process.vcpu_interrupt(vcpu, 1019), Ok(()));
    let no_signal = restricted(&f, vcpu, Rights::SIGNAL);
    assert_eq!(f.process.vcpu_interrupt(no_signal, 32), Err(Status::ACCESS_DENIED));
    assert_eq!(f.process.vcpu_interrupt(f.guest, 32), Err(Status::WRONG_TYPE));
    assert_eq!(f.process.vcpu_interrupt(0x7fff_fff3, 32), Err(Status::BAD_HANDLE));
}

#[test]
fn interrupt_priority_is_checked_like_interrupt() {
    let f = fixture();
    let (p, guest) = (f.process.clone(), f.guest);
    let vcpu = on_thread(move || p.vcpu_create(guest, 0, 0).unwrap());
    assert_eq!(f.process.vcpu_set_interrupt_priority(vcpu, 1019, 0x10), Ok(()));
    assert_eq!(f.process.vcpu_set_interrupt_priority(vcpu, 1020, 0x10), Err(Status::OUT_OF_RANGE));
    let no_signal = restricted(&f, vcpu, Rights::SIGNAL);
    assert_eq!(f.process.vcpu_set_interrupt_priority(no_signal, 32, 0), Err(Status::ACCESS_DENIED));
    assert_eq!(f.process.vcpu_set_interrupt_priority(f.guest, 32, 0), Err(Status::WRONG_TYPE));
}

#[test]
fn interrupt_wakes_a_vcpu_waiting_in_wfi() {
    let f = fixture();
    f.process.guest_set_trap(f.guest, GUEST_TRAP_MEM, EXIT_TEST_ADDR, PAGE, 0, 0).unwrap();
    let (p, guest) = (f.process.clone(), f.guest);
    let (tx, rx) = std::sync::mpsc::channel();
    let runner = std::thread::spawn(move || {
        let vcpu = p.vcpu_create(guest, 0, 0).unwrap();
        p.vcpu_object(vcpu).unwrap().with_context(|c| {
            c.arch.script.extend([Exit::WaitForInterrupt { pending: false, deadline: None }, write(EXIT_TEST_ADDR, 0)])
        });
        tx.send(vcpu).unwrap();
        p.vcpu_enter(vcpu).map(|packet| packet.key)
    });
    let vcpu = rx.recv().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(!runner.is_finished(), "WFI with nothing pending sleeps");
    f.process.vcpu_interrupt(vcpu, 40).unwrap();
    assert_eq!(runner.join().unwrap(), Ok(0));
}

// ---- zx_vcpu_read_state / zx_vcpu_write_state ----

#[test]
fn state_round_trips_and_keeps_only_nzcv() {
    let f = fixture();
    let (p, guest) = (f.process.clone(), f.guest);
    on_thread(move || {
        let vcpu = p.vcpu_create(guest, 0, 0).unwrap();
        let mut state = [0u8; STATE_SIZE];
        for i in 0..31 {
            state[i * 8..i * 8 + 8].copy_from_slice(&(i as u64).to_le_bytes());
        }
        state[248..256].copy_from_slice(&64u64.to_le_bytes());
        state[256..260].copy_from_slice(&0x6000_03c5u32.to_le_bytes());
        p.vcpu_write_state(vcpu, VCPU_STATE, &state).unwrap();
        let mut back = [0xffu8; STATE_SIZE];
        p.vcpu_read_state(vcpu, VCPU_STATE, &mut back).unwrap();
        assert_eq!(back[..256], state[..256]);
        assert_eq!(u32::from_le_bytes(back[256..260].try_into().unwrap()), 0x6000_0000);
    });
}

/// Belfry's extensions: one register written (how a VMM completes an emulated load), and the
/// exit counts read; x31 (XZR) and bad sizes are INVALID_ARGS; the counts cannot be written.
#[test]
fn one_register_and_the_exit_counts() {
    let f = fixture();
    let (p, guest) = (f.process.clone(), f.guest);
    on_thread(move || {
        let vcpu = p.vcpu_create(guest, 0, 0).unwrap();
        let register = |index: u64, value: u64| {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&index.to_le_bytes());
            bytes[8..].copy_from_slice(&value.to_le_bytes());
            bytes
        };
        p.vcpu_write_state(vcpu, BELFRY_VCPU_REGISTER, &register(7, 0xfeed_f00d)).unwrap();
        p.vcpu_write_state(vcpu, BELFRY_VCPU_REGISTER, &register(30, 3)).unwrap();
        let mut state = [0u8; STATE_SIZE];
        p.vcpu_read_state(vcpu, VCPU_STATE, &mut state).unwrap();
        assert_eq!(u64::from_le_bytes(state[56..64].try_into().unwrap()), 0xfeed_f00d);
        assert_eq!(u64::from_le_bytes(state[240..248].try_into().unwrap()), 3);
        assert!(state[..56].iter().all(|&b| b == 0), "nothing else changed");
        for bad in [31, 32, u64::MAX] {
            assert_eq!(p.vcpu_write_state(vcpu, BELFRY_VCPU_REGISTER, &register(bad, 1)), Err(Status::INVALID_ARGS));
        }
        assert_eq!(p.vcpu_write_state(vcpu, BELFRY_VCPU_REGISTER, &register(1, 1)[..15]), Err(Status::INVALID_ARGS));
        let mut counts = [0xffu8; EXIT_KINDS * 8];
        p.vcpu_read_state(vcpu, BELFRY_VCPU_EXITS, &mut counts).unwrap();
        assert!(counts.iter().all(|&b| b == 0), "a new VCPU has no exits");
        assert_eq!(p.vcpu_read_state(vcpu, BELFRY_VCPU_EXITS, &mut counts[..8]), Err(Status::INVALID_ARGS));
        assert_eq!(p.vcpu_write_state(vcpu, BELFRY_VCPU_EXITS, &counts), Err(Status::INVALID_ARGS));
        assert_eq!(p.vcpu_read_state(vcpu, BELFRY_VCPU_REGISTER, &mut counts[..16]), Err(Status::INVALID_ARGS));
    });
}

#[test]
fn state_from_another_thread_is_bad_state() {
    let f = fixture();
    let (p, guest) = (f.process.clone(), f.guest);
    let vcpu = on_thread(move || p.vcpu_create(guest, 0, 0).unwrap());
    let mut buffer = [0u8; STATE_SIZE];
    assert_eq!(f.process.vcpu_read_state(vcpu, VCPU_STATE, &mut buffer), Err(Status::BAD_STATE));
    assert_eq!(f.process.vcpu_write_state(vcpu, VCPU_STATE, &buffer), Err(Status::BAD_STATE));
}

#[test]
fn state_kind_and_size_are_invalid_args() {
    let f = fixture();
    let (p, guest) = (f.process.clone(), f.guest);
    on_thread(move || {
        let vcpu = p.vcpu_create(guest, 0, 0).unwrap();
        let mut buffer = [0u8; STATE_SIZE + 1];
        assert_eq!(p.vcpu_read_state(vcpu, VCPU_STATE, &mut buffer), Err(Status::INVALID_ARGS));
        assert_eq!(p.vcpu_read_state(vcpu, VCPU_STATE, &mut buffer[..STATE_SIZE - 1]), Err(Status::INVALID_ARGS));
        assert_eq!(p.vcpu_read_state(vcpu, 7, &mut buffer[..STATE_SIZE]), Err(Status::INVALID_ARGS));
        assert_eq!(p.vcpu_write_state(vcpu, 7, &buffer[..STATE_SIZE]), Err(Status::INVALID_ARGS));
        assert_eq!(p.vcpu_write_state(vcpu, VCPU_STATE, &buffer), Err(Status::INVALID_ARGS));
        // ZX_VCPU_IO has no meaning on aarch64.
        assert_eq!(p.vcpu_write_state(vcpu, VCPU_IO, &buffer[..8]), Err(Status::INVALID_ARGS));
        assert_eq!(p.vcpu_read_state(vcpu, VCPU_IO, &mut buffer[..8]), Err(Status::INVALID_ARGS));
    });
}

#[test]
fn state_rights_and_types() {
    let f = fixture();
    let (p, guest) = (f.process.clone(), f.guest);
    on_thread(move || {
        let vcpu = p.vcpu_create(guest, 0, 0).unwrap();
        let mut buffer = [0u8; STATE_SIZE];
        let no_read = p.handle_duplicate(vcpu, Rights::WRITE).unwrap();
        let no_write = p.handle_duplicate(vcpu, Rights::READ).unwrap();
        assert_eq!(p.vcpu_read_state(no_read, VCPU_STATE, &mut buffer), Err(Status::ACCESS_DENIED));
        assert_eq!(p.vcpu_write_state(no_write, VCPU_STATE, &buffer), Err(Status::ACCESS_DENIED));
        assert_eq!(p.vcpu_read_state(guest, VCPU_STATE, &mut buffer), Err(Status::WRONG_TYPE));
        assert_eq!(p.vcpu_write_state(0x7fff_fff3, VCPU_STATE, &buffer), Err(Status::BAD_HANDLE));
    });
}

// ---- handles ----

#[test]
fn handles_duplicate_with_fewer_rights_and_close() {
    let f = fixture();
    let port = f.process.port_create(0).unwrap();
    let read_only = f.process.handle_duplicate(port, Rights::READ | Rights::DUPLICATE).unwrap();
    assert_eq!(f.process.port_queue(read_only, &PortPacket::user(1, 0, [0; 4])), Err(Status::ACCESS_DENIED));
    assert_eq!(f.process.handle_duplicate(read_only, Rights::WRITE), Err(Status::INVALID_ARGS), "more rights");
    let no_duplicate = f.process.handle_duplicate(port, Rights::READ).unwrap();
    assert_eq!(f.process.handle_duplicate(no_duplicate, Rights::SAME_RIGHTS), Err(Status::ACCESS_DENIED));
    let same = f.process.handle_duplicate(port, Rights::SAME_RIGHTS).unwrap();
    assert_eq!(f.process.handles().get(same).unwrap().rights, Rights::DEFAULT_PORT);
    assert_eq!(f.process.handle_close(same), Ok(()));
    assert_eq!(f.process.handle_close(same), Err(Status::BAD_HANDLE));
    assert_eq!(f.process.handle_close(0), Ok(()), "closing ZX_HANDLE_INVALID");
    assert_eq!(f.process.port_wait(same, 0), Err(Status::BAD_HANDLE));
}

#[test]
fn port_and_vmo_arguments() {
    let f = fixture();
    assert_eq!(f.process.port_create(1), Err(Status::INVALID_ARGS));
    assert_eq!(f.process.vmo_create(PAGE, 1), Err(Status::INVALID_ARGS));
    let port = f.process.port_create(0).unwrap();
    assert_eq!(f.process.port_wait(port, 0), Err(Status::TIMED_OUT));
    let no_read = f.process.handle_duplicate(port, Rights::WRITE).unwrap();
    assert_eq!(f.process.port_wait(no_read, 0), Err(Status::ACCESS_DENIED));
    assert_eq!(f.process.port_wait(f.guest, 0), Err(Status::WRONG_TYPE));
}
