//! Belfry's own stage-1 translation tables: the identity map EL2 runs on.
//!
//! The map is built once, by the boot CPU, with the MMU and caches still off, before any lock
//! exists (a lock needs exclusives, and exclusives on Device memory are unreliable on a real
//! Cortex-A72). So the builder allocates nothing: it fills tables from a pool the caller owns,
//! and reports exhaustion as an error.
//!
//! Geometry: 4 KiB granule, 39-bit virtual addresses (`T0SZ = 25`), walks starting at level 1.
//! A range is mapped with the largest blocks that fit (1 GiB, 2 MiB, 4 KiB), so RAM and device
//! windows cost a handful of descriptors and only the pages of Belfry's own image, whose
//! permissions differ section by section (W^X), go down to level 3.
//!
//! The same tables serve the EL2 regime and, when Belfry is entered at EL1 (no virtualization),
//! the EL1&0 regime; the two differ only in the meaning of AP\[1\] and the execute-never bits.

/// Bytes in a translation granule (and a page).
pub use stage2::table::PAGE_SIZE;
/// Entries in one table.
pub const ENTRIES: usize = 512;
/// Size of the input address space: `T0SZ = 64 - VA_BITS`.
pub const VA_BITS: u32 = 39;
/// The first level of the walk for [`VA_BITS`].
pub const START_LEVEL: usize = 1;

/// MAIR attribute index of Device-nGnRnE memory (MAIR attr0 = 0x00).
pub const MAIR_DEVICE_INDEX: u64 = 0;
/// MAIR attribute index of Normal write-back cacheable memory (MAIR attr1 = 0xff).
pub const MAIR_NORMAL_INDEX: u64 = 1;
/// The MAIR value that gives the indices above their meaning.
pub const MAIR_VALUE: u64 = 0xff << (8 * MAIR_NORMAL_INDEX);

const VALID: u64 = 1 << 0;
const TABLE_OR_PAGE: u64 = 1 << 1;
const AP_READ_ONLY: u64 = 1 << 7;
const AP_EL0_OR_RES1: u64 = 1 << 6;
const INNER_SHAREABLE: u64 = 0b11 << 8;
const ACCESS_FLAG: u64 = 1 << 10;
const PXN: u64 = 1 << 53;
const XN: u64 = 1 << 54;
const OUTPUT_MASK: u64 = 0x0000_ffff_ffff_f000;

/// One translation table.
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
pub struct Table(pub [u64; ENTRIES]);

impl Table {
    /// A table of invalid entries.
    pub const EMPTY: Table = Table([0; ENTRIES]);
}

/// The translation regime the tables are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Regime {
    /// EL2 (non-VHE): one privilege level; AP\[1\] is RES1; bit 54 is XN.
    El2,
    /// EL1&0, used only when Belfry was entered at EL1: AP\[1\] = 0 keeps EL0 out; PXN and UXN.
    El1,
}

/// What a mapped range is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Memory {
    /// Device-nGnRnE, read-write, never executable.
    Device,
    /// Normal cacheable, read-write, never executable.
    ReadWrite,
    /// Normal cacheable, read-only, never executable.
    ReadOnly,
    /// Normal cacheable, read-only and executable (Belfry's text).
    Executable,
}

impl Memory {
    /// The lower and upper attribute bits of a block or page descriptor.
    pub fn attributes(self, regime: Regime) -> u64 {
        let never_execute = match regime {
            Regime::El2 => XN,
            Regime::El1 => XN | PXN,
        };
        let privilege = match regime {
            Regime::El2 => AP_EL0_OR_RES1,
            Regime::El1 => 0,
        };
        let base = VALID | ACCESS_FLAG | privilege;
        match self {
            Memory::Device => base | (MAIR_DEVICE_INDEX << 2) | never_execute,
            Memory::ReadWrite => base | (MAIR_NORMAL_INDEX << 2) | INNER_SHAREABLE | never_execute,
            Memory::ReadOnly => base | (MAIR_NORMAL_INDEX << 2) | INNER_SHAREABLE | AP_READ_ONLY | never_execute,
            Memory::Executable => {
                let user_never = match regime {
                    Regime::El2 => 0,
                    Regime::El1 => XN,
                };
                base | (MAIR_NORMAL_INDEX << 2) | INNER_SHAREABLE | AP_READ_ONLY | user_never
            }
        }
    }
}

/// Why a mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(target_os = "none", derive(defmt::Format))]
pub enum MapError {
    /// Start or end is not page-aligned, or the range is empty.
    Unaligned,
    /// The range reaches beyond the [`VA_BITS`]-bit address space.
    OutOfRange,
    /// The table pool is used up.
    OutOfTables,
    /// The image's stack section does not have the size the stack layout expects.
    StackLayout,
}

/// Builds an identity map into a pool of tables; `pool[0]` is the root (level 1).
///
/// Table descriptors hold the *address* of the next table, which is its physical address under
/// the identity map; `base` is that address for `pool[0]`, so the builder can also run on the
/// host, where it is just a number.
pub struct IdentityMap<'a> {
    pool: &'a mut [Table],
    used: usize,
    base: u64,
    regime: Regime,
}

const fn block_size(level: usize) -> u64 {
    1 << (12 + 9 * (3 - level))
}

impl<'a> IdentityMap<'a> {
    /// Starts an empty map in `pool` (cleared here), whose first table sits at address `base`.
    pub fn new(pool: &'a mut [Table], base: u64, regime: Regime) -> Result<Self, MapError> {
        if pool.is_empty() {
            return Err(MapError::OutOfTables);
        }
        pool.fill(Table::EMPTY);
        Ok(Self { pool, used: 1, base, regime })
    }

    /// The root table's address, for TTBR0.
    pub fn root_address(&self) -> u64 {
        self.base
    }

    /// Tables used so far.
    pub fn tables_used(&self) -> usize {
        self.used
    }

    /// Maps `[start, end)` to itself with the given kind; later calls override earlier ones
    /// where they overlap.
    pub fn map(&mut self, start: u64, end: u64, memory: Memory) -> Result<(), MapError> {
        if !start.is_multiple_of(PAGE_SIZE) || !end.is_multiple_of(PAGE_SIZE) || end <= start {
            return Err(MapError::Unaligned);
        }
        if end > 1 << VA_BITS {
            return Err(MapError::OutOfRange);
        }
        let attributes = memory.attributes(self.regime);
        self.map_level(0, START_LEVEL, start, end, attributes)
    }

    /// Removes the translation of `[start, end)` (page-aligned): accesses there fault. Used for
    /// the guard page under every EL2 stack.
    pub fn unmap(&mut self, start: u64, end: u64) -> Result<(), MapError> {
        if !start.is_multiple_of(PAGE_SIZE) || !end.is_multiple_of(PAGE_SIZE) || end <= start {
            return Err(MapError::Unaligned);
        }
        if end > 1 << VA_BITS {
            return Err(MapError::OutOfRange);
        }
        self.map_level(0, START_LEVEL, start, end, 0)
    }

    /// The descriptor that translates `address` and its level, for tests and diagnostics.
    pub fn lookup(&self, address: u64) -> Option<(u64, usize)> {
        let mut table = 0;
        for level in START_LEVEL..=3 {
            let entry = self.pool[table].0[Self::index(address, level)];
            if entry & VALID == 0 {
                return None;
            }
            if level == 3 || entry & TABLE_OR_PAGE == 0 {
                return Some((entry, level));
            }
            table = self.table_index(entry)?;
        }
        None
    }

    fn index(address: u64, level: usize) -> usize {
        ((address >> (12 + 9 * (3 - level))) & (ENTRIES as u64 - 1)) as usize
    }

    fn table_index(&self, descriptor: u64) -> Option<usize> {
        let offset = (descriptor & OUTPUT_MASK).checked_sub(self.base)?;
        let index = (offset / PAGE_SIZE) as usize;
        (index < self.used).then_some(index)
    }

    fn map_level(&mut self, table: usize, level: usize, start: u64, end: u64, attributes: u64) -> Result<(), MapError> {
        let size = block_size(level);
        let mut address = start;
        while address < end {
            let block_start = address & !(size - 1);
            let block_end = block_start + size;
            let chunk_end = end.min(block_end);
            let index = Self::index(address, level);
            let entry = self.pool[table].0[index];
            let is_table = level < 3 && entry & (VALID | TABLE_OR_PAGE) == VALID | TABLE_OR_PAGE;
            let whole_block = address == block_start && chunk_end == block_end;
            if whole_block && !is_table {
                let kind = if level == 3 { TABLE_OR_PAGE } else { 0 };
                // Attributes 0 (no VALID bit) is `unmap`: an invalid descriptor.
                self.pool[table].0[index] = if attributes == 0 { 0 } else { block_start | attributes | kind };
            } else {
                let next = match is_table.then(|| self.table_index(entry)).flatten() {
                    Some(next) => next,
                    None => self.split(table, index, level, block_start)?,
                };
                self.map_level(next, level + 1, address, chunk_end, attributes)?;
            }
            address = chunk_end;
        }
        Ok(())
    }

    /// Replaces entry `index` of `table` by a next-level table that maps the same thing.
    fn split(&mut self, table: usize, index: usize, level: usize, block_start: u64) -> Result<usize, MapError> {
        let next = self.used;
        if next >= self.pool.len() {
            return Err(MapError::OutOfTables);
        }
        self.used += 1;
        let old = self.pool[table].0[index];
        if old & VALID != 0 {
            let attributes = old & !OUTPUT_MASK & !TABLE_OR_PAGE;
            let child_size = block_size(level + 1);
            let kind = if level + 1 == 3 { TABLE_OR_PAGE } else { 0 };
            for (i, slot) in self.pool[next].0.iter_mut().enumerate() {
                *slot = (block_start + i as u64 * child_size) | attributes | kind;
            }
        }
        let address = self.base + next as u64 * PAGE_SIZE;
        self.pool[table].0[index] = address | VALID | TABLE_OR_PAGE;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    fn pool(n: usize) -> Vec<Table> {
        vec![Table::EMPTY; n]
    }

    #[test]
    fn large_ranges_use_blocks() {
        let mut tables = pool(4);
        let base = tables.as_ptr() as u64;
        let mut map = IdentityMap::new(&mut tables, base, Regime::El2).unwrap();
        map.map(0, GIB, Memory::Device).unwrap();
        map.map(GIB, 3 * GIB, Memory::ReadWrite).unwrap();
        assert_eq!(map.tables_used(), 1);
        let (device, level) = map.lookup(0x0900_0000).unwrap();
        assert_eq!(level, 1);
        // Valid block, AttrIndx 0, AP[1] RES1 at EL2, AF, XN.
        assert_eq!(device, VALID | AP_EL0_OR_RES1 | ACCESS_FLAG | XN);
        let (ram, level) = map.lookup(2 * GIB + 5).unwrap();
        assert_eq!(level, 1);
        assert_eq!(ram, (2 * GIB) | VALID | (1 << 2) | AP_EL0_OR_RES1 | INNER_SHAREABLE | ACCESS_FLAG | XN);
        assert_eq!(map.lookup(3 * GIB), None);
    }

    #[test]
    fn an_image_inside_ram_splits_down_to_pages() {
        let mut tables = pool(8);
        let base = tables.as_ptr() as u64;
        let mut map = IdentityMap::new(&mut tables, base, Regime::El2).unwrap();
        map.map(GIB, 2 * GIB, Memory::ReadWrite).unwrap();
        let text = GIB + 2 * MIB;
        map.map(text, text + 0x3000, Memory::Executable).unwrap();
        map.map(text + 0x3000, text + 0x4000, Memory::ReadOnly).unwrap();
        assert_eq!(map.tables_used(), 3);
        let (code, level) = map.lookup(text + 0x1234).unwrap();
        assert_eq!(level, 3);
        assert_eq!(
            code,
            (text + 0x1000)
                | VALID
                | TABLE_OR_PAGE
                | (1 << 2)
                | AP_EL0_OR_RES1
                | AP_READ_ONLY
                | INNER_SHAREABLE
                | ACCESS_FLAG
        );
        let (rodata, _) = map.lookup(text + 0x3000).unwrap();
        assert_eq!(rodata & (AP_READ_ONLY | XN), AP_READ_ONLY | XN);
        // The rest of the split 2 MiB block keeps the RAM attributes, as pages.
        let (rest, level) = map.lookup(text + 0x10_0000).unwrap();
        assert_eq!(
            (rest & !OUTPUT_MASK, level),
            (VALID | TABLE_OR_PAGE | (1 << 2) | AP_EL0_OR_RES1 | INNER_SHAREABLE | ACCESS_FLAG | XN, 3)
        );
        // Neighbouring 2 MiB blocks stay blocks.
        assert_eq!(map.lookup(GIB).unwrap().1, 2);
        assert_eq!(map.lookup(GIB).unwrap().0 & OUTPUT_MASK, GIB);
    }

    #[test]
    fn el1_regime_keeps_el0_out_and_sets_pxn() {
        assert_eq!(Memory::ReadWrite.attributes(Regime::El1) & (AP_EL0_OR_RES1 | PXN | XN), PXN | XN);
        assert_eq!(Memory::Executable.attributes(Regime::El1) & (AP_EL0_OR_RES1 | PXN | XN), XN);
        assert_eq!(Memory::Executable.attributes(Regime::El2) & (PXN | XN), 0);
    }

    #[test]
    fn errors() {
        let mut tables = pool(1);
        let base = tables.as_ptr() as u64;
        let mut map = IdentityMap::new(&mut tables, base, Regime::El2).unwrap();
        assert_eq!(map.map(0x1000, 0x1800, Memory::Device), Err(MapError::Unaligned));
        assert_eq!(map.map(0x2000, 0x1000, Memory::Device), Err(MapError::Unaligned));
        assert_eq!(map.map(0, (1 << 39) + PAGE_SIZE, Memory::Device), Err(MapError::OutOfRange));
        assert_eq!(map.map(0, PAGE_SIZE, Memory::Device), Err(MapError::OutOfTables));
        assert!(IdentityMap::new(&mut [], 0, Regime::El2).is_err());
    }

    #[test]
    fn mair_matches_the_indices() {
        assert_eq!(MAIR_VALUE, 0xff00);
    }

    #[test]
    fn a_guard_page_is_unmapped_inside_a_block() {
        let mut pool = [Table::EMPTY; 8];
        let base = pool.as_ptr() as u64;
        let mut map = IdentityMap::new(&mut pool, base, Regime::El2).unwrap();
        map.map(0x4000_0000, 0x8000_0000, Memory::ReadWrite).unwrap();
        map.unmap(0x4020_1000, 0x4020_2000).unwrap();
        assert_eq!(map.lookup(0x4020_1000), None);
        assert_eq!(map.lookup(0x4020_1fff), None);
        assert!(map.lookup(0x4020_0000).is_some_and(|(_, level)| level == 3));
        assert!(map.lookup(0x4020_2000).is_some_and(|(_, level)| level == 3));
        assert!(map.lookup(0x4040_0000).is_some_and(|(_, level)| level == 2));
    }
}
