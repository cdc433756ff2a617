//! The trap packet ring: a bounded single-producer / single-consumer queue of pre-allocated
//! packets.
//!
//! Every (trap, VCPU) pair owns one ring of [`TRAP_PACKETS`] packets, allocated when the pair
//! comes to exist (at `guest_set_trap` or `vcpu_create`), never on the exit path. The producer
//! is the VCPU's exit path: `push` is wait-free (two atomic loads, a copy, one release store).
//! The consumer is the port the trap delivers to, which pops under its own lock, so there is
//! one consumer at a time. A trap hit by several VCPUs keeps the single-producer rule because
//! each VCPU has its own ring.
//!
//! When a ring is full the producing VCPU pauses (the seed: "If all the packets are exhausted,
//! execution of the VCPU that caused the trap will be paused. When at least one packet is
//! dequeued, execution of the VCPU will resume"): [`PacketRing::wait_for_space`] sleeps on the
//! ring's event count, which `pop` notifies.
//!
//! Indices are free-running `u64` counters (`head` written only by the producer, `tail` only by
//! the consumer); `head - tail` is the fill level and never exceeds the capacity.

use crate::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use crate::sync::{Deadline, UnsafeCell, WaitQueue};
use core::mem::MaybeUninit;

/// Packets per trap and VCPU, as Zircon pre-allocates per trap.
pub const TRAP_PACKETS: usize = 256;

/// Why a push did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// Every packet is in flight.
    Full,
    /// The consumer is gone (the port was closed).
    Closed,
}

/// Keeps a counter on its own cache line, so the producer's and the consumer's writes do not
/// bounce one line between two CPUs.
#[derive(Debug, Default)]
#[repr(align(64))]
struct CacheLine<T>(T);

/// See the module documentation.
pub struct PacketRing<T: Copy, const N: usize = TRAP_PACKETS> {
    slots: [UnsafeCell<MaybeUninit<T>>; N],
    /// Next slot the producer fills; written only by the producer.
    head: CacheLine<AtomicU64>,
    /// Next slot the consumer empties; written only by the consumer.
    tail: CacheLine<AtomicU64>,
    /// The producer's last view of `tail` and the consumer's of `head`: each side re-reads the
    /// other's counter only when its cached view says full (or empty).
    producer_tail: CacheLine<UnsafeCell<u64>>,
    consumer_head: CacheLine<UnsafeCell<u64>>,
    /// The producer is (about to be) paused in `wait_for_space`: `pop` must notify.
    producer_waiting: AtomicBool,
    closed: AtomicBool,
    space: WaitQueue,
}

// SAFETY: slots are written only by the single producer at `head` before publishing it with a
// release store, and read only by the single consumer below `head` (acquire) before releasing
// them with a store to `tail`; the cached counters are private to their side; `T: Copy + Send`
// values cross threads by value.
unsafe impl<T: Copy + Send, const N: usize> Sync for PacketRing<T, N> {}
// SAFETY: as above; the ring owns plain `Copy` values.
unsafe impl<T: Copy + Send, const N: usize> Send for PacketRing<T, N> {}

impl<T: Copy, const N: usize> Default for PacketRing<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy, const N: usize> PacketRing<T, N> {
    /// An empty, open ring.
    pub fn new() -> Self {
        Self {
            slots: core::array::from_fn(|_| UnsafeCell::new(MaybeUninit::uninit())),
            head: CacheLine(AtomicU64::new(0)),
            tail: CacheLine(AtomicU64::new(0)),
            producer_tail: CacheLine(UnsafeCell::new(0)),
            consumer_head: CacheLine(UnsafeCell::new(0)),
            producer_waiting: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            space: WaitQueue::new(),
        }
    }

    /// Producer side: enqueues `value`; wait-free.
    ///
    /// # Safety
    /// At most one thread may act as the producer of a ring at any time.
    pub unsafe fn push(&self, value: T) -> Result<(), PushError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(PushError::Closed);
        }
        let head = self.head.0.load(Ordering::Relaxed);
        // SAFETY: `producer_tail` belongs to the single producer (the caller's contract).
        let cached_tail = self.producer_tail.0.with(|tail| unsafe { *tail });
        if head - cached_tail >= N as u64 {
            let tail = self.tail.0.load(Ordering::Acquire);
            // SAFETY: as above.
            self.producer_tail.0.with_mut(|cached| unsafe { *cached = tail });
            if head - tail >= N as u64 {
                return Err(PushError::Full);
            }
        }
        let slot = &self.slots[(head % N as u64) as usize];
        // SAFETY: the slot at `head` is outside the consumer's window [tail, head) (checked
        // above, and `tail` only grows), and we are the only producer.
        slot.with_mut(|slot| unsafe { (*slot).write(value) });
        self.head.0.store(head + 1, Ordering::Release);
        Ok(())
    }

    /// Consumer side: dequeues the oldest packet, if any, and wakes a paused producer.
    ///
    /// # Safety
    /// At most one thread may act as the consumer of a ring at any time.
    pub unsafe fn pop(&self) -> Option<T> {
        let tail = self.tail.0.load(Ordering::Relaxed);
        // SAFETY: `consumer_head` belongs to the single consumer (the caller's contract).
        let mut head = self.consumer_head.0.with(|head| unsafe { *head });
        let refreshed = tail == head;
        if refreshed {
            head = self.head.0.load(Ordering::Acquire);
            // SAFETY: as above.
            self.consumer_head.0.with_mut(|cached| unsafe { *cached = head });
            if tail == head {
                // Found empty, which a stale `head` can also say: see below.
                fence(Ordering::SeqCst);
                self.wake_waiting_producer();
                return None;
            }
        }
        let slot = &self.slots[(tail % N as u64) as usize];
        // SAFETY: `tail < head`: the producer initialised this slot before publishing `head`
        // (acquire above), and it will not touch it again until we advance `tail`.
        let value = slot.with(|slot| unsafe { (*slot).assume_init_read() });
        self.tail.0.store(tail + 1, Ordering::Release);
        // The wake-up protocol (see `wait_for_space`) is paid for only where a paused producer
        // can be missed otherwise: when our view of the ring says it was full, and when we
        // have just re-read `head`. A producer pauses only after seeing the ring full with
        // `tail` = t (its `head` is t + N). If our view at the pop of slot t holds all N, we
        // fence here; if it holds fewer, our next re-read of `head` comes at a `tail` past t
        // (we pop the window we hold first), and the fence there either shows us the producer
        // waiting or showed the producer our later `tail` (so it did not pause). Elsewhere a
        // plain load of the flag suffices: it may miss a pause only until that re-read (which
        // fences whether or not it finds packets).
        if refreshed || head - tail == N as u64 {
            // Pairs with the fence in `wait_for_space`.
            fence(Ordering::SeqCst);
        }
        self.wake_waiting_producer();
        Some(value)
    }

    fn wake_waiting_producer(&self) {
        if self.producer_waiting.load(Ordering::Relaxed) {
            self.space.notify_all();
        }
    }

    /// Packets queued and not yet dequeued.
    pub fn len(&self) -> usize {
        let tail = self.tail.0.load(Ordering::Acquire);
        let head = self.head.0.load(Ordering::Acquire);
        head.saturating_sub(tail) as usize
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks the consumer gone: later pushes fail with [`PushError::Closed`], and a paused
    /// producer wakes.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.space.notify_all();
    }

    /// Whether [`PacketRing::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Producer side: sleeps until the ring has room, is closed, `interrupted()` holds, or the
    /// deadline passes. Returns whether there is room.
    pub fn wait_for_space(&self, deadline: Deadline, interrupted: impl Fn() -> bool) -> bool {
        let room = loop {
            let ticket = self.space.ticket();
            self.producer_waiting.store(true, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if self.len() < N {
                break true;
            }
            if self.is_closed() || interrupted() {
                break false;
            }
            if !self.space.wait(ticket, deadline) {
                break self.len() < N;
            }
        };
        self.producer_waiting.store(false, Ordering::Relaxed);
        room
    }

    /// Wakes a producer paused in [`PacketRing::wait_for_space`] so it re-checks `interrupted`.
    pub fn wake_producer(&self) {
        self.space.notify_all();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn fifo_until_full_then_refuses() {
        let ring = PacketRing::<u32, 4>::new();
        for i in 0..4 {
            // SAFETY: this test is the only producer and consumer.
            unsafe { ring.push(i).unwrap() };
        }
        // SAFETY: as above.
        unsafe {
            assert_eq!(ring.push(9), Err(PushError::Full));
            assert_eq!(ring.pop(), Some(0));
            ring.push(4).unwrap();
            assert_eq!((1..5).map(|_| ring.pop().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
            assert_eq!(ring.pop(), None);
        }
        ring.close();
        // SAFETY: as above.
        assert_eq!(unsafe { ring.push(1) }, Err(PushError::Closed));
    }

    #[test]
    fn a_paused_producer_resumes_when_a_packet_is_dequeued() {
        let ring = Arc::new(PacketRing::<u64, 2>::new());
        let producer = {
            let ring = ring.clone();
            std::thread::spawn(move || {
                for i in 0..1000u64 {
                    loop {
                        // SAFETY: this thread is the only producer.
                        match unsafe { ring.push(i) } {
                            Ok(()) => break,
                            Err(PushError::Full) => assert!(ring.wait_for_space(crate::sync::INFINITE, || false)),
                            Err(PushError::Closed) => unreachable!(),
                        }
                    }
                }
            })
        };
        let mut expected = 0;
        while expected < 1000 {
            // SAFETY: this thread is the only consumer.
            if let Some(value) = unsafe { ring.pop() } {
                assert_eq!(value, expected);
                expected += 1;
            } else {
                std::thread::yield_now();
            }
        }
        producer.join().unwrap();
    }

    #[test]
    fn closing_wakes_a_paused_producer() {
        let ring = Arc::new(PacketRing::<u8, 1>::new());
        // SAFETY: single producer (this thread, then the spawned one after the push).
        unsafe { ring.push(1).unwrap() };
        let waiter = {
            let ring = ring.clone();
            std::thread::spawn(move || ring.wait_for_space(crate::sync::INFINITE, || false))
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        ring.close();
        assert!(!waiter.join().unwrap());
    }

    #[test]
    fn a_deadline_ends_the_pause() {
        let ring = PacketRing::<u8, 1>::new();
        // SAFETY: single producer and consumer.
        unsafe { ring.push(1).unwrap() };
        let deadline = crate::sync::now() + 5_000_000;
        assert!(!ring.wait_for_space(deadline, || false));
        assert!(crate::sync::now() >= deadline);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// `values` through a ring of `N` slots: a producer that pauses whenever the ring is full,
    /// a consumer that spins; every value arrives once, in order (a lost wake-up would leave
    /// the producer asleep and the model deadlocked).
    fn through_ring<const N: usize>(values: &'static [u32]) {
        let ring = Arc::new(PacketRing::<u32, N>::new());
        let producer = {
            let ring = ring.clone();
            loom::thread::spawn(move || {
                for &value in values {
                    loop {
                        // SAFETY: the only producer.
                        match unsafe { ring.push(value) } {
                            Ok(()) => break,
                            Err(PushError::Full) => {
                                assert!(ring.wait_for_space(crate::sync::INFINITE, || false));
                            }
                            Err(PushError::Closed) => unreachable!(),
                        }
                    }
                }
            })
        };
        let mut got = Vec::new();
        while got.len() < values.len() {
            // SAFETY: the only consumer.
            match unsafe { ring.pop() } {
                Some(value) => got.push(value),
                None => loom::thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert_eq!(got, values);
    }

    /// Two packets through a one-slot ring: the producer must pause for the first to be
    /// dequeued, in every interleaving (every pop there fences: its view is always full).
    #[test]
    fn pause_and_resume_on_exhaustion() {
        loom::model(|| through_ring::<1>(&[7, 8]));
    }

    /// Three packets through a two-slot ring: the consumer's pops where its view of the ring
    /// is not full skip the fence, and a paused producer is still resumed. Bounded to three
    /// preemptions to keep the check fast (the unbounded space, about six minutes, passed
    /// too). Loom does not show the skipped fences safe by itself: a ring without the re-read
    /// fences passed this model as well; the argument is in docs/architecture.md.
    #[test]
    fn pause_and_resume_with_a_partial_view() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| through_ring::<2>(&[7, 8, 9]));
    }

    /// A close racing with a paused producer always wakes it, and a push after the close
    /// always fails.
    #[test]
    fn close_while_paused() {
        loom::model(|| {
            let ring = Arc::new(PacketRing::<u32, 1>::new());
            // SAFETY: the only producer until the spawned thread takes over below.
            unsafe { ring.push(1).unwrap() };
            let producer = {
                let ring = ring.clone();
                loom::thread::spawn(move || {
                    let room = ring.wait_for_space(crate::sync::INFINITE, || false);
                    // SAFETY: the only producer now.
                    (room, unsafe { ring.push(2) })
                })
            };
            ring.close();
            let (room, pushed) = producer.join().unwrap();
            assert!(!room);
            assert_eq!(pushed, Err(PushError::Closed));
        });
    }
}
