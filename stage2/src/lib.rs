//! # stage2: address spaces and fault syndromes
//!
//! This crate holds what Belfry knows about *addresses* and *faults*, independent of guests,
//! VCPUs or boards:
//!
//! - [`addr`]: newtypes for the three address spaces Belfry juggles: host physical
//!   ([`PhysAddr`]), guest physical ([`GuestPhysAddr`]) and EL2 virtual ([`VirtAddr`]). They do
//!   not convert into one another by `as`; each crossing is a named function that says why it
//!   is valid (EL2 runs on an identity map, so `VirtAddr::from_identity` is the only bridge).
//! - [`syndrome`]: decoding of the exception syndrome register (ESR_ELx): exception classes,
//!   data/instruction abort ISS fields and fault status codes. EL2 uses it for its own fatal
//!   reports today and for guest exits later.
//!
//! The stage-2 translation tables themselves (VTCR/VTTBR, demand paging) will live here too; the
//! crate knows nothing of guests and is pure logic, so all of it is unit-tested on the host.
//!
//! Invariants: every function here is total. A syndrome is a guest-influenced 64-bit value, so
//! decoding never panics, whatever the bits say.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod addr;
pub mod syndrome;

pub use addr::{GuestPhysAddr, PhysAddr, VirtAddr};
