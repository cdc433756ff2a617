//! # The kernel objects and the Zircon hypervisor API
//!
//! Handles with rights name objects: resources, VMOs, the guest-physical VMAR, ports, guests
//! and VCPUs. [`process::Process`] holds a handle table and implements the syscalls with
//! Zircon's semantics and status codes (the seeds in `shared/seeds/`, DESIGN.md section 2);
//! [`crate::api`] is the safe Rust face the in-firmware VMM uses.
//!
//! Lock order (outermost first): handle table, guest, VMAR, VMO pages, port state, the
//! global VCPU thread registry. Ring pushes (the VCPU exit path) take no lock.

pub mod exit;
pub mod frames;
pub mod guest;
pub mod handle;
pub mod packet;
pub mod port;
pub mod process;
pub mod psci;
pub mod resource;
pub mod rights;
pub mod ring;
pub mod signals;
pub mod space;
pub mod status;
pub mod trap;
pub mod vcpu;
pub mod vmar;
pub mod vmo;

pub use rights::Rights;
pub use status::{Status, ZxResult};

use crate::sync::atomic::{AtomicUsize, Ordering};
use alloc::sync::Arc;

/// VCPUs one guest may have.
pub const MAX_VCPUS_PER_GUEST: usize = 8;

/// What a handle refers to.
#[derive(Clone, Debug)]
pub enum Object {
    Resource(Arc<resource::Resource>),
    Vmo(Arc<vmo::Vmo>),
    Vmar(Arc<vmar::Vmar>),
    Port(Arc<port::Port>),
    Guest(Arc<guest::Guest>),
    Vcpu(Arc<vcpu::Vcpu>),
}

impl Object {
    /// The handle counter of objects that act when their last handle closes.
    fn handle_counter(&self) -> Option<&AtomicUsize> {
        match self {
            Object::Port(port) => Some(&port.handles),
            Object::Vcpu(vcpu) => Some(&vcpu.handles),
            _ => None,
        }
    }

    pub(crate) fn handle_opened(&self) {
        if let Some(counter) = self.handle_counter() {
            counter.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub(crate) fn handle_closed(&self) {
        if self.handle_counter().is_some_and(|counter| counter.fetch_sub(1, Ordering::AcqRel) == 1) {
            match self {
                Object::Port(port) => port.on_zero_handles(),
                Object::Vcpu(vcpu) => vcpu.on_zero_handles(),
                _ => {}
            }
        }
    }
}
