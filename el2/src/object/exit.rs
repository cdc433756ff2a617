//! Why a VCPU stopped running guest code, in architecture-neutral terms. The architecture's
//! `run` (the world switch on the board, a scripted guest in host tests) produces these; the
//! VCPU turns them into packets, doorbells, demand paging, sleeps or errors.

/// A guest memory access that stage 2 did not satisfy. Its shape (size, sign extension,
/// register, direction, register width) is kept as the MEM packet's control word
/// ([`crate::object::packet::mem_control_word`]), which the architecture builds straight from
/// the syndrome and a MEM packet carries as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    control: u64,
    /// For writes: the value stored (already truncated to the size).
    pub value: u64,
    /// The guest's virtual address of the access (FAR_EL2), for an abort delivered to it.
    pub far: u64,
}

impl Access {
    /// An access of `size` bytes (1, 2, 4 or 8) through register `register` (31: XZR), with no
    /// value and FAR 0 yet.
    pub const fn new(write: bool, size: u8, register: u8, sign_extend: bool, sixty_four_bit: bool) -> Self {
        let control = crate::object::packet::mem_control_word(size, sign_extend, register, !write, sixty_four_bit);
        Self { control, value: 0, far: 0 }
    }

    /// The access a data abort's ISS describes (its syndrome valid), with the MEM packet's
    /// control word built straight from the ISS bits: size 1 << SAS, SSE, SRT, not WnR (a
    /// read), SF.
    #[inline(always)]
    pub const fn from_syndrome(iss: u32, value: u64, far: u64) -> Self {
        let iss = iss as u64;
        let control = (1 << ((iss >> 22) & 0b11))
            | (((iss >> 21) & 1) << 8)
            | (((iss >> 16) & 0x1f) << 16)
            | ((((iss >> 6) & 1) ^ 1) << 24)
            | (((iss >> 15) & 1) << 32);
        Self { control, value, far }
    }

    /// With the value stored.
    pub const fn with_value(self, value: u64) -> Self {
        Self { value, ..self }
    }

    /// With the guest's virtual address.
    pub const fn with_far(self, far: u64) -> Self {
        Self { far, ..self }
    }

    /// The MEM packet's control word.
    #[inline(always)]
    pub const fn control(&self) -> u64 {
        self.control
    }

    pub const fn write(&self) -> bool {
        (self.control >> 24) as u8 == 0
    }

    /// 1, 2, 4 or 8 bytes.
    pub const fn size(&self) -> u8 {
        self.control as u8
    }

    /// The transfer register (31 = XZR).
    pub const fn register(&self) -> u8 {
        (self.control >> 16) as u8
    }

    pub const fn sign_extend(&self) -> bool {
        (self.control >> 8) as u8 != 0
    }

    /// The register is 64 bits wide.
    pub const fn sixty_four_bit(&self) -> bool {
        (self.control >> 32) as u8 == 1
    }
}

/// See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// A data access to guest-physical `address`.
    Access { address: u64, access: Access },
    /// A data access to guest-physical `address` without an instruction syndrome (load/store
    /// pair, writeback forms): the VCPU decodes the instruction at guest-physical `pc_address`.
    /// `pc_address` is `None` when the guest's PC does not translate; `aarch32` when the
    /// instruction is A32/T32 (Belfry decodes only A64); `far` is the access's virtual address.
    AccessWithoutSyndrome { address: u64, write: bool, pc_address: Option<u64>, aarch32: bool, far: u64 },
    /// An instruction fetch from guest-physical `address` (or the stage-1 table walk for one)
    /// that stage 2 did not satisfy; `far` is the fetch's virtual address.
    InstructionFetch { address: u64, far: u64 },
    /// The guest's own stage-1 table walk for a data access read guest-physical `address`,
    /// which stage 2 did not satisfy; `far` and `write` describe the access it was for.
    TableWalk { address: u64, far: u64, write: bool },
    /// HVC or SMC; the function ID and arguments are in x0..x3.
    Hypercall { smc: bool },
    /// The guest wrote ICC_SGI1R_EL1 (GICv3): send SGIs to its VCPUs.
    SendSgi { value: u64 },
    /// The guest executed WFI; `pending` when an interrupt is already waiting for it in the
    /// virtual interface (the WFI must not sleep); `deadline` when its armed virtual timer will
    /// fire then (the monotonic clock, ns).
    WaitForInterrupt { pending: bool, deadline: Option<i64> },
    /// Guest execution was interrupted (a physical interrupt, a kick, WFE): re-check and resume.
    Interrupted,
    /// EL2 emulated the instruction itself (a system register, an UNDEF injected, the lazy FP
    /// switch): resume at once. Not a preemption point: a physical interrupt (the time slice's
    /// end among them) exits as `Interrupted`.
    Emulated,
    /// Something Belfry does not handle: the guest is killed.
    Unhandled { class: u8, syndrome: u32, pc: u64 },
    /// This build cannot run guest code.
    Unsupported,
}

/// What Belfry did with an exit, for each VCPU's counts (read with `BELFRY_VCPU_EXITS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum ExitKind {
    /// A stage-2 fault on guest memory, mapped (demand paging).
    Page,
    /// An access to a MEM or BELL trap (a packet, a doorbell).
    Trap,
    /// An access or fetch with nothing behind it, delivered to the guest as an abort.
    Abort,
    /// HVC or SMC (PSCI, SMCCC).
    Hypercall,
    /// ICC_SGI1R_EL1 (GICv3 SGIs).
    Sgi,
    /// WFI (and WFE, WFIT, WFET).
    Wait,
    /// A system register emulated in EL2 (ID registers, the physical timer, RAZ/WI, UNDEF).
    SystemRegister,
    /// The first FP/SIMD use since another VCPU had the registers (lazy switch).
    Fp,
    /// A physical interrupt or a kick.
    Interrupt,
    /// Anything else (the guest was killed).
    Other,
}

/// The number of [`ExitKind`]s.
pub const EXIT_KINDS: usize = 10;

/// Each [`ExitKind`]'s name in reports, in order.
pub const EXIT_KIND_NAMES: [&str; EXIT_KINDS] =
    ["page", "trap", "abort", "hvc", "sgi", "wait", "sysreg", "fp", "interrupt", "other"];

/// Exits by [`ExitKind`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
pub struct ExitCounts(pub [u64; EXIT_KINDS]);

impl ExitCounts {
    /// Counts one exit of `kind`.
    #[inline(always)]
    pub fn count(&mut self, kind: ExitKind) {
        let slot = &mut self.0[kind as usize];
        *slot = slot.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::packet::GuestMemPacket;

    #[test]
    fn the_control_word_from_a_syndrome_is_the_packets() {
        // Every SAS, SSE, SRT, SF and WnR, with the other ISS bits set (ISV, AR, FnV, S1PTW
        // clear, a DFSC): the word equals the one the packet's fields give.
        for bits in 0..(1u32 << 10) {
            let (sas, sse, srt, sf, wnr) = (bits & 3, (bits >> 2) & 1, (bits >> 3) & 0x1f, (bits >> 8) & 1, bits >> 9);
            let iss = 1 << 24 | sas << 22 | sse << 21 | srt << 16 | sf << 15 | 1 << 14 | wnr << 6 | 0b000111;
            let abort = stage2::syndrome::DataAbort::from_iss(iss);
            let access = Access::from_syndrome(iss, 5, 6);
            let packet = GuestMemPacket {
                access_size: abort.access_size,
                sign_extend: abort.sign_extend,
                xt: abort.register,
                read: !abort.write,
                padding1: [u8::from(abort.sixty_four_bit_register), 0, 0, 0],
                ..Default::default()
            };
            assert_eq!(access.control(), packet.control_word(), "ISS {iss:#x}");
            let made = Access::new(abort.write, abort.access_size, abort.register, abort.sign_extend, sf == 1);
            assert_eq!(made.with_value(5).with_far(6), access);
            assert_eq!(
                (access.write(), access.size(), access.register(), access.sign_extend(), access.sixty_four_bit()),
                (wnr == 1, 1 << sas, srt as u8, sse == 1, sf == 1)
            );
        }
    }
}
