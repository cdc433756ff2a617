//! Running a guest on this CPU. The world switch (stage 2, EL1 context, exits) is not built
//! yet, so `run` reports that this build cannot run guest code and `vcpu_enter` returns
//! NOT_SUPPORTED; everything above it (the API, the queues, the threads) is real.

use crate::object::exit::Exit;
use crate::object::vcpu::Context;

/// Per-VCPU architectural state.
#[derive(Debug, Default)]
pub struct VcpuArch {
    /// The VCPU's index in its guest (its VMPIDR affinity).
    pub id: usize,
}

impl VcpuArch {
    pub fn new(id: usize) -> Self {
        Self { id }
    }
}

/// Runs the guest until its next exit.
pub fn run(_context: &mut Context) -> Exit {
    Exit::Unsupported
}
