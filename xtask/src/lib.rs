//! # xtask: Belfry's host tool, as a library
//!
//! Everything the `cargo xtask` commands and the QEMU system tests share: the boards and their
//! QEMU command lines, building the firmware and turning its ELF into a loadable image,
//! running QEMU with a time limit, decoding the defmt stream in-process against the exact ELF
//! that ran, and making sure the host has the tools (QEMU >= 9).

pub mod bench;
pub mod board;
pub mod build;
pub mod debian;
pub mod decode;
pub mod flash;
pub mod fuzz;
pub mod guests;
pub mod linux;
pub mod pack;
pub mod qemu;
pub mod stress;
pub mod terminal;
pub mod tools;
pub mod trace;

pub use board::Board;
pub use el2::exit_code;

use std::path::PathBuf;

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}
