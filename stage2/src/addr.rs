//! Address newtypes.
//!
//! Belfry deals with three address spaces. Mixing them up is the classic hypervisor bug (a
//! guest-physical address used as a host pointer), so each has its own type and arithmetic
//! stays inside one space.

use core::fmt;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            /// Wraps a raw address of this space.
            pub const fn new(raw: u64) -> Self {
                Self(raw)
            }

            /// The raw address value.
            pub const fn raw(self) -> u64 {
                self.0
            }

            /// This address plus `offset`, or `None` on overflow.
            pub const fn checked_add(self, offset: u64) -> Option<Self> {
                match self.0.checked_add(offset) {
                    Some(raw) => Some(Self(raw)),
                    None => None,
                }
            }

            /// Rounds down to a multiple of `align` (a power of two).
            pub const fn align_down(self, align: u64) -> Self {
                Self(self.0 & !(align - 1))
            }

            /// Whether the address is a multiple of `align` (a power of two).
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align - 1) == 0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "({:#x})"), self.0)
            }
        }
    };
}

address_type!(
    /// A host physical address: what the CPU puts on the bus with translation off.
    PhysAddr,
    "PA"
);
address_type!(
    /// A guest physical address (an IPA): input to stage-2 translation.
    GuestPhysAddr,
    "GPA"
);
address_type!(
    /// An EL2 virtual address: input to Belfry's own stage-1 translation.
    VirtAddr,
    "VA"
);

impl VirtAddr {
    /// The EL2 virtual address of a physical address under Belfry's identity map. This is the
    /// only crossing between the two spaces; it is valid because EL2 maps every region it uses
    /// at VA == PA.
    pub const fn from_identity(pa: PhysAddr) -> Self {
        Self(pa.raw())
    }
}

impl PhysAddr {
    /// The physical address behind an EL2 virtual address under the identity map.
    pub const fn from_identity(va: VirtAddr) -> Self {
        Self(va.raw())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_stays_in_its_space() {
        let pa = PhysAddr::new(0x4020_1234);
        assert_eq!(pa.align_down(0x1000), PhysAddr::new(0x4020_1000));
        assert!(!pa.is_aligned(0x1000));
        assert_eq!(pa.checked_add(0x10), Some(PhysAddr::new(0x4020_1244)));
        assert_eq!(PhysAddr::new(u64::MAX).checked_add(1), None);
        assert_eq!(VirtAddr::from_identity(pa).raw(), 0x4020_1234);
        assert_eq!(PhysAddr::from_identity(VirtAddr::new(7)), PhysAddr::new(7));
        assert_eq!(format!("{:?}", GuestPhysAddr::new(0xfff000)), "GPA(0xfff000)");
    }
}
