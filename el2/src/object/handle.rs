//! Handles: a table mapping handle values to (object, rights).
//!
//! Handle values are never reused within a table's lifetime, which turns a use-after-close
//! into BAD_HANDLE rather than a surprise. A value names a slot of the table and that slot's
//! generation, with the low two bits set as Zircon's are (so 0 is never a handle): looking one
//! up is an index and a compare, not a search (it is on every VMM call of every exit). A slot
//! freed by a close is taken again with the next generation; a slot whose generations are all
//! spent is retired, never reused; slot 0 is never used. So at most [`MAX_LIVE`] - 1 handles
//! live at once, and a table issues fewer than 2^30 values in its life (NO_RESOURCES after
//! either). Each object counts its
//! handles; when the last one closes the object hears about it (a port stops accepting
//! packets, a VCPU frees its thread).

use super::{Object, Rights, Status, ZxResult};
use alloc::vec::Vec;

/// `ZX_HANDLE_INVALID`.
pub const HANDLE_INVALID: u32 = 0;

/// Bits of a value that name the slot (above the two low bits).
const SLOT_BITS: u32 = 16;
/// Slots of a table (slot 0 is never used: a table holds at most `MAX_LIVE - 1` handles).
pub const MAX_LIVE: usize = 1 << SLOT_BITS;
/// Generations a slot has (the value's top 14 bits).
const GENERATIONS: u32 = 1 << (30 - SLOT_BITS);

/// The value of `slot` in `generation`.
fn handle_value(slot: usize, generation: u32) -> u32 {
    (generation << (SLOT_BITS + 2)) | ((slot as u32) << 2) | 0b11
}

/// The slot `value` names.
fn slot_of(value: u32) -> usize {
    ((value >> 2) as usize) & (MAX_LIVE - 1)
}

/// A handle's content.
#[derive(Clone, Debug)]
pub struct Handle {
    pub object: Object,
    pub rights: Rights,
}

/// One slot: the generation it is in, and its handle while one lives there, with that
/// handle's value (0, which no value is, while none does: a lookup is one compare).
#[derive(Debug)]
struct Slot {
    generation: u32,
    value: u32,
    handle: Option<Handle>,
}

#[derive(Debug, Default)]
struct Slots {
    slots: Vec<Slot>,
    /// Slots closed and not retired, taken again last-freed first.
    free: Vec<usize>,
    live: usize,
}

impl Slots {
    /// The live handle whose value is `value`.
    fn get(&self, value: u32) -> Option<&Handle> {
        let index = slot_of(value);
        let slot = self.slots.get(index)?;
        if value != slot.value {
            return None;
        }
        slot.handle.as_ref()
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct HandleTable {
    entries: spin::Mutex<Slots>,
}

impl Default for HandleTable {
    fn default() -> Self {
        Self::new()
    }
}

impl HandleTable {
    /// An empty table.
    pub const fn new() -> Self {
        Self { entries: spin::Mutex::new(Slots { slots: Vec::new(), free: Vec::new(), live: 0 }) }
    }

    /// Adds a handle to `object` with `rights`; returns its value.
    pub fn add(&self, object: Object, rights: Rights) -> ZxResult<u32> {
        let mut entries = self.entries.lock();
        if entries.slots.is_empty() {
            // Slot 0 is never issued, so a table's first values are 0x7, 0xb, ... (as Zircon's
            // and the counter this table replaced) and 0x3 is never a handle.
            entries.slots.push(Slot { generation: GENERATIONS, value: 0, handle: None });
        }
        let index = match entries.free.pop() {
            Some(index) => index,
            None if entries.slots.len() < MAX_LIVE => {
                entries.slots.push(Slot { generation: 0, value: 0, handle: None });
                entries.slots.len() - 1
            }
            None => return Err(Status::NO_RESOURCES),
        };
        object.handle_opened();
        let slot = &mut entries.slots[index];
        slot.handle = Some(Handle { object, rights });
        let value = handle_value(index, slot.generation);
        slot.value = value;
        entries.live += 1;
        Ok(value)
    }

    /// The handle `value`, or BAD_HANDLE.
    pub fn get(&self, value: u32) -> ZxResult<Handle> {
        self.entries.lock().get(value).cloned().ok_or(Status::BAD_HANDLE)
    }

    /// The object of the handle `value` as the type `typed` picks out of it (`None`:
    /// WRONG_TYPE), with the handle's rights, which must contain `rights` (ACCESS_DENIED), in
    /// Zircon's order: BAD_HANDLE, then WRONG_TYPE, then ACCESS_DENIED. Only the typed
    /// reference is cloned, under the table's lock (every VMM call of every exit comes here).
    pub fn get_typed<T: Clone>(
        &self,
        value: u32,
        rights: Rights,
        typed: impl FnOnce(&Object) -> Option<&T>,
    ) -> ZxResult<(T, Rights)> {
        let entries = self.entries.lock();
        let handle = entries.get(value).ok_or(Status::BAD_HANDLE)?;
        let object = typed(&handle.object).ok_or(Status::WRONG_TYPE)?;
        if !handle.rights.contains(rights) {
            return Err(Status::ACCESS_DENIED);
        }
        Ok((object.clone(), handle.rights))
    }

    /// `zx_handle_close`: closing `ZX_HANDLE_INVALID` is a no-op.
    pub fn close(&self, value: u32) -> ZxResult {
        if value == HANDLE_INVALID {
            return Ok(());
        }
        let handle = {
            let mut entries = self.entries.lock();
            entries.get(value).ok_or(Status::BAD_HANDLE)?;
            let index = slot_of(value);
            let slot = &mut entries.slots[index];
            let handle = slot.handle.take();
            slot.value = 0;
            slot.generation += 1;
            if slot.generation < GENERATIONS {
                entries.free.push(index);
            }
            entries.live -= 1;
            handle
        };
        // Outside the lock: the object may close further handles' objects in turn.
        if let Some(handle) = handle {
            handle.object.handle_closed();
        }
        Ok(())
    }

    /// `zx_handle_duplicate`: a new handle to the same object with `rights` (a subset of the
    /// original's, or `SAME_RIGHTS`). The original needs DUPLICATE.
    pub fn duplicate(&self, value: u32, rights: Rights) -> ZxResult<u32> {
        let handle = self.get(value)?;
        if !handle.rights.contains(Rights::DUPLICATE) {
            return Err(Status::ACCESS_DENIED);
        }
        let rights = if rights == Rights::SAME_RIGHTS { handle.rights } else { rights };
        if !handle.rights.contains(rights) {
            return Err(Status::INVALID_ARGS);
        }
        self.add(handle.object, rights)
    }

    /// Number of live handles.
    pub fn len(&self) -> usize {
        self.entries.lock().live
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for HandleTable {
    fn drop(&mut self) {
        let entries = core::mem::take(self.entries.get_mut());
        for handle in entries.slots.into_iter().filter_map(|slot| slot.handle) {
            handle.object.handle_closed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::port::Port;
    use alloc::sync::Arc;

    fn object() -> Object {
        Object::Port(Arc::new(Port::new()))
    }

    #[test]
    fn values_are_never_reused_and_stale_ones_are_bad() {
        let table = HandleTable::new();
        let first = table.add(object(), Rights::SAME_RIGHTS).unwrap();
        assert_eq!(first & 0b11, 0b11, "the low bits are set, as Zircon's are");
        table.close(first).unwrap();
        let second = table.add(object(), Rights::SAME_RIGHTS).unwrap();
        assert_eq!(slot_of(second), slot_of(first), "the slot is taken again");
        assert_ne!(second, first, "in its next generation");
        assert_eq!(table.get(first).map(|_| ()), Err(Status::BAD_HANDLE));
        assert_eq!(table.close(first), Err(Status::BAD_HANDLE));
        assert!(table.get(second).is_ok());
        assert_eq!(table.get(second | (1 << 31)).map(|_| ()), Err(Status::BAD_HANDLE), "another generation");
        assert_eq!(table.get(second & !1).map(|_| ()), Err(Status::BAD_HANDLE), "the low bits clear");
        assert_eq!(table.get(HANDLE_INVALID).map(|_| ()), Err(Status::BAD_HANDLE));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn a_slot_whose_generations_are_spent_is_retired() {
        let table = HandleTable::new();
        let mut seen = alloc::collections::BTreeSet::new();
        for _ in 0..GENERATIONS {
            let value = table.add(object(), Rights::SAME_RIGHTS).unwrap();
            assert_eq!(slot_of(value), 1);
            assert!(seen.insert(value), "a value issued twice");
            table.close(value).unwrap();
        }
        let next = table.add(object(), Rights::SAME_RIGHTS).unwrap();
        assert_eq!(slot_of(next), 2, "slot 1 is retired");
        assert!(!seen.contains(&next));
    }

    #[test]
    #[cfg_attr(miri, ignore = "65 535 handles take many minutes under Miri; the host run covers it")]
    fn at_most_max_live_handles() {
        let table = HandleTable::new();
        let values: Vec<u32> = (1..MAX_LIVE).map(|_| table.add(object(), Rights::SAME_RIGHTS).unwrap()).collect();
        assert_eq!(values[..2], [0x7, 0xb], "the first values, as Zircon's");
        assert_eq!(table.add(object(), Rights::SAME_RIGHTS), Err(Status::NO_RESOURCES));
        table.close(values[7]).unwrap();
        let again = table.add(object(), Rights::SAME_RIGHTS).unwrap();
        assert_eq!(slot_of(again), 8);
        assert_eq!(table.len(), MAX_LIVE - 1);
    }
}
