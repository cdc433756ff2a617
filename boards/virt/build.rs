//! Links this board's firmware: see `boards/link.rs`.

include!("../link.rs");

fn main() {
    link(include_str!("load-address"));
}
