//! Guest traps: address ranges whose accesses become packets (`zx_guest_set_trap`).
//!
//! BELL and MEM traps share one address space (the seed: "ZX_GUEST_TRAP_BELL shares the same
//! address space as ZX_GUEST_TRAP_MEM"), kept in a [`TrapMap`] ordered by address: overlapping
//! ranges are refused with ALREADY_EXISTS, adjacent ones are fine.
//!
//! A BELL trap owns one pre-allocated ring per VCPU of its guest ([`super::ring`]), attached to
//! its port. Destroying the trap detaches and closes its rings, which cancels its queued
//! packets and nothing else: user packets with the same key stay in the port.

use super::port::{Port, TrapRing};
use super::vmar::GUEST_PHYSICAL_SIZE;
use super::MAX_VCPUS_PER_GUEST;
use super::{Status, ZxResult};
use alloc::sync::Arc;
use alloc::vec::Vec;

/// `ZX_GUEST_TRAP_BELL`.
pub const GUEST_TRAP_BELL: u32 = 0;
/// `ZX_GUEST_TRAP_MEM`.
pub const GUEST_TRAP_MEM: u32 = 1;
/// `ZX_GUEST_TRAP_IO`.
pub const GUEST_TRAP_IO: u32 = 2;

/// What a trap does with an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapKind {
    /// Asynchronous doorbell: a packet on the port, the guest continues.
    Bell,
    /// Synchronous: the access is returned from `vcpu_enter` for the VMM to emulate.
    Mem,
}

/// One trap.
pub struct Trap {
    pub kind: TrapKind,
    pub addr: u64,
    pub size: u64,
    pub key: u64,
    port: Option<Arc<Port>>,
    rings: [spin::Once<Arc<TrapRing>>; MAX_VCPUS_PER_GUEST],
}

impl core::fmt::Debug for Trap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Trap").field("kind", &self.kind).field("addr", &self.addr).field("size", &self.size).finish()
    }
}

impl Trap {
    /// A trap; BELL traps need their port.
    pub fn new(kind: TrapKind, addr: u64, size: u64, key: u64, port: Option<Arc<Port>>) -> Self {
        Self { kind, addr, size, key, port, rings: core::array::from_fn(|_| spin::Once::new()) }
    }

    /// The port a BELL trap delivers to.
    pub fn port(&self) -> Option<&Arc<Port>> {
        self.port.as_ref()
    }

    /// Creates and attaches the ring of VCPU `vcpu` (not on the exit path: at `set_trap` or
    /// `vcpu_create`).
    pub fn add_vcpu(&self, vcpu: usize) {
        if let (Some(port), Some(slot)) = (&self.port, self.rings.get(vcpu)) {
            let mut created = false;
            let ring = slot.call_once(|| {
                created = true;
                Arc::new(TrapRing::new())
            });
            if created {
                port.attach(ring.clone());
            }
        }
    }

    /// The ring VCPU `vcpu` produces into (a wait-free load on the exit path).
    pub fn ring(&self, vcpu: usize) -> Option<&Arc<TrapRing>> {
        self.rings.get(vcpu)?.get()
    }

    /// Whether `[addr, addr + size)` and this trap share a byte.
    fn overlaps(&self, addr: u64, end: u64) -> bool {
        self.addr < end && addr < self.addr + self.size
    }
}

impl Drop for Trap {
    fn drop(&mut self) {
        if let Some(port) = &self.port {
            for ring in self.rings.iter().filter_map(|slot| slot.get()) {
                port.detach(ring);
            }
        }
    }
}

/// The traps of one guest, by address: a sorted vector (traps never overlap), so the exit
/// path finds one with a binary search over contiguous memory.
#[derive(Debug, Default)]
pub struct TrapMap {
    traps: Vec<Arc<Trap>>,
}

impl TrapMap {
    /// Checks that `[addr, addr + size)` is a valid, free range of the guest-physical space.
    pub fn check(&self, addr: u64, size: u64) -> ZxResult<u64> {
        if size == 0 {
            return Err(Status::OUT_OF_RANGE);
        }
        let end = addr.checked_add(size).ok_or(Status::OUT_OF_RANGE)?;
        if end > GUEST_PHYSICAL_SIZE {
            return Err(Status::OUT_OF_RANGE);
        }
        // The last trap starting before `end` is the only one that can overlap.
        let before = self.traps.partition_point(|trap| trap.addr < end);
        if before > 0 && self.traps[before - 1].overlaps(addr, end) {
            return Err(Status::ALREADY_EXISTS);
        }
        Ok(end)
    }

    /// Inserts a trap after [`TrapMap::check`].
    pub fn insert(&mut self, trap: Trap) -> ZxResult<Arc<Trap>> {
        self.check(trap.addr, trap.size)?;
        let trap = Arc::new(trap);
        self.insert_shared(trap.clone());
        Ok(trap)
    }

    /// Inserts an existing trap (copy-on-write clones of the map).
    pub(super) fn insert_shared(&mut self, trap: Arc<Trap>) {
        let at = self.traps.partition_point(|t| t.addr < trap.addr);
        self.traps.insert(at, trap);
    }

    /// The trap covering `address`.
    pub fn find(&self, address: u64) -> Option<&Arc<Trap>> {
        let after = self.traps.partition_point(|trap| trap.addr <= address);
        let trap = self.traps.get(after.checked_sub(1)?)?;
        (address - trap.addr < trap.size).then_some(trap)
    }

    /// Every trap, by address.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Trap>> {
        self.traps.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(addr: u64, size: u64) -> Trap {
        Trap::new(TrapKind::Mem, addr, size, 0, None)
    }

    /// DESIGN.md Appendix A item 23, Zircon's trap map unit test.
    #[test]
    fn trap_map_rules() {
        let mut map = TrapMap::default();
        map.insert(mem(10, 10)).unwrap();
        map.insert(mem(20, 10)).unwrap();
        map.insert(mem(35, 5)).unwrap();
        for (addr, size) in [(0, 11), (10, 10), (11, 8), (15, 10), (30, 10), (36, 5)] {
            assert_eq!(map.insert(mem(addr, size)).err(), Some(Status::ALREADY_EXISTS), "({addr}, {size})");
        }
        for (addr, size) in [(0, 10), (30, 5), (40, 10)] {
            assert!(map.insert(mem(addr, size)).is_ok(), "({addr}, {size})");
        }
        assert_eq!(map.insert(mem(60, 0)).err(), Some(Status::OUT_OF_RANGE), "length 0");
        assert_eq!(map.insert(mem(u64::MAX - 4, 10)).err(), Some(Status::OUT_OF_RANGE), "address overflow");
        assert_eq!(
            map.insert(mem(GUEST_PHYSICAL_SIZE - 4, 8)).err(),
            Some(Status::OUT_OF_RANGE),
            "past the guest space"
        );
        assert_eq!(map.find(34).map(|t| t.addr), Some(30));
        assert_eq!(map.find(49).map(|t| t.addr), Some(40));
        assert!(map.find(50).is_none());
        assert_eq!(map.iter().count(), 6);
    }

    #[test]
    fn bell_rings_attach_once_per_vcpu_and_detach_on_drop() {
        let port = Arc::new(Port::new());
        let trap = Trap::new(TrapKind::Bell, 0x1000, 0x1000, 5, Some(port.clone()));
        trap.add_vcpu(0);
        trap.add_vcpu(0);
        trap.add_vcpu(1);
        trap.add_vcpu(MAX_VCPUS_PER_GUEST);
        let ring = trap.ring(0).unwrap().clone();
        // SAFETY: this test is the only producer.
        unsafe { ring.push(super::super::packet::PortPacket::bell(5, 0x1000)).unwrap() };
        assert_eq!(port.pending(), 1);
        assert!(trap.ring(2).is_none());
        drop(trap);
        assert!(ring.is_closed());
        assert_eq!(port.pending(), 0);
    }
}
