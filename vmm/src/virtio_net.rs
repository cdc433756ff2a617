//! virtio-net (VIRTIO 1.2, section 5.1): an Ethernet interface whose cable is a point-to-point
//! link to another VM of the bundle (`belfry,net`: the VMs naming the same link).
//!
//! Only VIRTIO_NET_F_MAC is offered (besides the transport's own features): no checksum
//! offload, no segmentation offload, no mergeable buffers, so every frame is a whole Ethernet
//! frame of at most [`MAX_FRAME`] bytes behind the 12-byte header, and the driver posts receive
//! buffers that hold one. A frame goes from the sender's transmit chain straight into a
//! receive chain of the peer; when the peer has posted none, the sender keeps it (and the rest
//! of its transmit queue) until the peer posts one: a link never drops a frame for want of a
//! buffer, as TCP and a 0 %-loss ping need. A transmit chain that is malformed (no header, or a
//! frame longer than [`MAX_FRAME`]) is returned to its driver unsent; a receive chain too small
//! for the frame is returned empty and the next one is tried.

use crate::virtio_mmio::Transport;
use crate::virtqueue::{Chain, Memory, QueueError};
use alloc::vec::Vec;

/// The virtio device ID of a network card.
pub const DEVICE_ID: u32 = 1;
/// The device has a MAC address (in its configuration space).
pub const F_MAC: u64 = 1 << 5;
/// Queues: receiveq1, transmitq1.
pub const RECEIVEQ: usize = 0;
pub const TRANSMITQ: usize = 1;
/// `struct virtio_net_hdr` with VIRTIO_F_VERSION_1: 12 bytes.
pub const HEADER: usize = 12;
/// The largest frame without offloads: 1500 bytes of payload, 14 of Ethernet header, and a
/// VLAN tag.
pub const MAX_FRAME: usize = 1518;
/// Queue size.
pub const QUEUE_SIZE: u16 = 256;

/// The MAC address of a VM's interface: locally administered, unicast, from the VM's index in
/// its bundle: 52:54:00:be:1f:NN.
pub fn mac(index: u8) -> [u8; 6] {
    [0x52, 0x54, 0x00, 0xbe, 0x1f, index]
}

/// A transport for a network card with `mac`: two queues, the MAC in the configuration space
/// (then the status word, which the driver ignores without VIRTIO_NET_F_STATUS).
pub fn transport(mac: [u8; 6]) -> Transport {
    let mut config = Vec::from(mac);
    config.extend_from_slice(&[1, 0]);
    Transport::new(DEVICE_ID, F_MAC, &[QUEUE_SIZE, QUEUE_SIZE], config)
}

/// A frame taken from a transmit queue, waiting to reach the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The transmit chain, returned to its driver once the frame is delivered.
    pub chain: Chain,
    /// The frame's length (without the header).
    pub len: usize,
}

/// What taking from a transmit queue gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Taken {
    /// Nothing to send.
    Empty,
    /// A frame to deliver.
    Frame(Outgoing),
    /// A malformed chain, already returned to the driver unsent.
    Refused,
}

/// A queue error fails the device (DEVICE_NEEDS_RESET) before it is returned.
fn failing<T>(transport: &mut Transport, result: Result<T, QueueError>) -> Result<T, QueueError> {
    if result.is_err() {
        transport.fail();
    }
    result
}

/// Takes the next chain of the transmit queue. A queue error fails the device.
pub fn take(transport: &mut Transport, memory: &mut impl Memory) -> Result<Taken, QueueError> {
    let result = take_inner(transport, memory);
    failing(transport, result)
}

fn take_inner(transport: &mut Transport, memory: &mut impl Memory) -> Result<Taken, QueueError> {
    let Some(queue) = transport.queue(TRANSMITQ) else { return Ok(Taken::Empty) };
    let Some(chain) = queue.pop(memory)? else { return Ok(Taken::Empty) };
    let readable = chain.readable_len();
    if readable < HEADER as u64 || readable - HEADER as u64 > MAX_FRAME as u64 {
        complete_inner(transport, memory, chain.head)?;
        return Ok(Taken::Refused);
    }
    Ok(Taken::Frame(Outgoing { len: (readable - HEADER as u64) as usize, chain }))
}

/// Returns transmit chain `head` to its driver. A queue error fails the device.
pub fn complete(transport: &mut Transport, memory: &mut impl Memory, head: u16) -> Result<(), QueueError> {
    let result = complete_inner(transport, memory, head);
    failing(transport, result)
}

fn complete_inner(transport: &mut Transport, memory: &mut impl Memory, head: u16) -> Result<(), QueueError> {
    if let Some(queue) = transport.queue(TRANSMITQ) {
        if queue.push_used(memory, head, 0)? {
            transport.used_buffers();
        }
    }
    Ok(())
}

/// What delivering a frame did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The frame is in a receive buffer of the peer.
    Delivered,
    /// The peer has no receive buffer (or no live device): keep the frame.
    NoBuffer,
    /// The sender's buffers could not be read (outside its RAM): the frame is dropped.
    Unreadable,
}

/// Delivers a frame of `len` bytes into the peer's next receive chain: `copy(from, address,
/// n)` moves `n` bytes of the frame, from its byte `from`, to the peer's guest-physical
/// `address` (one piece of a receive buffer), straight from the sender's memory; `false` when
/// the sender's buffers cannot be read. A queue error fails the peer's device.
pub fn deliver(
    transport: &mut Transport,
    memory: &mut impl Memory,
    len: usize,
    copy: &mut dyn FnMut(u64, u64, usize) -> bool,
) -> Result<Delivery, QueueError> {
    let result = deliver_inner(transport, memory, len, copy);
    failing(transport, result)
}

fn deliver_inner(
    transport: &mut Transport,
    memory: &mut impl Memory,
    len: usize,
    copy: &mut dyn FnMut(u64, u64, usize) -> bool,
) -> Result<Delivery, QueueError> {
    loop {
        let Some(queue) = transport.queue(RECEIVEQ) else { return Ok(Delivery::NoBuffer) };
        let Some(chain) = queue.pop(memory)? else { return Ok(Delivery::NoBuffer) };
        if chain.writable_len() < (HEADER + len) as u64 {
            // Too small for the frame (the driver is wrong): returned empty, try the next.
            let wanted = queue.push_used(memory, chain.head, 0)?;
            if wanted {
                transport.used_buffers();
            }
            continue;
        }
        // The header: no offload flags, one buffer (num_buffers = 1).
        let mut header = [0u8; HEADER];
        header[10] = 1;
        let header_ok = chain.write(memory, 0, &header).is_ok();
        let moved = header_ok
            && chain
                .pieces(true, HEADER as u64, len, |address, range| {
                    if copy(range.start as u64, address, range.len()) {
                        Ok(())
                    } else {
                        Err(QueueError::OutsideRam(address))
                    }
                })
                .is_ok_and(|n| n == len);
        if !moved {
            let wanted = queue.push_used(memory, chain.head, 0)?;
            if wanted {
                transport.used_buffers();
            }
            return Ok(Delivery::Unreadable);
        }
        if queue.push_used(memory, chain.head, (HEADER + len) as u32)? {
            transport.used_buffers();
        }
        return Ok(Delivery::Delivered);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio_mmio::{self as mmio, driver, driver::Ring};
    use crate::virtqueue::SliceMemory;
    use alloc::vec;

    const BASE: u64 = 0x4000_0000;

    struct Nic {
        ram: SliceMemory<Vec<u8>>,
        transport: Transport,
        rings: [Ring; 2],
    }

    impl Nic {
        fn new(index: u8) -> Self {
            let mut transport = transport(mac(index));
            let rings = [Ring::new(BASE, 16), Ring::new(BASE + 0x8000, 16)];
            assert_eq!(driver::bring_up(&mut transport, F_MAC, &[&rings[0], &rings[1]]), mmio::Event::DriverOk);
            Self { ram: SliceMemory { base: BASE, bytes: vec![0; 0x2_0000] }, transport, rings }
        }

        fn offer(&mut self, queue: usize, address: u64, len: u32) {
            self.rings[queue].offer(&mut self.ram, address, len, queue == RECEIVEQ);
        }

        fn used(&self, queue: usize, slot: u64) -> (u32, u32) {
            self.rings[queue].used(&self.ram, slot)
        }

        fn used_idx(&self, queue: usize) -> u16 {
            self.rings[queue].used_idx(&self.ram)
        }
    }

    /// Delivers frame `out` of `a` into `b`: the pieces `deliver` asks for are read from `a`'s
    /// memory and written into `b`'s after it returns (as the VMO-to-VMO copy does, one piece
    /// at a time).
    fn carry(a: &Nic, b: &mut Nic, out: &Outgoing) -> Delivery {
        let mut pieces: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut copy = |from: u64, address: u64, n: usize| {
            let mut bytes = vec![0u8; n];
            let ok = matches!(out.chain.read(&a.ram, HEADER as u64 + from, &mut bytes), Ok(m) if m == n);
            pieces.push((address, bytes));
            ok
        };
        let delivery = deliver(&mut b.transport, &mut b.ram, out.len, &mut copy).unwrap();
        for (address, bytes) in pieces {
            b.ram.write(address, &bytes).unwrap();
        }
        delivery
    }

    /// Sends `a`'s next frame to `b`, as the link does.
    fn send(a: &mut Nic, b: &mut Nic) -> Option<Delivery> {
        let Taken::Frame(out) = take(&mut a.transport, &mut a.ram).unwrap() else { return None };
        let delivery = carry(a, b, &out);
        if delivery != Delivery::NoBuffer {
            complete(&mut a.transport, &mut a.ram, out.chain.head).unwrap();
        }
        Some(delivery)
    }

    #[test]
    fn configuration_and_features() {
        let nic = Nic::new(3);
        assert_eq!(nic.transport.read(mmio::DEVICE_ID, 4), 1);
        assert_eq!(nic.transport.read(mmio::CONFIG, 4), 0xbe00_5452);
        assert_eq!(nic.transport.read(mmio::CONFIG + 4, 2), 0x031f);
        assert!(nic.transport.negotiated(F_MAC));
    }

    #[test]
    fn a_frame_crosses_the_link_once_the_peer_has_a_buffer() {
        let (mut a, mut b) = (Nic::new(1), Nic::new(2));
        let frame: Vec<u8> = (0..60u8).collect();
        a.ram.write(BASE + 0x1_0000, &[0; HEADER]).unwrap();
        a.ram.write(BASE + 0x1_0000 + HEADER as u64, &frame).unwrap();
        a.offer(1, BASE + 0x1_0000, (HEADER + 60) as u32);
        // No receive buffer on b yet: the frame stays with a, its chain not returned.
        let Taken::Frame(out) = take(&mut a.transport, &mut a.ram).unwrap() else { panic!("a frame") };
        assert_eq!(out.len, 60);
        let mut never = |_: u64, _: u64, _: usize| -> bool { unreachable!() };
        assert_eq!(deliver(&mut b.transport, &mut b.ram, 60, &mut never).unwrap(), Delivery::NoBuffer);
        assert_eq!(a.used_idx(1), 0);
        // b posts a too-small buffer and a good one: the first comes back empty.
        b.offer(0, BASE + 0x1_1000, 40);
        b.offer(0, BASE + 0x1_2000, 1526);
        assert_eq!(carry(&a, &mut b, &out), Delivery::Delivered);
        complete(&mut a.transport, &mut a.ram, out.chain.head).unwrap();
        assert_eq!((b.used(0, 0), b.used(0, 1)), ((0, 0), (1, 72)));
        let mut got = vec![0u8; 72];
        b.ram.read(BASE + 0x1_2000, &mut got).unwrap();
        assert_eq!(&got[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0], "num_buffers 1, no offloads");
        assert_eq!(&got[12..], &frame[..]);
        assert_eq!((a.used_idx(1), a.used(1, 0)), (1, (0, 0)));
        assert!(a.transport.interrupt() && b.transport.interrupt());
    }

    #[test]
    fn malformed_transmit_chains_are_refused() {
        let (mut a, mut b) = (Nic::new(1), Nic::new(2));
        b.offer(0, BASE + 0x1_2000, 2048);
        a.offer(1, BASE + 0x1_0000, 8);
        assert_eq!(take(&mut a.transport, &mut a.ram).unwrap(), Taken::Refused, "shorter than the header");
        a.offer(1, BASE + 0x1_0000, (HEADER + MAX_FRAME + 1) as u32);
        assert_eq!(take(&mut a.transport, &mut a.ram).unwrap(), Taken::Refused, "longer than a frame");
        assert_eq!(a.used_idx(1), 2);
        // A frame whose buffer is outside RAM: dropped, both chains returned.
        a.offer(1, 0x1000, 100);
        assert_eq!(send(&mut a, &mut b), Some(Delivery::Unreadable));
        assert_eq!((a.used_idx(1), b.used_idx(0)), (3, 1));
        assert!(a.transport.live() && b.transport.live());
        // A head outside the table: the queue is broken, the card needs a reset.
        let avail = a.rings[TRANSMITQ].avail;
        a.ram.write(avail + 4 + 2 * 3, &99u16.to_le_bytes()).unwrap();
        a.ram.write(avail + 2, &4u16.to_le_bytes()).unwrap();
        assert!(take(&mut a.transport, &mut a.ram).is_err());
        assert_eq!(a.transport.status() & mmio::DEVICE_NEEDS_RESET, mmio::DEVICE_NEEDS_RESET);
        assert!(!a.transport.live() && b.transport.live());
    }
}
