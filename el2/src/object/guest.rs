//! Guests: a guest-physical address space, its traps and its VCPU slots.
//!
//! The trap map is copy-on-write: `set_trap` builds a new map under the guest's lock and bumps
//! a generation counter; each VCPU keeps a snapshot and refreshes it only when the generation
//! moved. The exit path therefore looks traps up without taking a lock.

use super::port::Port;
use super::psci::Power;
use super::trap::{Trap, TrapKind, TrapMap};
use super::vmar::Vmar;
use super::{Status, ZxResult, MAX_VCPUS_PER_GUEST};
use crate::sync::atomic::{AtomicU64, Ordering};
use alloc::sync::Arc;

/// One VCPU slot: whether a VCPU object holds it, and its PSCI power state. A slot is ON while
/// its VCPU runs, OFF after CPU_OFF or before any VCPU took it, ON_PENDING between an accepted
/// CPU_ON and the VMM creating the VCPU (which then takes that slot, so its MPIDR is the one
/// the guest asked for).
#[derive(Clone, Copy, Debug)]
struct Slot {
    used: bool,
    power: Power,
}

struct Inner {
    traps: Arc<TrapMap>,
    vcpu_slots: [Slot; MAX_VCPUS_PER_GUEST],
}

/// See the module documentation.
pub struct Guest {
    vmar: Arc<Vmar>,
    inner: spin::Mutex<Inner>,
    generation: AtomicU64,
}

impl core::fmt::Debug for Guest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Guest").finish_non_exhaustive()
    }
}

impl Guest {
    /// A guest with an empty address space (and its stage-2 tables and VMID).
    pub fn new() -> ZxResult<Self> {
        Ok(Self {
            vmar: Arc::new(Vmar::for_guest()?),
            inner: spin::Mutex::new(Inner {
                traps: Arc::new(TrapMap::default()),
                vcpu_slots: [Slot { used: false, power: Power::Off }; MAX_VCPUS_PER_GUEST],
            }),
            generation: AtomicU64::new(0),
        })
    }

    /// The guest-physical address space.
    pub fn vmar(&self) -> &Arc<Vmar> {
        &self.vmar
    }

    /// Adds a trap (arguments already validated against the seed's rules by the caller; the
    /// range and overlap are checked here).
    pub fn set_trap(&self, kind: TrapKind, addr: u64, size: u64, port: Option<Arc<Port>>, key: u64) -> ZxResult {
        self.install(
            Trap::new(kind, addr, size, key, port),
            |traps, trap| traps.check(addr, size).map(|_| trap),
            TrapMap::insert,
        )?;
        // Pages of the range the guest already touched must fault again to reach the trap.
        self.vmar.evict(addr, size);
        Ok(())
    }

    /// Adds doorbell words inside a MEM trap ([`super::trap::BELFRY_GUEST_TRAP_BELL_WORDS`]);
    /// the MEM trap's pages are unmapped already.
    pub fn set_bell_words(&self, addr: u64, size: u64, port: Arc<Port>, key: u64) -> ZxResult {
        let trap = Trap::new(TrapKind::Bell, addr, size, key, Some(port));
        self.install(trap, |traps, trap| traps.check_words(addr, size).map(|_| trap), TrapMap::insert_words)
    }

    /// Checks `trap` against the map, gives it a ring for every VCPU, and publishes a copy of
    /// the map with it (a new generation).
    fn install(
        &self,
        trap: Trap,
        check: impl FnOnce(&TrapMap, Trap) -> ZxResult<Trap>,
        insert: impl FnOnce(&mut TrapMap, Trap) -> ZxResult<Arc<Trap>>,
    ) -> ZxResult {
        let mut inner = self.inner.lock();
        let trap = check(&inner.traps, trap)?;
        for (vcpu, _) in inner.vcpu_slots.iter().enumerate().filter(|(_, slot)| slot.used) {
            trap.add_vcpu(vcpu);
        }
        let mut traps = TrapMap::clone(&inner.traps);
        insert(&mut traps, trap)?;
        inner.traps = Arc::new(traps);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// The trap map generation, and the current map.
    pub fn traps(&self) -> (u64, Arc<TrapMap>) {
        let inner = self.inner.lock();
        (self.generation.load(Ordering::Acquire), inner.traps.clone())
    }

    /// The trap covering `address`, if any.
    pub fn trap_at(&self, address: u64) -> Option<Arc<Trap>> {
        self.inner.lock().traps.find(address).cloned()
    }

    /// The current trap map generation (a lock-free read for the exit path).
    pub fn trap_generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Reserves a VCPU slot (the lowest one a CPU_ON is pending for, else the lowest free one)
    /// and gives it a ring in every BELL trap.
    pub fn allocate_vcpu(&self) -> ZxResult<usize> {
        let mut inner = self.inner.lock();
        let slots = &inner.vcpu_slots;
        let id = slots
            .iter()
            .position(|slot| !slot.used && slot.power == Power::OnPending)
            .or_else(|| slots.iter().position(|slot| !slot.used))
            .ok_or(Status::NO_RESOURCES)?;
        inner.vcpu_slots[id] = Slot { used: true, power: Power::On };
        for trap in inner.traps.iter() {
            trap.add_vcpu(id);
        }
        Ok(id)
    }

    /// Whether VCPU `id` exists.
    pub fn vcpu_exists(&self, id: u64) -> bool {
        usize::try_from(id).ok().and_then(|id| self.inner.lock().vcpu_slots.get(id).map(|s| s.used)).unwrap_or(false)
    }

    /// The PSCI power state of the VCPU with affinity `target` (Aff0 = its slot; every other
    /// affinity field 0), or `None` when no VCPU can have that affinity.
    pub fn power(&self, target: u64) -> Option<Power> {
        let id = usize::try_from(target).ok().filter(|&id| id < MAX_VCPUS_PER_GUEST)?;
        Some(self.inner.lock().vcpu_slots[id].power)
    }

    /// CPU_ON accepted for `target`: OFF becomes ON_PENDING. `false` if it was not OFF.
    pub fn claim(&self, target: u64) -> bool {
        let mut inner = self.inner.lock();
        match usize::try_from(target).ok().and_then(|id| inner.vcpu_slots.get_mut(id)) {
            Some(slot) if slot.power == Power::Off => {
                slot.power = Power::OnPending;
                true
            }
            _ => false,
        }
    }

    /// CPU_OFF from VCPU `id`.
    pub fn turn_off(&self, id: usize) {
        if let Some(slot) = self.inner.lock().vcpu_slots.get_mut(id) {
            slot.power = Power::Off;
        }
    }

    /// Frees a VCPU slot (its rings stay, for the next VCPU in the slot).
    pub fn release_vcpu(&self, id: usize) {
        if let Some(slot) = self.inner.lock().vcpu_slots.get_mut(id) {
            *slot = Slot { used: false, power: Power::Off };
        }
    }
}
