//! Handles: a table mapping handle values to (object, rights).
//!
//! Handle values are never reused within a table's lifetime (a counter, with the low two bits
//! set as Zircon's are, so 0 is never a handle), which turns a use-after-close into
//! BAD_HANDLE rather than a surprise. Each object counts its handles; when the last one closes
//! the object hears about it (a port stops accepting packets, a VCPU frees its thread).

use super::{Object, ObjectType, Rights, Status, ZxResult};
use alloc::collections::BTreeMap;
use core::sync::atomic::{AtomicU32, Ordering};

/// `ZX_HANDLE_INVALID`.
pub const HANDLE_INVALID: u32 = 0;

/// A handle's content.
#[derive(Clone, Debug)]
pub struct Handle {
    pub object: Object,
    pub rights: Rights,
}

/// See the module documentation.
#[derive(Debug)]
pub struct HandleTable {
    entries: spin::Mutex<BTreeMap<u32, Handle>>,
    next: AtomicU32,
}

impl Default for HandleTable {
    fn default() -> Self {
        Self::new()
    }
}

impl HandleTable {
    /// An empty table.
    pub const fn new() -> Self {
        Self { entries: spin::Mutex::new(BTreeMap::new()), next: AtomicU32::new(1) }
    }

    /// Adds a handle to `object` with `rights`; returns its value.
    pub fn add(&self, object: Object, rights: Rights) -> ZxResult<u32> {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        if index >= 1 << 30 {
            return Err(Status::NO_RESOURCES);
        }
        object.handle_opened();
        self.entries.lock().insert((index << 2) | 0b11, Handle { object, rights });
        Ok((index << 2) | 0b11)
    }

    /// The handle `value`, or BAD_HANDLE.
    pub fn get(&self, value: u32) -> ZxResult<Handle> {
        self.entries.lock().get(&value).cloned().ok_or(Status::BAD_HANDLE)
    }

    /// The handle `value` checked for type (WRONG_TYPE) and `rights` (ACCESS_DENIED), in
    /// Zircon's order: BAD_HANDLE, then WRONG_TYPE, then ACCESS_DENIED.
    pub fn get_checked(&self, value: u32, kind: ObjectType, rights: Rights) -> ZxResult<Handle> {
        let handle = self.get(value)?;
        if handle.object.object_type() != kind {
            return Err(Status::WRONG_TYPE);
        }
        if !handle.rights.contains(rights) {
            return Err(Status::ACCESS_DENIED);
        }
        Ok(handle)
    }

    /// `zx_handle_close`: closing `ZX_HANDLE_INVALID` is a no-op.
    pub fn close(&self, value: u32) -> ZxResult {
        if value == HANDLE_INVALID {
            return Ok(());
        }
        let handle = self.entries.lock().remove(&value).ok_or(Status::BAD_HANDLE)?;
        handle.object.handle_closed();
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
        self.entries.lock().len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for HandleTable {
    fn drop(&mut self) {
        let entries = core::mem::take(self.entries.get_mut());
        for handle in entries.into_values() {
            handle.object.handle_closed();
        }
    }
}
