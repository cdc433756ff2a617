//! The product image holds no test material (DESIGN.md section 7): no test-kit code, no test
//! guest program. The test firmware of the same board does, which shows the check can fail.

use belfry_system_tests::*;
use object::{Object, ObjectSymbol};

/// Symbols of `elf` that belong to the test kit: its crate's code and the test guests'
/// programs (`guest_*_start`).
fn test_symbols(elf: &std::path::Path) -> Vec<String> {
    let bytes = std::fs::read(elf).unwrap();
    let file = object::File::parse(&*bytes).unwrap();
    file.symbols()
        .filter_map(|s| s.name().ok().map(String::from))
        .filter(|name| name.contains("testkit") || (name.starts_with("guest_") && name.ends_with("_start")))
        .collect()
}

#[test]
fn the_product_image_holds_no_test_scenario_or_test_guest() {
    build_firmware();
    for board in [Board::Virt, Board::Rpi4] {
        let product = xtask::build::firmware(board).unwrap();
        let found = test_symbols(&product.elf);
        assert!(found.is_empty(), "{}: test material in the product image: {found:?}", board.name());
        let test = xtask::build::test_firmware(board).unwrap();
        let found = test_symbols(&test.elf);
        assert!(found.iter().any(|s| s.contains("testkit")), "{}: the test firmware has the test kit", board.name());
        assert!(found.iter().any(|s| s == "guest_vcpu_enter_start"), "{}: and its guest programs", board.name());
    }
}
