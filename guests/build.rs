//! Links every guest with `link.ld`: one image from address 0, header first.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg=-T{dir}/link.ld");
    println!("cargo:rerun-if-changed=link.ld");
    for guest in ["hello", "smp", "reset", "poweroff", "common"] {
        println!("cargo:rerun-if-changed={guest}.S");
    }
}
