//! Physical memory regions and fixed-capacity lists of them.
//!
//! Boot runs before any allocator exists, so the lists here live in arrays. A list that would
//! overflow reports it instead of dropping a region silently: losing a reserved region would
//! let the allocator hand out memory the firmware still uses.

use stage2::PhysAddr;

/// A half-open range of physical memory `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: PhysAddr,
    pub end: PhysAddr,
}

impl Region {
    /// The region `[start, start + size)`, or `None` when it is empty or wraps.
    pub fn from_base_size(start: u64, size: u64) -> Option<Self> {
        let end = start.checked_add(size)?;
        (size > 0).then(|| Self { start: PhysAddr::new(start), end: PhysAddr::new(end) })
    }

    /// The region `[start, end)`, or `None` when it is empty.
    pub fn new(start: u64, end: u64) -> Option<Self> {
        (end > start).then(|| Self { start: PhysAddr::new(start), end: PhysAddr::new(end) })
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.end.raw() - self.start.raw()
    }

    /// Whether the two regions share at least one byte.
    pub fn overlaps(&self, other: &Region) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// Whether `address` lies inside the region.
    pub fn contains(&self, address: PhysAddr) -> bool {
        self.start <= address && address < self.end
    }

    /// The largest sub-region whose bounds are multiples of `align` (a power of two).
    pub fn shrink_to_alignment(&self, align: u64) -> Option<Region> {
        let start = self.start.raw().checked_add(align - 1)? & !(align - 1);
        let end = self.end.raw() & !(align - 1);
        Region::new(start, end)
    }
}

/// The list is full: the description has more regions than Belfry can track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListFull;

/// A sorted list of at most `N` disjoint regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionList<const N: usize> {
    regions: [Region; N],
    len: usize,
}

impl<const N: usize> Default for RegionList<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> RegionList<N> {
    const EMPTY: Region = Region { start: PhysAddr::new(0), end: PhysAddr::new(0) };

    /// An empty list.
    pub const fn new() -> Self {
        Self { regions: [Self::EMPTY; N], len: 0 }
    }

    /// The regions, sorted by start address.
    pub fn as_slice(&self) -> &[Region] {
        &self.regions[..self.len]
    }

    /// Number of regions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sum of the sizes of all regions.
    pub fn total_size(&self) -> u64 {
        self.as_slice().iter().map(Region::size).sum()
    }

    /// Adds a region, merging it with any region it overlaps or touches.
    pub fn add(&mut self, region: Region) -> Result<(), ListFull> {
        let mut merged = region;
        let mut kept = Self::new();
        for existing in self.as_slice() {
            if existing.start <= merged.end && merged.start <= existing.end {
                merged.start = merged.start.min(existing.start);
                merged.end = merged.end.max(existing.end);
            } else {
                kept.push_sorted(*existing)?;
            }
        }
        kept.push_sorted(merged)?;
        *self = kept;
        Ok(())
    }

    /// Removes every byte of `hole` from the list, splitting regions as needed.
    pub fn subtract(&mut self, hole: Region) -> Result<(), ListFull> {
        let mut kept = Self::new();
        for existing in self.as_slice() {
            if !existing.overlaps(&hole) {
                kept.push_sorted(*existing)?;
                continue;
            }
            if let Some(below) = Region::new(existing.start.raw(), hole.start.raw()) {
                kept.push_sorted(below)?;
            }
            if let Some(above) = Region::new(hole.end.raw(), existing.end.raw()) {
                kept.push_sorted(above)?;
            }
        }
        *self = kept;
        Ok(())
    }

    /// The largest region (the first of equals), if any.
    pub fn largest(&self) -> Option<Region> {
        self.as_slice().iter().copied().reduce(|a, b| if b.size() > a.size() { b } else { a })
    }

    fn push_sorted(&mut self, region: Region) -> Result<(), ListFull> {
        if self.len == N {
            return Err(ListFull);
        }
        let at = self.as_slice().iter().position(|r| r.start > region.start).unwrap_or(self.len);
        self.regions.copy_within(at..self.len, at + 1);
        self.regions[at] = region;
        self.len += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> Region {
        Region::new(start, end).unwrap()
    }

    #[test]
    fn empty_and_wrapping_regions_are_refused() {
        assert_eq!(Region::from_base_size(0x1000, 0), None);
        assert_eq!(Region::from_base_size(u64::MAX, 2), None);
        assert_eq!(Region::new(5, 5), None);
        assert_eq!(Region::from_base_size(0x4000_0000, 0x1000), Some(r(0x4000_0000, 0x4000_1000)));
    }

    #[test]
    fn add_sorts_and_merges_touching_regions() {
        let mut list = RegionList::<4>::new();
        list.add(r(0x3000, 0x4000)).unwrap();
        list.add(r(0x1000, 0x2000)).unwrap();
        list.add(r(0x2000, 0x2800)).unwrap();
        assert_eq!(list.as_slice(), &[r(0x1000, 0x2800), r(0x3000, 0x4000)]);
        list.add(r(0x2700, 0x3100)).unwrap();
        assert_eq!(list.as_slice(), &[r(0x1000, 0x4000)]);
        assert_eq!(list.total_size(), 0x3000);
    }

    #[test]
    fn subtract_splits_and_trims() {
        let mut list = RegionList::<4>::new();
        list.add(r(0x0, 0x10000)).unwrap();
        list.subtract(r(0x4000, 0x5000)).unwrap();
        list.subtract(r(0xf000, 0x12000)).unwrap();
        list.subtract(r(0x0, 0x1000)).unwrap();
        assert_eq!(list.as_slice(), &[r(0x1000, 0x4000), r(0x5000, 0xf000)]);
        assert_eq!(list.largest(), Some(r(0x5000, 0xf000)));
        list.subtract(r(0x0, 0x20000)).unwrap();
        assert!(list.is_empty());
        assert_eq!(list.largest(), None);
    }

    #[test]
    fn overflow_is_reported_not_dropped() {
        let mut list = RegionList::<2>::new();
        list.add(r(0x0, 0x1000)).unwrap();
        list.add(r(0x2000, 0x3000)).unwrap();
        assert_eq!(list.add(r(0x4000, 0x5000)), Err(ListFull));
        assert_eq!(list.subtract(r(0x800, 0x900)), Err(ListFull));
    }

    #[test]
    fn alignment_shrinks_inwards() {
        assert_eq!(r(0x1234, 0x5678).shrink_to_alignment(0x1000), Some(r(0x2000, 0x5000)));
        assert_eq!(r(0x1234, 0x1fff).shrink_to_alignment(0x1000), None);
        assert!(r(0x1000, 0x2000).contains(PhysAddr::new(0x1fff)));
        assert!(!r(0x1000, 0x2000).contains(PhysAddr::new(0x2000)));
    }
}
