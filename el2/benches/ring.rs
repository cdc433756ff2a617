//! The trap packet ring against `rtrb`, a well-known wait-free SPSC ring: 48-byte port
//! packets, capacity 256 (a trap's allocation), producer and consumer on two threads.
//! Each iteration moves `PACKETS` packets through the ring; the producer spins when the ring
//! is full (the VCPU's pause), the consumer spins when it is empty.
//!
//! `cargo bench -p el2 --bench ring`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use el2::object::packet::PortPacket;
use el2::object::ring::{PacketRing, PushError, TRAP_PACKETS};
use std::sync::Arc;
use std::time::Instant;

const PACKETS: u64 = 100_000;

fn belfry_ring(iterations: u64) -> std::time::Duration {
    let mut total = std::time::Duration::ZERO;
    for _ in 0..iterations {
        let ring = Arc::new(PacketRing::<PortPacket, TRAP_PACKETS>::new());
        let producer_ring = ring.clone();
        let start = Instant::now();
        let producer = std::thread::spawn(move || {
            for i in 0..PACKETS {
                let packet = PortPacket::bell(i, 0x1000);
                // SAFETY: this thread is the ring's only producer.
                while let Err(PushError::Full) = unsafe { producer_ring.push(packet) } {
                    std::hint::spin_loop();
                }
            }
        });
        let mut expected = 0;
        while expected < PACKETS {
            // SAFETY: this thread is the ring's only consumer.
            match unsafe { ring.pop() } {
                Some(packet) => {
                    assert_eq!(packet.key, expected);
                    expected += 1;
                }
                None => std::hint::spin_loop(),
            }
        }
        producer.join().unwrap();
        total += start.elapsed();
    }
    total
}

fn rtrb_ring(iterations: u64) -> std::time::Duration {
    let mut total = std::time::Duration::ZERO;
    for _ in 0..iterations {
        let (mut tx, mut rx) = rtrb::RingBuffer::<PortPacket>::new(TRAP_PACKETS);
        let start = Instant::now();
        let producer = std::thread::spawn(move || {
            for i in 0..PACKETS {
                let mut packet = PortPacket::bell(i, 0x1000);
                while let Err(rtrb::PushError::Full(back)) = tx.push(packet) {
                    packet = back;
                    std::hint::spin_loop();
                }
            }
        });
        let mut expected = 0;
        while expected < PACKETS {
            match rx.pop() {
                Ok(packet) => {
                    assert_eq!(packet.key, expected);
                    expected += 1;
                }
                Err(_) => std::hint::spin_loop(),
            }
        }
        producer.join().unwrap();
        total += start.elapsed();
    }
    total
}

fn rings(c: &mut Criterion) {
    let mut group = c.benchmark_group("spsc-256x48B");
    group.throughput(Throughput::Elements(PACKETS));
    group.sample_size(20);
    group.bench_function("belfry PacketRing", |b| b.iter_custom(belfry_ring));
    group.bench_function("rtrb", |b| b.iter_custom(rtrb_ring));
    group.finish();
}

criterion_group!(benches, rings);
criterion_main!(benches);
