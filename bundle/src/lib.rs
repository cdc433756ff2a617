//! # bundle: Belfry's guest bundles
//!
//! A user hands Belfry their guests as one FIT image (DESIGN.md section 7): the board's loader
//! passes it as the initrd, Belfry finds it through `/chosen`, and this crate turns it into VM
//! specifications: name, VCPUs, memory, host-CPU placement, command line, and the kernel,
//! ramdisk and device-tree blobs, each checked against its sha256. `cargo xtask pack` writes
//! bundles with [`writer`] (feature `std`); Belfry reads them with [`parse`].
//!
//! The bundle is untrusted input: [`tree`] reads its device tree with every offset checked and
//! bounded work, [`fit`] refuses one VM for a fault in its configuration and the whole bundle
//! only when it is not a FIT. Nothing here panics on any input; the `bundle` fuzz target checks
//! that claim.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod fit;
pub mod image;
pub mod tree;
#[cfg(any(test, feature = "std"))]
pub mod writer;

pub use fit::{parse, Bundle, BundleError, ConsoleKind, Entry, KernelError, KernelKind, VmError, VmSpec};

#[cfg(test)]
mod tests;
