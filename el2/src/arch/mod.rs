//! Architecture support. `aarch64` is the real thing; it is compiled only for the bare-metal
//! target. Host builds (unit tests) see only the pure logic of the crate.

#[cfg(target_os = "none")]
pub mod aarch64;
