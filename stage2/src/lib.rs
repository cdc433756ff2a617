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
//! - [`table`]: stage-2 translation tables (VTCR/VTTBR values, page mapping for demand paging,
//!   unmap and protect with per-page TLB invalidation callbacks).
//!
//! The crate knows nothing of guests and is pure logic over memory it is handed, so all of it is
//! unit-tested on the host (and under Miri).
//!
//! Invariants: every decoding function is total: a syndrome is a guest-influenced 64-bit value,
//! so decoding never panics, whatever the bits say. The only `unsafe` is the view of a table page
//! by its physical address, valid because tables come from the caller's `TableSource`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod addr;
pub mod insn;
pub mod syndrome;
pub mod table;

pub use addr::{GuestPhysAddr, PhysAddr, VirtAddr};
