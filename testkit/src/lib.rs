//! # testkit: what test firmware adds to Belfry
//!
//! Belfry's product image boots the VMs of a bundle and nothing else (DESIGN.md section 7).
//! Everything the system tests and benchmarks need on the board lives here, linked only into
//! the boards' test firmware (`belfry-virt-test`, `belfry-rpi4-test`): the scenarios a
//! `scenario=NAME` word on the command line selects ([`scenario`]), the deliberate fault, panic
//! and stack-overflow paths, the port stress (`selftest`), and the guest-side scenarios of
//! the hypervisor API (`suite`: DESIGN.md Appendix A's Zircon tests and Belfry's own, each a few
//! lines of guest assembly in `guests` with the VMM code that drives them; `attack`, `bench`).
//!
//! The scenario parser is pure and tested on the host; everything else needs real guest
//! execution and builds only for the board (`target_os = "none"`).
#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod attack;
#[cfg(target_os = "none")]
mod bench;
#[cfg(target_os = "none")]
mod guests;
#[cfg(target_os = "none")]
pub mod machine;
#[cfg(target_os = "none")]
mod run;
pub mod scenario;
#[cfg(target_os = "none")]
mod selftest;
#[cfg(target_os = "none")]
pub mod suite;

/// The test kit a test firmware image hands Belfry's boot code.
#[cfg(target_os = "none")]
pub static TEST_KIT: el2::boot::TestKit = el2::boot::TestKit { early: run::early, run: run::run };
