//! # vmm: the in-firmware VMM library
//!
//! A client of the hypervisor API like any VMM: it creates guests through `el2::api` with the
//! hypervisor resource Belfry hands it at boot, loads guest code into guest memory, runs VCPUs
//! and serves their packets. Today it holds the guest-side scenarios of the system tests
//! (`suite`): DESIGN.md Appendix A's Zircon hypervisor tests and Belfry's own, each a few lines
//! of guest assembly and the VMM code that drives them.
//!
//! The fault view (`fault`) is pure logic and is unit-tested on the host; the scenarios run
//! only on the board (`target_os = "none"`): they need real guest execution.
#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;

#[cfg(target_os = "none")]
mod attack;
#[cfg(target_os = "none")]
mod bench;
pub mod bus;
pub mod devicetree;
pub mod distributor;
pub mod fault;
#[cfg(target_os = "none")]
mod guests;
pub mod layout;
pub mod loader;
#[cfg(target_os = "none")]
pub mod machine;
pub mod pl011;
#[cfg(target_os = "none")]
pub mod suite;
#[cfg(target_os = "none")]
pub mod vm;
