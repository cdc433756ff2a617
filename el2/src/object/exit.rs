//! Why a VCPU stopped running guest code, in architecture-neutral terms. The architecture's
//! `run` (the world switch on the board, a scripted guest in host tests) produces these; the
//! VCPU turns them into packets, doorbells, demand paging, sleeps or errors.

/// A guest memory access that stage 2 did not satisfy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Access {
    pub write: bool,
    /// 1, 2, 4 or 8 bytes.
    pub size: u8,
    /// The transfer register (31 = XZR).
    pub register: u8,
    pub sign_extend: bool,
    /// The register is 64 bits wide.
    pub sixty_four_bit: bool,
    /// For writes: the value stored (already truncated to `size`).
    pub value: u64,
    /// The guest's virtual address of the access (FAR_EL2), for an abort delivered to it.
    pub far: u64,
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
