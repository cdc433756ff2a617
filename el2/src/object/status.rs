//! Zircon status codes, with Zircon's numeric values (`zircon/errors.h`).

use core::fmt;

/// A Zircon status: 0 for success, a negative error code otherwise.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Status(pub i32);

impl Status {
    pub const OK: Status = Status(0);
    pub const INTERNAL: Status = Status(-1);
    pub const NOT_SUPPORTED: Status = Status(-2);
    pub const NO_RESOURCES: Status = Status(-3);
    pub const NO_MEMORY: Status = Status(-4);
    pub const INVALID_ARGS: Status = Status(-10);
    pub const BAD_HANDLE: Status = Status(-11);
    pub const WRONG_TYPE: Status = Status(-12);
    pub const BAD_SYSCALL: Status = Status(-13);
    pub const OUT_OF_RANGE: Status = Status(-14);
    pub const BUFFER_TOO_SMALL: Status = Status(-15);
    pub const BAD_STATE: Status = Status(-20);
    pub const TIMED_OUT: Status = Status(-21);
    pub const SHOULD_WAIT: Status = Status(-22);
    pub const CANCELED: Status = Status(-23);
    pub const PEER_CLOSED: Status = Status(-24);
    pub const NOT_FOUND: Status = Status(-25);
    pub const ALREADY_EXISTS: Status = Status(-26);
    pub const ALREADY_BOUND: Status = Status(-27);
    pub const UNAVAILABLE: Status = Status(-28);
    pub const ACCESS_DENIED: Status = Status(-30);
    pub const IO: Status = Status(-40);
    pub const IO_DATA_INTEGRITY: Status = Status(-42);

    /// The `ZX_ERR_...` name.
    pub const fn name(self) -> &'static str {
        match self.0 {
            0 => "ZX_OK",
            -1 => "ZX_ERR_INTERNAL",
            -2 => "ZX_ERR_NOT_SUPPORTED",
            -3 => "ZX_ERR_NO_RESOURCES",
            -4 => "ZX_ERR_NO_MEMORY",
            -10 => "ZX_ERR_INVALID_ARGS",
            -11 => "ZX_ERR_BAD_HANDLE",
            -12 => "ZX_ERR_WRONG_TYPE",
            -13 => "ZX_ERR_BAD_SYSCALL",
            -14 => "ZX_ERR_OUT_OF_RANGE",
            -15 => "ZX_ERR_BUFFER_TOO_SMALL",
            -20 => "ZX_ERR_BAD_STATE",
            -21 => "ZX_ERR_TIMED_OUT",
            -22 => "ZX_ERR_SHOULD_WAIT",
            -23 => "ZX_ERR_CANCELED",
            -24 => "ZX_ERR_PEER_CLOSED",
            -25 => "ZX_ERR_NOT_FOUND",
            -26 => "ZX_ERR_ALREADY_EXISTS",
            -27 => "ZX_ERR_ALREADY_BOUND",
            -28 => "ZX_ERR_UNAVAILABLE",
            -30 => "ZX_ERR_ACCESS_DENIED",
            -40 => "ZX_ERR_IO",
            -42 => "ZX_ERR_IO_DATA_INTEGRITY",
            _ => "ZX_ERR_(unknown)",
        }
    }

    /// The raw value of a result: `ZX_OK` or the error.
    pub fn from_result<T>(result: &Result<T, Status>) -> Status {
        match result {
            Ok(_) => Status::OK,
            Err(status) => *status,
        }
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

#[cfg(target_os = "none")]
impl defmt::Format for Status {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{=str}({=i32})", self.name(), self.0)
    }
}

/// Results of kernel operations.
pub type ZxResult<T = ()> = Result<T, Status>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_zirconss() {
        assert_eq!(Status::INVALID_ARGS.0, -10);
        assert_eq!(Status::BAD_HANDLE.0, -11);
        assert_eq!(Status::WRONG_TYPE.0, -12);
        assert_eq!(Status::OUT_OF_RANGE.0, -14);
        assert_eq!(Status::BAD_STATE.0, -20);
        assert_eq!(Status::CANCELED.0, -23);
        assert_eq!(Status::ALREADY_EXISTS.0, -26);
        assert_eq!(Status::UNAVAILABLE.0, -28);
        assert_eq!(Status::ACCESS_DENIED.0, -30);
        assert_eq!(format!("{:?}", Status::TIMED_OUT), "ZX_ERR_TIMED_OUT(-21)");
        assert_eq!(Status::from_result(&Ok::<(), Status>(())), Status::OK);
    }
}
