//! Device trees (the board's, later a bundle's): whatever `fdt_check::sanitize` accepts, the
//! machine description reads without a panic, and sanitizing is idempotent.
#![no_main]

use el2::fdt_check::sanitize;
use el2::machine::Machine;
use libfuzzer_sys::fuzz_target;
use stage2::PhysAddr;

fuzz_target!(|data: &[u8]| {
    let mut blob = data.to_vec();
    if let Ok(size) = sanitize(&mut blob) {
        let tree = &blob[..size];
        let _ = Machine::from_device_tree(tree, PhysAddr::new(0x4800_0000));
        let mut again = tree.to_vec();
        assert_eq!(sanitize(&mut again), Ok(size));
        assert_eq!(again, tree);
    }
});
