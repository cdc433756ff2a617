//! The machine description: what RAM, CPUs, interrupt controller and firmware interface the
//! board has, read from the device tree the loader passes in x0 or, when there is none (the
//! Pi 4 under QEMU without `-dtb`), taken from the board's built-in description.
//!
//! Parsing uses the `fdt` crate but only its raw node/property walk: its convenience accessors
//! (`memory()`, `cpus()`, `chosen()`) panic when a node is missing, and a missing node is a
//! description problem to report, not a reason to die.

use crate::regions::{ListFull, Region, RegionList};
use gic::GicVersion;
use stage2::PhysAddr;

/// Most CPUs Belfry brings up.
pub const MAX_CPUS: usize = 8;
/// Most RAM or reserved regions a description may carry.
pub const MAX_REGIONS: usize = 32;

/// Where the interrupt controller lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicDescription {
    /// GICv2 / GIC-400: distributor, CPU interface, and the virtualization frames when present.
    V2 {
        distributor: PhysAddr,
        cpu_interface: PhysAddr,
        hyp_interface: Option<PhysAddr>,
        virtual_cpu: Option<PhysAddr>,
    },
    /// GICv3: distributor and the first redistributor region.
    V3 { distributor: PhysAddr, redistributors: PhysAddr },
}

impl GicDescription {
    /// The architecture generation described.
    pub fn version(&self) -> GicVersion {
        match self {
            Self::V2 { .. } => GicVersion::V2,
            Self::V3 { .. } => GicVersion::V3,
        }
    }

    /// The distributor's base address.
    pub fn distributor(&self) -> PhysAddr {
        match *self {
            Self::V2 { distributor, .. } | Self::V3 { distributor, .. } => distributor,
        }
    }
}

/// How PSCI calls reach the firmware (the `/psci` node's `method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(target_os = "none", derive(defmt::Format))]
pub enum PsciConduit {
    Smc,
    Hvc,
}

/// Where the description came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescriptionSource {
    /// A flattened device tree at this address, of this size.
    DeviceTree(Region),
    /// The board's built-in description: no device tree was passed.
    BuiltIn,
}

/// Owned text of at most `N` bytes, cut on a character boundary: the device tree's `model`
/// ([`Name`]) and `/chosen/bootargs` ([`CommandLine`]) outlive the blob they were read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedText<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> FixedText<N> {
    /// No text.
    pub const fn empty() -> Self {
        Self { bytes: [0; N], len: 0 }
    }

    /// `text`, cut at `N` bytes on a character boundary.
    pub fn new(text: &str) -> Self {
        let mut len = text.len().min(N);
        while !text.is_char_boundary(len) {
            len -= 1;
        }
        let mut bytes = [0; N];
        bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
        Self { bytes, len }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }

    /// Whether `word` is one of the text's space-separated words.
    pub fn has_word(&self, word: &str) -> bool {
        self.as_str().split_ascii_whitespace().any(|w| w == word)
    }
}

/// A short printable name (the device tree `model`).
pub type Name = FixedText<48>;

/// The command line the loader passed (`/chosen/bootargs`).
pub type CommandLine = FixedText<256>;

/// Everything boot needs to know about the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Machine {
    pub model: Name,
    pub source: DescriptionSource,
    pub ram: RegionList<MAX_REGIONS>,
    /// Memory the firmware or the loader keeps: `/memreserve/`, `/reserved-memory`, the DTB.
    pub reserved: RegionList<MAX_REGIONS>,
    /// The MPIDR affinity value of each CPU, boot CPU first when it can be told apart.
    cpus: [u64; MAX_CPUS],
    cpu_count: usize,
    pub gic: Option<GicDescription>,
    pub psci: Option<PsciConduit>,
    /// `/chosen/bootargs`.
    pub command_line: CommandLine,
    /// `/chosen linux,initrd-start/end`: where the loader put the guest bundle (reserved).
    pub initrd: Option<Region>,
}

/// Why a device tree could not be turned into a description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(target_os = "none", derive(defmt::Format))]
pub enum DescriptionError {
    /// Not a flattened device tree (bad magic, version or sizes).
    NotADeviceTree,
    /// No `device_type = "memory"` node with a usable `reg`.
    NoMemory,
    /// More regions than [`MAX_REGIONS`].
    TooManyRegions,
    /// A device tree that [`crate::fdt_check::sanitize`] refused.
    Malformed(crate::fdt_check::FdtError),
}

impl From<ListFull> for DescriptionError {
    fn from(_: ListFull) -> Self {
        Self::TooManyRegions
    }
}

/// The total size a device tree header announces, or `None` when the magic is wrong.
pub fn device_tree_size(header: &[u8; 8]) -> Option<usize> {
    let magic = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let size = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    (magic == 0xd00d_feed && size >= 40).then_some(size as usize)
}

impl Machine {
    /// An empty description with the given name and source, for built-in descriptions.
    pub fn empty(model: &str, source: DescriptionSource) -> Self {
        Self {
            model: Name::new(model),
            source,
            ram: RegionList::new(),
            reserved: RegionList::new(),
            cpus: [0; MAX_CPUS],
            cpu_count: 0,
            gic: None,
            psci: None,
            command_line: CommandLine::empty(),
            initrd: None,
        }
    }

    /// Records a CPU by its MPIDR affinity; CPUs beyond [`MAX_CPUS`] are ignored (and not
    /// started), which is reported by [`Machine::cpus_ignored`].
    pub fn add_cpu(&mut self, mpidr: u64) {
        if let Some(slot) = self.cpus.get_mut(self.cpu_count) {
            *slot = mpidr;
        }
        self.cpu_count += 1;
    }

    /// The MPIDR affinity values of the CPUs Belfry will run on.
    pub fn cpus(&self) -> &[u64] {
        &self.cpus[..self.cpu_count.min(MAX_CPUS)]
    }

    /// How many described CPUs are beyond [`MAX_CPUS`].
    pub fn cpus_ignored(&self) -> usize {
        self.cpu_count.saturating_sub(MAX_CPUS)
    }

    /// Parses a flattened device tree located at `address`.
    pub fn from_device_tree(blob: &[u8], address: PhysAddr) -> Result<Self, DescriptionError> {
        let tree = fdt::Fdt::new(blob).map_err(|_| DescriptionError::NotADeviceTree)?;
        let blob_region =
            Region::from_base_size(address.raw(), tree.total_size() as u64).ok_or(DescriptionError::NotADeviceTree)?;
        let model = tree.find_node("/").and_then(|root| root.property("model")).and_then(|p| p.as_str());
        let mut machine = Self::empty(model.unwrap_or("unnamed machine"), DescriptionSource::DeviceTree(blob_region));
        machine.reserved.add(blob_region)?;
        for reservation in tree.memory_reservations() {
            let start = reservation.address() as u64;
            if let Some(region) = Region::from_base_size(start, reservation.size() as u64) {
                machine.reserved.add(region)?;
            }
        }

        for node in tree.all_nodes() {
            let device_type = node.property("device_type").and_then(|p| p.as_str());
            if device_type == Some("memory") {
                for reg in node.reg().into_iter().flatten() {
                    let size = reg.size.unwrap_or(0) as u64;
                    if let Some(region) = Region::from_base_size(reg.starting_address as u64, size) {
                        machine.ram.add(region)?;
                    }
                }
            } else if device_type == Some("cpu") {
                if let Some(mpidr) = node.property("reg").and_then(|p| be_cells(p.value)) {
                    machine.add_cpu(mpidr);
                }
            }
            if machine.gic.is_none() {
                machine.gic = gic_from_node(&node);
            }
        }
        if let Some(reserved) = tree.find_node("/reserved-memory") {
            for child in reserved.children() {
                for reg in child.reg().into_iter().flatten() {
                    let size = reg.size.unwrap_or(0) as u64;
                    if let Some(region) = Region::from_base_size(reg.starting_address as u64, size) {
                        machine.reserved.add(region)?;
                    }
                }
            }
        }
        machine.psci = tree
            .find_node("/psci")
            .and_then(|psci| psci.property("method"))
            .and_then(|method| method.as_str())
            .and_then(|method| match method {
                "smc" => Some(PsciConduit::Smc),
                "hvc" => Some(PsciConduit::Hvc),
                _ => None,
            });
        if let Some(bootargs) = tree.find_node("/chosen").and_then(|c| c.property("bootargs")) {
            let text = bootargs.value.split(|&b| b == 0).next().unwrap_or(&[]);
            machine.command_line = CommandLine::new(core::str::from_utf8(text).unwrap_or(""));
        }
        if let Some(chosen) = tree.find_node("/chosen") {
            let cell = |name| chosen.property(name).and_then(|p| be_cells(p.value));
            if let (Some(start), Some(end)) = (cell("linux,initrd-start"), cell("linux,initrd-end")) {
                if let Some(region) = Region::new(start, end) {
                    machine.initrd = Some(region);
                    machine.reserved.add(region)?;
                }
            }
        }
        if machine.ram.is_empty() {
            return Err(DescriptionError::NoMemory);
        }
        Ok(machine)
    }

    /// The bundle's region when it lies wholly inside one RAM region (so it is mapped and no
    /// allocator hands it out); `None` without a bundle or for one that points elsewhere.
    pub fn bundle(&self) -> Option<Region> {
        let bundle = self.initrd?;
        self.ram.as_slice().iter().any(|ram| ram.start <= bundle.start && bundle.end <= ram.end).then_some(bundle)
    }

    /// RAM that is free for Belfry's allocators: RAM minus the reserved regions and `image`.
    pub fn free_memory(&self, image: Region) -> Result<RegionList<MAX_REGIONS>, ListFull> {
        let mut free = self.ram;
        for hole in self.reserved.as_slice() {
            free.subtract(*hole)?;
        }
        free.subtract(image)?;
        Ok(free)
    }
}

/// A big-endian integer of one or two cells (a CPU `reg`).
fn be_cells(bytes: &[u8]) -> Option<u64> {
    match bytes.len() {
        4 => Some(u32::from_be_bytes(bytes.try_into().ok()?) as u64),
        8 => Some(u64::from_be_bytes(bytes.try_into().ok()?)),
        _ => None,
    }
}

fn gic_from_node(node: &fdt::node::FdtNode<'_, '_>) -> Option<GicDescription> {
    let compatible = node.compatible()?;
    let is = |name: &str| compatible.all().any(|c| c == name);
    let mut regs = node.reg()?.map(|r| PhysAddr::new(r.starting_address as u64));
    if is("arm,gic-v3") {
        Some(GicDescription::V3 { distributor: regs.next()?, redistributors: regs.next()? })
    } else if is("arm,cortex-a15-gic") || is("arm,gic-400") || is("arm,cortex-a7-gic") {
        Some(GicDescription::V2 {
            distributor: regs.next()?,
            cpu_interface: regs.next()?,
            hyp_interface: regs.next(),
            virtual_cpu: regs.next(),
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIRT_GICV3: &[u8] = include_bytes!("../tests/fixtures/virt-gicv3.dtb");
    const VIRT_GICV2: &[u8] = include_bytes!("../tests/fixtures/virt-gicv2.dtb");
    #[test]
    fn the_bundle_is_found_and_reserved() {
        let tree = |start: u64, end: u64| {
            let mut fdt = vm_fdt::FdtWriter::new().unwrap();
            let root = fdt.begin_node("").unwrap();
            fdt.property_u32("#address-cells", 2).unwrap();
            fdt.property_u32("#size-cells", 2).unwrap();
            let memory = fdt.begin_node("memory@40000000").unwrap();
            fdt.property_string("device_type", "memory").unwrap();
            fdt.property_array_u64("reg", &[0x4000_0000, 0x1000_0000]).unwrap();
            fdt.end_node(memory).unwrap();
            let chosen = fdt.begin_node("chosen").unwrap();
            fdt.property_u64("linux,initrd-start", start).unwrap();
            fdt.property_u32("linux,initrd-end", end as u32).unwrap();
            fdt.end_node(chosen).unwrap();
            fdt.end_node(root).unwrap();
            fdt.finish().unwrap()
        };
        let blob = tree(0x4800_0000, 0x4800_1234);
        let m = Machine::from_device_tree(&blob, PhysAddr::new(0x4400_0000)).unwrap();
        assert_eq!(m.initrd, Some(r(0x4800_0000, 0x4800_1234)));
        assert!(m.reserved.as_slice().contains(&r(0x4800_0000, 0x4800_1234)));
        assert_eq!(m.bundle(), m.initrd);
        let outside = tree(0x3000_0000, 0x4000_1000);
        let m = Machine::from_device_tree(&outside, PhysAddr::new(0x4400_0000)).unwrap();
        assert_eq!(m.bundle(), None, "a bundle not wholly in RAM is not read");
        let empty = tree(0x4800_0000, 0x4800_0000);
        assert_eq!(Machine::from_device_tree(&empty, PhysAddr::new(0x4400_0000)).unwrap().initrd, None);
    }

    const RESERVED: &[u8] = include_bytes!("../tests/fixtures/reserved.dtb");

    fn r(start: u64, end: u64) -> Region {
        Region::new(start, end).unwrap()
    }

    #[test]
    fn qemu_virt_gicv3() {
        let m = Machine::from_device_tree(VIRT_GICV3, PhysAddr::new(0x4800_0000)).unwrap();
        assert_eq!(m.model.as_str(), "linux,dummy-virt");
        assert_eq!(m.ram.as_slice(), &[r(0x4000_0000, 0x6000_0000)]);
        assert_eq!(m.reserved.as_slice(), &[r(0x4800_0000, 0x4800_0000 + VIRT_GICV3.len() as u64)]);
        assert_eq!(m.cpus(), &[0, 1, 2, 3]);
        assert_eq!(
            m.gic,
            Some(GicDescription::V3 {
                distributor: PhysAddr::new(0x0800_0000),
                redistributors: PhysAddr::new(0x080a_0000)
            })
        );
        assert_eq!(m.gic.unwrap().version(), GicVersion::V3);
        assert_eq!(m.psci, Some(PsciConduit::Smc));
    }

    #[test]
    fn qemu_virt_gicv2() {
        let m = Machine::from_device_tree(VIRT_GICV2, PhysAddr::new(0x4800_0000)).unwrap();
        assert_eq!(
            m.gic,
            Some(GicDescription::V2 {
                distributor: PhysAddr::new(0x0800_0000),
                cpu_interface: PhysAddr::new(0x0801_0000),
                hyp_interface: Some(PhysAddr::new(0x0803_0000)),
                virtual_cpu: Some(PhysAddr::new(0x0804_0000)),
            })
        );
        assert_eq!(m.gic.unwrap().distributor(), PhysAddr::new(0x0800_0000));
    }

    #[test]
    fn reservations_and_free_memory() {
        let m = Machine::from_device_tree(RESERVED, PhysAddr::new(0x3000_0000)).unwrap();
        assert_eq!(m.model.as_str(), "Belfry test board");
        assert_eq!(m.ram.as_slice(), &[r(0, 0x3b40_0000), r(0x4000_0000, 0x8000_0000)]);
        // /memreserve/, the CMA pool and the blob itself (inside the pool).
        assert_eq!(m.reserved.as_slice(), &[r(0, 0x1000), r(0x3000_0000, 0x3400_0000)]);
        assert_eq!(m.cpus(), &[0, 0x100]);
        assert_eq!(m.psci, Some(PsciConduit::Hvc));
        assert_eq!(m.gic.unwrap().version(), GicVersion::V2);
        let free = m.free_memory(r(0x8_0000, 0x20_0000)).unwrap();
        assert_eq!(
            free.as_slice(),
            &[r(0x1000, 0x8_0000), r(0x20_0000, 0x3000_0000), r(0x3400_0000, 0x3b40_0000), r(0x4000_0000, 0x8000_0000)]
        );
    }

    #[test]
    fn garbage_is_not_a_device_tree() {
        assert_eq!(Machine::from_device_tree(&[0u8; 64], PhysAddr::new(0)), Err(DescriptionError::NotADeviceTree));
        assert_eq!(device_tree_size(&[0xd0, 0x0d, 0xfe, 0xed, 0, 0, 0x20, 0]), Some(0x2000));
        assert_eq!(device_tree_size(&[0xd0, 0x0d, 0xfe, 0xee, 0, 0, 0x20, 0]), None);
    }

    #[test]
    fn cpus_beyond_the_limit_are_counted_not_stored() {
        let mut m = Machine::empty("test", DescriptionSource::BuiltIn);
        for mpidr in 0..10 {
            m.add_cpu(mpidr);
        }
        assert_eq!(m.cpus().len(), MAX_CPUS);
        assert_eq!(m.cpus_ignored(), 2);
    }

    #[test]
    fn names_are_truncated_on_char_boundaries() {
        let long = "é".repeat(30);
        assert_eq!(Name::new(&long).as_str().len(), 48);
        assert_eq!(Name::new("virt").as_str(), "virt");
        let line = CommandLine::new("belfry.exit=poweroff  scenario=boot");
        assert!(line.has_word("scenario=boot") && line.has_word("belfry.exit=poweroff"));
        assert!(!line.has_word("scenario") && !CommandLine::empty().has_word(""));
        assert_eq!(CommandLine::new(&"x".repeat(300)).as_str().len(), 256);
    }
}
