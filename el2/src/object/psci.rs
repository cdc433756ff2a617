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

/// SMCCC (Arm DEN0028) calls a PSCI client makes first.
pub const SMCCC_VERSION: u64 = 0x8000_0000;
pub const SMCCC_ARCH_FEATURES: u64 = 0x8000_0001;
/// SMCCC 1.1: the version Belfry reports (calls preserve x4..x17).
pub const SMCCC_VERSION_1_1: u64 = 0x0001_0001;

/// PSCI return codes (DEN0022 5.2.2).
pub const SUCCESS: u64 = 0;
pub const NOT_SUPPORTED: u64 = -1i64 as u64;
pub const INVALID_PARAMETERS: u64 = -2i64 as u64;
pub const DENIED: u64 = -3i64 as u64;
pub const ALREADY_ON: u64 = -4i64 as u64;
pub const ON_PENDING: u64 = -5i64 as u64;
pub const INTERNAL_FAILURE: u64 = -6i64 as u64;
pub const INVALID_ADDRESS: u64 = -9i64 as u64;
/// PSCI 1.1.
pub const VERSION_1_1: u64 = 0x0001_0001;
/// MIGRATE_INFO_TYPE: no Trusted OS, migration not needed.
pub const MIGRATE_NOT_PRESENT: u64 = 2;
/// AFFINITY_INFO states.
pub const AFFINITY_ON: u64 = 0;
pub const AFFINITY_OFF: u64 = 1;
pub const AFFINITY_ON_PENDING: u64 = 2;

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

/// The power state of one VCPU of a guest, as PSCI names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    Off,
    /// CPU_ON was accepted and the VMM has not created (or restarted) the VCPU yet.
    OnPending,
    On,
}

/// What PSCI needs to know of the calling VCPU's guest.
pub trait Machine {
    /// The power state of the VCPU whose MPIDR affinity is `target`; `None` when no VCPU can
    /// have that affinity (INVALID_PARAMETERS).
    fn power(&self, target: u64) -> Option<Power>;
    /// Marks an OFF VCPU ON_PENDING; `false` when it was not OFF (another caller won).
    fn claim(&self, target: u64) -> bool;
    /// Marks the calling VCPU OFF (CPU_OFF).
    fn turn_off_self(&self);
    /// Whether guest code can be fetched at `entry` (a mapped, executable guest address).
    fn is_entry_point(&self, entry: u64) -> bool;
}

/// The answer to a call that needs nothing but its own arguments (`function` in x0, the first
/// argument in x1): the versions, PSCI_FEATURES, SMCCC_ARCH_FEATURES, MIGRATE_INFO_TYPE and
/// every function Belfry does not implement (NOT_SUPPORTED). `None` for the calls that look
/// at or change the guest's power states (CPU_ON, CPU_OFF, AFFINITY_INFO, SYSTEM_OFF,
/// SYSTEM_RESET). Pure, so the short exit can answer these with the guest's state still loaded
/// (`arch::aarch64::guest`), and [`handle`] gives the same answer on the full exit.
#[inline(always)]
pub const fn answer(function: u64, x1: u64) -> Option<u64> {
    // The PSCI functions, 0x8400_0000 + n (SMC32) and 0xc400_0000 + n (SMC64) for n < 32, by n:
    // bit n of MACHINE when the call needs the power states, of IMPLEMENTED when it is PSCI's.
    const MACHINE: u32 = 1 << 2 | 1 << 3 | 1 << 4 | 1 << 8 | 1 << 9;
    const SMC64_MACHINE: u32 = 1 << 3 | 1 << 4;
    let psci = function.wrapping_sub(PSCI_VERSION);
    if psci < 32 {
        if MACHINE & (1 << psci) != 0 {
            return None;
        }
        return Some(match function {
            PSCI_VERSION => VERSION_1_1,
            MIGRATE_INFO_TYPE => MIGRATE_NOT_PRESENT,
            PSCI_FEATURES => features(x1),
            _ => NOT_SUPPORTED,
        });
    }
    let psci64 = function.wrapping_sub(PSCI_VERSION | 1 << 30);
    if psci64 < 32 && SMC64_MACHINE & (1 << psci64) != 0 {
        return None;
    }
    Some(match function {
        SMCCC_VERSION => SMCCC_VERSION_1_1,
        // No architectural workaround or optional SMCCC function is implemented.
        SMCCC_ARCH_FEATURES => NOT_SUPPORTED,
        _ => NOT_SUPPORTED,
    })
}

/// What [`VECTOR_ANSWERS`] holds for a call the table cannot answer (no PSCI answer is 1).
pub const VECTOR_DECLINED: u64 = 1;

/// The answers EL2's exception vector gives itself, without calling any Rust: entry n for
/// function 0x8400_0000 + n, entry 32 + n for 0xc400_0000 + n (n < 32), computed here from
/// [`answer`] at compile time, so the assembly holds no PSCI knowledge of its own.
/// PSCI_FEATURES (its answer depends on x1) and the calls that need the power states are
/// [`VECTOR_DECLINED`]: they take the short exit or the full one.
pub const VECTOR_ANSWERS: [u64; 64] = {
    let mut table = [VECTOR_DECLINED; 64];
    let mut n = 0;
    while n < 64 {
        let function = PSCI_VERSION + (n as u64 & 31) + if n >= 32 { 1 << 30 } else { 0 };
        if function != PSCI_FEATURES {
            if let Some(value) = answer(function, 0) {
                assert!(value != VECTOR_DECLINED, "a PSCI answer collides with VECTOR_DECLINED");
                table[n] = value;
            }
        }
        n += 1;
    }
    table
};

/// PSCI_FEATURES (an SMC32 call: its argument is 32 bits wide).
#[inline(always)]
const fn features(x1: u64) -> u64 {
    let supported = matches!(
        x1 & 0xffff_ffff,
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
            | SMCCC_VERSION
    );
    if supported {
        SUCCESS
    } else {
        NOT_SUPPORTED
    }
}

/// Handles the call in `state.x[0..4]` for a VCPU of `machine`. Every argument is the guest's
/// and hostile: a target that cannot exist is INVALID_PARAMETERS, a VCPU already on is
/// ALREADY_ON (so CPU_ON in a loop starts nothing), an entry point with no guest memory behind
/// it is INVALID_ADDRESS. SMC32 calls take the low 32 bits of their arguments.
pub fn handle(state: &mut VcpuState, machine: &impl Machine) -> Outcome {
    let function = state.x[0];
    let answer_with = |state: &mut VcpuState, value| {
        state.x[0] = value;
        Outcome::Continue
    };
    // Bit 30 clear: the SMC32/HVC32 calling convention, whose arguments are 32 bits wide.
    let argument = |index: usize| {
        let value = state.x[index];
        if function & (1 << 30) == 0 {
            value & 0xffff_ffff
        } else {
            value
        }
    };
    if let Some(value) = answer(function, state.x[1]) {
        return answer_with(state, value);
    }
    match function {
        CPU_ON | CPU_ON_32 => {
            let (target, entry, context) = (argument(1), argument(2), argument(3));
            let code = match machine.power(target) {
                None => INVALID_PARAMETERS,
                Some(Power::On) => ALREADY_ON,
                Some(Power::OnPending) => ON_PENDING,
                Some(Power::Off) if !machine.is_entry_point(entry) => INVALID_ADDRESS,
                Some(Power::Off) if !machine.claim(target) => ON_PENDING,
                Some(Power::Off) => {
                    state.x[0] = SUCCESS;
                    return Outcome::Packet(PortPacket::vcpu_startup(0, target, entry, context));
                }
            };
            answer_with(state, code)
        }
        CPU_OFF => {
            machine.turn_off_self();
            Outcome::Status(STOP)
        }
        SYSTEM_OFF => Outcome::Status(Status::UNAVAILABLE),
        SYSTEM_RESET => Outcome::Status(Status::CANCELED),
        AFFINITY_INFO | AFFINITY_INFO_32 => {
            // Only level 0 (a single CPU) is described.
            if argument(2) != 0 {
                return answer_with(state, INVALID_PARAMETERS);
            }
            let code = match machine.power(argument(1)) {
                None => INVALID_PARAMETERS,
                Some(Power::On) => AFFINITY_ON,
                Some(Power::Off) => AFFINITY_OFF,
                Some(Power::OnPending) => AFFINITY_ON_PENDING,
            };
            answer_with(state, code)
        }
        _ => answer_with(state, NOT_SUPPORTED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::packet::Packet;
    use core::cell::RefCell;

    /// Four VCPUs possible; VCPU 0 on; guest memory at [0, 1 MiB).
    struct Fake(RefCell<[Power; 4]>);

    impl Machine for Fake {
        fn power(&self, target: u64) -> Option<Power> {
            usize::try_from(target).ok().and_then(|t| self.0.borrow().get(t).copied())
        }
        fn claim(&self, target: u64) -> bool {
            let mut states = self.0.borrow_mut();
            match states.get_mut(target as usize) {
                Some(state @ Power::Off) => {
                    *state = Power::OnPending;
                    true
                }
                _ => false,
            }
        }
        fn turn_off_self(&self) {
            self.0.borrow_mut()[0] = Power::Off;
        }
        fn is_entry_point(&self, entry: u64) -> bool {
            entry < 0x10_0000
        }
    }

    fn fake() -> Fake {
        Fake(RefCell::new([Power::On, Power::Off, Power::Off, Power::Off]))
    }

    fn call_on(machine: &Fake, function: u64, args: [u64; 3]) -> (Outcome, u64) {
        let mut state = VcpuState::default();
        state.x[0] = function;
        state.x[1..4].copy_from_slice(&args);
        let outcome = handle(&mut state, machine);
        (outcome, state.x[0])
    }

    fn call(function: u64, args: [u64; 3]) -> (Outcome, u64) {
        call_on(&fake(), function, args)
    }

    #[test]
    fn answered_in_el2() {
        assert_eq!(call(PSCI_VERSION, [0; 3]), (Outcome::Continue, 0x10001));
        assert_eq!(call(SMCCC_VERSION, [0; 3]), (Outcome::Continue, 0x10001));
        assert_eq!(call(SMCCC_ARCH_FEATURES, [0x8000_8000, 0, 0]), (Outcome::Continue, NOT_SUPPORTED));
        assert_eq!(call(PSCI_FEATURES, [CPU_ON, 0, 0]), (Outcome::Continue, SUCCESS));
        assert_eq!(call(PSCI_FEATURES, [CPU_SUSPEND, 0, 0]), (Outcome::Continue, NOT_SUPPORTED));
        assert_eq!(call(AFFINITY_INFO, [0, 0, 0]), (Outcome::Continue, AFFINITY_ON));
        assert_eq!(call(AFFINITY_INFO, [3, 0, 0]), (Outcome::Continue, AFFINITY_OFF));
        assert_eq!(call(AFFINITY_INFO, [9, 0, 0]), (Outcome::Continue, INVALID_PARAMETERS));
        assert_eq!(call(AFFINITY_INFO, [0, 1, 0]), (Outcome::Continue, INVALID_PARAMETERS));
        assert_eq!(call(MIGRATE_INFO_TYPE, [0; 3]), (Outcome::Continue, 2));
        assert_eq!(call(CPU_SUSPEND, [0; 3]), (Outcome::Continue, NOT_SUPPORTED));
        assert_eq!(call(0xdead, [0; 3]), (Outcome::Continue, NOT_SUPPORTED));
    }

    #[test]
    fn calls_that_leave_enter() {
        let (outcome, x0) = call(CPU_ON, [1, 0x8000, 7]);
        assert_eq!(x0, SUCCESS);
        let Outcome::Packet(packet) = outcome else { panic!("{outcome:?}") };
        assert_eq!(packet.decode(), Packet::VcpuStartup { key: 0, target: 1, entry: 0x8000, context: 7 });
        assert_eq!(call(CPU_OFF, [0; 3]).0, Outcome::Status(STOP));
        assert_eq!(call(SYSTEM_OFF, [0; 3]).0, Outcome::Status(Status::UNAVAILABLE));
        assert_eq!(call(SYSTEM_RESET, [0; 3]).0, Outcome::Status(Status::CANCELED));
    }

    /// F1 and F10: CPU_ON follows DEN0022 for every error, so a guest looping it starts one VCPU.
    #[test]
    fn cpu_on_errors() {
        let machine = fake();
        assert_eq!(call_on(&machine, CPU_ON, [0, 0x8000, 0]), (Outcome::Continue, ALREADY_ON));
        assert_eq!(call_on(&machine, CPU_ON, [0x100, 0x8000, 0]), (Outcome::Continue, INVALID_PARAMETERS));
        assert_eq!(call_on(&machine, CPU_ON, [1 << 32, 0x8000, 0]), (Outcome::Continue, INVALID_PARAMETERS));
        assert_eq!(call_on(&machine, CPU_ON, [1, 0x4000_0000, 0]), (Outcome::Continue, INVALID_ADDRESS));
        assert!(matches!(call_on(&machine, CPU_ON, [1, 0x8000, 0]).0, Outcome::Packet(_)));
        for _ in 0..1000 {
            assert_eq!(call_on(&machine, CPU_ON, [1, 0x8000, 0]), (Outcome::Continue, ON_PENDING));
        }
        assert_eq!(call_on(&machine, AFFINITY_INFO, [1, 0, 0]), (Outcome::Continue, AFFINITY_ON_PENDING));
        machine.0.borrow_mut()[1] = Power::On;
        assert_eq!(call_on(&machine, CPU_ON, [1, 0x8000, 0]), (Outcome::Continue, ALREADY_ON));
        // SMC32: the upper halves of the arguments are ignored.
        let (outcome, x0) = call_on(&machine, CPU_ON_32, [0xffff_ffff_0000_0002, 0xdead_0000_0000_8000, 0x1_0000_0005]);
        assert_eq!(x0, SUCCESS);
        let Outcome::Packet(packet) = outcome else { panic!("{outcome:?}") };
        assert_eq!(packet.decode(), Packet::VcpuStartup { key: 0, target: 2, entry: 0x8000, context: 5 });
        // The 64-bit call keeps them: that target does not exist.
        assert_eq!(
            call_on(&machine, CPU_ON, [0xffff_ffff_0000_0003, 0x8000, 0]),
            (Outcome::Continue, INVALID_PARAMETERS)
        );
    }

    /// The short exit answers with [`answer`] alone: it must decline exactly the calls that need
    /// the machine, and give DEN0022's answer to every other function of both PSCI ranges and
    /// the SMCCC ones (written out here independently of `answer`'s bit tables).
    #[test]
    fn answer_declines_exactly_the_machine_calls() {
        let machine_calls = [CPU_ON, CPU_ON_32, CPU_OFF, SYSTEM_OFF, SYSTEM_RESET, AFFINITY_INFO, AFFINITY_INFO_32];
        let mut functions: alloc::vec::Vec<u64> = (0..40).flat_map(|n| [0x8400_0000 + n, 0xc400_0000 + n]).collect();
        functions.extend([SMCCC_VERSION, SMCCC_ARCH_FEATURES, 0x8000_0002, 0x1_8400_0000, 0x83ff_ffff, 0, u64::MAX]);
        for function in functions {
            for x1 in [0, PSCI_VERSION, CPU_ON, 0xffff_ffff_0000_0000 | CPU_OFF, CPU_SUSPEND, u64::MAX] {
                let expected = match function {
                    f if machine_calls.contains(&f) => None,
                    PSCI_VERSION => Some(VERSION_1_1),
                    MIGRATE_INFO_TYPE => Some(MIGRATE_NOT_PRESENT),
                    SMCCC_VERSION => Some(SMCCC_VERSION_1_1),
                    PSCI_FEATURES if [PSCI_VERSION, CPU_ON, CPU_OFF].contains(&(x1 & 0xffff_ffff)) => Some(SUCCESS),
                    _ => Some(NOT_SUPPORTED),
                };
                assert_eq!(answer(function, x1), expected, "{function:#x} {x1:#x}");
                if let Some(value) = expected {
                    assert_eq!(call_on(&fake(), function, [x1, 0, 0]), (Outcome::Continue, value));
                }
            }
        }
    }

    /// The vector's table gives `answer`'s answer, or declines, for every PSCI function.
    #[test]
    fn vector_answers_are_answers() {
        for n in 0..64u64 {
            let function = PSCI_VERSION + (n & 31) + if n >= 32 { 1 << 30 } else { 0 };
            let entry = VECTOR_ANSWERS[n as usize];
            if entry == VECTOR_DECLINED {
                assert!(function == PSCI_FEATURES || answer(function, 0).is_none(), "{function:#x}");
            } else {
                assert_eq!(answer(function, u64::MAX), Some(entry), "{function:#x}");
            }
        }
        assert_eq!(VECTOR_ANSWERS[0], VERSION_1_1);
        assert_eq!(VECTOR_ANSWERS[0xff & 31], NOT_SUPPORTED);
        assert_eq!(VECTOR_ANSWERS[3], VECTOR_DECLINED);
    }
}
