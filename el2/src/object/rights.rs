//! Handle rights, with Zircon's bit values (`zircon/rights.h`).

use core::ops::{BitAnd, BitOr, Not};

/// A set of rights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Rights(pub u32);

impl Rights {
    pub const NONE: Rights = Rights(0);
    pub const DUPLICATE: Rights = Rights(1 << 0);
    pub const TRANSFER: Rights = Rights(1 << 1);
    pub const READ: Rights = Rights(1 << 2);
    pub const WRITE: Rights = Rights(1 << 3);
    pub const EXECUTE: Rights = Rights(1 << 4);
    pub const MAP: Rights = Rights(1 << 5);
    pub const GET_PROPERTY: Rights = Rights(1 << 6);
    pub const SET_PROPERTY: Rights = Rights(1 << 7);
    pub const ENUMERATE: Rights = Rights(1 << 8);
    pub const DESTROY: Rights = Rights(1 << 9);
    pub const SET_POLICY: Rights = Rights(1 << 10);
    pub const GET_POLICY: Rights = Rights(1 << 11);
    pub const SIGNAL: Rights = Rights(1 << 12);
    pub const SIGNAL_PEER: Rights = Rights(1 << 13);
    pub const WAIT: Rights = Rights(1 << 14);
    pub const INSPECT: Rights = Rights(1 << 15);
    pub const MANAGE_JOB: Rights = Rights(1 << 16);
    pub const MANAGE_PROCESS: Rights = Rights(1 << 17);
    pub const MANAGE_THREAD: Rights = Rights(1 << 18);
    pub const APPLY_PROFILE: Rights = Rights(1 << 19);
    /// `handle_duplicate`: keep the original's rights.
    pub const SAME_RIGHTS: Rights = Rights(1 << 31);

    pub const BASIC: Rights = Rights(Self::TRANSFER.0 | Self::DUPLICATE.0 | Self::WAIT.0 | Self::INSPECT.0);
    pub const IO: Rights = Rights(Self::READ.0 | Self::WRITE.0);

    /// A guest handle, as `zx_guest_create` documents: TRANSFER, DUPLICATE, WRITE (set traps)
    /// and MANAGE_PROCESS (create VCPUs).
    pub const DEFAULT_GUEST: Rights =
        Rights(Self::TRANSFER.0 | Self::DUPLICATE.0 | Self::WRITE.0 | Self::MANAGE_PROCESS.0);
    /// A VCPU handle, as `zx_vcpu_create` documents.
    pub const DEFAULT_VCPU: Rights =
        Rights(Self::DUPLICATE.0 | Self::TRANSFER.0 | Self::EXECUTE.0 | Self::SIGNAL.0 | Self::READ.0 | Self::WRITE.0);
    /// `ZX_DEFAULT_PORT_RIGHTS`.
    pub const DEFAULT_PORT: Rights = Rights((Self::BASIC.0 & !Self::WAIT.0) | Self::IO.0);
    /// `ZX_DEFAULT_VMO_RIGHTS` plus EXECUTE. In Zircon a VMO gains EXECUTE only through
    /// `zx_vmo_replace_as_executable`, to keep a process from executing data; Belfry's VMOs are
    /// executed only by guests, so EXECUTE on a VMO handle just allows mapping it executable
    /// into a guest (docs/architecture.md).
    pub const DEFAULT_VMO: Rights = Rights(
        Self::BASIC.0
            | Self::IO.0
            | Self::GET_PROPERTY.0
            | Self::SET_PROPERTY.0
            | Self::MAP.0
            | Self::SIGNAL.0
            | Self::EXECUTE.0,
    );
    /// The guest-physical VMAR: `ZX_DEFAULT_VMAR_RIGHTS` plus the mapping permissions a guest's
    /// memory needs (read, write, execute).
    pub const GUEST_VMAR: Rights = Rights((Self::BASIC.0 & !Self::WAIT.0) | Self::IO.0 | Self::EXECUTE.0);
    /// `ZX_DEFAULT_RESOURCE_RIGHTS`.
    pub const DEFAULT_RESOURCE: Rights = Rights(Self::TRANSFER.0 | Self::DUPLICATE.0 | Self::WRITE.0 | Self::INSPECT.0);

    /// Whether every right of `other` is in `self`.
    pub const fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Rights {
    type Output = Rights;
    fn bitor(self, rhs: Rights) -> Rights {
        Rights(self.0 | rhs.0)
    }
}

impl BitAnd for Rights {
    type Output = Rights;
    fn bitand(self, rhs: Rights) -> Rights {
        Rights(self.0 & rhs.0)
    }
}

impl Not for Rights {
    type Output = Rights;
    fn not(self) -> Rights {
        Rights(!self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documents() {
        assert_eq!(Rights::DEFAULT_GUEST.0, 0b10 | 0b1 | 0b1000 | (1 << 17));
        assert!(Rights::DEFAULT_VCPU.contains(Rights::EXECUTE | Rights::SIGNAL | Rights::READ | Rights::WRITE));
        assert!(!Rights::DEFAULT_VCPU.contains(Rights::WAIT));
        assert!(Rights::DEFAULT_PORT.contains(Rights::WRITE | Rights::READ));
        assert!(!Rights::DEFAULT_PORT.contains(Rights::WAIT));
        assert_eq!(Rights::SAME_RIGHTS.0, 0x8000_0000);
        assert_eq!((Rights::READ | Rights::WRITE) & !Rights::WRITE, Rights::READ);
    }
}
