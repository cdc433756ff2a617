//! AArch64 at EL2 (or EL1, when the loader gives no EL2): boot, exception vectors, MMU,
//! generic timer, power-off and the CPU's own registers.

pub mod boot;
pub mod cpu;
pub mod gic_cpu;
pub mod guest;
pub mod mmu;
pub mod pmu;
pub mod power;
pub mod switch;
pub mod timer;
pub mod vectors;
mod vectors_regs;
pub mod vgic;
pub mod world;
