//! Resources: capabilities that gate object creation. Belfry hands the in-firmware VMM one
//! resource of kind HYPERVISOR at boot; `guest_create` requires it.

/// `ZX_RSRC_KIND_MMIO`.
pub const RSRC_KIND_MMIO: u32 = 0;
/// `ZX_RSRC_KIND_HYPERVISOR`.
pub const RSRC_KIND_HYPERVISOR: u32 = 3;
/// `ZX_RSRC_KIND_ROOT`.
pub const RSRC_KIND_ROOT: u32 = 4;

/// See the module documentation.
#[derive(Debug)]
pub struct Resource {
    pub kind: u32,
}
