// Shared by the boards' build scripts (`include!`d): writes the board's linker script (the
// shared template with the board's load address) and links with it and with defmt's script.
// Forgetting `-Tdefmt.x` links silently and decodes to nothing, which is why the system tests
// assert on decoded text.

/// The `.stacks` section (el2's `mmu::STACKS_SIZE`, which checks it at boot): 8 boot stacks of
/// 64 KiB, then 128 thread slots of 20 KiB. The lowest page of each is an unmapped guard page.
const STACKS: &str = "8 * 65536 + 128 * 20480";

fn link(base: &str) {
    use std::{env, fs, path::PathBuf};
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let template = fs::read_to_string("../link.ld.in").expect("boards/link.ld.in");
    let script = template.replace("@BASE@", base.trim()).replace("@STACKS@", STACKS);
    fs::write(out.join("belfry.ld"), script).expect("write the linker script");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=../link.ld.in");
    println!("cargo:rerun-if-changed=../link.rs");
    println!("cargo:rerun-if-changed=load-address");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-Tbelfry.ld");
        println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    }
}
