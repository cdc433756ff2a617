//! Ports: where packets wait for a thread to take them.
//!
//! A port merges two kinds of source. User packets (`zx_port_queue`) go into the port's own
//! queue, bounded by [`MAX_USER_PACKETS`]. Trap packets stay in their trap's pre-allocated
//! rings (one per trap and VCPU, see [`super::ring`]); the port only lists the rings attached
//! to it and pops from them, under its lock, which makes it the rings' single consumer. Any
//! number of threads may wait (`zx_port_wait`), so a pool of VMM threads can serve traps.
//!
//! When the last handle to the port closes, the port closes: queued user packets are dropped,
//! every attached ring is closed, and a VCPU that rings a closed port's doorbell gets
//! BAD_STATE from `vcpu_enter` (DESIGN.md 2.1).

use super::packet::PortPacket;
use super::ring::PacketRing;
use super::{Status, ZxResult};
use crate::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use crate::sync::{Deadline, WaitQueue};
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;

/// User packets a port holds before `port_queue` answers SHOULD_WAIT.
pub const MAX_USER_PACKETS: usize = 2048;

/// A trap ring as the port sees it.
pub type TrapRing = PacketRing<PortPacket>;

#[derive(Default)]
struct State {
    user: VecDeque<PortPacket>,
    rings: Vec<Arc<TrapRing>>,
    /// Where the next scan starts: the user queue is source 0, ring `i` is source `i + 1`.
    next_source: usize,
}

/// See the module documentation.
#[derive(Default)]
pub struct Port {
    state: spin::Mutex<State>,
    closed: AtomicBool,
    waiters: WaitQueue,
    pub(super) handles: AtomicUsize,
}

impl core::fmt::Debug for Port {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Port").field("closed", &self.is_closed()).finish_non_exhaustive()
    }
}

impl Port {
    /// An open, empty port (`zx_port_create`).
    pub fn new() -> Self {
        Self::default()
    }

    /// `zx_port_queue`: queues a user packet; its type is forced to USER.
    pub fn queue_user(&self, packet: PortPacket) -> ZxResult {
        {
            let mut state = self.state.lock();
            if self.is_closed() {
                return Err(Status::BAD_STATE);
            }
            if state.user.len() >= MAX_USER_PACKETS {
                return Err(Status::SHOULD_WAIT);
            }
            state.user.push_back(PortPacket { packet_type: super::packet::PKT_TYPE_USER, ..packet });
        }
        self.waiters.notify_all();
        Ok(())
    }

    /// Takes a packet if one is queued, scanning the sources round-robin.
    pub fn try_take(&self) -> Option<PortPacket> {
        let mut state = self.state.lock();
        let sources = state.rings.len() + 1;
        for step in 0..sources {
            let source = (state.next_source + step) % sources;
            let packet = match source {
                0 => state.user.pop_front(),
                // SAFETY: rings are consumed only here, under the port's lock, so the port is
                // their single consumer.
                ring => unsafe { state.rings[ring - 1].pop() },
            };
            if packet.is_some() {
                state.next_source = (source + 1) % sources;
                return packet;
            }
        }
        None
    }

    /// `zx_port_wait`: the next packet, waiting until `deadline` (TIMED_OUT after it).
    pub fn wait(&self, deadline: Deadline) -> ZxResult<PortPacket> {
        loop {
            let ticket = self.waiters.ticket();
            if let Some(packet) = self.try_take() {
                return Ok(packet);
            }
            if !self.waiters.wait(ticket, deadline) {
                return self.try_take().ok_or(Status::TIMED_OUT);
            }
        }
    }

    /// Tells waiters that a ring attached to this port has a new packet; whether there were any.
    pub fn notify(&self) -> bool {
        self.waiters.notify_all()
    }

    /// Attaches a trap's ring; a closed port closes it at once.
    pub fn attach(&self, ring: Arc<TrapRing>) {
        let mut state = self.state.lock();
        if self.is_closed() {
            ring.close();
        }
        state.rings.push(ring);
    }

    /// Detaches a ring (its trap is being destroyed): its queued packets are canceled.
    pub fn detach(&self, ring: &Arc<TrapRing>) {
        let removed = {
            let mut state = self.state.lock();
            let before = state.rings.len();
            state.rings.retain(|r| !Arc::ptr_eq(r, ring));
            state.next_source = 0;
            before != state.rings.len()
        };
        if removed {
            ring.close();
        }
    }

    /// Packets queued from every source.
    pub fn pending(&self) -> usize {
        let state = self.state.lock();
        state.user.len() + state.rings.iter().map(|r| r.len()).sum::<usize>()
    }

    /// Whether the last handle has closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The last handle closed: drop user packets and close every ring.
    pub(super) fn on_zero_handles(&self) {
        let rings = {
            let mut state = self.state.lock();
            self.closed.store(true, Ordering::Release);
            state.user.clear();
            core::mem::take(&mut state.rings)
        };
        for ring in rings {
            ring.close();
        }
        self.waiters.notify_all();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn user_packets_come_out_in_order_and_are_bounded() {
        let port = Port::new();
        for i in 0..MAX_USER_PACKETS as u64 {
            port.queue_user(PortPacket::user(i, 0, [i; 4])).unwrap();
        }
        assert_eq!(port.queue_user(PortPacket::user(0, 0, [0; 4])), Err(Status::SHOULD_WAIT));
        for i in 0..MAX_USER_PACKETS as u64 {
            assert_eq!(port.wait(0).unwrap().key, i);
        }
        assert_eq!(port.wait(0), Err(Status::TIMED_OUT));
    }

    #[test]
    fn the_deadline_is_honoured() {
        let port = Port::new();
        let deadline = crate::sync::now() + 10_000_000;
        assert_eq!(port.wait(deadline), Err(Status::TIMED_OUT));
        assert!(crate::sync::now() >= deadline);
    }

    #[test]
    fn ring_packets_are_merged_with_user_packets() {
        let port = Port::new();
        let ring = Arc::new(TrapRing::new());
        port.attach(ring.clone());
        // SAFETY: this test is the ring's only producer.
        unsafe { ring.push(PortPacket::bell(7, 0x1000)).unwrap() };
        port.queue_user(PortPacket::user(7, 0, [0; 4])).unwrap();
        assert_eq!(port.pending(), 2);
        let mut types: Vec<u32> = (0..2).map(|_| port.wait(0).unwrap().packet_type).collect();
        types.sort();
        assert_eq!(types, vec![0, 3]);
    }

    #[test]
    fn detaching_cancels_only_that_rings_packets() {
        let port = Port::new();
        let ring = Arc::new(TrapRing::new());
        port.attach(ring.clone());
        // SAFETY: this test is the ring's only producer.
        unsafe { ring.push(PortPacket::bell(7, 0x1000)).unwrap() };
        port.queue_user(PortPacket::user(7, 0, [0; 4])).unwrap();
        port.detach(&ring);
        assert!(ring.is_closed());
        assert_eq!(port.wait(0).unwrap().packet_type, 0);
        assert_eq!(port.wait(0), Err(Status::TIMED_OUT));
    }

    #[test]
    fn several_threads_wait_on_one_port() {
        let port = Arc::new(Port::new());
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let port = port.clone();
                std::thread::spawn(move || port.wait(crate::sync::INFINITE).unwrap().key)
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(20));
        for key in 0..4 {
            port.queue_user(PortPacket::user(key, 0, [0; 4])).unwrap();
        }
        let mut keys: Vec<u64> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
        keys.sort();
        assert_eq!(keys, vec![0, 1, 2, 3]);
    }

    #[test]
    fn closing_drops_packets_and_closes_rings() {
        let port = Port::new();
        let ring = Arc::new(TrapRing::new());
        port.attach(ring.clone());
        port.queue_user(PortPacket::user(1, 0, [0; 4])).unwrap();
        port.on_zero_handles();
        assert!(ring.is_closed());
        assert_eq!(port.pending(), 0);
        assert_eq!(port.queue_user(PortPacket::user(1, 0, [0; 4])), Err(Status::BAD_STATE));
        let late = Arc::new(TrapRing::new());
        port.attach(late.clone());
        assert!(late.is_closed());
    }
}
