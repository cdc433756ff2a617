#![cfg_attr(not(test), no_std)]
pub mod machine;
pub mod pagetable;
pub mod regions;
