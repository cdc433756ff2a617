//! The guest-visible GIC distributor, emulated behind MEM traps as Zircon's VMM does: GICv2's
//! GICD, or GICv3's GICD with one GICR frame pair per VCPU. Pure logic: a guest access goes in,
//! the value read and a list of [`Action`]s (interrupts to inject, priorities to set) come out;
//! the VMM performs them with `vcpu_interrupt` and the priority extension.
//!
//! What the model owns and what it does not:
//! - Enables, group bits, priorities, trigger configuration, GICv2 targets, GICv3 routes, the
//!   distributor and redistributor control/wake registers, and the identification registers a
//!   driver probes (TYPER, IIDR, PIDR2, GICR_TYPER with its Last bit).
//! - Pending state *before* delivery: an interrupt raised (by a device model, an SGI or a
//!   guest's ISPENDR write) while it or its group is disabled is latched and delivered when
//!   both are enabled. Once delivered it belongs to the virtual CPU interface (list registers),
//!   which the VMM cannot see: ISPENDR reads show only latched interrupts, ISACTIVER reads as
//!   zero and writes to the active registers are ignored.
//! - SGIs and PPIs are banked per VCPU (in GICD on v2, in the VCPU's GICR on v3); on v3 the
//!   GICD's banked range is RAZ/WI, as affinity routing (always on) requires. SGIs are always
//!   edge-triggered; on v2 they are always enabled (as on the GIC-400), on v3 they reset enabled
//!   so a guest that only sends IPIs works without programming its redistributor.
//! - A guest's bad access (unknown offset, bad width, read-only register) reads as zero and is
//!   ignored, as a real GIC does with reserved locations.

extern crate alloc;
use alloc::vec::Vec;

/// Whether `size` is an access width a guest can make (1, 2, 4 or 8 bytes); any other reads
/// as zero and is ignored, like the model's other bad accesses (found by the fuzz target: a
/// width of 9 or more shifted past 64 bits).
fn valid_size(size: u8) -> bool {
    matches!(size, 1 | 2 | 4 | 8)
}

/// The GIC generation the guest sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V2,
    V3,
}

/// What the VMM must do after an access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `vcpu_interrupt(vcpus[vcpu], vector)`.
    Interrupt { vcpu: usize, vector: u32 },
    /// GICv2: SGI `vector` to VCPU `vcpu` from each VCPU in `sources` (bit n: VCPU n), with
    /// `vcpu_interrupt_sgi`, so the guest reads who sent it.
    Sgi { vcpu: usize, vector: u32, sources: u8 },
    /// Deliver `vector` with `priority` on VCPU `vcpu` from now on.
    Priority { vcpu: usize, vector: u32, priority: u8 },
}

/// One interrupt's configuration and latched pending state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Line {
    enabled: bool,
    pending: bool,
    group1: bool,
    priority: u8,
    /// ICFGR's two bits (bit 1: edge-triggered).
    config: u8,
    /// GICv2 ITARGETSR byte (SPIs).
    targets: u8,
    /// GICv3 IROUTER (SPIs): Aff3.Aff2.Aff1.Aff0 and Interrupt_Routing_Mode (bit 31).
    route: u64,
}

impl Line {
    const RESET: Line =
        Line { enabled: false, pending: false, group1: false, priority: 0, config: 0, targets: 0, route: 0 };
}

/// Offsets of the distributor (GICD) registers.
mod gicd {
    pub const CTLR: u64 = 0x000;
    pub const TYPER: u64 = 0x004;
    pub const IIDR: u64 = 0x008;
    pub const IGROUPR: u64 = 0x080;
    pub const ISENABLER: u64 = 0x100;
    pub const ICENABLER: u64 = 0x180;
    pub const ISPENDR: u64 = 0x200;
    pub const ICPENDR: u64 = 0x280;
    pub const ISACTIVER: u64 = 0x300;
    pub const IPRIORITYR: u64 = 0x400;
    pub const ITARGETSR: u64 = 0x800;
    pub const ICFGR: u64 = 0xc00;
    pub const IGRPMODR: u64 = 0xd00;
    pub const SGIR: u64 = 0xf00;
    pub const IROUTER: u64 = 0x6000;
    pub const PIDR2: u64 = 0xffe8;
}

/// GICD_SGIR's offset (GICv2), for VMMs that route a guest's SGIs themselves.
pub const GICD_SGIR: u64 = gicd::SGIR;

/// Offsets in a GICv3 redistributor's two frames (RD_base, then SGI_base at 64 KiB).
mod gicr {
    pub const CTLR: u64 = 0x0000;
    pub const IIDR: u64 = 0x0004;
    pub const TYPER: u64 = 0x0008;
    pub const WAKER: u64 = 0x0014;
    pub const PIDR2: u64 = 0xffe8;
    pub const SGI_BASE: u64 = 0x1_0000;
    /// Bytes of one redistributor (both frames).
    pub const STRIDE: u64 = 0x2_0000;
}

/// GICD_IIDR / GICR_IIDR: ARM's implementer code (0x43b), product 0.
const IIDR: u32 = 0x43b;
/// GICD_CTLR (v3): ARE_NS and DS read as one (affinity routing, one security state).
const CTLR_V3_FIXED: u32 = (1 << 4) | (1 << 6);
/// GICR_WAKER: ProcessorSleep, ChildrenAsleep.
const WAKER_SLEEP: u32 = 1 << 1;
const WAKER_ASLEEP: u32 = 1 << 2;

/// See the module documentation.
#[derive(Debug)]
pub struct Distributor {
    version: Version,
    ctlr: u32,
    /// SPIs: INTID 32 + index.
    spis: Vec<Line>,
    /// SGIs and PPIs of each VCPU.
    banked: Vec<[Line; 32]>,
    /// GICR_WAKER of each VCPU (v3).
    waker: Vec<u32>,
    /// GICv2: for each VCPU and SGI, the senders whose SGI is latched pending (bit n: VCPU n).
    sgi_sources: Vec<[u8; 16]>,
}

impl Distributor {
    /// A distributor for `vcpus` VCPUs (at most 8 on v2) with `spis` shared interrupts (a
    /// multiple of 32, at most 988), all disabled, priority 0, as a GIC resets.
    pub fn new(version: Version, vcpus: usize, spis: u32) -> Self {
        let vcpus = if version == Version::V2 { vcpus.min(8) } else { vcpus };
        let spis = (spis.min(988) / 32 * 32) as usize;
        let mut sgi_ppi = [Line::RESET; 32];
        for (intid, line) in sgi_ppi.iter_mut().enumerate() {
            if intid < 16 {
                line.enabled = true;
                line.config = 0b10;
            }
        }
        Self {
            version,
            ctlr: 0,
            spis: alloc::vec![Line::RESET; spis],
            banked: alloc::vec![sgi_ppi; vcpus],
            waker: alloc::vec![WAKER_SLEEP | WAKER_ASLEEP; vcpus],
            sgi_sources: alloc::vec![[0; 16]; vcpus],
        }
    }

    /// The number of VCPUs the model serves.
    pub fn vcpus(&self) -> usize {
        self.banked.len()
    }

    /// The priority of every interrupt VCPU `vcpu` can take, to replay into a VCPU created
    /// after the guest programmed them.
    pub fn priorities(&self, vcpu: usize) -> impl Iterator<Item = (u32, u8)> + '_ {
        (0..self.intids()).filter_map(move |intid| Some((intid, self.line(vcpu, intid)?.priority)))
    }

    /// One past the highest INTID.
    fn intids(&self) -> u32 {
        32 + self.spis.len() as u32
    }

    fn line(&self, vcpu: usize, intid: u32) -> Option<&Line> {
        match intid {
            0..32 => self.banked.get(vcpu)?.get(intid as usize),
            _ => self.spis.get(intid as usize - 32),
        }
    }

    fn line_mut(&mut self, vcpu: usize, intid: u32) -> Option<&mut Line> {
        match intid {
            0..32 => self.banked.get_mut(vcpu)?.get_mut(intid as usize),
            _ => self.spis.get_mut(intid as usize - 32),
        }
    }

    fn group_enabled(&self, group1: bool) -> bool {
        match self.version {
            // GICv2 guests (Linux among them) leave their interrupts in group 0 and may enable
            // either group: a GICv2 virtual CPU interface signals both as IRQs.
            Version::V2 => self.ctlr & 0b11 != 0,
            // EnableGrp1NS (bit 1) or EnableGrp0 (bit 0).
            Version::V3 => self.ctlr & if group1 { 0b10 } else { 0b01 } != 0,
        }
    }

    /// The VCPU an SPI goes to: GICv2's lowest set target bit, GICv3's Aff0 (or VCPU 0 for
    /// "any", 1-of-N routing).
    fn spi_target(&self, line: &Line) -> Option<usize> {
        let target = match self.version {
            Version::V2 => {
                if line.targets == 0 {
                    return None;
                }
                line.targets.trailing_zeros() as usize
            }
            Version::V3 if line.route & (1 << 31) != 0 => 0,
            Version::V3 => (line.route & 0xff) as usize,
        };
        (target < self.vcpus()).then_some(target)
    }

    /// Delivers `intid` (banked to `vcpu` if below 32) if it is pending and may be delivered.
    fn deliver(&mut self, vcpu: usize, intid: u32, out: &mut dyn FnMut(Action)) {
        let Some(line) = self.line(vcpu, intid).copied() else { return };
        if !line.pending || !line.enabled || !self.group_enabled(line.group1) {
            return;
        }
        let target = if intid < 32 { Some(vcpu) } else { self.spi_target(&line) };
        if let Some(target) = target {
            if let Some(line) = self.line_mut(vcpu, intid) {
                line.pending = false;
            }
            let sources = match self.sgi_sources.get_mut(vcpu).and_then(|s| s.get_mut(intid as usize)) {
                Some(sources) if self.version == Version::V2 => core::mem::take(sources),
                _ => 0,
            };
            if sources != 0 {
                out(Action::Sgi { vcpu: target, vector: intid, sources });
            } else {
                out(Action::Interrupt { vcpu: target, vector: intid });
            }
        }
    }

    fn deliver_everything(&mut self, out: &mut dyn FnMut(Action)) {
        for vcpu in 0..self.vcpus() {
            for intid in 0..32 {
                self.deliver(vcpu, intid, out);
            }
        }
        for intid in 32..self.intids() {
            self.deliver(0, intid, out);
        }
    }

    /// A device raises SPI `intid` (edge, or a level going high).
    pub fn raise_spi(&mut self, intid: u32, out: &mut dyn FnMut(Action)) {
        if intid >= 32 {
            if let Some(line) = self.line_mut(0, intid) {
                line.pending = true;
                self.deliver(0, intid, out);
            }
        }
    }

    /// SGI `intid` (0..16) from one VCPU to those in `targets` (bit n: VCPU n), as a GICv3
    /// INTERRUPT packet carries it or GICD_SGIR names it.
    pub fn send_sgi(&mut self, targets: u64, intid: u32, out: &mut dyn FnMut(Action)) {
        self.send_sgi_from(None, targets, intid, out)
    }

    /// [`Distributor::send_sgi`] from VCPU `source`, when known (GICv2's GICD_SGIR: the
    /// target reads the sender with the interrupt).
    fn send_sgi_from(&mut self, source: Option<usize>, targets: u64, intid: u32, out: &mut dyn FnMut(Action)) {
        if intid >= 16 {
            return;
        }
        for vcpu in 0..self.vcpus().min(64) {
            if targets & (1 << vcpu) != 0 {
                if let Some(line) = self.line_mut(vcpu, intid) {
                    line.pending = true;
                }
                if let (Some(source), Some(sources)) = (source.filter(|&s| s < 8), self.sgi_sources.get_mut(vcpu)) {
                    sources[intid as usize] |= 1 << source;
                }
                self.deliver(vcpu, intid, out);
            }
        }
    }

    /// A guest read of `size` bytes at `offset` in the distributor frame, by VCPU `vcpu`.
    pub fn read_distributor(&self, vcpu: usize, offset: u64, size: u8) -> u64 {
        if !valid_size(size) {
            return 0;
        }
        let word = match offset & !3 {
            gicd::CTLR => match self.version {
                Version::V2 => self.ctlr,
                Version::V3 => self.ctlr | CTLR_V3_FIXED,
            },
            gicd::TYPER => {
                // ITLinesNumber, CPUNumber (v2), IDbits = 9 (10 bits of INTID, v3).
                let lines = self.intids() / 32 - 1;
                match self.version {
                    Version::V2 => lines | ((self.vcpus() as u32).saturating_sub(1) << 5),
                    Version::V3 => lines | (9 << 19),
                }
            }
            gicd::IIDR => IIDR,
            gicd::PIDR2 => self.pidr2(),
            gicd::IROUTER..gicd::PIDR2 if self.version == Version::V3 => {
                let intid = ((offset - gicd::IROUTER) / 8) as u32;
                let route = self.line(vcpu, intid).filter(|_| intid >= 32).map_or(0, |line| line.route);
                return extract64(route, offset % 8, size);
            }
            _ => return self.read_lines(vcpu, offset, size, self.version == Version::V3),
        };
        extract(word, offset, size)
    }

    /// A guest write at `offset` in the distributor frame, by VCPU `vcpu`.
    pub fn write_distributor(&mut self, vcpu: usize, offset: u64, size: u8, value: u64, out: &mut dyn FnMut(Action)) {
        if !valid_size(size) {
            return;
        }
        match (offset, size) {
            (gicd::CTLR, 4) => {
                self.ctlr = value as u32 & 0b11;
                self.deliver_everything(out);
            }
            (gicd::SGIR, 4) if self.version == Version::V2 => {
                let sgir = value as u32;
                let all = (1u64 << self.vcpus()) - 1;
                let targets = match (sgir >> 24) & 0b11 {
                    0 => u64::from((sgir >> 16) & 0xff),
                    1 => all & !(1 << vcpu),
                    2 => 1 << vcpu,
                    _ => 0,
                };
                self.send_sgi_from(Some(vcpu), targets & all, sgir & 0xf, out);
            }
            (gicd::IROUTER..gicd::PIDR2, _) if self.version == Version::V3 => {
                let index = (offset - gicd::IROUTER) / 8;
                let intid = index as u32;
                if (32..self.intids()).contains(&intid) {
                    if let Some(line) = self.line_mut(vcpu, intid) {
                        line.route = merge(line.route, offset % 8, size, value) & 0xff_0000_80ff_ffff;
                    }
                }
            }
            _ => self.write_lines(vcpu, offset, size, value, self.version == Version::V3, out),
        }
    }

    /// A guest read in the redistributor region at `offset` from its base (each VCPU's frames
    /// follow one another, `gicr::STRIDE` bytes apart).
    pub fn read_redistributor(&self, offset: u64, size: u8) -> u64 {
        if !valid_size(size) {
            return 0;
        }
        let (vcpu, offset) = ((offset / gicr::STRIDE) as usize, offset % gicr::STRIDE);
        if vcpu >= self.vcpus() || self.version != Version::V3 {
            return 0;
        }
        if offset >= gicr::SGI_BASE {
            let offset = offset - gicr::SGI_BASE;
            // Only the first word of each bit register and the first eight priority words
            // exist in the SGI frame.
            if offset & 0x7f >= 4 && !(gicd::IPRIORITYR..gicd::IPRIORITYR + 32).contains(&offset) && offset != 0xc04 {
                return 0;
            }
            return self.read_lines(vcpu, offset, size, false);
        }
        if offset == gicr::TYPER || offset == gicr::TYPER + 4 {
            let last = u64::from(vcpu + 1 == self.vcpus());
            // Affinity (Aff0 = VCPU index) [39:32], Last [4], Processor_Number [23:8].
            let typer = ((vcpu as u64) << 32) | (last << 4) | ((vcpu as u64) << 8);
            return extract64(typer, offset - gicr::TYPER, size);
        }
        let word = match offset & !3 {
            gicr::CTLR => 0,
            gicr::IIDR => IIDR,
            gicr::WAKER => self.waker.get(vcpu).copied().unwrap_or(0),
            gicr::PIDR2 => self.pidr2(),
            _ => 0,
        };
        extract(word, offset, size)
    }

    /// A guest write in the redistributor region (see [`Self::read_redistributor`]).
    pub fn write_redistributor(&mut self, offset: u64, size: u8, value: u64, out: &mut dyn FnMut(Action)) {
        if !valid_size(size) {
            return;
        }
        let (vcpu, offset) = ((offset / gicr::STRIDE) as usize, offset % gicr::STRIDE);
        if vcpu >= self.vcpus() || self.version != Version::V3 {
            return;
        }
        if offset >= gicr::SGI_BASE {
            let offset = offset - gicr::SGI_BASE;
            if offset & 0x7f >= 4 && !(gicd::IPRIORITYR..gicd::IPRIORITYR + 32).contains(&offset) && offset != 0xc04 {
                return;
            }
            self.write_lines(vcpu, offset, size, value, false, out);
        } else if offset == gicr::WAKER && size == 4 {
            // ChildrenAsleep follows ProcessorSleep at once: there is nothing to quiesce.
            let sleep = value as u32 & WAKER_SLEEP;
            if let Some(waker) = self.waker.get_mut(vcpu) {
                *waker = sleep | if sleep != 0 { WAKER_ASLEEP } else { 0 };
            }
        }
    }

    fn pidr2(&self) -> u32 {
        match self.version {
            Version::V2 => 0x2 << 4,
            Version::V3 => 0x3 << 4,
        }
    }

    /// Registers with one field per interrupt, shared by the GICD and the GICR's SGI frame.
    /// With `spis_only`, INTIDs below 32 read as zero (GICv3 GICD under affinity routing).
    fn read_lines(&self, vcpu: usize, offset: u64, size: u8, spis_only: bool) -> u64 {
        let visible = |intid: u32| intid < self.intids() && !(spis_only && intid < 32);
        let bits = |base: u64, field: &dyn Fn(&Line) -> bool| -> u64 {
            if size != 4 {
                return 0;
            }
            let first = ((offset - base) * 8) as u32;
            let mut word = 0;
            for bit in 0..32 {
                let intid = first + bit;
                if visible(intid) && self.line(vcpu, intid).is_some_and(field) {
                    word |= 1 << bit;
                }
            }
            word
        };
        let bytes = |base: u64, field: &dyn Fn(u32, &Line) -> u8| -> u64 {
            let first = (offset - base) as u32;
            let mut value = 0;
            for byte in 0..u32::from(size) {
                let intid = first + byte;
                if let Some(line) = self.line(vcpu, intid).filter(|_| visible(intid)) {
                    value |= u64::from(field(intid, line)) << (8 * byte);
                }
            }
            value
        };
        match offset {
            gicd::IGROUPR..gicd::ISENABLER => bits(gicd::IGROUPR, &|l| l.group1),
            gicd::ISENABLER..gicd::ISPENDR => {
                bits(if offset < gicd::ICENABLER { gicd::ISENABLER } else { gicd::ICENABLER }, &|l| l.enabled)
            }
            gicd::ISPENDR..gicd::ISACTIVER => {
                bits(if offset < gicd::ICPENDR { gicd::ISPENDR } else { gicd::ICPENDR }, &|l| l.pending)
            }
            gicd::ISACTIVER..gicd::IPRIORITYR => 0,
            gicd::IPRIORITYR..0x7fc => bytes(gicd::IPRIORITYR, &|_, l| l.priority),
            gicd::ITARGETSR..0xbfc if self.version == Version::V2 => bytes(gicd::ITARGETSR, &|intid, l| {
                if intid < 32 {
                    1 << vcpu
                } else {
                    l.targets
                }
            }),
            gicd::ICFGR..gicd::IGRPMODR => {
                if size != 4 {
                    return 0;
                }
                let first = ((offset - gicd::ICFGR) * 4) as u32;
                let mut word = 0;
                for field in 0..16 {
                    let intid = first + field;
                    if let Some(line) = self.line(vcpu, intid).filter(|_| visible(intid)) {
                        word |= u64::from(line.config) << (2 * field);
                    }
                }
                word
            }
            _ => 0,
        }
    }

    fn write_lines(
        &mut self,
        vcpu: usize,
        offset: u64,
        size: u8,
        value: u64,
        spis_only: bool,
        out: &mut dyn FnMut(Action),
    ) {
        let intids = self.intids();
        let visible = move |intid: u32| intid < intids && !(spis_only && intid < 32);
        let set_bits = |this: &mut Self, base: u64, apply: &dyn Fn(&mut Line)| -> Vec<u32> {
            let mut touched = Vec::new();
            if size != 4 {
                return touched;
            }
            let first = ((offset - base) * 8) as u32;
            for bit in 0..32 {
                let intid = first + bit;
                if visible(intid) && value & (1 << bit) != 0 {
                    if let Some(line) = this.line_mut(vcpu, intid) {
                        apply(line);
                        touched.push(intid);
                    }
                }
            }
            touched
        };
        match offset {
            gicd::IGROUPR..gicd::ISENABLER if size == 4 => {
                let first = ((offset - gicd::IGROUPR) * 8) as u32;
                for bit in 0..32 {
                    let intid = first + bit;
                    if let Some(line) = self.line_mut(vcpu, intid).filter(|_| visible(intid)) {
                        line.group1 = value & (1 << bit) != 0;
                    }
                }
            }
            gicd::ISENABLER..gicd::ICENABLER => {
                for intid in set_bits(self, gicd::ISENABLER, &|line| line.enabled = true) {
                    self.deliver(vcpu, intid, out);
                }
            }
            gicd::ICENABLER..gicd::ISPENDR => {
                // GICv2 SGIs cannot be disabled (as on the GIC-400).
                let v2 = self.version == Version::V2;
                let first = ((offset - gicd::ICENABLER) * 8) as u32;
                for intid in set_bits(self, gicd::ICENABLER, &|line| line.enabled = false) {
                    if v2 && intid < 16 && first == 0 {
                        if let Some(line) = self.line_mut(vcpu, intid) {
                            line.enabled = true;
                        }
                    }
                }
            }
            gicd::ISPENDR..gicd::ICPENDR => {
                for intid in set_bits(self, gicd::ISPENDR, &|line| line.pending = true) {
                    self.deliver(vcpu, intid, out);
                }
            }
            gicd::ICPENDR..gicd::ISACTIVER => {
                set_bits(self, gicd::ICPENDR, &|line| line.pending = false);
            }
            gicd::IPRIORITYR..0x7fc => {
                let first = (offset - gicd::IPRIORITYR) as u32;
                for byte in 0..u32::from(size) {
                    let intid = first + byte;
                    let priority = (value >> (8 * byte)) as u8;
                    let Some(line) = self.line_mut(vcpu, intid).filter(|_| visible(intid)) else { continue };
                    line.priority = priority;
                    if intid < 32 {
                        out(Action::Priority { vcpu, vector: intid, priority });
                    } else {
                        for target in 0..self.vcpus() {
                            out(Action::Priority { vcpu: target, vector: intid, priority });
                        }
                    }
                }
            }
            gicd::ITARGETSR..0xbfc if self.version == Version::V2 => {
                let first = (offset - gicd::ITARGETSR) as u32;
                let mask = ((1u32 << self.vcpus()) - 1) as u8;
                for byte in 0..u32::from(size) {
                    let intid = first + byte;
                    if intid >= 32 {
                        if let Some(line) = self.line_mut(vcpu, intid).filter(|_| visible(intid)) {
                            line.targets = (value >> (8 * byte)) as u8 & mask;
                        }
                        self.deliver(vcpu, intid, out);
                    }
                }
            }
            gicd::ICFGR..gicd::IGRPMODR if size == 4 => {
                let first = ((offset - gicd::ICFGR) * 4) as u32;
                for field in 0..16 {
                    let intid = first + field;
                    // SGIs are always edge-triggered; bit 0 is reserved.
                    if intid >= 16 {
                        if let Some(line) = self.line_mut(vcpu, intid).filter(|_| visible(intid)) {
                            line.config = ((value >> (2 * field)) & 0b10) as u8;
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// `size` bytes at `offset` (within its word) of a 32-bit register.
fn extract(word: u32, offset: u64, size: u8) -> u64 {
    extract64(u64::from(word), offset % 4, size)
}

fn extract64(register: u64, offset: u64, size: u8) -> u64 {
    let value = register >> (8 * offset);
    if size >= 8 {
        value
    } else {
        value & ((1 << (8 * u64::from(size))) - 1)
    }
}

/// `register` with `size` bytes at `offset` replaced by `value`.
fn merge(register: u64, offset: u64, size: u8, value: u64) -> u64 {
    if size >= 8 {
        return value;
    }
    let mask = ((1u64 << (8 * u64::from(size))) - 1) << (8 * offset);
    (register & !mask) | ((value << (8 * offset)) & mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: impl FnOnce(&mut dyn FnMut(Action))) -> Vec<Action> {
        let mut actions = Vec::new();
        f(&mut |action| actions.push(action));
        actions
    }

    fn interrupts(actions: &[Action]) -> Vec<(usize, u32)> {
        actions
            .iter()
            .filter_map(|a| match *a {
                Action::Interrupt { vcpu, vector } | Action::Sgi { vcpu, vector, .. } => Some((vcpu, vector)),
                _ => None,
            })
            .collect()
    }

    /// GICv2 SGIs name their sender: each target gets them from the writer of GICD_SGIR, and
    /// senders latched while the distributor is off are all delivered when it turns on.
    #[test]
    fn sgis_v2_carry_the_sender() {
        let mut d = Distributor::new(Version::V2, 4, 32);
        let sgir = |filter: u64, list: u64, intid: u64| (filter << 24) | (list << 16) | intid;
        run(|out| d.write_distributor(1, gicd::SGIR, 4, sgir(0, 0b0001, 7), out));
        run(|out| d.write_distributor(3, gicd::SGIR, 4, sgir(0, 0b0001, 7), out));
        assert!(run(|out| d.write_distributor(2, gicd::SGIR, 4, sgir(0, 0b0001, 7), out)).is_empty(), "off");
        let actions = run(|out| d.write_distributor(0, gicd::CTLR, 4, 1, out));
        assert_eq!(actions, [Action::Sgi { vcpu: 0, vector: 7, sources: 0b1110 }]);
        let actions = run(|out| d.write_distributor(2, gicd::SGIR, 4, sgir(1, 0, 4), out));
        assert_eq!(
            actions,
            [
                Action::Sgi { vcpu: 0, vector: 4, sources: 0b100 },
                Action::Sgi { vcpu: 1, vector: 4, sources: 0b100 },
                Action::Sgi { vcpu: 3, vector: 4, sources: 0b100 }
            ]
        );
        // GICv3: the INTERRUPT packet's SGIs have no sender to carry.
        let mut v3 = Distributor::new(Version::V3, 2, 32);
        run(|out| v3.write_distributor(0, gicd::CTLR, 4, 0x12, out));
        let actions = run(|out| v3.send_sgi(0b10, 3, out));
        assert!(actions.iter().all(|a| matches!(a, Action::Interrupt { .. })), "{actions:?}");
    }

    #[test]
    fn identification_registers() {
        let v2 = Distributor::new(Version::V2, 4, 64);
        assert_eq!(v2.read_distributor(0, gicd::TYPER, 4), 2 | (3 << 5));
        assert_eq!(v2.read_distributor(0, gicd::IIDR, 4), 0x43b);
        assert_eq!(v2.read_distributor(0, gicd::PIDR2, 4), 0x20);
        let v3 = Distributor::new(Version::V3, 4, 64);
        assert_eq!(v3.read_distributor(0, gicd::TYPER, 4), 2 | (9 << 19));
        assert_eq!(v3.read_distributor(0, gicd::CTLR, 4), 0x50);
        assert_eq!(v3.read_distributor(0, gicd::PIDR2, 4), 0x30);
        // GICR_TYPER of VCPU 2 and of the last, VCPU 3 (64-bit and as two words).
        assert_eq!(v3.read_redistributor(2 * gicr::STRIDE + gicr::TYPER, 8), (2 << 32) | (2 << 8));
        assert_eq!(v3.read_redistributor(3 * gicr::STRIDE + gicr::TYPER, 4), (3 << 8) | (1 << 4));
        assert_eq!(v3.read_redistributor(3 * gicr::STRIDE + gicr::TYPER + 4, 4), 3);
        assert_eq!(v3.read_redistributor(gicr::PIDR2, 4), 0x30);
        // Beyond the last redistributor: nothing.
        assert_eq!(v3.read_redistributor(4 * gicr::STRIDE + gicr::TYPER, 8), 0);
    }

    #[test]
    fn waker_follows_processor_sleep() {
        let mut v3 = Distributor::new(Version::V3, 2, 32);
        let offset = gicr::STRIDE + gicr::WAKER;
        assert_eq!(v3.read_redistributor(offset, 4), 0b110);
        assert!(run(|out| v3.write_redistributor(offset, 4, 0, out)).is_empty());
        assert_eq!(v3.read_redistributor(offset, 4), 0);
        assert_eq!(v3.read_redistributor(gicr::WAKER, 4), 0b110, "VCPU 0 untouched");
    }

    /// An SPI raised while disabled is latched (and visible in ISPENDR), then delivered to its
    /// target once both it and the distributor are enabled; exactly once.
    #[test]
    fn spi_latched_until_enabled_then_delivered_to_its_target_v2() {
        let mut d = Distributor::new(Version::V2, 4, 64);
        assert!(run(|out| d.raise_spi(40, out)).is_empty());
        assert_eq!(d.read_distributor(0, gicd::ISPENDR + 4, 4), 1 << 8);
        // Target VCPU 2 by a byte write to ITARGETSR40.
        assert!(run(|out| d.write_distributor(0, gicd::ITARGETSR + 40, 1, 0b100, out)).is_empty());
        assert_eq!(d.read_distributor(1, gicd::ITARGETSR + 40, 4), 0b100);
        assert!(run(|out| d.write_distributor(0, gicd::ISENABLER + 4, 4, 1 << 8, out)).is_empty());
        assert_eq!(d.read_distributor(0, gicd::ISENABLER + 4, 4), 1 << 8);
        assert_eq!(d.read_distributor(0, gicd::ICENABLER + 4, 4), 1 << 8);
        let actions = run(|out| d.write_distributor(0, gicd::CTLR, 4, 1, out));
        assert_eq!(interrupts(&actions), [(2, 40)]);
        assert_eq!(d.read_distributor(0, gicd::ISPENDR + 4, 4), 0);
        assert_eq!(interrupts(&run(|out| d.raise_spi(40, out))), [(2, 40)]);
        // Disabled again: latched, and ICPENDR forgets it.
        run(|out| d.write_distributor(0, gicd::ICENABLER + 4, 4, 1 << 8, out));
        assert!(run(|out| d.raise_spi(40, out)).is_empty());
        run(|out| d.write_distributor(0, gicd::ICPENDR + 4, 4, 1 << 8, out));
        assert!(run(|out| d.write_distributor(0, gicd::ISENABLER + 4, 4, 1 << 8, out)).is_empty());
    }

    #[test]
    fn spi_routed_by_irouter_v3() {
        let mut d = Distributor::new(Version::V3, 4, 64);
        let router = gicd::IROUTER + 8 * 33;
        run(|out| d.write_distributor(0, router, 8, 3, out));
        assert_eq!(d.read_distributor(0, router, 8), 3);
        run(|out| d.write_distributor(0, gicd::IGROUPR + 4, 4, 1 << 1, out));
        run(|out| d.write_distributor(0, gicd::ISENABLER + 4, 4, 1 << 1, out));
        // Group 1 disabled: latched; group 0 enable is not enough.
        assert!(run(|out| d.raise_spi(33, out)).is_empty());
        assert!(run(|out| d.write_distributor(0, gicd::CTLR, 4, 1, out)).is_empty());
        assert_eq!(interrupts(&run(|out| d.write_distributor(0, gicd::CTLR, 4, 2, out))), [(3, 33)]);
        // Routing mode "any" goes to VCPU 0; a route past the last VCPU is dropped (latched).
        run(|out| d.write_distributor(0, router + 4, 4, 1 << 31 >> 32, out));
        run(|out| d.write_distributor(0, router, 4, 1 << 31, out));
        assert_eq!(interrupts(&run(|out| d.raise_spi(33, out))), [(0, 33)]);
        run(|out| d.write_distributor(0, router, 8, 7, out));
        assert!(run(|out| d.raise_spi(33, out)).is_empty());
        // The GICD's banked range is RAZ/WI under affinity routing.
        run(|out| d.write_distributor(0, gicd::ISENABLER, 4, u64::from(u32::MAX), out));
        assert_eq!(d.read_distributor(0, gicd::ISENABLER, 4), 0);
    }

    #[test]
    fn priorities_become_actions_banked_or_for_every_vcpu() {
        let mut d = Distributor::new(Version::V3, 2, 64);
        // IPRIORITYR for SPIs 32..36 as one word: every VCPU learns each.
        let actions = run(|out| d.write_distributor(0, gicd::IPRIORITYR + 32, 4, 0x8090_a0b0, out));
        assert_eq!(actions.len(), 8);
        assert!(actions.contains(&Action::Priority { vcpu: 1, vector: 35, priority: 0x80 }));
        assert!(actions.contains(&Action::Priority { vcpu: 0, vector: 32, priority: 0xb0 }));
        assert_eq!(d.read_distributor(1, gicd::IPRIORITYR + 34, 1), 0x90);
        assert_eq!(d.read_distributor(1, gicd::IPRIORITYR + 32, 4), 0x8090_a0b0);
        // A PPI's priority in VCPU 1's SGI frame: only VCPU 1.
        let actions =
            run(|out| d.write_redistributor(gicr::STRIDE + gicr::SGI_BASE + gicd::IPRIORITYR + 27, 1, 0x40, out));
        assert_eq!(actions, [Action::Priority { vcpu: 1, vector: 27, priority: 0x40 }]);
        assert_eq!(d.read_redistributor(gicr::STRIDE + gicr::SGI_BASE + gicd::IPRIORITYR + 24, 4), 0x4000_0000);
        assert_eq!(d.read_redistributor(gicr::SGI_BASE + gicd::IPRIORITYR + 24, 4), 0);
    }

    #[test]
    fn sgis_v2_target_list_all_but_self_and_self() {
        let mut d = Distributor::new(Version::V2, 4, 32);
        run(|out| d.write_distributor(0, gicd::CTLR, 4, 1, out));
        let sgir = |filter: u64, list: u64, intid: u64| (filter << 24) | (list << 16) | intid;
        assert_eq!(
            interrupts(&run(|out| d.write_distributor(1, gicd::SGIR, 4, sgir(0, 0b1010, 5), out))),
            [(1, 5), (3, 5)]
        );
        assert_eq!(
            interrupts(&run(|out| d.write_distributor(1, gicd::SGIR, 4, sgir(1, 0, 2), out))),
            [(0, 2), (2, 2), (3, 2)]
        );
        assert_eq!(interrupts(&run(|out| d.write_distributor(2, gicd::SGIR, 4, sgir(2, 0xff, 15), out))), [(2, 15)]);
        // SGIs cannot be disabled on GICv2; target bits past the VCPUs are ignored.
        run(|out| d.write_distributor(0, gicd::ICENABLER, 4, 0xffff, out));
        assert_eq!(d.read_distributor(0, gicd::ISENABLER, 4), 0xffff);
        assert_eq!(interrupts(&run(|out| d.write_distributor(0, gicd::SGIR, 4, sgir(0, 0xf0, 1), out))), []);
        // Banked ITARGETSR of SGIs/PPIs reads as the reading VCPU.
        assert_eq!(d.read_distributor(2, gicd::ITARGETSR, 4), 0x0404_0404);
    }

    #[test]
    fn sgis_v3_wait_for_their_enable_in_the_redistributor() {
        let mut d = Distributor::new(Version::V3, 2, 32);
        run(|out| d.write_redistributor(gicr::STRIDE + gicr::SGI_BASE + gicd::IGROUPR, 4, u64::from(u32::MAX), out));
        run(|out| d.write_distributor(0, gicd::CTLR, 4, 2, out));
        run(|out| d.write_redistributor(gicr::STRIDE + gicr::SGI_BASE + gicd::ICENABLER, 4, 1 << 7, out));
        assert!(run(|out| d.send_sgi(0b10, 7, out)).is_empty());
        assert_eq!(d.read_redistributor(gicr::STRIDE + gicr::SGI_BASE + gicd::ISPENDR, 4), 1 << 7);
        let actions = run(|out| d.write_redistributor(gicr::STRIDE + gicr::SGI_BASE + gicd::ISENABLER, 4, 1 << 7, out));
        assert_eq!(interrupts(&actions), [(1, 7)]);
        // VCPU 0's SGI 7 is still group 0, which is disabled: latched.
        assert!(run(|out| d.send_sgi(0b11, 7, out)).len() == 1);
    }

    #[test]
    fn trigger_configuration_keeps_sgis_edge() {
        let mut d = Distributor::new(Version::V3, 1, 32);
        let icfgr0 = gicr::SGI_BASE + gicd::ICFGR;
        assert_eq!(d.read_redistributor(icfgr0, 4), 0xaaaa_aaaa);
        run(|out| d.write_redistributor(icfgr0, 4, 0, out));
        assert_eq!(d.read_redistributor(icfgr0, 4), 0xaaaa_aaaa);
        run(|out| d.write_redistributor(icfgr0 + 4, 4, 0x0080_0000, out));
        assert_eq!(d.read_redistributor(icfgr0 + 4, 4), 0x0080_0000, "PPI 27 edge");
        run(|out| d.write_distributor(0, gicd::ICFGR + 8, 4, 0xffff_ffff, out));
        assert_eq!(d.read_distributor(0, gicd::ICFGR + 8, 4), 0xaaaa_aaaa, "SPIs: bit 1 of each field");
    }

    #[test]
    fn bad_accesses_read_zero_and_change_nothing() {
        let mut d = Distributor::new(Version::V2, 2, 32);
        for offset in [0x10, 0xf04, 0xfffc, 0x1_0000] {
            assert_eq!(d.read_distributor(0, offset, 4), 0);
            assert!(run(|out| d.write_distributor(0, offset, 4, u64::MAX, out)).is_empty());
        }
        // Byte access to a bit register, word access past the last interrupt.
        assert!(run(|out| d.write_distributor(0, gicd::ISENABLER + 1, 1, 0xff, out)).is_empty());
        assert_eq!(d.read_distributor(0, gicd::ISENABLER + 4, 4), 0);
        assert!(run(|out| d.write_distributor(0, gicd::ISENABLER + 8, 4, u64::MAX, out)).is_empty());
        assert_eq!(d.read_distributor(0, gicd::IPRIORITYR + 64, 4), 0);
        assert_eq!(Distributor::new(Version::V2, 2, 32).read_redistributor(gicr::TYPER, 8), 0);
    }

    /// Widths other than 1, 2, 4 and 8 bytes read as zero and are ignored (the fuzz target
    /// found a width of 9 shifting past 64 bits in the priority bytes).
    #[test]
    fn odd_widths_read_zero_and_change_nothing() {
        for version in [Version::V2, Version::V3] {
            let mut d = Distributor::new(version, 2, 32);
            for size in [0, 3, 9, 255] {
                assert_eq!(d.read_distributor(0, gicd::IPRIORITYR, size), 0);
                assert!(run(|out| d.write_distributor(0, gicd::IPRIORITYR, size, u64::MAX, out)).is_empty());
                assert_eq!(d.read_redistributor(gicr::SGI_BASE + gicd::IPRIORITYR, size), 0);
                assert!(run(|out| d.write_redistributor(gicr::SGI_BASE + gicd::IPRIORITYR, size, 1, out)).is_empty());
            }
            assert_eq!(d.read_distributor(0, gicd::IPRIORITYR, 4), 0);
        }
    }
}
