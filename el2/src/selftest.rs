//! Self-tests that need the real machine: several CPUs using the kernel objects at once.
//!
//! `port-stress`: CPUs 1 and 2 produce packets into one port, half as user packets
//! (`port_queue`) and half through a trap ring of their own (the wait-free exit-path push,
//! pausing when all its packets are in flight); CPUs 0 and 3 drain the port with `port_wait`.
//! Every packet carries its producer, its source and a sequence number; at the end every
//! packet must be accounted for exactly once, and each consumer must have seen each source's
//! packets in order.

use crate::arch::aarch64::cpu;
use crate::object::packet::{PortPacket, PKT_TYPE_GUEST_BELL, PKT_TYPE_USER};
use crate::object::port::TrapRing;
use crate::object::process::Process;
use crate::object::ring::PushError;
use crate::object::Status;
use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use crate::sync::INFINITE;
use alloc::sync::Arc;

/// Packets each producer sends (half through each source).
pub const PACKETS_PER_PRODUCER: u64 = 10_000;
/// The producing CPUs.
pub const PRODUCERS: [usize; 2] = [1, 2];
/// The consuming CPUs.
pub const CONSUMERS: [usize; 2] = [0, 3];

const SOURCES: usize = 2;

/// Shared state of one stress run.
pub struct PortStress {
    process: Process,
    port: u32,
    rings: [Arc<TrapRing>; 2],
    /// Per producer and source: packets received and the sum of their sequence numbers.
    received: [[AtomicU64; SOURCES]; 2],
    sums: [[AtomicU64; SOURCES]; 2],
    /// Times a producer found its ring full and paused.
    pauses: [AtomicU64; 2],
    consumed: [AtomicU64; 2],
    failed: AtomicBool,
    total: AtomicU64,
}

impl PortStress {
    /// Creates the port (through the syscalls) and one ring per producer.
    pub fn new() -> Result<Self, Status> {
        let process = Process::new(cpu::at_el2());
        let port = process.port_create(0)?;
        let rings = [Arc::new(TrapRing::new()), Arc::new(TrapRing::new())];
        let port_object = process.port_object(port)?;
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
            failed: AtomicBool::new(false),
            total: AtomicU64::new(0),
        })
    }

    /// Producer `index` (0 or 1) sends its packets.
    pub fn produce(&self, index: usize) {
        let Some(ring) = self.rings.get(index) else { return };
        let Ok(port) = self.process.port_object(self.port) else { return };
        let key = index as u64;
        for sequence in 0..PACKETS_PER_PRODUCER {
            if sequence % 2 == 0 {
                let packet = PortPacket::bell(key, sequence);
                loop {
                    // SAFETY: each producer CPU owns its ring; nobody else pushes into it.
                    match unsafe { ring.push(packet) } {
                        Ok(()) => break,
                        Err(PushError::Full) => {
                            if let Some(pauses) = self.pauses.get(index) {
                                pauses.fetch_add(1, Ordering::Relaxed);
                            }
                            ring.wait_for_space(INFINITE, || false);
                        }
                        Err(PushError::Closed) => return self.failed.store(true, Ordering::Relaxed),
                    }
                }
                port.notify();
            } else {
                let packet = PortPacket::user(key, 0, [sequence, 0, 0, 0]);
                loop {
                    match self.process.port_queue(self.port, &packet) {
                        Ok(()) => break,
                        Err(Status::SHOULD_WAIT) => core::hint::spin_loop(),
                        Err(_) => return self.failed.store(true, Ordering::Relaxed),
                    }
                }
            }
        }
    }

    /// Consumer `index` (0 or 1) drains until every packet is taken.
    pub fn consume(&self, index: usize) {
        let expected = PACKETS_PER_PRODUCER * PRODUCERS.len() as u64;
        let mut last = [[None::<u64>; SOURCES]; 2];
        while self.total.load(Ordering::Acquire) < expected && !self.failed.load(Ordering::Relaxed) {
            let deadline = crate::sync::now() + 10_000_000;
            let packet = match self.process.port_wait(self.port, deadline) {
                Ok(packet) => packet,
                Err(Status::TIMED_OUT) => continue,
                Err(_) => return self.failed.store(true, Ordering::Relaxed),
            };
            let (source, sequence) = match packet.packet_type {
                PKT_TYPE_GUEST_BELL => (0, packet.payload[0]),
                PKT_TYPE_USER => (1, packet.payload[0]),
                _ => return self.failed.store(true, Ordering::Relaxed),
            };
            let producer = packet.key as usize;
            let (Some(received), Some(sums), Some(seen)) =
                (self.received.get(producer), self.sums.get(producer), last.get_mut(producer))
            else {
                return self.failed.store(true, Ordering::Relaxed);
            };
            if seen[source].is_some_and(|previous| previous >= sequence) {
                self.failed.store(true, Ordering::Relaxed);
            }
            seen[source] = Some(sequence);
            received[source].fetch_add(1, Ordering::Relaxed);
            sums[source].fetch_add(sequence, Ordering::Relaxed);
            if let Some(consumed) = self.consumed.get(index) {
                consumed.fetch_add(1, Ordering::Relaxed);
            }
            self.total.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Whether the run is over (all packets taken, or a failure).
    pub fn finished(&self) -> bool {
        self.total.load(Ordering::Acquire) >= PACKETS_PER_PRODUCER * PRODUCERS.len() as u64
            || self.failed.load(Ordering::Relaxed)
    }

    /// Checks the accounts and logs them; `true` when every packet arrived exactly once.
    pub fn verify(&self) -> bool {
        let half = PACKETS_PER_PRODUCER / 2;
        // Sequence numbers of source 0 are the even ones below the total, source 1 the odd ones.
        let even_sum = 2 * (half * (half - 1) / 2);
        let odd_sum = even_sum + half;
        let mut good = !self.failed.load(Ordering::Relaxed);
        for producer in 0..2 {
            for (source, expected_sum) in [(0, even_sum), (1, odd_sum)] {
                let count = self.received[producer][source].load(Ordering::Relaxed);
                let sum = self.sums[producer][source].load(Ordering::Relaxed);
                if count != half || sum != expected_sum {
                    defmt::error!(
                        "producer cpu{=usize} source {=usize}: {=u64} packets (expected {=u64}), sum {=u64} (expected {=u64})",
                        PRODUCERS[producer],
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
            defmt::error!("a packet was left in the port after the count was reached");
        }
        defmt::info!(
            "port stress: consumers took {=u64} (cpu0) + {=u64} (cpu3) packets; producers paused {=u64} + {=u64} times on full rings",
            self.consumed[0].load(Ordering::Relaxed),
            self.consumed[1].load(Ordering::Relaxed),
            self.pauses[0].load(Ordering::Relaxed),
            self.pauses[1].load(Ordering::Relaxed)
        );
        good && !leftover
    }
}
