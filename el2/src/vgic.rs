//! The list-register allocator: which of a VCPU's pending virtual interrupts sit in the GIC's
//! list registers when it enters, in what state, and what maintenance interrupt brings it back.
//! Pure logic over the register words, so the host tests it; `arch::aarch64::vgic` moves the
//! words in and out of the hardware (ICH_* on GICv3, the GICH frame on GICv2).
//!
//! Rules, in the order `fill` applies them:
//! - Pending vectors are placed best first: lowest priority value, then lowest ID, so the guest
//!   takes them in priority order (the virtual CPU interface signals the best list register).
//! - A vector already live in a list register never gets a second one (two registers with one
//!   vINTID are UNPREDICTABLE): a new pending merges into it (active becomes active+pending).
//! - With no free register, a better vector takes the place of the worst merely pending one,
//!   which goes back to the pending set.
//! - With every register active (nesting deeper than the registers), a strictly better vector
//!   evicts the worst active one into the *spilled* list. Its active-priority bit stays in the
//!   saved APR, so the guest's running priority is unchanged; when the guest later ends it, the
//!   interface finds no list register, counts the EOI in HCR.EOIcount and (LRENPIE) exits; the
//!   allocator then deactivates that many spilled interrupts, best first: a guest ends its
//!   interrupts innermost (best) first. A spilled vector raised again waits until then.
//! - With vectors still waiting: NPIE when a register still holds a pending one (exit once the
//!   guest has taken them); else UIE and the EOI bit on every register (exit when the guest
//!   deactivates one: "no pending" would hold at once and livelock).
//! - One vector may be *hardware-forwarded* (the virtual timer's, `with_hardware`): placed with
//!   the HW bit and its own INTID as the physical one, so the guest's deactivation deactivates
//!   the physical PPI too, with no maintenance interrupt. The architecture allows such a
//!   register neither active-and-pending nor an EOI request (the EOI bit is part of the
//!   physical INTID field): where either is needed (the VMM raised the vector again while the
//!   guest handles it; every register is to ask for EOI maintenance) the register is turned
//!   into a software one asking for EOI maintenance, and [`ListRegisters::forwarded`] tells the
//!   caller that the physical PPI is no longer the guest's to end.

use crate::object::signals::Signals;

/// List registers the allocator manages at most (GICv3 has up to 16, the GIC-400 and QEMU 4).
pub const MAX_LRS: usize = 8;
/// Spilled active interrupts kept at most: more than the virtual interface has priority levels
/// (32 with QEMU's and the GIC-400's five bits), so a guest cannot nest deeper than this.
pub const MAX_SPILLED: usize = 32;

/// ICH_HCR_EL2 / GICH_HCR bits (the same positions on both generations).
pub const HCR_EN: u64 = 1 << 0;
pub const HCR_UIE: u64 = 1 << 1;
pub const HCR_LRENPIE: u64 = 1 << 2;
pub const HCR_NPIE: u64 = 1 << 3;
const HCR_EOICOUNT_SHIFT: u32 = 27;

/// The list-register layout of one GIC generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `ICH_LR<n>_EL2`: vINTID bits 31:0, priority 55:48, group 60, state 63:62, EOI 41.
    V3,
    /// `GICH_LR<n>`: VirtualID bits 9:0, EOI 19, priority 27:23 (top five bits), state 29:28;
    /// group 0 (the guest's GICV signals group 0 as IRQ).
    V2,
}

impl Flavor {
    fn state(self, lr: u64) -> u64 {
        match self {
            Flavor::V3 => (lr >> 62) & 0b11,
            Flavor::V2 => (lr >> 28) & 0b11,
        }
    }

    /// The state field and the vector field, as masks (for scans that compare words whole).
    fn state_and_vector_masks(self) -> (u64, u64) {
        match self {
            Flavor::V3 => (0b11 << 62, 0xffff_ffff),
            Flavor::V2 => (0b11 << 28, 0x3ff),
        }
    }

    fn pending_bit(self) -> u64 {
        match self {
            Flavor::V3 => 1 << 62,
            Flavor::V2 => 1 << 28,
        }
    }

    fn eoi_bit(self) -> u64 {
        match self {
            Flavor::V3 => 1 << 41,
            Flavor::V2 => 1 << 19,
        }
    }

    /// The HW bit and the physical-INTID field (which holds the EOI bit when HW is clear).
    fn hardware_bits(self) -> (u64, u64) {
        match self {
            Flavor::V3 => (1 << 61, 0x1fff << 32),
            Flavor::V2 => (1 << 31, 0x3ff << 10),
        }
    }

    /// `lr` made hardware-forwarded to physical INTID `physical` (no EOI request).
    fn forward(self, lr: u64, physical: u32) -> u64 {
        let (hw, field) = self.hardware_bits();
        let shift = field.trailing_zeros();
        (lr & !field) | hw | ((u64::from(physical) << shift) & field)
    }

    fn is_forwarded(self, lr: u64) -> bool {
        lr & self.hardware_bits().0 != 0
    }

    /// `lr` as a software register asking for EOI maintenance (HW and physical INTID cleared).
    fn with_eoi(self, lr: u64) -> u64 {
        let (hw, field) = self.hardware_bits();
        if lr & hw != 0 {
            (lr & !(hw | field)) | self.eoi_bit()
        } else {
            lr | self.eoi_bit()
        }
    }

    fn vector(self, lr: u64) -> u32 {
        match self {
            Flavor::V3 => lr as u32,
            Flavor::V2 => (lr & 0x3ff) as u32,
        }
    }

    fn priority(self, lr: u64) -> u8 {
        match self {
            Flavor::V3 => (lr >> 48) as u8,
            Flavor::V2 => (((lr >> 23) & 0x1f) << 3) as u8,
        }
    }

    /// A pending list-register word; `eoi` asks for a maintenance interrupt when the guest
    /// deactivates it.
    pub fn encode(self, vector: u32, priority: u8, eoi: bool) -> u64 {
        let eoi = if eoi { self.eoi_bit() } else { 0 };
        match self {
            Flavor::V3 => (0b01 << 62) | (1 << 60) | eoi | (u64::from(priority) << 48) | u64::from(vector),
            Flavor::V2 => (0b01 << 28) | (u64::from(priority >> 3) << 23) | eoi | u64::from(vector & 0x3ff),
        }
    }
}

/// An active interrupt the guest holds outside the list registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Spilled {
    vector: u32,
    priority: u8,
}

/// See the module documentation.
#[derive(Debug)]
pub struct ListRegisters {
    flavor: Flavor,
    count: usize,
    /// The list-register words, as saved from / loaded into the hardware.
    pub lrs: [u64; MAX_LRS],
    /// The control word to load with them (En and the maintenance requests).
    pub hcr: u64,
    spilled: [Spilled; MAX_SPILLED],
    spilled_count: usize,
    /// The vector placed hardware-forwarded to the physical INTID of the same number
    /// (`u32::MAX`: none).
    hardware_vector: u32,
    /// The last `fill` put the hardware vector in a list register of its own.
    hardware_placed: bool,
}

impl ListRegisters {
    /// `count` list registers (at most [`MAX_LRS`] are used) of the `flavor` layout, all free.
    pub fn new(flavor: Flavor, count: usize) -> Self {
        Self {
            flavor,
            count: count.min(MAX_LRS),
            lrs: [0; MAX_LRS],
            hcr: 0,
            spilled: [Spilled { vector: 0, priority: 0 }; MAX_SPILLED],
            spilled_count: 0,
            hardware_vector: u32::MAX,
            hardware_placed: false,
        }
    }

    /// The same, with `vector` placed hardware-forwarded to the physical interrupt of the same
    /// INTID (the virtual timer's: the guest's deactivation of its interrupt deactivates the
    /// level-triggered PPI, which then signals again only if the timer still holds it).
    pub fn with_hardware(self, vector: u32) -> Self {
        Self { hardware_vector: vector, ..self }
    }

    /// How many list registers are in use by this allocator.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether no list register in use holds anything (an entry's `load` writes none then).
    /// Those past `count` are never written and stay 0, so the first four are looked at
    /// whatever `count` is (two pairs, no loop) and the rest only when more are in use.
    #[inline]
    pub fn all_clear(&self) -> bool {
        let [a, b, c, d, rest @ ..] = &self.lrs;
        let mut any = a | b | c | d;
        if self.count > 4 {
            any |= rest.iter().fold(0, |any, &lr| any | lr);
        }
        any == 0
    }

    /// After the guest exits, with the registers saved into `lrs`: frees those whose interrupt
    /// is over, and deactivates the spilled interrupts the guest ended (`hcr` is the control
    /// register as the guest left it, with its EOIcount).
    pub fn saved(&mut self, hcr: u64) {
        for lr in &mut self.lrs[..self.count] {
            if self.flavor.state(*lr) == 0 {
                // Cleared so an old EOI request cannot raise the maintenance interrupt again.
                *lr = 0;
            }
        }
        let ended = ((hcr >> HCR_EOICOUNT_SHIFT) & 0x1f) as usize;
        for _ in 0..ended.min(self.spilled_count) {
            self.remove_spilled(self.best_spilled());
        }
        self.hcr = 0;
    }

    fn best_spilled(&self) -> usize {
        let mut best = 0;
        for (index, spilled) in self.spilled[..self.spilled_count].iter().enumerate() {
            if spilled.priority < self.spilled[best].priority {
                best = index;
            }
        }
        best
    }

    fn remove_spilled(&mut self, index: usize) {
        if index < self.spilled_count {
            self.spilled.copy_within(index + 1..self.spilled_count, index);
            self.spilled_count -= 1;
        }
    }

    fn is_spilled(&self, vector: u32) -> bool {
        self.spilled[..self.spilled_count].iter().any(|s| s.vector == vector)
    }

    /// The vectors held active outside the list registers.
    pub fn spilled(&self) -> impl Iterator<Item = u32> + '_ {
        self.spilled[..self.spilled_count].iter().map(|s| s.vector)
    }

    #[inline(never)]
    fn live(&self, vector: u32) -> Option<usize> {
        // On the exit path several times per exit: one mask pair, then whole-word compares.
        let (state, vectors) = self.flavor.state_and_vector_masks();
        let vector = u64::from(vector);
        self.lrs[..self.count].iter().position(|&lr| lr & state != 0 && lr & vectors == vector)
    }

    /// The register whose interrupt is worst (highest priority value, then highest vector) among
    /// those in `state`.
    fn worst_in_state(&self, state: u64) -> Option<usize> {
        let key = |i: usize| (self.flavor.priority(self.lrs[i]), self.flavor.vector(self.lrs[i]));
        (0..self.count).filter(|&i| self.flavor.state(self.lrs[i]) == state).max_by_key(|&i| key(i))
    }

    /// Moves pending vectors of `signals` into the list registers (see the module
    /// documentation) and sets `hcr` for the entry.
    pub fn fill(&mut self, signals: &Signals) {
        let flavor = self.flavor;
        let mut waiting = false;
        let mut hardware_placed = false;
        // GICv2 SGIs whose next source must wait until the one in a list register is over
        // (one source per SGI in the list registers at a time; its EOI brings the next).
        let mut deferred: u16 = 0;
        // Each pass places one vector; a vector placed leaves the pending set, one evicted
        // re-enters it only when a strictly better one takes its place, so this ends.
        while let Some((vector, priority)) =
            signals.best_pending(|v| self.is_spilled(v) || (v < 16 && deferred & (1 << v) != 0))
        {
            // GICv2 SGIs carry their source in the list register (CPUID, bits 12:10).
            let sgi = flavor == Flavor::V2 && vector < 16;
            let sources = if sgi { signals.sgi_sources(vector) } else { 0 };
            let mut source = sources.trailing_zeros().min(7) as u8;
            let hardware = vector == self.hardware_vector;
            let word = || {
                let lr = flavor.encode(vector, priority, false);
                if hardware {
                    flavor.forward(lr, vector)
                } else if sgi {
                    lr | (u64::from(source) << 10)
                } else {
                    lr
                }
            };
            if let Some(index) = self.live(vector) {
                let live_source = ((self.lrs[index] >> 10) & 0b111) as u8;
                if sgi && (sources == 0 && live_source != 0 || sources != 0 && sources & (1 << live_source) == 0) {
                    // Another source's SGI: after this one ends.
                    self.lrs[index] = flavor.with_eoi(self.lrs[index]);
                    deferred |= 1 << vector;
                    continue;
                }
                // The same source again: pending once more in its register (a forwarded
                // register cannot be active-and-pending: it becomes a software one).
                source = live_source;
                let lr = self.lrs[index];
                let lr = if flavor.is_forwarded(lr) && flavor.state(lr) != 0b01 { flavor.with_eoi(lr) } else { lr };
                self.lrs[index] = lr | flavor.pending_bit();
            } else if let Some(index) = (0..self.count).find(|&i| flavor.state(self.lrs[i]) == 0) {
                self.lrs[index] = word();
                hardware_placed |= hardware;
            } else if let Some(index) = self.worst_in_state(0b01).filter(|&i| flavor.priority(self.lrs[i]) > priority) {
                let evicted = self.lrs[index];
                let evicted_vector = flavor.vector(evicted);
                if flavor == Flavor::V2 && evicted_vector < 16 {
                    signals.raise_sgi(evicted_vector, ((evicted >> 10) & 0b111) as u8);
                } else {
                    signals.raise(evicted_vector);
                }
                self.lrs[index] = word();
                hardware_placed |= hardware;
            } else if let Some(index) = self
                .worst_in_state(0b10)
                .filter(|&i| flavor.priority(self.lrs[i]) > priority && self.spilled_count < MAX_SPILLED)
            {
                let lr = self.lrs[index];
                self.spilled[self.spilled_count] = Spilled { vector: flavor.vector(lr), priority: flavor.priority(lr) };
                self.spilled_count += 1;
                self.lrs[index] = word();
                hardware_placed |= hardware;
            } else {
                waiting = true;
                break;
            }
            if sgi && sources != 0 {
                signals.take_sgi_source(vector, source);
                if sources & !(1 << source) != 0 {
                    // More sources: the vector stays pending, for after this one.
                    if let Some(index) = self.live(vector) {
                        self.lrs[index] = flavor.with_eoi(self.lrs[index]);
                    }
                    deferred |= 1 << vector;
                    continue;
                }
            }
            signals.clear(vector);
        }
        self.hardware_placed = hardware_placed;
        self.hcr = HCR_EN;
        if self.spilled_count > 0 {
            self.hcr |= HCR_LRENPIE;
        }
        if waiting {
            if self.has_pending() {
                self.hcr |= HCR_NPIE;
            } else {
                self.hcr |= HCR_UIE;
                for lr in &mut self.lrs[..self.count] {
                    *lr = flavor.with_eoi(*lr);
                }
            }
        }
    }

    /// Whether a list register holds an interrupt in the pending state alone: what the
    /// hardware counts for NPIE and what keeps a WFI awake. Active-and-pending does not count
    /// (the guest cannot take it before it ends the active one; with every register active or
    /// active-and-pending, counting it made NPIE fire on every entry, a self-livelock).
    #[inline(never)]
    pub fn has_pending(&self) -> bool {
        let (state, _) = self.flavor.state_and_vector_masks();
        let pending = self.flavor.pending_bit();
        self.lrs[..self.count].iter().any(|&lr| lr & state == pending)
    }

    /// Whether a list register asks for a maintenance interrupt at its interrupt's end.
    pub fn wants_eoi_maintenance(&self) -> bool {
        let eoi = self.flavor.eoi_bit();
        self.lrs[..self.count].iter().any(|&lr| lr & eoi != 0 && !self.flavor.is_forwarded(lr))
    }

    /// Whether `vector` is in a list register (pending, active or both).
    pub fn holds(&self, vector: u32) -> bool {
        self.live(vector).is_some()
    }

    /// Whether `vector` is in a list register hardware-forwarded (`Some(true)`: its physical
    /// interrupt is the guest's to deactivate), in a software one (`Some(false)`), or in none.
    pub fn forwarded(&self, vector: u32) -> Option<bool> {
        self.live(vector).map(|index| self.flavor.is_forwarded(self.lrs[index]))
    }

    /// Whether the last `fill` put the hardware vector in a list register of its own (rather
    /// than finding it there): its physical interrupt must be made active afresh.
    pub fn hardware_placed(&self) -> bool {
        self.hardware_placed
    }

    /// The live registers as (vector, priority, state) triples, in register order.
    pub fn live_entries(&self) -> impl Iterator<Item = (u32, u8, u64)> + '_ {
        self.lrs[..self.count]
            .iter()
            .filter(|&&lr| self.flavor.state(lr) != 0)
            .map(|&lr| (self.flavor.vector(lr), self.flavor.priority(lr), self.flavor.state(lr)))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A stand-in for the virtual CPU interface, enough to play a guest against the allocator:
    /// acknowledge the best pending register, end the innermost active interrupt.
    struct Interface {
        flavor: Flavor,
        /// Active priorities, innermost last.
        running: Vec<u8>,
        eoicount: u64,
    }

    impl Interface {
        fn new(flavor: Flavor) -> Self {
            Self { flavor, running: Vec::new(), eoicount: 0 }
        }

        fn running_priority(&self) -> u16 {
            self.running.last().map_or(0x100, |&p| u16::from(p))
        }

        /// Acknowledges the best pending interrupt that preempts the running priority.
        fn acknowledge(&mut self, regs: &mut ListRegisters) -> Option<u32> {
            let flavor = self.flavor;
            let index = (0..regs.count)
                .filter(|&i| flavor.state(regs.lrs[i]) == 0b01)
                .min_by_key(|&i| flavor.priority(regs.lrs[i]))?;
            let priority = flavor.priority(regs.lrs[index]);
            if u16::from(priority) >= self.running_priority() {
                return None;
            }
            let shift = if flavor == Flavor::V3 { 62 } else { 28 };
            regs.lrs[index] = (regs.lrs[index] & !(0b11 << shift)) | (0b10 << shift);
            self.running.push(priority);
            Some(flavor.vector(regs.lrs[index]))
        }

        /// EOImode 1 style: acknowledges `n` interrupts and drops their priority, deactivating
        /// none (equal priorities do not preempt, so the drops are played directly).
        fn acknowledge_and_drop(&mut self, regs: &mut ListRegisters, n: usize) {
            for _ in 0..n {
                assert!(self.acknowledge(regs).is_some());
                self.running.pop();
            }
        }

        /// Ends the innermost interrupt (`vector`, as a guest names it in EOIR).
        fn end(&mut self, regs: &mut ListRegisters, vector: u32) {
            let flavor = self.flavor;
            self.running.pop();
            match regs.live(vector) {
                Some(index) => {
                    let shift = if flavor == Flavor::V3 { 62 } else { 28 };
                    let state = flavor.state(regs.lrs[index]) & 0b01;
                    regs.lrs[index] = (regs.lrs[index] & !(0b11 << shift)) | (state << shift);
                }
                None => self.eoicount += 1,
            }
        }

        /// Exits: the control word the allocator sees, with the EOI count.
        fn exit(&mut self, regs: &mut ListRegisters) {
            let hcr = regs.hcr | (self.eoicount << HCR_EOICOUNT_SHIFT);
            self.eoicount = 0;
            regs.saved(hcr);
        }
    }

    fn with_priorities(list: &[(u32, u8)]) -> Signals {
        let signals = Signals::new();
        for &(vector, priority) in list {
            signals.set_priority(vector, priority);
        }
        signals
    }

    #[test]
    fn registers_past_the_count_stay_clear_and_all_clear_says_so() {
        for count in [1, 2, 4, 5, 8] {
            let signals = Signals::new();
            for vector in 32..48 {
                signals.raise(vector);
            }
            let mut regs = ListRegisters::new(Flavor::V3, count);
            assert!(regs.all_clear());
            regs.fill(&signals);
            assert!(regs.lrs[count..].iter().all(|&lr| lr == 0), "{count} in use: the rest never written");
            assert!(!regs.all_clear());
            // The guest ends every interrupt: the registers free, and all clear again.
            regs.lrs[..count].fill(0);
            assert!(regs.all_clear(), "{count} in use");
        }
    }

    #[test]
    fn encodings_hold_vector_priority_and_state() {
        let v3 = Flavor::V3.encode(1019, 0x90, true);
        assert_eq!(v3, (1 << 62) | (1 << 60) | (1 << 41) | (0x90 << 48) | 1019);
        assert_eq!((Flavor::V3.vector(v3), Flavor::V3.priority(v3), Flavor::V3.state(v3)), (1019, 0x90, 1));
        let v2 = Flavor::V2.encode(33, 0x97, false);
        assert_eq!(v2, (1 << 28) | (0x12 << 23) | 33);
        assert_eq!((Flavor::V2.vector(v2), Flavor::V2.priority(v2), Flavor::V2.state(v2)), (33, 0x90, 1));
    }

    #[test]
    fn placed_best_priority_first_then_lowest_vector() {
        for flavor in [Flavor::V3, Flavor::V2] {
            let signals = with_priorities(&[(40, 0x80), (33, 0xa0), (50, 0x80), (32, 0xa0), (60, 0x40)]);
            for vector in [32, 33, 40, 50, 60] {
                signals.raise(vector);
            }
            let mut regs = ListRegisters::new(flavor, 4);
            regs.fill(&signals);
            let placed: Vec<_> = regs.live_entries().map(|(v, p, _)| (v, p)).collect();
            assert_eq!(placed, [(60, 0x40), (40, 0x80), (50, 0x80), (32, 0xa0)]);
            assert!(signals.is_pending(33) && !signals.is_pending(32));
            assert_eq!(regs.hcr, HCR_EN | HCR_NPIE);
        }
    }

    #[test]
    fn the_hardware_vector_is_placed_forwarded_to_its_physical_intid() {
        let signals = Signals::new();
        for vector in [27, 32] {
            signals.raise(vector);
        }
        let mut regs = ListRegisters::new(Flavor::V3, 4).with_hardware(27);
        regs.fill(&signals);
        // HW (61), pINTID 27 (44:32), no EOI request; the other vector as ever.
        assert_eq!(regs.lrs[0], (1 << 62) | (1 << 61) | (1 << 60) | (27 << 32) | (0xa0 << 48) | 27);
        assert_eq!(regs.lrs[1], Flavor::V3.encode(32, 0xa0, false));
        assert_eq!((regs.forwarded(27), regs.forwarded(32), regs.forwarded(33)), (Some(true), Some(false), None));
        assert!(!regs.wants_eoi_maintenance());
        assert!(regs.hardware_placed());
        assert_eq!(regs.hcr, HCR_EN);
        // Still there at the next entry: not placed afresh.
        regs.saved(regs.hcr);
        regs.fill(&signals);
        assert_eq!((regs.forwarded(27), regs.hardware_placed()), (Some(true), false));
        // GICv2: HW (31), PhysicalID 27 (19:10).
        let mut v2 = ListRegisters::new(Flavor::V2, 4).with_hardware(27);
        signals.raise(27);
        v2.fill(&signals);
        assert_eq!(v2.lrs[0], (1 << 31) | (1 << 28) | (0x14 << 23) | (27 << 10) | 27);
        assert_eq!(v2.forwarded(27), Some(true));
        assert!(!v2.wants_eoi_maintenance());
    }

    /// A forwarded register may not be active-and-pending: the vector raised again while the
    /// guest handles it turns the register into a software one asking for EOI maintenance.
    #[test]
    fn the_hardware_vector_raised_while_active_becomes_a_software_register() {
        for flavor in [Flavor::V3, Flavor::V2] {
            let signals = Signals::new();
            signals.raise(27);
            let mut regs = ListRegisters::new(flavor, 4).with_hardware(27);
            regs.fill(&signals);
            let mut interface = Interface::new(flavor);
            assert_eq!(interface.acknowledge(&mut regs), Some(27));
            interface.exit(&mut regs);
            // Pending again, not yet taken: no change.
            signals.raise(27);
            regs.fill(&signals);
            assert_eq!(regs.live_entries().collect::<Vec<_>>(), [(27, 0xa0, 0b11)]);
            let active_pending = if flavor == Flavor::V3 { 0b11 << 62 } else { 0b11 << 28 };
            assert_eq!(regs.lrs[0], flavor.encode(27, 0xa0, true) | active_pending);
            assert_eq!(regs.forwarded(27), Some(false));
            assert!(regs.wants_eoi_maintenance());
            assert!(!signals.any_pending());
        }
    }

    /// With every register active and more waiting, each asks for EOI maintenance; the
    /// forwarded one cannot, so it becomes a software one.
    #[test]
    fn every_register_asking_for_eoi_includes_the_forwarded_one() {
        let signals = Signals::new();
        for vector in [27, 32, 33, 34, 35] {
            signals.raise(vector);
        }
        let mut regs = ListRegisters::new(Flavor::V3, 4).with_hardware(27);
        regs.fill(&signals);
        assert_eq!(regs.forwarded(27), Some(true));
        let mut interface = Interface::new(Flavor::V3);
        interface.acknowledge_and_drop(&mut regs, 4);
        interface.exit(&mut regs);
        regs.fill(&signals);
        assert_eq!(regs.hcr, HCR_EN | HCR_UIE);
        assert_eq!(regs.forwarded(27), Some(false));
        // EOI (41) alone in the physical-INTID field, HW (61) clear.
        assert!(regs.lrs[..4].iter().all(|lr| lr & (0x1fff << 32) == 1 << 41 && lr & (1 << 61) == 0));
    }

    #[test]
    fn a_better_vector_displaces_the_worst_pending_one() {
        let signals = with_priorities(&[(36, 0x10)]);
        for vector in 32..36 {
            signals.raise(vector);
        }
        let mut regs = ListRegisters::new(Flavor::V3, 4);
        regs.fill(&signals);
        regs.saved(regs.hcr);
        signals.raise(36);
        regs.fill(&signals);
        let placed: Vec<_> = regs.live_entries().map(|(v, _, _)| v).collect();
        assert_eq!(placed, [32, 33, 34, 36]);
        assert!(signals.is_pending(35));
        assert_eq!(regs.hcr, HCR_EN | HCR_NPIE);
    }

    /// GICv2: an SGI carries its sender in the list register (CPUID, bits 12:10); one pending
    /// per source; a second source waits for the first one's end (EOI maintenance), a repeat
    /// from the same source merges.
    #[test]
    fn gicv2_sgis_carry_their_source_one_at_a_time() {
        let signals = Signals::new();
        signals.raise_sgi(3, 1);
        signals.raise_sgi(3, 2);
        let mut regs = ListRegisters::new(Flavor::V2, 4);
        regs.fill(&signals);
        let lr = regs.lrs[0];
        assert_eq!((lr & 0x3ff, (lr >> 10) & 0b111), (3, 1), "SGI 3 from VCPU 1 first");
        assert_ne!(lr & Flavor::V2.eoi_bit(), 0, "its end brings the next source");
        assert_eq!(regs.live_entries().count(), 1, "one source at a time");
        assert!(signals.is_pending(3) && signals.sgi_sources(3) == 0b100);
        let mut interface = Interface::new(Flavor::V2);
        assert_eq!(interface.acknowledge(&mut regs), Some(3));
        // The same source again while it is active: pending in its own register.
        signals.raise_sgi(3, 1);
        interface.exit(&mut regs);
        regs.fill(&signals);
        assert_eq!(regs.live_entries().collect::<Vec<_>>(), [(3, 0xa0, 0b11)]);
        assert_eq!((regs.lrs[0] >> 10) & 0b111, 1);
        assert_eq!(signals.sgi_sources(3), 0b100, "source 2 still waits");
        interface.end(&mut regs, 3);
        assert_eq!(interface.acknowledge(&mut regs), Some(3));
        interface.end(&mut regs, 3);
        interface.exit(&mut regs);
        regs.fill(&signals);
        let lr = regs.lrs.iter().copied().find(|&lr| Flavor::V2.state(lr) != 0).unwrap();
        assert_eq!((lr & 0x3ff, (lr >> 10) & 0b111), (3, 2), "then VCPU 2's");
        assert_eq!(lr & Flavor::V2.eoi_bit(), 0, "nothing more waits");
        assert!(!signals.any_pending());
        // GICv3 list registers have no source: an SGI is one interrupt.
        let mut v3 = ListRegisters::new(Flavor::V3, 4);
        signals.raise_sgi(5, 3);
        v3.fill(&signals);
        assert_eq!(v3.live_entries().collect::<Vec<_>>(), [(5, 0xa0, 0b01)]);
    }

    #[test]
    fn a_vector_live_in_a_register_merges() {
        let signals = Signals::new();
        signals.raise(40);
        let mut regs = ListRegisters::new(Flavor::V2, 4);
        regs.fill(&signals);
        let mut interface = Interface::new(Flavor::V2);
        assert_eq!(interface.acknowledge(&mut regs), Some(40));
        interface.exit(&mut regs);
        signals.raise(40);
        regs.fill(&signals);
        assert_eq!(regs.live_entries().collect::<Vec<_>>(), [(40, 0xa0, 0b11)]);
        assert!(!signals.any_pending());
    }

    #[test]
    fn every_register_active_asks_for_eoi_maintenance() {
        let signals = Signals::new();
        for vector in 32..37 {
            signals.raise(vector);
        }
        let mut regs = ListRegisters::new(Flavor::V3, 4);
        regs.fill(&signals);
        let mut interface = Interface::new(Flavor::V3);
        interface.acknowledge_and_drop(&mut regs, 4);
        interface.exit(&mut regs);
        regs.fill(&signals);
        assert!(signals.is_pending(36));
        assert_eq!(regs.hcr, HCR_EN | HCR_UIE);
        assert!(regs.lrs[..4].iter().all(|lr| lr & (1 << 41) != 0));
    }

    /// F6: with every register active or active-and-pending and more waiting, no register is
    /// pending alone, so NPIE (which the hardware raises while none is) must not be asked for:
    /// it would exit the guest before each of its instructions. EOI maintenance is asked instead.
    #[test]
    fn active_and_pending_is_not_pending_for_npie() {
        for flavor in [Flavor::V3, Flavor::V2] {
            let signals = Signals::new();
            for vector in 32..37 {
                signals.raise(vector);
            }
            let mut regs = ListRegisters::new(flavor, 4);
            regs.fill(&signals);
            let mut interface = Interface::new(flavor);
            interface.acknowledge_and_drop(&mut regs, 4);
            interface.exit(&mut regs);
            // The four acknowledged vectors are raised again: active and pending.
            for vector in 32..36 {
                signals.raise(vector);
            }
            regs.fill(&signals);
            assert!(regs.live_entries().all(|(_, _, state)| state == 0b11));
            assert!(!regs.has_pending());
            assert_eq!(regs.hcr & HCR_NPIE, 0);
            assert_eq!(regs.hcr & HCR_UIE, HCR_UIE);
            assert!(signals.is_pending(36));
        }
    }

    /// Nesting six deep through four list registers: each level is acknowledged, then a better
    /// interrupt arrives and preempts it; then the guest ends them innermost first. Every
    /// interrupt is taken once, in nesting order, and every spilled one is deactivated.
    #[test]
    fn nesting_deeper_than_the_registers_spills_and_recovers() {
        for flavor in [Flavor::V3, Flavor::V2] {
            let levels: Vec<(u32, u8)> = (0..6).map(|i| (32 + i, 0xe0 - 0x10 * i as u8)).collect();
            let signals = with_priorities(&levels);
            let mut regs = ListRegisters::new(flavor, 4);
            let mut interface = Interface::new(flavor);
            let mut taken = Vec::new();
            for &(vector, _) in &levels {
                signals.raise(vector);
                regs.fill(&signals);
                taken.push(interface.acknowledge(&mut regs).expect("the better interrupt preempts"));
                interface.exit(&mut regs);
            }
            assert_eq!(taken, [32, 33, 34, 35, 36, 37]);
            assert_eq!(regs.spilled().collect::<Vec<_>>(), [32, 33]);
            // A spilled vector raised again waits for its deactivation.
            signals.raise(32);
            regs.fill(&signals);
            assert!(signals.is_pending(32));
            assert_eq!(regs.hcr & HCR_LRENPIE, HCR_LRENPIE);
            for &vector in taken.iter().rev() {
                interface.end(&mut regs, vector);
                interface.exit(&mut regs);
                regs.fill(&signals);
            }
            assert_eq!(regs.spilled().count(), 0);
            // The re-raised 32 was delivered once its earlier activation ended.
            assert_eq!(regs.live_entries().collect::<Vec<_>>(), [(32, 0xe0, 0b01)]);
            assert!(!signals.any_pending());
        }
    }

    /// Many interrupts of mixed priorities through four registers, taken one at a time: the
    /// order is exactly priority, then vector.
    #[test]
    fn many_interrupts_are_taken_in_priority_order_each_once() {
        let priorities: Vec<(u32, u8)> = (32..52).map(|v| (v, [0xa0, 0x40, 0xf0, 0x80][(v % 4) as usize])).collect();
        let signals = with_priorities(&priorities);
        for &(vector, _) in &priorities {
            signals.raise(vector);
        }
        let mut regs = ListRegisters::new(Flavor::V3, 4);
        let mut interface = Interface::new(Flavor::V3);
        let mut taken = Vec::new();
        for _ in 0..100 {
            regs.fill(&signals);
            while let Some(vector) = interface.acknowledge(&mut regs) {
                interface.end(&mut regs, vector);
                taken.push(vector);
            }
            interface.exit(&mut regs);
        }
        let mut expected = priorities.clone();
        expected.sort_by_key(|&(v, p)| (p, v));
        assert_eq!(taken, expected.iter().map(|&(v, _)| v).collect::<Vec<_>>());
    }
}
