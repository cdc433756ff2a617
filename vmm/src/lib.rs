//! # vmm: Belfry's VMM
//!
//! A client of the hypervisor API like any VMM: with the hypervisor resource Belfry hands it at
//! boot, it builds each VM of the user's bundle and serves it (DESIGN.md section 7). The pipeline
//! reads top to bottom: the bundle's VM specification (crate `bundle`) -> [`layout`], the QEMU
//! `virt` machine every guest sees -> [`loader`], where the kernel, initrd and device tree go ->
//! guest memory, a charged VMO written through its checked accessors -> [`devicetree`], the tree
//! the guest boots with -> [`bus`], the MMIO devices behind one trait with their interrupt lines
//! ([`pl011`]; the GIC [`distributor`] model is the interrupt sink) -> [`vm`], one serving loop
//! per VCPU, where a MEM exit becomes a device access through the seL4-style [`fault`] view;
//! the user's keystrokes reach the VMs through [`console_input`].
//! [`virtqueue`] is how a virtio device reads the driver's requests out of guest memory and
//! returns them, every index and address the guest wrote checked (the devices behind it are
//! still to come).
//!
//! The VMM is confined by the language: `#![forbid(unsafe_code)]`. It reaches guest memory and
//! the hardware only through `el2`'s safe API (handles with rights, checked VMO accessors), so a
//! bug in a device model can corrupt at most the VM it serves. Everything but the serving loop
//! is pure and unit-tested on the host; `vm` needs real guest execution. Test scenarios live in
//! the `testkit` crate, which only test firmware links.
#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod bus;
pub mod console_input;
#[cfg(target_os = "none")]
pub mod devices;
pub mod devicetree;
pub mod distributor;
pub mod fault;
pub mod layout;
pub mod loader;
pub mod pl011;
pub mod virtio_blk;
pub mod virtio_console;
pub mod virtio_mmio;
pub mod virtio_net;
pub mod virtqueue;
#[cfg(target_os = "none")]
pub mod vm;
