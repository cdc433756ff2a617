//! The guest's self-hosted debug: breakpoints, watchpoints and software step, as VCPU state.
//!
//! Every debug register access of a guest traps (MDCR_EL2.TDA, TDOSA) and is served from the
//! VCPU's [`DebugState`] in memory, which is always the truth. The hardware registers are
//! loaded only for a VCPU whose debug is *active* (MDSCR_EL1.MDE or SS set, its OS lock
//! clear): then its breakpoints, watchpoints and step fire in hardware and the guest's own EL1
//! takes the exceptions (MDCR_EL2.TDE is clear, so the debug target is EL1; EL2 itself never
//! takes them, debug exceptions are never taken to a lower level). Entering any other VCPU
//! clears MDSCR_EL1 in hardware, which disarms whatever is still loaded there. Which state a
//! CPU holds is a version number: every change of a VCPU's state takes a new one from a global
//! counter, so a CPU reloads exactly when what it holds is not the VCPU's latest (no stale
//! pointer can match).
//!
//! The OS lock is emulated per VCPU (reset locked, as a cold-reset CPU): while it is locked no
//! debug exception is generated, as the architecture says, so the hardware is not loaded.
//! This module is pure logic: the world switch reads and loads the registers.

use core::sync::atomic::{AtomicU64, Ordering};

/// MDSCR_EL1.SS: software step.
pub const MDSCR_SS: u64 = 1 << 0;
/// MDSCR_EL1.KDE: debug exceptions at the debug target's own level (EL1).
pub const MDSCR_KDE: u64 = 1 << 13;
/// MDSCR_EL1.MDE: breakpoints and watchpoints.
pub const MDSCR_MDE: u64 = 1 << 15;
/// The MDSCR_EL1 bits a guest may set: SS, ERR (6), TDCC (12), KDE, HDE (14, only meaningful
/// to an external debugger), MDE, and the DCC flags' controls are not kept (no DCC).
const MDSCR_WRITABLE: u64 = MDSCR_SS | (1 << 6) | (1 << 12) | MDSCR_KDE | (1 << 14) | MDSCR_MDE;
/// DBGBCR/DBGWCR bits that would match at EL2 or in another security state (HMC, SSC): cleared.
/// Debug exceptions never reach EL2 anyway; the guest keeps the EL1/EL0 controls.
const CONTROL_EL2_BITS: u64 = (1 << 13) | (0b11 << 14);
/// The architecture's maximum of breakpoints and of watchpoints.
pub const MAX_POINTS: usize = 16;

/// A trapped debug register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugRegister {
    /// `DBGBVR<n>_EL1`.
    BreakpointValue(u8),
    /// `DBGBCR<n>_EL1`.
    BreakpointControl(u8),
    /// `DBGWVR<n>_EL1`.
    WatchpointValue(u8),
    /// `DBGWCR<n>_EL1`.
    WatchpointControl(u8),
    /// MDSCR_EL1.
    Mdscr,
    /// OSLAR_EL1 (write-only).
    OsLockAccess,
    /// OSLSR_EL1 (read-only).
    OsLockStatus,
}

impl DebugRegister {
    /// The register an op0 = 2 (debug) access names, if Belfry switches it.
    pub const fn decode(op1: u8, crn: u8, crm: u8, op2: u8) -> Option<Self> {
        match (op1, crn, crm, op2) {
            (0, 0, n, 4) => Some(Self::BreakpointValue(n)),
            (0, 0, n, 5) => Some(Self::BreakpointControl(n)),
            (0, 0, n, 6) => Some(Self::WatchpointValue(n)),
            (0, 0, n, 7) => Some(Self::WatchpointControl(n)),
            (0, 0, 2, 2) => Some(Self::Mdscr),
            (0, 1, 0, 4) => Some(Self::OsLockAccess),
            (0, 1, 1, 4) => Some(Self::OsLockStatus),
            _ => None,
        }
    }
}

/// A debug register access the guest's CPU would not take: UNDEF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Undefined;

/// The global version counter (0 means "nothing loaded").
static VERSIONS: AtomicU64 = AtomicU64::new(1);

fn next_version() -> u64 {
    VERSIONS.fetch_add(1, Ordering::Relaxed)
}

/// One VCPU's debug registers. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebugState {
    pub mdscr: u64,
    /// The OS lock (OSLSR_EL1.OSLK): set at reset.
    pub os_lock: bool,
    pub bvr: [u64; MAX_POINTS],
    pub bcr: [u64; MAX_POINTS],
    pub wvr: [u64; MAX_POINTS],
    pub wcr: [u64; MAX_POINTS],
    /// This state's version (see the module documentation).
    pub version: u64,
}

impl Default for DebugState {
    fn default() -> Self {
        Self {
            mdscr: 0,
            os_lock: true,
            bvr: [0; MAX_POINTS],
            bcr: [0; MAX_POINTS],
            wvr: [0; MAX_POINTS],
            wcr: [0; MAX_POINTS],
            version: next_version(),
        }
    }
}

impl DebugState {
    /// Whether the hardware must hold this state while the VCPU runs: breakpoints and
    /// watchpoints or software step enabled, and the OS lock clear.
    pub fn active(&self) -> bool {
        !self.os_lock && self.mdscr & (MDSCR_MDE | MDSCR_SS) != 0
    }

    /// Serves a trapped access to `register` on a CPU with `breakpoints` and `watchpoints`
    /// (ID_AA64DFR0_EL1.BRPs + 1, WRPs + 1): `Ok(Some(value))` for a read, `Ok(None)` for a
    /// write, `Undefined` for a register the CPU does not have or a wrong direction.
    pub fn access(
        &mut self,
        register: DebugRegister,
        read: bool,
        value: u64,
        breakpoints: usize,
        watchpoints: usize,
    ) -> Result<Option<u64>, Undefined> {
        let point = |n: u8, count: usize| {
            if usize::from(n) < count.min(MAX_POINTS) {
                Ok(usize::from(n))
            } else {
                Err(Undefined)
            }
        };
        let slot = match register {
            DebugRegister::BreakpointValue(n) => &mut self.bvr[point(n, breakpoints)?],
            DebugRegister::BreakpointControl(n) => &mut self.bcr[point(n, breakpoints)?],
            DebugRegister::WatchpointValue(n) => &mut self.wvr[point(n, watchpoints)?],
            DebugRegister::WatchpointControl(n) => &mut self.wcr[point(n, watchpoints)?],
            DebugRegister::Mdscr => &mut self.mdscr,
            DebugRegister::OsLockAccess => {
                if read {
                    return Err(Undefined);
                }
                self.os_lock = value & 1 == 1;
                self.version = next_version();
                return Ok(None);
            }
            DebugRegister::OsLockStatus => {
                if !read {
                    return Err(Undefined);
                }
                // OSLM = 0b10 (bits 3 and 0): the OS lock is implemented; OSLK is bit 1.
                return Ok(Some(0b1000 | (u64::from(self.os_lock) << 1)));
            }
        };
        if read {
            return Ok(Some(*slot));
        }
        *slot = match register {
            DebugRegister::Mdscr => value & MDSCR_WRITABLE,
            DebugRegister::BreakpointControl(_) | DebugRegister::WatchpointControl(_) => value & !CONTROL_EL2_BITS,
            // Value registers: RES0 above the virtual address (a breakpoint's bits [1:0] too).
            DebugRegister::BreakpointValue(_) => value & 0xffff_ffff_ffff_fffc,
            _ => value,
        };
        self.version = next_version();
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_decode_from_their_encodings() {
        assert_eq!(DebugRegister::decode(0, 0, 5, 4), Some(DebugRegister::BreakpointValue(5)));
        assert_eq!(DebugRegister::decode(0, 0, 15, 5), Some(DebugRegister::BreakpointControl(15)));
        assert_eq!(DebugRegister::decode(0, 0, 3, 6), Some(DebugRegister::WatchpointValue(3)));
        assert_eq!(DebugRegister::decode(0, 0, 0, 7), Some(DebugRegister::WatchpointControl(0)));
        assert_eq!(DebugRegister::decode(0, 0, 2, 2), Some(DebugRegister::Mdscr));
        assert_eq!(DebugRegister::decode(0, 1, 0, 4), Some(DebugRegister::OsLockAccess));
        assert_eq!(DebugRegister::decode(0, 1, 1, 4), Some(DebugRegister::OsLockStatus));
        // OSDLR_EL1, MDCCINT_EL1, DBGCLAIMSET_EL1: not switched (RAZ/WI elsewhere).
        assert_eq!(DebugRegister::decode(0, 1, 3, 4), None);
        assert_eq!(DebugRegister::decode(0, 0, 2, 0), None);
        assert_eq!(DebugRegister::decode(0, 7, 8, 6), None);
    }

    #[test]
    fn a_vcpu_keeps_its_own_points_and_the_os_lock_gates_them() {
        let mut state = DebugState::default();
        assert!(state.os_lock, "reset locked");
        assert_eq!(state.access(DebugRegister::OsLockStatus, true, 0, 6, 4), Ok(Some(0b1010)));
        let first = state.version;
        assert_eq!(state.access(DebugRegister::BreakpointValue(0), false, 0x4008_0003, 6, 4), Ok(None));
        assert_ne!(state.version, first, "a write is a new version");
        assert_eq!(state.access(DebugRegister::BreakpointValue(0), true, 0, 6, 4), Ok(Some(0x4008_0000)));
        // HMC and SSC (EL2 and security-state matching) are dropped.
        state.access(DebugRegister::BreakpointControl(0), false, 0xe1e7, 6, 4).unwrap();
        assert_eq!(state.bcr[0], 0x01e7);
        state.access(DebugRegister::Mdscr, false, MDSCR_MDE | MDSCR_KDE | (1 << 30), 6, 4).unwrap();
        assert_eq!(state.mdscr, MDSCR_MDE | MDSCR_KDE, "RXfull and the like are not kept");
        assert!(!state.active(), "the OS lock holds them off");
        state.access(DebugRegister::OsLockAccess, false, 0, 6, 4).unwrap();
        assert!(state.active());
        assert_eq!(state.access(DebugRegister::OsLockStatus, true, 0, 6, 4), Ok(Some(0b1000)));
        state.access(DebugRegister::Mdscr, false, MDSCR_KDE, 6, 4).unwrap();
        assert!(!state.active(), "KDE alone enables nothing");
        state.access(DebugRegister::Mdscr, false, MDSCR_SS | MDSCR_KDE, 6, 4).unwrap();
        assert!(state.active(), "software step");
    }

    #[test]
    fn registers_the_cpu_lacks_and_wrong_directions_are_undefined() {
        let mut state = DebugState::default();
        assert_eq!(state.access(DebugRegister::BreakpointValue(6), false, 1, 6, 4), Err(Undefined));
        assert_eq!(state.access(DebugRegister::WatchpointControl(4), true, 0, 6, 4), Err(Undefined));
        assert_eq!(state.access(DebugRegister::WatchpointControl(3), true, 0, 6, 4), Ok(Some(0)));
        assert_eq!(state.access(DebugRegister::OsLockAccess, true, 0, 6, 4), Err(Undefined));
        assert_eq!(state.access(DebugRegister::OsLockStatus, false, 0, 6, 4), Err(Undefined));
        assert_eq!(state.access(DebugRegister::BreakpointValue(15), true, 0, 16, 16), Ok(Some(0)));
    }
}
