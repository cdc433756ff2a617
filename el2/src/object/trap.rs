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
/// Belfry extension: a BELL trap on whole 32-bit words inside a MEM trap's range (the words
/// are doorbells, the rest of the range stays MEM). Zircon's BELL and MEM traps are whole
/// pages, but a virtio-mmio transport has its QueueNotify register in the same 0x200-byte
/// window as its configuration registers, so its doorbell cannot have a page of its own.
/// `addr` and `size` are multiples of 4 (else INVALID_ARGS) and lie wholly inside one MEM
/// trap (else NOT_FOUND); two word ranges never overlap (ALREADY_EXISTS). It needs a port, as
/// a BELL trap does; a write to one of its words is a BELL packet with the written address,
/// a read of one is NOT_SUPPORTED, as for a BELL trap.
pub const BELFRY_GUEST_TRAP_BELL_WORDS: u32 = 0x4246_0000;

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

/// The traps of one guest, by address: sorted vectors (traps never overlap), so the exit path
/// finds one with a binary search over contiguous memory. `words` holds the doorbell words
/// ([`BELFRY_GUEST_TRAP_BELL_WORDS`]), each inside a MEM trap of `traps`, and takes precedence
/// there.
#[derive(Debug, Default, Clone)]
pub struct TrapMap {
    traps: Vec<Arc<Trap>>,
    words: Vec<Arc<Trap>>,
}

/// The trap of sorted, non-overlapping `traps` covering `address`.
fn covering(traps: &[Arc<Trap>], address: u64) -> Option<&Arc<Trap>> {
    let after = traps.partition_point(|trap| trap.addr <= address);
    let trap = traps.get(after.checked_sub(1)?)?;
    (address - trap.addr < trap.size).then_some(trap)
}

/// Whether `[addr, end)` overlaps one of sorted, non-overlapping `traps`.
fn overlapping(traps: &[Arc<Trap>], addr: u64, end: u64) -> bool {
    // The last trap starting before `end` is the only one that can overlap.
    let before = traps.partition_point(|trap| trap.addr < end);
    before > 0 && traps[before - 1].overlaps(addr, end)
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
        if overlapping(&self.traps, addr, end) {
            return Err(Status::ALREADY_EXISTS);
        }
        Ok(end)
    }

    /// Checks a doorbell-word range ([`BELFRY_GUEST_TRAP_BELL_WORDS`]): whole words, inside
    /// one MEM trap, overlapping no other word range.
    pub fn check_words(&self, addr: u64, size: u64) -> ZxResult<u64> {
        if size == 0 || !addr.is_multiple_of(4) || !size.is_multiple_of(4) {
            return Err(Status::INVALID_ARGS);
        }
        let end = addr.checked_add(size).ok_or(Status::OUT_OF_RANGE)?;
        match covering(&self.traps, addr) {
            Some(trap) if trap.kind == TrapKind::Mem && end - trap.addr <= trap.size => {}
            _ => return Err(Status::NOT_FOUND),
        }
        if overlapping(&self.words, addr, end) {
            return Err(Status::ALREADY_EXISTS);
        }
        Ok(end)
    }

    /// Inserts a doorbell-word trap after [`TrapMap::check_words`].
    pub fn insert_words(&mut self, trap: Trap) -> ZxResult<Arc<Trap>> {
        self.check_words(trap.addr, trap.size)?;
        let trap = Arc::new(trap);
        let at = self.words.partition_point(|t| t.addr < trap.addr);
        self.words.insert(at, trap.clone());
        Ok(trap)
    }

    /// Inserts a trap after [`TrapMap::check`].
    pub fn insert(&mut self, trap: Trap) -> ZxResult<Arc<Trap>> {
        self.check(trap.addr, trap.size)?;
        let trap = Arc::new(trap);
        let at = self.traps.partition_point(|t| t.addr < trap.addr);
        self.traps.insert(at, trap.clone());
        Ok(trap)
    }

    /// The trap covering `address`: a doorbell word there, else the page trap.
    pub fn find(&self, address: u64) -> Option<&Arc<Trap>> {
        if !self.words.is_empty() {
            if let Some(word) = covering(&self.words, address) {
                return Some(word);
            }
        }
        covering(&self.traps, address)
    }

    /// [`TrapMap::find`], trying first the page trap at index `*hint` and leaving in `*hint`
    /// the index of the page trap found: a VCPU's trapped accesses mostly go where its last one
    /// went (a device's registers), and one compare costs less than the search. Traps never
    /// overlap, so a trap that covers `address` is the answer whatever the hint was (a stale
    /// hint, after the map changed, only costs the search). Doorbell words take precedence
    /// inside their page traps, so with any words the hint is not used.
    pub fn find_hinted(&self, address: u64, hint: &mut usize) -> Option<&Arc<Trap>> {
        if !self.words.is_empty() {
            return self.find(address);
        }
        if let Some(trap) = self.traps.get(*hint) {
            if address.wrapping_sub(trap.addr) < trap.size {
                return Some(trap);
            }
        }
        let index = self.traps.partition_point(|trap| trap.addr <= address).checked_sub(1)?;
        let trap = self.traps.get(index)?;
        (address - trap.addr < trap.size).then(|| {
            *hint = index;
            trap
        })
    }

    /// Every trap: the page traps by address, then the doorbell words by address.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Trap>> {
        self.traps.iter().chain(&self.words)
    }
}

/// Where a map's doorbells may be, in three words, so that the short exit rules out most other
/// accesses (RAM being paged in, MEM registers) in a few instructions before it looks anything
/// up: bit `p % 64` of `pages` for every page `p` of a BELL trap or holding a doorbell word,
/// bit `p % 64` of `bell_pages` for every page of a BELL trap, and bit `w % 64` of `words`
/// for every word `w` of a doorbell word range. It over-approximates and never rules out a
/// doorbell (`a_doorbell_filter_never_rules_out_a_doorbell`); an access it lets through is
/// looked up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DoorbellFilter {
    pages: u64,
    bell_pages: u64,
    words: u64,
}

/// Bits `i % 64` for every `i` in `first..=last`.
fn filter_bits(first: u64, last: u64) -> u64 {
    if last - first >= 63 {
        return u64::MAX;
    }
    (first..=last).fold(0, |bits, i| bits | 1 << (i % 64))
}

impl DoorbellFilter {
    /// Where `pages`, `bell_pages` and `words` are, for the vector code that applies the filter.
    pub const OFFSETS: [usize; 3] = [
        core::mem::offset_of!(Self, pages),
        core::mem::offset_of!(Self, bell_pages),
        core::mem::offset_of!(Self, words),
    ];

    /// The filter of `map`'s doorbells (BELL traps and doorbell words).
    pub fn of(map: &TrapMap) -> Self {
        let mut filter = Self::default();
        // A trap's size is at least 1 and its end inside the guest space (`TrapMap::check`).
        let last = |trap: &Trap| trap.addr + (trap.size - 1);
        for trap in map.traps.iter().filter(|trap| trap.kind == TrapKind::Bell) {
            filter.bell_pages |= filter_bits(trap.addr >> 12, last(trap) >> 12);
        }
        filter.pages = filter.bell_pages;
        for word in &map.words {
            filter.pages |= filter_bits(word.addr >> 12, last(word) >> 12);
            filter.words |= filter_bits(word.addr >> 2, last(word) >> 2);
        }
        filter
    }

    /// Whether an access to `address` may ring a doorbell of the map: its page may hold one,
    /// and it is a BELL trap's or its word may be a doorbell word. (`belfry_guest_sync`, in
    /// `arch/aarch64/world.rs`, does the same in assembly, in this order.)
    pub fn may_ring(&self, address: u64) -> bool {
        let page = 1u64 << ((address >> 12) & 63);
        self.pages & page != 0 && (self.bell_pages & page != 0 || self.words & (1u64 << ((address >> 2) & 63)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(addr: u64, size: u64) -> Trap {
        Trap::new(TrapKind::Mem, addr, size, 0, None)
    }

    #[test]
    fn a_hint_never_changes_the_answer() {
        let mut map = TrapMap::default();
        for (addr, size) in [(0x1000, 0x1000), (0x3000, 0x2000), (0x8000, 0x1000)] {
            map.insert(mem(addr, size)).unwrap();
        }
        for hint in [0, 1, 2, 3, usize::MAX] {
            for address in [0, 0xfff, 0x1000, 0x1fff, 0x2000, 0x3000, 0x4fff, 0x5000, 0x8000, 0x8fff, 0x9000, u64::MAX]
            {
                let mut h = hint;
                let hinted = map.find_hinted(address, &mut h).map(|t| t.addr);
                assert_eq!(hinted, map.find(address).map(|t| t.addr), "address {address:#x}, hint {hint}");
                if let Some(addr) = hinted {
                    assert_eq!(map.traps[h].addr, addr, "the hint names the trap found");
                }
            }
        }
        // With doorbell words, a word inside a page trap wins over a hint naming the page trap.
        let page = Arc::new(mem(0x1000, 0x1000));
        let mut map = TrapMap::default();
        map.insert(Trap::new(TrapKind::Mem, 0x1000, 0x1000, 0, None)).unwrap();
        map.words.push(Arc::new(Trap::new(TrapKind::Bell, 0x1040, 4, 1, None)));
        let mut hint = 0;
        assert_eq!(map.find_hinted(0x1040, &mut hint).map(|t| t.kind), Some(TrapKind::Bell));
        assert_eq!(map.find_hinted(0x1080, &mut hint).map(|t| t.addr), Some(page.addr));
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

    /// Doorbell words: whole words inside one MEM trap, never overlapping each other; they
    /// take precedence over their MEM trap and nothing else.
    #[test]
    fn doorbell_words_live_inside_mem_traps() {
        let port = Arc::new(Port::new());
        let words = |addr, size| Trap::new(TrapKind::Bell, addr, size, 9, Some(port.clone()));
        let mut map = TrapMap::default();
        map.insert(mem(0x1000, 0x2000)).unwrap();
        map.insert(Trap::new(TrapKind::Bell, 0x4000, 0x1000, 1, Some(port.clone()))).unwrap();
        for (addr, size, status) in [
            (0x1050, 0, Status::INVALID_ARGS),
            (0x1052, 4, Status::INVALID_ARGS),
            (0x1050, 6, Status::INVALID_ARGS),
            (0x0ffc, 8, Status::NOT_FOUND),
            (0x2ffc, 8, Status::NOT_FOUND),
            (0x4050, 4, Status::NOT_FOUND),
            (0x9000, 4, Status::NOT_FOUND),
            (u64::MAX - 7, 4, Status::NOT_FOUND),
            (u64::MAX - 3, 4, Status::OUT_OF_RANGE),
        ] {
            assert_eq!(map.insert_words(words(addr, size)).err(), Some(status), "({addr:#x}, {size})");
        }
        map.insert_words(words(0x1050, 4)).unwrap();
        map.insert_words(words(0x2ffc, 4)).unwrap();
        assert_eq!(map.insert_words(words(0x104c, 8)).err(), Some(Status::ALREADY_EXISTS));
        map.insert_words(words(0x104c, 4)).unwrap();
        let kind_at = |address| map.find(address).map(|t| (t.kind, t.addr));
        assert_eq!(kind_at(0x1050), Some((TrapKind::Bell, 0x1050)));
        assert_eq!(kind_at(0x1053), Some((TrapKind::Bell, 0x1050)));
        assert_eq!(kind_at(0x1054), Some((TrapKind::Mem, 0x1000)));
        assert_eq!(kind_at(0x104b), Some((TrapKind::Mem, 0x1000)));
        assert_eq!(kind_at(0x2fff), Some((TrapKind::Bell, 0x2ffc)));
        assert_eq!(kind_at(0x3000), None);
        assert_eq!(map.iter().count(), 5, "page traps and words, for the VCPUs' rings");
        // Page traps still may not overlap the MEM trap the words are in.
        assert_eq!(map.insert(mem(0x2000, 0x1000)).err(), Some(Status::ALREADY_EXISTS));
    }

    /// The short exit's filter: every doorbell passes it (a doorbell it ruled out
    /// would be served by the full exit all the same, but slowly); a virtio-mmio layout's other
    /// registers and RAM on other pages do not.
    #[test]
    fn a_doorbell_filter_never_rules_out_a_doorbell() {
        let port = Arc::new(Port::new());
        let bell = |addr, size| Trap::new(TrapKind::Bell, addr, size, 1, Some(port.clone()));
        let every_doorbell_passes = |map: &TrapMap| {
            let filter = DoorbellFilter::of(map);
            // The filter sees an address only through its page and word numbers: one byte per
            // word (per page in a long page trap), and the last byte, stand for all of them.
            for trap in map.iter().filter(|trap| trap.kind == TrapKind::Bell) {
                let step = if trap.size > 0x2000 { 0x1000 } else { 4 };
                for address in (trap.addr..trap.addr + trap.size).step_by(step).chain([trap.addr + trap.size - 1]) {
                    assert!(filter.may_ring(address), "doorbell byte {address:#x} ruled out");
                }
            }
            filter
        };
        let mut map = TrapMap::default();
        assert_eq!(DoorbellFilter::of(&map), DoorbellFilter::default());
        assert!(!DoorbellFilter::of(&map).may_ring(0x1050));
        // A virtio-mmio window (page 0 mod 64): a MEM page with its QueueNotify word a doorbell.
        map.insert(mem(0x0a00_0000, 0x1000)).unwrap();
        map.insert_words(bell(0x0a00_0050, 4)).unwrap();
        // BELL page traps: one page (1 mod 64), three pages (61..=63 mod 64).
        map.insert(bell(0x2000_1000, 0x1000)).unwrap();
        map.insert(bell(0x2007_d000, 0x3000)).unwrap();
        // Eight words in a second MEM trap (page 5 mod 64, words 16..=23 mod 64).
        map.insert(mem(0x0b00_5000, 0x2000)).unwrap();
        map.insert_words(bell(0x0b00_5f40, 0x20)).unwrap();
        let filter = every_doorbell_passes(&map);
        for address in [0x0a00_0000, 0x0a00_0060, 0x0a00_0064, 0x0a00_0070, 0x0a00_0100, 0x0b00_5fe0, 0x0b00_6010] {
            assert_eq!(map.find(address).map(|t| t.kind), Some(TrapKind::Mem));
            assert!(!filter.may_ring(address), "MEM register {address:#x} let through");
        }
        for address in [0x4000_2000, 0x4000_4000, 0x4007_c000, 0x4000_5080] {
            assert!(!filter.may_ring(address), "RAM at {address:#x} let through");
        }
        // Words across a page boundary; ranges of 64 pages or words or more set every bit.
        map.insert_words(bell(0x0b00_5ff0, 0x20)).unwrap();
        map.insert_words(bell(0x0b00_5400, 0x100)).unwrap();
        map.insert(bell(0x3000_0000, 100 * 0x1000)).unwrap();
        let filter = every_doorbell_passes(&map);
        assert_eq!((filter.pages, filter.bell_pages, filter.words), (u64::MAX, u64::MAX, u64::MAX));
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
