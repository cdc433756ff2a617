//! Belfry's memory: a heap for kernel objects and a buddy page-frame allocator, both carved
//! from the RAM the machine description leaves free.
//!
//! The split is decided by [`plan`], a pure function: the heap takes the first
//! [`HEAP_SIZE`] bytes (or a quarter, on a small machine) of the largest free region, and every
//! other free page goes to the frame allocator. Both allocators are locked, so they are set up
//! only after the MMU and caches are on.

use crate::machine::MAX_REGIONS;
use crate::pagetable::PAGE_SIZE;
use crate::regions::{Region, RegionList};

/// The heap Belfry asks for on a machine with plenty of RAM.
pub const HEAP_SIZE: u64 = 16 << 20;

/// How free memory is divided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The kernel-object heap.
    pub heap: Region,
    /// Page-aligned regions for the frame allocator.
    pub frames: RegionList<MAX_REGIONS>,
}

/// Divides `free` memory between the heap and the frame allocator; `None` when there is no
/// page-aligned free memory at all.
pub fn plan(free: &RegionList<MAX_REGIONS>) -> Option<Plan> {
    let mut frames = RegionList::new();
    for region in free.as_slice() {
        if let Some(aligned) = region.shrink_to_alignment(PAGE_SIZE) {
            // Cannot overflow: `frames` holds at most as many regions as `free`.
            frames.add(aligned).ok()?;
        }
    }
    let largest = frames.largest()?;
    let heap_size = HEAP_SIZE.min((largest.size() / 4) & !(PAGE_SIZE - 1)).max(PAGE_SIZE);
    let heap = Region::from_base_size(largest.start.raw(), heap_size)?;
    frames.subtract(heap).ok()?;
    Some(Plan { heap, frames })
}

#[cfg(target_os = "none")]
pub use allocators::*;

#[cfg(target_os = "none")]
mod allocators {
    use super::Plan;
    use crate::pagetable::PAGE_SIZE;
    use buddy_system_allocator::{LockedFrameAllocator, LockedHeap};
    use stage2::PhysAddr;

    #[global_allocator]
    static HEAP: LockedHeap<32> = LockedHeap::empty();
    static FRAMES: LockedFrameAllocator<32> = LockedFrameAllocator::new();

    /// Hands the planned regions to the allocators.
    ///
    /// # Safety
    /// Called once, after the MMU is on, with a plan whose regions are free RAM mapped
    /// read-write in Belfry's identity map and used by nothing else.
    pub unsafe fn init(plan: &Plan) {
        // SAFETY: the caller guarantees the heap region is free, mapped and ours alone.
        unsafe { HEAP.lock().init(plan.heap.start.raw() as usize, plan.heap.size() as usize) };
        let mut frames = FRAMES.lock();
        for region in plan.frames.as_slice() {
            let first = (region.start.raw() / PAGE_SIZE) as usize;
            let end = (region.end.raw() / PAGE_SIZE) as usize;
            frames.add_frame(first, end);
        }
        crate::object::frames::set_capacity(plan.frames.total_size() / PAGE_SIZE);
    }

    /// Single frames each CPU keeps in front of the buddy allocator: demand paging takes one
    /// page per fault, and a buddy allocation costs about 900 instructions; a refill takes
    /// [`REFILL`] pages in one buddy allocation. Frames in a cache are free as far as the frame
    /// account (`object::frames`) goes: an allocation the buddy cannot serve first returns
    /// every CPU's cache to it and tries again, so a promise is never broken by a cache.
    struct FrameCache {
        frames: [usize; CACHED],
        len: usize,
    }

    const CACHED: usize = 32;
    const REFILL: usize = 16;

    static CACHES: [spin::Mutex<FrameCache>; crate::machine::MAX_CPUS] =
        [const { spin::Mutex::new(FrameCache { frames: [0; CACHED], len: 0 }) }; crate::machine::MAX_CPUS];

    fn this_cache() -> Option<&'static spin::Mutex<FrameCache>> {
        CACHES.get(crate::arch::aarch64::cpu::index())
    }

    /// Returns every CPU's cached frames to the buddy allocator.
    fn drain_caches() {
        for cache in &CACHES {
            let mut cache = cache.lock();
            let mut frames = FRAMES.lock();
            for &frame in &cache.frames[..cache.len] {
                frames.dealloc(frame, 1);
            }
            cache.len = 0;
        }
    }

    fn alloc_one() -> Option<usize> {
        let cache = this_cache()?;
        let mut cache = cache.lock();
        if cache.len == 0 {
            let first = FRAMES.lock().alloc(REFILL)?;
            for (slot, frame) in cache.frames.iter_mut().zip(first..first + REFILL) {
                *slot = frame;
            }
            cache.len = REFILL;
        }
        cache.len -= 1;
        Some(cache.frames[cache.len])
    }

    /// Allocates `count` contiguous physical pages, aligned to `count` rounded up to a power
    /// of two.
    pub fn alloc_frames(count: usize) -> Option<PhysAddr> {
        let cached = if count == 1 { alloc_one() } else { None };
        let first = match cached {
            Some(frame) => frame,
            None => {
                let direct = FRAMES.lock().alloc(count);
                match direct {
                    Some(first) => first,
                    None => {
                        drain_caches();
                        FRAMES.lock().alloc(count)?
                    }
                }
            }
        };
        Some(PhysAddr::new(first as u64 * PAGE_SIZE))
    }

    /// Returns pages obtained from [`alloc_frames`].
    pub fn free_frames(address: PhysAddr, count: usize) {
        let frame = (address.raw() / PAGE_SIZE) as usize;
        if count == 1 {
            if let Some(cache) = this_cache() {
                let mut cache = cache.lock();
                if cache.len < CACHED {
                    let at = cache.len;
                    cache.frames[at] = frame;
                    cache.len += 1;
                    return;
                }
            }
        }
        FRAMES.lock().dealloc(frame, count);
    }

    /// Bytes the heap has handed out and bytes it manages.
    pub fn heap_usage() -> (usize, usize) {
        let heap = HEAP.lock();
        (heap.stats_alloc_actual(), heap.stats_total_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> Region {
        Region::new(start, end).unwrap()
    }

    #[test]
    fn the_heap_comes_from_the_largest_region() {
        let mut free = RegionList::new();
        free.add(r(0x1000, 0x8_0000)).unwrap();
        free.add(r(0x4030_0123, 0x6000_0000)).unwrap();
        let plan = plan(&free).unwrap();
        assert_eq!(plan.heap, r(0x4030_1000, 0x4030_1000 + HEAP_SIZE));
        assert_eq!(plan.frames.as_slice(), &[r(0x1000, 0x8_0000), r(0x4030_1000 + HEAP_SIZE, 0x6000_0000)]);
        assert_eq!(plan.frames.total_size() + plan.heap.size(), 0x7_f000 + 0x6000_0000 - 0x4030_1000);
    }

    #[test]
    fn a_small_machine_gets_a_quarter() {
        let mut free = RegionList::new();
        free.add(r(0x10_0000, 0x50_0000)).unwrap();
        let plan = plan(&free).unwrap();
        assert_eq!(plan.heap, r(0x10_0000, 0x20_0000));
        assert_eq!(plan.frames.as_slice(), &[r(0x20_0000, 0x50_0000)]);
    }

    #[test]
    fn no_whole_page_means_no_plan() {
        let mut free = RegionList::new();
        free.add(r(0x1001, 0x1fff)).unwrap();
        assert_eq!(plan(&free), None);
        assert_eq!(plan(&RegionList::new()), None);
    }
}
