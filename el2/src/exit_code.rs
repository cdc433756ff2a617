//! Exit statuses Belfry reports at the end of a run (its `belfry: run ended, exit status N` line). Shared with
//! xtask and the system tests, which assert on them.

/// Everything the run was asked to do succeeded.
pub const SUCCESS: u32 = 0;
/// Boot could not complete (no memory, a CPU did not come up, ...); the log says why.
pub const BOOT_FAILED: u32 = 2;
/// An unexpected exception was reported.
pub const FAULT: u32 = 3;
/// Belfry panicked: one of its own invariants broke.
pub const PANIC: u32 = 4;
/// A self-test scenario found a wrong result; the log says which.
pub const TEST_FAILED: u32 = 5;
/// A VM of the bundle was refused, failed, or stopped other than by powering off; the log
/// names it and says why.
pub const VM_FAILED: u32 = 6;
