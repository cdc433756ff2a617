//! Architecture support. `aarch64` is the real thing; it is compiled only for the bare-metal
//! target. Host builds (unit tests) get `fake`, a scripted guest standing in for the world
//! switch, so the VCPU logic above it runs and is tested on the host.

#[cfg(target_os = "none")]
pub mod aarch64;
#[cfg(target_os = "none")]
pub use aarch64::guest::{
    clean_for_guest, current_cpu, guest_device_pages, inject, interrupt_cpu, invalidate_guest, invalidate_guest_page,
    invalidate_instruction_cache, run, stack_pointer, translate_data, zero_pages, VcpuArch,
};

#[cfg(not(target_os = "none"))]
pub mod fake;
#[cfg(not(target_os = "none"))]
pub use fake::{
    clean_for_guest, current_cpu, guest_device_pages, inject, interrupt_cpu, invalidate_guest, invalidate_guest_page,
    invalidate_instruction_cache, run, stack_pointer, translate_data, VcpuArch,
};
