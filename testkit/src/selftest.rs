//! Self-tests that need the real machine: many EL2 threads on several CPUs using the kernel
//! objects at once.
//!
//! `port-stress`: every CPU runs a producer thread and a consumer thread (eight threads on
//! four CPUs, plus the boot CPU's main thread waiting for the end). Each producer sends
//! [`PACKETS_PER_PRODUCER`] packets into one port, alternately as user packets (`port_queue`)
//! and through a trap ring of its own (the wait-free exit-path push; when all of its packets
//! are in flight the producer blocks, and its CPU runs the other thread). Consumers drain the
//! port with `port_wait`. Every packet carries its producer, its source and a sequence number:
//! at the end each one must have arrived exactly once, and each consumer must have seen each
//! source's packets in order.

use alloc::sync::Arc;
use alloc::vec::Vec;
use el2::object::packet::{PortPacket, PKT_TYPE_GUEST_BELL, PKT_TYPE_USER};
use el2::object::port::TrapRing;
use el2::object::process::Process;
use el2::object::ring::PushError;
use el2::object::Status;
use el2::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use el2::sync::{WaitQueue, INFINITE};

/// Packets each producer sends (half through each source).
pub const PACKETS_PER_PRODUCER: u64 = 5_000;
/// CPUs taking part; each runs one producer and one consumer.
pub const CPUS: usize = 4;

const SOURCES: usize = 2;
/// The key of the user packet that tells a consumer to stop.
const STOP: u64 = u64::MAX;

/// Shared state of one stress run.
pub struct PortStress {
    process: Process,
    port: u32,
    rings: Vec<Arc<TrapRing>>,
    received: [[AtomicU64; SOURCES]; CPUS],
    sums: [[AtomicU64; SOURCES]; CPUS],
    pauses: [AtomicU64; CPUS],
    consumed: [AtomicU64; CPUS],
    total: AtomicU64,
    failed: AtomicBool,
    all_taken: WaitQueue,
}

impl PortStress {
    /// Creates the port (through the syscalls) and one trap ring per producer.
    pub fn new(virtualization: bool) -> Result<Self, Status> {
        let process = Process::new(virtualization);
        let port = process.port_create(0)?;
        let port_object = process.port_object(port)?;
        let rings: Vec<Arc<TrapRing>> = (0..CPUS).map(|_| Arc::new(TrapRing::new())).collect();
        for ring in &rings {
            port_object.attach(ring.clone());
        }
        Ok(Self {
            process,
            port,
            rings,
            received: Default::default(),
            sums: Default::default(),
            pauses: Default::default(),
            consumed: Default::default(),
            total: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            all_taken: WaitQueue::new(),
        })
    }

    fn expected() -> u64 {
        PACKETS_PER_PRODUCER * CPUS as u64
    }

    fn fail(&self) {
        self.failed.store(true, Ordering::Relaxed);
        self.all_taken.notify_all();
    }

    /// Producer thread `index`.
    pub fn produce(&self, index: usize) {
        let (Some(ring), Ok(port)) = (self.rings.get(index), self.process.port_object(self.port)) else {
            return self.fail();
        };
        for sequence in 0..PACKETS_PER_PRODUCER {
            if sequence % 2 == 0 {
                loop {
                    // SAFETY: each producer thread owns its ring; nobody else pushes into it.
                    match unsafe { ring.push(PortPacket::bell(index as u64, sequence)) } {
                        Ok(()) => break,
                        Err(PushError::Full) => {
                            self.pauses[index].fetch_add(1, Ordering::Relaxed);
                            ring.wait_for_space(INFINITE, || false);
                        }
                        Err(PushError::Closed) => return self.fail(),
                    }
                }
                port.notify();
            } else {
                let packet = PortPacket::user(index as u64, 0, [sequence, 0, 0, 0]);
                loop {
                    match self.process.port_queue(self.port, &packet) {
                        Ok(()) => break,
                        Err(Status::SHOULD_WAIT) => el2::thread::yield_now(),
                        Err(_) => return self.fail(),
                    }
                }
            }
        }
    }

    /// Consumer thread `index`: drains until it takes a STOP packet.
    pub fn consume(&self, index: usize) {
        let mut last = [[None::<u64>; SOURCES]; CPUS];
        loop {
            let Ok(packet) = self.process.port_wait(self.port, INFINITE) else { return self.fail() };
            let source = match packet.packet_type {
                PKT_TYPE_USER if packet.key == STOP => return,
                PKT_TYPE_GUEST_BELL => 0,
                PKT_TYPE_USER => 1,
                _ => return self.fail(),
            };
            let producer = packet.key as usize;
            let sequence = packet.payload[0];
            let Some(seen) = last.get_mut(producer) else { return self.fail() };
            if seen[source].is_some_and(|previous| previous >= sequence) {
                self.fail();
            }
            seen[source] = Some(sequence);
            self.received[producer][source].fetch_add(1, Ordering::Relaxed);
            self.sums[producer][source].fetch_add(sequence, Ordering::Relaxed);
            self.consumed[index].fetch_add(1, Ordering::Relaxed);
            if self.total.fetch_add(1, Ordering::AcqRel) + 1 == Self::expected() {
                self.all_taken.notify_all();
            }
        }
    }

    /// Main thread: waits until every packet is taken (or a failure), then stops the
    /// consumers.
    pub fn wait_and_stop(&self) {
        loop {
            let ticket = self.all_taken.ticket();
            if self.total.load(Ordering::Acquire) >= Self::expected() || self.failed.load(Ordering::Relaxed) {
                break;
            }
            self.all_taken.wait(ticket, INFINITE);
        }
        for _ in 0..CPUS {
            while self.process.port_queue(self.port, &PortPacket::user(STOP, 0, [0; 4])) == Err(Status::SHOULD_WAIT) {
                el2::thread::yield_now();
            }
        }
    }

    /// Checks the accounts and logs them; `true` when every packet arrived exactly once.
    pub fn verify(&self) -> bool {
        let half = PACKETS_PER_PRODUCER / 2;
        // Source 0 carries the even sequence numbers, source 1 the odd ones.
        let even_sum = half * (half - 1);
        let odd_sum = even_sum + half;
        let mut good = !self.failed.load(Ordering::Relaxed);
        for producer in 0..CPUS {
            for (source, expected_sum) in [(0, even_sum), (1, odd_sum)] {
                let count = self.received[producer][source].load(Ordering::Relaxed);
                let sum = self.sums[producer][source].load(Ordering::Relaxed);
                if count != half || sum != expected_sum {
                    defmt::error!(
                        "producer {=usize} source {=usize}: {=u64} packets (expected {=u64}), sum {=u64} (expected {=u64})",
                        producer,
                        source,
                        count,
                        half,
                        sum,
                        expected_sum
                    );
                    good = false;
                }
            }
        }
        let leftover = self.process.port_wait(self.port, 0).is_ok();
        if leftover {
            defmt::error!("a packet was left in the port after the consumers stopped");
        }
        let consumed: [u64; CPUS] = core::array::from_fn(|i| self.consumed[i].load(Ordering::Relaxed));
        let pauses: [u64; CPUS] = core::array::from_fn(|i| self.pauses[i].load(Ordering::Relaxed));
        defmt::info!(
            "port stress: consumers took {} packets; producers blocked {} times on full rings",
            consumed,
            pauses
        );
        good && !leftover
    }
}
