//! PSCI (Arm DEN0022) as a guest sees it, over HVC or SMC (DESIGN.md 2.3).
//!
//! Calls the hypervisor answers itself leave `enter` running; CPU_ON, CPU_OFF, SYSTEM_OFF and
//! SYSTEM_RESET end `enter` with a packet or a status, as Zircon's VMM expects.

use super::packet::{PortPacket, VcpuState};
use super::Status;

pub const PSCI_VERSION: u64 = 0x8400_0000;
pub const CPU_SUSPEND: u64 = 0xc400_0001;
pub const CPU_OFF: u64 = 0x8400_0002;
pub const CPU_ON: u64 = 0xc400_0003;
pub const CPU_ON_32: u64 = 0x8400_0003;
pub const AFFINITY_INFO: u64 = 0xc400_0004;
pub const AFFINITY_INFO_32: u64 = 0x8400_0004;
pub const MIGRATE_INFO_TYPE: u64 = 0x8400_0006;
pub const SYSTEM_OFF: u64 = 0x8400_0008;
pub const SYSTEM_RESET: u64 = 0x8400_0009;
pub const PSCI_FEATURES: u64 = 0x8400_000a;

/// PSCI return codes.
pub const SUCCESS: u64 = 0;
pub const NOT_SUPPORTED: u64 = -1i64 as u64;
pub const INVALID_PARAMETERS: u64 = -2i64 as u64;
/// PSCI 1.1.
pub const VERSION_1_1: u64 = 0x0001_0001;
/// MIGRATE_INFO_TYPE: no Trusted OS, migration not needed.
pub const MIGRATE_NOT_PRESENT: u64 = 2;
/// AFFINITY_INFO states.
pub const AFFINITY_ON: u64 = 0;
pub const AFFINITY_OFF: u64 = 1;

/// Zircon's `ZX_ERR_STOP`: what `enter` returns when the VCPU turned itself off.
pub const STOP: Status = Status(-60);

/// What a PSCI call does to `enter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered in x0; the guest continues.
    Continue,
    /// `enter` returns this packet (CPU_ON: start another VCPU).
    Packet(PortPacket),
    /// `enter` returns this status.
    Status(Status),
}

/// Handles the call in `state.x[0..4]`; `vcpu_online(mpidr)` says whether a VCPU with that
/// affinity exists (for AFFINITY_INFO).
pub fn handle(state: &mut VcpuState, vcpu_online: impl Fn(u64) -> bool) -> Outcome {
    let function = state.x[0];
    let answer = |state: &mut VcpuState, value| {
        state.x[0] = value;
        Outcome::Continue
    };
    match function {
        PSCI_VERSION => answer(state, VERSION_1_1),
        PSCI_FEATURES => {
            let supported = matches!(
                state.x[1],
                PSCI_VERSION
                    | CPU_OFF
                    | CPU_ON
                    | CPU_ON_32
                    | AFFINITY_INFO
                    | AFFINITY_INFO_32
                    | MIGRATE_INFO_TYPE
                    | SYSTEM_OFF
                    | SYSTEM_RESET
                    | PSCI_FEATURES
            );
            answer(state, if supported { SUCCESS } else { NOT_SUPPORTED })
        }
        CPU_ON | CPU_ON_32 => {
            let (target, entry, context) = (state.x[1], state.x[2], state.x[3]);
            state.x[0] = SUCCESS;
            Outcome::Packet(PortPacket::vcpu_startup(0, target, entry, context))
        }
        CPU_OFF => Outcome::Status(STOP),
        SYSTEM_OFF => Outcome::Status(Status::UNAVAILABLE),
        SYSTEM_RESET => Outcome::Status(Status::CANCELED),
        AFFINITY_INFO | AFFINITY_INFO_32 => {
            // Only level 0 (a single CPU) is described.
            if state.x[2] != 0 {
                return answer(state, INVALID_PARAMETERS);
            }
            let on = vcpu_online(state.x[1]);
            answer(state, if on { AFFINITY_ON } else { AFFINITY_OFF })
        }
        MIGRATE_INFO_TYPE => answer(state, MIGRATE_NOT_PRESENT),
        _ => answer(state, NOT_SUPPORTED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::packet::Packet;

    fn call(function: u64, args: [u64; 3]) -> (Outcome, u64) {
        let mut state = VcpuState::default();
        state.x[0] = function;
        state.x[1..4].copy_from_slice(&args);
        let outcome = handle(&mut state, |mpidr| mpidr == 0);
        (outcome, state.x[0])
    }

    #[test]
    fn answered_in_el2() {
        assert_eq!(call(PSCI_VERSION, [0; 3]), (Outcome::Continue, 0x10001));
        assert_eq!(call(PSCI_FEATURES, [CPU_ON, 0, 0]), (Outcome::Continue, SUCCESS));
        assert_eq!(call(PSCI_FEATURES, [CPU_SUSPEND, 0, 0]), (Outcome::Continue, NOT_SUPPORTED));
        assert_eq!(call(AFFINITY_INFO, [0, 0, 0]), (Outcome::Continue, AFFINITY_ON));
        assert_eq!(call(AFFINITY_INFO, [3, 0, 0]), (Outcome::Continue, AFFINITY_OFF));
        assert_eq!(call(AFFINITY_INFO, [0, 1, 0]), (Outcome::Continue, INVALID_PARAMETERS));
        assert_eq!(call(MIGRATE_INFO_TYPE, [0; 3]), (Outcome::Continue, 2));
        assert_eq!(call(CPU_SUSPEND, [0; 3]), (Outcome::Continue, NOT_SUPPORTED));
        assert_eq!(call(0xdead, [0; 3]), (Outcome::Continue, NOT_SUPPORTED));
    }

    #[test]
    fn calls_that_leave_enter() {
        let (outcome, x0) = call(CPU_ON, [1, 0x4000_0000, 7]);
        assert_eq!(x0, SUCCESS);
        let Outcome::Packet(packet) = outcome else { panic!("{outcome:?}") };
        assert_eq!(packet.decode(), Packet::VcpuStartup { key: 0, target: 1, entry: 0x4000_0000, context: 7 });
        assert_eq!(call(CPU_OFF, [0; 3]).0, Outcome::Status(STOP));
        assert_eq!(call(SYSTEM_OFF, [0; 3]).0, Outcome::Status(Status::UNAVAILABLE));
        assert_eq!(call(SYSTEM_RESET, [0; 3]).0, Outcome::Status(Status::CANCELED));
    }
}
