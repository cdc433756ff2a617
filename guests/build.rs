//! Links every test guest with `link.ld` (one image from address 0, header first) and `ticks`,
//! a Linux program, with `ticks.ld`.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    for guest in ["hello", "smp", "reset", "poweroff", "debug", "sgi", "flood", "ticker", "virtio_bad"] {
        println!("cargo:rustc-link-arg-bin={guest}=-T{dir}/link.ld");
    }
    println!("cargo:rustc-link-arg-bin=ticks=-T{dir}/ticks.ld");
    println!("cargo:rustc-link-arg-bin=ticks=-static");
    for file in [
        "link.ld",
        "ticks.ld",
        "hello.S",
        "smp.S",
        "reset.S",
        "poweroff.S",
        "debug.S",
        "sgi.S",
        "flood.S",
        "ticker.S",
        "virtio_bad.S",
        "common.S",
        "ticks.S",
    ] {
        println!("cargo:rerun-if-changed={file}");
    }
}
