//! The guest's EL1 physical timer (CNTP_CTL_EL0, CNTP_CVAL_EL0, CNTP_TVAL_EL0), emulated per VCPU
//! as KVM does: CNTHCTL_EL2.EL1PCEN is clear, so every access traps and is served here; the
//! counter (CNTPCT_EL0) stays readable without a trap. The timer's interrupt is PPI 30 (INTID
//! 30), level-triggered: Belfry raises it through the list registers while the condition holds,
//! wakes a VCPU in WFI at its deadline, and keeps its EL2 timer armed for the deadline while the
//! guest runs. Pure arithmetic on the counter value, host-tested.

/// INTID of the EL1 physical timer's PPI (QEMU `virt`: PPI 14).
pub const INTID: u32 = 30;

/// CNTP_CTL_EL0 bits.
pub const ENABLE: u64 = 1 << 0;
pub const IMASK: u64 = 1 << 1;
pub const ISTATUS: u64 = 1 << 2;

/// The three registers a guest reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Register {
    /// CNTP_TVAL_EL0: the signed 32-bit distance to the compare value.
    Tval,
    /// CNTP_CTL_EL0.
    Ctl,
    /// CNTP_CVAL_EL0.
    Cval,
}

/// One VCPU's physical timer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysicalTimer {
    ctl: u64,
    cval: u64,
}

impl PhysicalTimer {
    /// Whether the guest has enabled the timer (CTL.ENABLE): otherwise it never fires.
    pub fn enabled(&self) -> bool {
        self.ctl & ENABLE != 0
    }

    /// Whether the timer condition is met at counter value `now` (ISTATUS).
    pub fn condition(&self, now: u64) -> bool {
        self.ctl & ENABLE != 0 && now >= self.cval
    }

    /// Whether its interrupt is asserted at `now`: enabled, condition met, not masked.
    pub fn fired(&self, now: u64) -> bool {
        self.condition(now) && self.ctl & IMASK == 0
    }

    /// The counter value at which its interrupt will assert, if it is armed and has not yet.
    pub fn deadline(&self, now: u64) -> Option<u64> {
        (self.ctl & (ENABLE | IMASK) == ENABLE && now < self.cval).then_some(self.cval)
    }

    /// A guest read at counter value `now`.
    pub fn read(&self, register: Register, now: u64) -> u64 {
        match register {
            // The low 32 bits of CVAL - CNTPCT, sign-extended (Arm ARM D12.8.21).
            Register::Tval => i64::from(self.cval.wrapping_sub(now) as u32 as i32) as u64,
            Register::Ctl => (self.ctl & (ENABLE | IMASK)) | if self.condition(now) { ISTATUS } else { 0 },
            Register::Cval => self.cval,
        }
    }

    /// A guest write at counter value `now`.
    pub fn write(&mut self, register: Register, value: u64, now: u64) {
        match register {
            Register::Tval => self.cval = now.wrapping_add(i64::from(value as u32 as i32) as u64),
            // ISTATUS is read-only; the rest of the register is RES0.
            Register::Ctl => self.ctl = value & (ENABLE | IMASK),
            Register::Cval => self.cval = value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_value_and_status() {
        let mut t = PhysicalTimer::default();
        assert!(!t.fired(u64::MAX), "disabled after reset");
        t.write(Register::Tval, 1000, 5000);
        assert_eq!(t.read(Register::Cval, 0), 6000);
        assert_eq!(t.read(Register::Tval, 5500), 500);
        assert_eq!(t.read(Register::Tval, 6500), (-500i64) as u64, "negative once past");
        t.write(Register::Ctl, ENABLE | ISTATUS | 0xf0, 5500);
        assert_eq!(t.read(Register::Ctl, 5500), ENABLE, "ISTATUS read-only, RES0 ignored");
        assert_eq!(t.deadline(5500), Some(6000));
        assert!(!t.fired(5999));
        assert!(t.fired(6000));
        assert_eq!(t.read(Register::Ctl, 6000), ENABLE | ISTATUS);
        assert_eq!(t.deadline(6000), None, "already fired");
        t.write(Register::Ctl, ENABLE | IMASK, 6000);
        assert!(!t.fired(7000), "masked");
        assert_eq!(t.read(Register::Ctl, 7000), ENABLE | IMASK | ISTATUS, "the condition still shows");
        assert_eq!(t.deadline(0), None, "masked: no deadline");
        t.write(Register::Tval, (-10i32) as u32 as u64, 100);
        assert_eq!(t.read(Register::Cval, 0), 90, "a negative TVAL sets a past deadline");
        t.write(Register::Cval, u64::MAX, 0);
        assert_eq!(t.read(Register::Tval, 0), u64::MAX, "-1: the low 32 bits, sign-extended");
    }
}
