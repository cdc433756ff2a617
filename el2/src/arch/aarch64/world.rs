//! The world switch: entering a guest with `eret` and coming back on its next exception.
//!
//! `belfry_enter_guest(x, counts, traps)` pushes the host's callee-saved registers, the address
//! of the guest's general registers `x`, of its exit counts and of its trap cache on the EL2
//! stack, loads x0..x30 from
//! `x`, and `eret`s to the guest (ELR_EL2 and SPSR_EL2 already set). The guest runs on
//! SP_EL1/SP_EL0, so SP_EL2 still points at that frame when the guest's next exception enters a
//! lower-EL vector. The synchronous AArch64 one (`belfry_guest_sync`) first answers a PSCI call
//! that needs no argument from a table, saving nothing; otherwise it stores x0..x30 into `x`
//! and calls the short exit (`guest.rs`), which answers what needs only the general registers
//! (other PSCI/SMCCC calls, RAZ/WI and ID registers) and resumes the guest at once; a data
//! abort its trap cache's filter lets through goes to the short doorbell, which rings a BELL
//! trap with only the caller-saved registers saved. Otherwise,
//! and from every other vector (`belfry_guest_exit`), it pops the host registers and returns
//! the vector index from `belfry_enter_guest`. Offsets come from `offset_of!`.
//!
//! The EL1 system registers are switched in Rust around that call; EL2 never touches FP/SIMD,
//! so those registers are switched lazily (`guest.rs`).

use aarch64_cpu::registers::{Readable, ID_AA64MMFR0_EL1, MIDR_EL1};
use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

global_asm!(
    r#"
    .section .text.world, "ax"
    .global belfry_enter_guest
    .global belfry_guest_exit
    .global belfry_guest_sync

    // Register pairs x2..x17 and x20..x29 with the array at \base: `op` is ldp or stp. (A Rust
    // call may change x0..x18 and x30, and keeps x19..x29.)
    .macro pairs_2_17 op, base
    \op     x2, x3, [\base, #(2 * 8)]
    \op     x4, x5, [\base, #(4 * 8)]
    \op     x6, x7, [\base, #(6 * 8)]
    \op     x8, x9, [\base, #(8 * 8)]
    \op     x10, x11, [\base, #(10 * 8)]
    \op     x12, x13, [\base, #(12 * 8)]
    \op     x14, x15, [\base, #(14 * 8)]
    \op     x16, x17, [\base, #(16 * 8)]
    .endm
    .macro pairs_20_29 op, base
    \op     x20, x21, [\base, #(20 * 8)]
    \op     x22, x23, [\base, #(22 * 8)]
    \op     x24, x25, [\base, #(24 * 8)]
    \op     x26, x27, [\base, #(26 * 8)]
    \op     x28, x29, [\base, #(28 * 8)]
    .endm

    // The guest's general registers from its array (x0 = its address).
    .macro load_registers
    pairs_2_17 ldp, x0
    ldp     x18, x19, [x0, #(18 * 8)]
    pairs_20_29 ldp, x0
    ldr     x30, [x0, #(30 * 8)]
    ldp     x0, x1, [x0, #(0 * 8)]
    .endm

    // x0 = &mut [u64; 31], the guest's general registers; x1 = &mut ExitCounts, its exit counts;
    // x2 = &mut TrapCache, its traps. Returns the vector index in x0.
belfry_enter_guest:
    stp     x29, x30, [sp, #-16]!
    stp     x27, x28, [sp, #-16]!
    stp     x25, x26, [sp, #-16]!
    stp     x23, x24, [sp, #-16]!
    stp     x21, x22, [sp, #-16]!
    stp     x19, x20, [sp, #-16]!
    stp     x2, xzr, [sp, #-16]!            // its trap cache (and 8 bytes of padding)
    stp     x0, x1, [sp, #-16]!             // where the guest's registers go on exit; its counts
    load_registers
    eret

    // The guest's registers into its array (x1 = its address; the guest's x0 and x1 are on the
    // stack).
    .macro save_registers
    ldr     x1, [sp, #16]                   // &mut [u64; 31]
    pairs_2_17 stp, x1
    stp     x18, x19, [x1, #(18 * 8)]
    pairs_20_29 stp, x1
    str     x30, [x1, #(30 * 8)]
    ldp     x2, x3, [sp]                    // the guest's x0 and x1
    stp     x2, x3, [x1, #(0 * 8)]
    .endm

    // From the lower-EL AArch64 synchronous vector (the guest's x0 and x1 on the stack).
belfry_guest_sync:
    // The vector's own answers: an HVC naming a PSCI function whose answer needs no argument is
    // answered from `VECTOR_ANSWERS` with nothing saved but x0 and x1 (already on the stack).
    mrs     x0, esr_el2
    ubfx    x1, x0, #26, #6
    cmp     x1, #{hvc64}
    b.ne    5f
    ldr     x0, [sp]                        // the guest's x0: the function
    mov     x1, #{psci_base}
    sub     x0, x0, x1                      // 0x8400_0000 + n: n; 0xc400_0000 + n: 1 << 30 | n
    and     x1, x0, #0xffffffffbfffffff
    cmp     x1, #32
    b.hs    3f
    lsr     x1, x0, #25                     // bit 30 to bit 5 (n < 32)
    bfxil   x1, x0, #0, #5
    adrp    x0, {answers}
    add     x0, x0, :lo12:{answers}
    ldr     x0, [x0, x1, lsl #3]
    cmp     x0, #{declined}
    b.eq    3f
    str     x0, [sp]                        // the answer: the guest's x0
    ldr     x0, [sp, #24]                   // &mut ExitCounts
    ldr     x1, [x0, #{hypercalls}]
    add     x1, x1, #1
    str     x1, [x0, #{hypercalls}]
    ldp     x0, x1, [sp], #16
    eret
    // Otherwise an HVC, SMC or MSR/MRS goes to `belfry_short_exit`, which may answer it with
    // the guest's EL1, timer, vGIC and FP state still loaded, writing any general register (so
    // all of them are saved and, when it answers, all reloaded) before the `eret`.
3:  save_registers
    mrs     x2, esr_el2
    ubfx    x2, x2, #26, #6                 // EC: HVC64 0x16, SMC64 0x17, MSR/MRS 0x18
    sub     x2, x2, #0x16
    cmp     x2, #2
    b.hi    1f
    mov     x0, x1
    ldr     x1, [sp, #24]                   // &mut ExitCounts
    bl      belfry_short_exit
    cbnz    x0, 1f                          // 0: answered
    ldr     x0, [sp, #16]
    load_registers
    add     sp, sp, #16                     // the guest's x0 and x1 slot
    eret
    // Not an HVC (x1 = the EC): a data abort the trap cache's doorbell filter lets through
    // (`DoorbellFilter::may_ring`) goes to `belfry_short_doorbell`; every other exception goes
    // to 3 (SMC, MSR/MRS) or to the full exit, all registers saved.
5:  cmp     x1, #{data_abort}
    b.ne    6f
    mrs     x1, hpfar_el2
    ubfx    x1, x1, #4, #6                  // the IPA's page, mod 64
    ldr     x0, [sp, #32]                   // &mut TrapCache
    ldr     x0, [x0, #{filter_pages}]
    lsr     x0, x0, x1
    tbz     x0, #0, 8f                      // no doorbell on the page
    ldr     x0, [sp, #32]
    ldr     x0, [x0, #{filter_bell_pages}]
    lsr     x0, x0, x1
    tbnz    x0, #0, 7f                      // a BELL trap's page
    mrs     x1, far_el2
    ubfx    x1, x1, #2, #6                  // the word, mod 64
    ldr     x0, [sp, #32]
    ldr     x0, [x0, #{filter_words}]
    lsr     x0, x0, x1
    tbz     x0, #0, 8f                      // no doorbell word
    // Maybe a doorbell. It writes no general register, and Rust keeps x19..x29: only the
    // caller-saved ones are saved first, and reloaded if it answers.
7:  ldr     x1, [sp, #16]                   // &mut [u64; 31]
    pairs_2_17 stp, x1
    str     x18, [x1, #(18 * 8)]
    str     x30, [x1, #(30 * 8)]
    ldp     x0, x1, [sp, #24]               // &mut ExitCounts, &mut TrapCache
    bl      belfry_short_doorbell
    ldr     x1, [sp, #16]
    cbnz    x0, 9f                          // 0: rung
    pairs_2_17 ldp, x1
    ldr     x18, [x1, #(18 * 8)]
    ldr     x30, [x1, #(30 * 8)]
    ldp     x0, x1, [sp], #16
    eret
    // Declined: the rest of the registers, then the full exit.
9:  str     x19, [x1, #(19 * 8)]
    pairs_20_29 stp, x1
    ldp     x2, x3, [sp]                    // the guest's x0 and x1
    stp     x2, x3, [x1, #(0 * 8)]
    mov     x0, #{sync_aarch64}
    b       2f
6:  sub     x1, x1, #0x17                   // SMC64 0x17 and MSR/MRS 0x18 to the short exit
    cmp     x1, #1
    b.ls    3b
8:  mov     x0, #{sync_aarch64}
    b       belfry_guest_exit

1:  mov     x0, #{sync_aarch64}
    b       2f

    // From the other lower-EL vectors: x0 = the vector index.
belfry_guest_exit:
    save_registers
2:
    add     sp, sp, #48                     // the guest's x0 and x1, the three pointers and padding
    ldp     x19, x20, [sp], #16
    ldp     x21, x22, [sp], #16
    ldp     x23, x24, [sp], #16
    ldp     x25, x26, [sp], #16
    ldp     x27, x28, [sp], #16
    ldp     x29, x30, [sp], #16
    ret
"#,
    sync_aarch64 = const 8,
    hvc64 = const 0x16,
    data_abort = const 0x24,
    filter_pages = const crate::object::vcpu::TrapCache::FILTER_OFFSETS[0],
    filter_bell_pages = const crate::object::vcpu::TrapCache::FILTER_OFFSETS[1],
    filter_words = const crate::object::vcpu::TrapCache::FILTER_OFFSETS[2],
    psci_base = const crate::object::psci::PSCI_VERSION,
    answers = sym VECTOR_ANSWERS,
    declined = const crate::object::psci::VECTOR_DECLINED,
    hypercalls = const crate::object::exit::ExitKind::Hypercall as usize * 8,
);

/// [`crate::object::psci::VECTOR_ANSWERS`], where the vector code can load it.
static VECTOR_ANSWERS: [u64; 64] = crate::object::psci::VECTOR_ANSWERS;

unsafe extern "C" {
    fn belfry_enter_guest(
        x: *mut u64,
        counts: *mut crate::object::exit::ExitCounts,
        // Opaque here: only `belfry_short_doorbell` reads it, as the `TrapCache` it is.
        traps: *mut core::ffi::c_void,
    ) -> u64;
}

/// EL2 configuration for one entry.
#[derive(Clone, Copy, Debug)]
pub struct EntrySetup {
    /// HCR_EL2, MDCR_EL2 and CPTR_EL2, when the CPU does not hold the VCPU's already (a
    /// resumed entry: `guest.rs`).
    pub controls: Option<Controls>,
    pub sp_el1: u64,
    /// The VCPU's stage-2 and identity registers, when the CPU does not hold them already.
    pub stage2: Option<Stage2Setup>,
}

/// The EL2 trap and control registers a VCPU runs with.
#[derive(Clone, Copy, Debug)]
pub struct Controls {
    pub hcr: u64,
    pub mdcr: u64,
    pub cptr: u64,
}

/// The per-VCPU EL2 registers an entry loads when another VCPU ran on the CPU last.
#[derive(Clone, Copy, Debug)]
pub struct Stage2Setup {
    pub vttbr: u64,
    pub vmpidr: u64,
}

macro_rules! el1_state {
    ($(($a:ident => $ra:literal, $b:ident => $rb:literal)),* $(,)?) => {
        /// The guest's EL1 (and EL0) system registers while it is not running; in pairs, each
        /// moved with one `stp`/`ldp` (a switch between VCPUs saves and loads all of them).
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default)]
        pub struct El1State {
            $(pub $a: u64, pub $b: u64,)*
        }

        // Each pair is adjacent, at an offset `stp`/`ldp` can reach.
        $(const _: () = assert!(
            core::mem::offset_of!(El1State, $b) == core::mem::offset_of!(El1State, $a) + 8
                && core::mem::offset_of!(El1State, $a) <= 504
        );)*

        impl El1State {
            /// Loads the registers into the CPU.
            ///
            /// # Safety
            /// Only between guest runs at EL2: EL2 does not use the EL1 registers.
            pub unsafe fn restore(&self) {
                let base = self as *const Self;
                $(
                    // SAFETY: reads two adjacent fields of `self` (the offsets are checked
                    // above) and writes two EL1 registers, which nothing at EL2 depends on.
                    unsafe {
                        core::arch::asm!(
                            "ldp {a}, {b}, [{base}, #{offset}]",
                            concat!("msr ", $ra, ", {a}"),
                            concat!("msr ", $rb, ", {b}"),
                            base = in(reg) base,
                            offset = const core::mem::offset_of!(El1State, $a),
                            a = out(reg) _,
                            b = out(reg) _,
                            options(nostack, readonly, preserves_flags),
                        )
                    };
                )*
            }

            /// Reads the registers back from the CPU.
            pub fn save(&mut self) {
                let base = self as *mut Self;
                $(
                    // SAFETY: reads two EL1 registers (no side effects) into two adjacent
                    // fields of `self` (the offsets are checked above).
                    unsafe {
                        core::arch::asm!(
                            concat!("mrs {a}, ", $ra),
                            concat!("mrs {b}, ", $rb),
                            "stp {a}, {b}, [{base}, #{offset}]",
                            base = in(reg) base,
                            offset = const core::mem::offset_of!(El1State, $a),
                            a = out(reg) _,
                            b = out(reg) _,
                            options(nostack, preserves_flags),
                        )
                    };
                )*
            }
        }
    };
}

el1_state! {
    (sctlr => "sctlr_el1", cpacr => "cpacr_el1"),
    (ttbr0 => "ttbr0_el1", ttbr1 => "ttbr1_el1"),
    (tcr => "tcr_el1", esr => "esr_el1"),
    (afsr0 => "afsr0_el1", afsr1 => "afsr1_el1"),
    (far => "far_el1", mair => "mair_el1"),
    (amair => "amair_el1", vbar => "vbar_el1"),
    (contextidr => "contextidr_el1", cntkctl => "cntkctl_el1"),
    (par => "par_el1", tpidr_el1 => "tpidr_el1"),
    (tpidr_el0 => "tpidr_el0", tpidrro_el0 => "tpidrro_el0"),
    (sp_el0 => "sp_el0", elr => "elr_el1"),
    (spsr => "spsr_el1", csselr => "csselr_el1"),
    (cntv_ctl => "cntv_ctl_el0", cntv_cval => "cntv_cval_el0"),
}

impl El1State {
    /// The state of a VCPU that has not run: SCTLR_EL1 with its RES1 bits, MMU and caches off.
    pub fn reset() -> Self {
        Self { sctlr: super::boot::SCTLR_EL1_RES1, ..Self::default() }
    }
}

/// FP/SIMD registers: V0..V31, FPSR, FPCR.
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default)]
pub struct FpState {
    pub v: [u128; 32],
    pub fpsr: u64,
    pub fpcr: u64,
}

/// Enters the guest and returns the lower-EL vector index that brought it back, and its SP_EL1.
/// `setup.stage2` (VTTBR, VMPIDR) and `setup.controls` (HCR, MDCR, CPTR) are written only
/// when given: they stay as the VCPU left them while the same VCPU re-enters on this CPU
/// (`guest.rs`).
///
/// # Safety
/// The guest's stage-2 configuration and controls in the CPU (given here or left by this
/// VCPU's previous entry) must name live stage-2 tables and be this VCPU's; ELR_EL2 and SPSR_EL2 must hold the guest's PC and
/// PSTATE (an EL1 or EL0 mode); the CPU's EL1 registers must be this VCPU's.
pub unsafe fn enter(
    setup: &EntrySetup,
    x: &mut [u64; 31],
    counts: &mut crate::object::exit::ExitCounts,
    traps: &mut crate::object::vcpu::TrapCache,
) -> (u64, u64) {
    if let Some(controls) = setup.controls {
        // SAFETY: EL2 configuration registers, consistent with the guest described by `setup`.
        unsafe {
            core::arch::asm!(
                "msr hcr_el2, {hcr}",
                "msr mdcr_el2, {mdcr}",
                "msr cptr_el2, {cptr}",
                hcr = in(reg) controls.hcr,
                mdcr = in(reg) controls.mdcr,
                cptr = in(reg) controls.cptr,
                options(nostack, preserves_flags),
            );
        }
    }
    // SAFETY: the guest's stack pointer, for its EL1.
    unsafe { core::arch::asm!("msr sp_el1, {sp}", sp = in(reg) setup.sp_el1, options(nostack, preserves_flags)) };
    if let Some(stage2) = setup.stage2 {
        // SAFETY: as above.
        unsafe {
            core::arch::asm!(
                "msr vttbr_el2, {vttbr}",
                "msr vmpidr_el2, {vmpidr}",
                vttbr = in(reg) stage2.vttbr,
                vmpidr = in(reg) stage2.vmpidr,
                options(nostack, preserves_flags),
            );
        }
    }
    // SAFETY: the guest runs until its next exception, which returns here through
    // `belfry_guest_exit` with every callee-saved register restored. (`eret` synchronizes the
    // context: the register writes above take effect for the guest.)
    let kind =
        unsafe { belfry_enter_guest(x.as_mut_ptr(), counts, (traps as *mut crate::object::vcpu::TrapCache).cast()) };
    let sp_el1: u64;
    // SAFETY: reads SP_EL1; no side effects.
    unsafe { core::arch::asm!("mrs {0}, sp_el1", out(reg) sp_el1, options(nostack, nomem, preserves_flags)) };
    (kind, sp_el1)
}

/// The guest's virtual timer as the CPU holds it: (CNTV_CTL_EL0, CNTV_CVAL_EL0).
pub fn read_virtual_timer() -> (u64, u64) {
    let (ctl, cval): (u64, u64);
    // SAFETY: reads two EL1 timer registers; no side effects.
    unsafe {
        core::arch::asm!("mrs {0}, cntv_ctl_el0", "mrs {1}, cntv_cval_el0", out(reg) ctl, out(reg) cval,
            options(nostack, nomem, preserves_flags))
    };
    (ctl, cval)
}

/// The guest's CNTV_CTL_EL0 as the CPU holds it (ENABLE, IMASK, ISTATUS).
pub fn read_virtual_timer_control() -> u64 {
    use aarch64_cpu::registers::{Readable, CNTV_CTL_EL0};
    CNTV_CTL_EL0.get()
}

/// Whether the CPU has FEAT_RAS (ID_AA64PFR0_EL1.RAS): then a guest's DISR_EL1 is VDISR_EL2
/// (HCR_EL2.AMO is set), which must be switched with the VCPU.
///
/// A `pure` read (as `cpu::index`): an ID register never changes, and this is asked on every
/// entry and exit, so the compiler may keep one read per function.
#[inline(always)]
pub fn has_ras() -> bool {
    let pfr0: u64;
    // SAFETY: reads an ID register; no side effects, constant.
    unsafe {
        core::arch::asm!("mrs {0}, id_aa64pfr0_el1", out(reg) pfr0, options(pure, nomem, nostack, preserves_flags))
    };
    // RAS is bits [31:28].
    (pfr0 >> 28) & 0xf != 0
}

/// Loads the guest's deferred-SError status (its DISR_EL1) into VDISR_EL2.
///
/// # Safety
/// Only with FEAT_RAS ([`has_ras`]) and between guest runs.
pub unsafe fn load_vdisr(value: u64) {
    // SAFETY: VDISR_EL2 only affects the guest's view of DISR_EL1.
    unsafe { core::arch::asm!("msr s3_4_c12_c1_1, {0}", in(reg) value, options(nostack, preserves_flags)) };
}

/// Reads the guest's DISR_EL1 (VDISR_EL2) after it ran.
///
/// # Safety
/// Only with FEAT_RAS ([`has_ras`]).
pub unsafe fn save_vdisr() -> u64 {
    let value: u64;
    // SAFETY: reads VDISR_EL2; no side effects.
    unsafe { core::arch::asm!("mrs {0}, s3_4_c12_c1_1", out(reg) value, options(nostack, nomem, preserves_flags)) };
    value
}

/// Sets CPTR_EL2.
///
/// # Safety
/// Clearing TFP lets FP instructions at EL2 run; only the FP switch uses them.
pub unsafe fn set_cptr(value: u64) {
    // SAFETY: per the contract.
    unsafe { core::arch::asm!("msr cptr_el2, {0}", "isb", in(reg) value, options(nostack, preserves_flags)) };
}

macro_rules! fp_transfer {
    ($op:literal, $pair:literal, $state:expr) => {
        // SAFETY: the caller cleared CPTR_EL2.TFP; the state is 16-byte aligned and sized for
        // 32 Q registers plus FPSR and FPCR.
        unsafe {
            core::arch::asm!(
                ".arch_extension fp",
                ".arch_extension simd",
                concat!($pair, " q0, q1, [{0}, #0]"),
                concat!($pair, " q2, q3, [{0}, #32]"),
                concat!($pair, " q4, q5, [{0}, #64]"),
                concat!($pair, " q6, q7, [{0}, #96]"),
                concat!($pair, " q8, q9, [{0}, #128]"),
                concat!($pair, " q10, q11, [{0}, #160]"),
                concat!($pair, " q12, q13, [{0}, #192]"),
                concat!($pair, " q14, q15, [{0}, #224]"),
                concat!($pair, " q16, q17, [{0}, #256]"),
                concat!($pair, " q18, q19, [{0}, #288]"),
                concat!($pair, " q20, q21, [{0}, #320]"),
                concat!($pair, " q22, q23, [{0}, #352]"),
                concat!($pair, " q24, q25, [{0}, #384]"),
                concat!($pair, " q26, q27, [{0}, #416]"),
                concat!($pair, " q28, q29, [{0}, #448]"),
                concat!($pair, " q30, q31, [{0}, #480]"),
                $op,
                in(reg) $state,
                out("x9") _,
                out("x10") _,
                out("x11") _,
                options(nostack),
            )
        }
    };
}

/// Saves this CPU's FP/SIMD registers.
///
/// # Safety
/// CPTR_EL2.TFP must be clear.
pub unsafe fn save_fp(state: &mut FpState) {
    let base = state as *mut FpState;
    fp_transfer!("mrs x9, fpsr\nmrs x10, fpcr\nadd x11, {0}, #512\nstp x9, x10, [x11]", "stp", base);
}

/// Loads this CPU's FP/SIMD registers.
///
/// # Safety
/// CPTR_EL2.TFP must be clear.
pub unsafe fn load_fp(state: &FpState) {
    let base = state as *const FpState;
    fp_transfer!("add x11, {0}, #512\nldp x9, x10, [x11]\nmsr fpsr, x9\nmsr fpcr, x10", "ldp", base);
}

/// Invalidates the stage-2 (and combined) TLB entries for one guest page, on every CPU.
///
/// # Safety
/// Briefly loads `vttbr` into VTTBR_EL2 to name the VMID; no guest may be running on this CPU.
pub unsafe fn invalidate_ipa(vttbr: u64, ipa: u64) {
    // SAFETY: per the contract; the previous VTTBR_EL2 is restored.
    unsafe {
        core::arch::asm!(
            "mrs {saved}, vttbr_el2",
            "msr vttbr_el2, {vttbr}",
            "isb",
            "dsb ishst",
            "tlbi ipas2e1is, {page}",
            "dsb ish",
            "tlbi vmalle1is",
            "dsb ish",
            "isb",
            "msr vttbr_el2, {saved}",
            "isb",
            saved = out(reg) _,
            vttbr = in(reg) vttbr,
            page = in(reg) ipa >> 12,
            options(nostack, preserves_flags),
        )
    };
}

/// Invalidates every TLB entry of a VMID, on every CPU.
///
/// # Safety
/// As [`invalidate_ipa`].
pub unsafe fn invalidate_vmid(vttbr: u64) {
    // SAFETY: per the contract; the previous VTTBR_EL2 is restored.
    unsafe {
        core::arch::asm!(
            "mrs {saved}, vttbr_el2",
            "msr vttbr_el2, {vttbr}",
            "isb",
            "dsb ishst",
            "tlbi vmalls12e1is",
            "dsb ish",
            "isb",
            "msr vttbr_el2, {saved}",
            "isb",
            saved = out(reg) _,
            vttbr = in(reg) vttbr,
            options(nostack, preserves_flags),
        )
    };
}

/// Cleans and invalidates `[address, address + len)` to the point of coherency and invalidates
/// the instruction cache, so a guest running uncached, or fetching, sees EL2's writes.
pub fn clean_invalidate_to_poc(address: u64, len: usize) {
    clean_to_poc(address, len);
    invalidate_instruction_cache();
}

/// Zeroes `len` bytes of RAM at `address` with `DC ZVA` (one instruction per block, usually 64
/// bytes), or byte stores where `DCZID_EL0.DZP` prohibits it, and cleans them to the point of
/// coherency in the same pass, so a guest that reads the pages uncached (MMU off) sees the
/// zeroes, never what DRAM held before (another VM's data). Each line is zeroed, then cleaned
/// and invalidated, four lines per loop iteration: one pass instead of a zeroing pass and a
/// cleaning pass (a 4 KiB page: 64 + 64 cache instructions and 16 loop steps, where the two
/// loops took 64 steps each). The data cache only: see [`invalidate_instruction_cache`].
///
/// # Safety
/// `[address, address + len)` is Normal RAM in Belfry's identity map that the caller owns, and
/// `address` and `len` are multiples of 2 KiB (the largest ZVA block the architecture allows).
pub unsafe fn zero_pages(address: u64, len: usize) {
    const LINE: u64 = 64;
    let dczid: u64;
    // SAFETY: reads an ID register.
    unsafe { core::arch::asm!("mrs {}, dczid_el0", out(reg) dczid, options(nomem, nostack, preserves_flags)) };
    // DCZID_EL0.BS: log2 of the block size in 4-byte words; the loop below zeroes 64-byte
    // lines, so it needs blocks of exactly 64 bytes (every core Belfry runs on has them).
    if dczid & (1 << 4) != 0 || 4u64 << (dczid & 0xf) != LINE {
        // SAFETY: per the contract, the range is ours and mapped.
        unsafe { core::ptr::write_bytes(address as *mut u8, 0, len) };
        clean_to_poc(address, len);
        return;
    }
    let end = address + len as u64;
    let mut at = address;
    while at < end {
        // SAFETY: zeroes, then cleans and invalidates, four 64-byte lines inside the caller's
        // range (`len` is a multiple of 2 KiB, so of 256 bytes).
        unsafe {
            core::arch::asm!(
                ".rept 4",
                "dc zva, {a}",
                "dc civac, {a}",
                "add {a}, {a}, #64",
                ".endr",
                a = inout(reg) at,
                options(nostack, preserves_flags),
            )
        };
    }
    // The zeroes are ordinary stores as far as later accesses are concerned, and have reached
    // the point of coherency.
    // SAFETY: a barrier.
    unsafe { core::arch::asm!("dsb ish", options(nostack, preserves_flags)) };
}

/// Cleans and invalidates `[address, address + len)` to the point of coherency (data cache
/// only), and waits for it.
fn clean_to_poc(address: u64, len: usize) {
    const LINE: u64 = 64;
    let mut line = address & !(LINE - 1);
    let end = address + len as u64;
    while line < end {
        // SAFETY: cache maintenance by VA on identity-mapped memory we own; no data changes.
        unsafe { core::arch::asm!("dc civac, {0}", in(reg) line, options(nostack, preserves_flags)) };
        line += LINE;
    }
    // SAFETY: a barrier.
    unsafe { core::arch::asm!("dsb ish", options(nostack, preserves_flags)) };
}

/// Invalidates every instruction cache of the inner-shareable domain, so a guest fetching from
/// a page EL2 just wrote (and cleaned: [`zero_pages`], [`clean_invalidate_to_poc`]) cannot run
/// what an earlier owner of the frame left in an instruction cache.
pub fn invalidate_instruction_cache() {
    // SAFETY: instruction-cache invalidation and barriers have no memory effects.
    unsafe { core::arch::asm!("ic ialluis", "dsb ish", "isb", options(nostack, preserves_flags)) };
}

/// The guest's breakpoints and watchpoints: ID_AA64DFR0_EL1.BRPs + 1 and WRPs + 1 (read once).
pub fn debug_points() -> (usize, usize) {
    static POINTS: AtomicU64 = AtomicU64::new(0);
    let mut cached = POINTS.load(Ordering::Relaxed);
    if cached == 0 {
        let dfr0 = read_id_register(5, 0);
        let breakpoints = ((dfr0 >> 12) & 0xf) + 1;
        let watchpoints = ((dfr0 >> 20) & 0xf) + 1;
        cached = (1 << 32) | (watchpoints << 8) | breakpoints;
        POINTS.store(cached, Ordering::Relaxed);
    }
    ((cached & 0xff) as usize, ((cached >> 8) & 0xff) as usize)
}

/// Every CPU at boot: the self-hosted debug state guests will use, from its reset values: OS
/// lock and OS double lock clear (a locked OS lock suppresses every debug exception),
/// MDSCR_EL1 zero (nothing armed; its reset value is UNKNOWN).
pub fn init_debug_cpu() {
    // SAFETY: these registers only gate debug exceptions to EL1; EL2 takes none.
    unsafe {
        core::arch::asm!(
            "msr oslar_el1, xzr",
            "msr osdlr_el1, xzr",
            "msr mdscr_el1, xzr",
            "isb",
            options(nomem, nostack, preserves_flags)
        );
    }
}

/// Every CPU at boot, at EL2: the stage-2 translation control (VTCR_EL2) and the MIDR guests
/// read (VPIDR_EL2), the same for every guest on every CPU (Belfry runs on homogeneous cores),
/// so no entry writes them again.
pub fn init_stage2_cpu() {
    if !super::cpu::at_el2() {
        return;
    }
    let vtcr = stage2::table::vtcr(ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange));
    // SAFETY: neither register is used until a guest runs (HCR_EL2.VM is set only for guests).
    unsafe {
        core::arch::asm!(
            "msr vtcr_el2, {vtcr}",
            "msr vpidr_el2, {midr}",
            "isb",
            vtcr = in(reg) vtcr,
            midr = in(reg) MIDR_EL1.get(),
            options(nomem, nostack, preserves_flags)
        );
    }
}

/// Writes MDSCR_EL1.
pub fn write_mdscr(value: u64) {
    // SAFETY: MDSCR_EL1 only controls debug exceptions taken to EL1 (the guest's); EL2 takes
    // none (MDCR_EL2.TDE is clear).
    unsafe { core::arch::asm!("msr mdscr_el1, {}", "isb", in(reg) value, options(nomem, nostack, preserves_flags)) };
}

/// Writes `value` to the `n`th register of a family of sixteen (`DBGBVR<n>_EL1` and the like);
/// an `n` past 15 writes nothing.
macro_rules! write_numbered {
    ($family:literal, $n:expr, $value:expr) => {
        write_numbered!($family, $n, $value, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])
    };
    ($family:literal, $n:expr, $value:expr, [$($index:literal),*]) => {
        match $n {
            $(
                // SAFETY: one of the guest's own debug registers, which fire only at EL1 and EL0
                // (MDCR_EL2.TDE is clear); no memory is touched.
                $index => unsafe {
                    core::arch::asm!(concat!("msr ", $family, stringify!($index), "_el1, {}"), in(reg) $value,
                        options(nomem, nostack, preserves_flags))
                },
            )*
            _ => {}
        }
    };
}

/// Loads a VCPU's breakpoints, watchpoints and MDSCR_EL1 into this CPU (`breakpoints` and
/// `watchpoints` of each, as [`debug_points`] counts them).
pub fn load_debug(state: &crate::debug::DebugState, breakpoints: usize, watchpoints: usize) {
    // Disarmed while the registers change.
    write_mdscr(0);
    for (n, &value) in state.bvr.iter().enumerate().take(breakpoints) {
        write_numbered!("dbgbvr", n, value);
    }
    for (n, &value) in state.bcr.iter().enumerate().take(breakpoints) {
        write_numbered!("dbgbcr", n, value);
    }
    for (n, &value) in state.wvr.iter().enumerate().take(watchpoints) {
        write_numbered!("dbgwvr", n, value);
    }
    for (n, &value) in state.wcr.iter().enumerate().take(watchpoints) {
        write_numbered!("dbgwcr", n, value);
    }
    write_mdscr(state.mdscr);
}

/// Translates a guest virtual address through the guest's stage 1 (`AT S1E1R`), returning
/// the PAR_EL1 it gives. The guest's EL1 registers and VTTBR must be loaded; the guest's own
/// PAR_EL1, which the instruction overwrites, is put back (its EL1 registers stay live in the
/// CPU between exits).
pub fn translate_stage1(address: u64) -> u64 {
    let par: u64;
    // SAFETY: an address translation instruction; it only writes PAR_EL1, which is restored.
    unsafe {
        core::arch::asm!(
            "mrs {saved}, par_el1",
            "at s1e1r, {address}",
            "isb",
            "mrs {par}, par_el1",
            "msr par_el1, {saved}",
            address = in(reg) address,
            saved = out(reg) _,
            par = out(reg) par,
            options(nostack, preserves_flags)
        )
    };
    par
}

macro_rules! id_registers {
    ($($crm:literal, $op2:literal);* $(;)?) => {
        /// Reads the CPU's ID register (op0 3, op1 0, CRn 0, `crm`, `op2`); 0 for an encoding
        /// outside the table (all are in the reserved, RAZ, ID space of Armv8).
        pub fn read_id_register(crm: u8, op2: u8) -> u64 {
            match (crm, op2) {
                $(
                    ($crm, $op2) => {
                        let value: u64;
                        // SAFETY: reads an ID register (or a RAZ slot of the ID space); no side
                        // effects.
                        unsafe {
                            core::arch::asm!(
                                concat!("mrs {0}, s3_0_c0_c", stringify!($crm), "_", stringify!($op2)),
                                out(reg) value,
                                options(nostack, nomem, preserves_flags),
                            )
                        };
                        value
                    }
                )*
                _ => 0,
            }
        }
    };
}

id_registers! {
    1, 0; 1, 1; 1, 2; 1, 3; 1, 4; 1, 5; 1, 6; 1, 7;
    2, 0; 2, 1; 2, 2; 2, 3; 2, 4; 2, 5; 2, 6; 2, 7;
    3, 0; 3, 1; 3, 2; 3, 4; 3, 5; 3, 6;
    4, 0; 4, 1;
    5, 0;
    6, 0; 6, 1; 6, 2;
    7, 0; 7, 1; 7, 2;
}

/// Whether the CPU has pointer authentication (ID_AA64ISAR1_EL1 APA, API, GPA or GPI, or
/// ID_AA64ISAR2_EL1 APA3, GPA3): then the guest may use it and its keys are switched.
pub fn has_pauth() -> bool {
    static PAUTH: spin::Once<bool> = spin::Once::new();
    *PAUTH.call_once(|| read_id_register(6, 1) & 0xff_00ff0 != 0 || read_id_register(6, 2) & 0xff00 != 0)
}

/// The pointer-authentication keys of a VCPU: APIA, APIB, APDA, APDB, APGA, each lo and hi.
#[derive(Clone, Copy, Debug, Default)]
pub struct PauthKeys(pub [u64; 10]);

macro_rules! pauth_keys {
    ($($index:literal => $register:literal),* $(,)?) => {
        impl PauthKeys {
            /// Loads the keys into the CPU.
            ///
            /// # Safety
            /// Only with [`has_pauth`], between guest runs (EL2 does not authenticate pointers).
            pub unsafe fn load(&self) {
                $(
                    // SAFETY: per the contract; the key registers only affect EL1 and EL0.
                    unsafe { core::arch::asm!(concat!("msr ", $register, ", {0}"), in(reg) self.0[$index], options(nostack, preserves_flags)) };
                )*
            }

            /// Reads the keys back.
            ///
            /// # Safety
            /// Only with [`has_pauth`].
            pub unsafe fn save(&mut self) {
                $(
                    // SAFETY: per the contract; reads a key register.
                    unsafe { core::arch::asm!(concat!("mrs {0}, ", $register), out(reg) self.0[$index], options(nostack, nomem, preserves_flags)) };
                )*
            }
        }
    };
}

pauth_keys! {
    0 => "s3_0_c2_c1_0", // APIAKeyLo_EL1
    1 => "s3_0_c2_c1_1", // APIAKeyHi_EL1
    2 => "s3_0_c2_c1_2", // APIBKeyLo_EL1
    3 => "s3_0_c2_c1_3", // APIBKeyHi_EL1
    4 => "s3_0_c2_c2_0", // APDAKeyLo_EL1
    5 => "s3_0_c2_c2_1", // APDAKeyHi_EL1
    6 => "s3_0_c2_c2_2", // APDBKeyLo_EL1
    7 => "s3_0_c2_c2_3", // APDBKeyHi_EL1
    8 => "s3_0_c2_c3_0", // APGAKeyLo_EL1
    9 => "s3_0_c2_c3_1", // APGAKeyHi_EL1
}
