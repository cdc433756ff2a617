//! The first instructions every CPU runs, before any Rust.
//!
//! The board's image header (an arm64 `Image` header on QEMU `virt`, a bare branch on the
//! Pi 4) jumps to `_start_primary` with the device tree in x0 (0 when there is none).
//! Secondary CPUs arrive at `_start_secondary` (PSCI CPU_ON; x0 = the logical CPU index Belfry
//! passed as context) or `_start_secondary_spin` (the Pi 4's spin table; the index comes from
//! MPIDR.Aff0).
//!
//! Each CPU then, in assembly because no Rust may run before it:
//! - at EL2, sets CPTR_EL2 (the Pi 4 firmware leaves it undefined; FP/SIMD is not trapped,
//!   SVE and SME are), HCR_EL2 (EL1 is AArch64, nothing routed to EL2 yet), CNTHCTL_EL2 (EL1
//!   may read the counter), CNTVOFF_EL2 = 0 and SCTLR_EL2 with the MMU and caches off;
//! - at EL1 (no virtualization), sets SCTLR_EL1 the same way;
//! - points TPIDR_ELx at its own `cpu::PerCpu` block (which holds its logical index), then
//!   installs the exception vectors;
//! - takes its own stack from the `.stacks` section;
//! - the boot CPU alone clears `.bss`;
//! - calls `belfry_main(dtb, cpu_index, is_boot_cpu)`, which the board crate defines.

use core::arch::global_asm;

/// Bytes of stack per CPU.
pub const STACK_SIZE: usize = 64 * 1024;

/// CPTR_EL2 (non-VHE): RES1 bits 13:12 and 9:0 set, which also sets TZ (bit 8, trap SVE)
/// and TSM (bit 12, trap SME); TFP (bit 10) clear, so FP/SIMD does not trap; TCPAC clear.
pub const CPTR_EL2_VALUE: u64 = 0x33ff;
/// HCR_EL2: RW (bit 31), EL1 runs AArch64. Nothing else is trapped until a guest exists.
pub const HCR_EL2_VALUE: u64 = 1 << 31;
/// CNTHCTL_EL2: EL1PCTEN, EL1 may read the physical counter (with CNTVOFF_EL2 = 0 it equals
/// the virtual one); EL1PCEN clear, so a guest's access to the EL1 physical timer (CNTP_*)
/// traps. Belfry gives guests the virtual timer only, and a guest touching CNTP is killed with
/// the access named in the log rather than left waiting for an interrupt that never comes.
pub const CNTHCTL_EL2_VALUE: u64 = 0b01;
/// SCTLR_EL2 RES1 bits (4, 5, 11, 16, 18, 22, 23, 28, 29) with M, C, I off, little-endian.
pub const SCTLR_EL2_RES1: u64 = 0x30c5_0830;
/// SCTLR_EL1 RES1 bits (11, 20, 22, 23, 28, 29) with M, C, I off, little-endian.
pub const SCTLR_EL1_RES1: u64 = 0x30d0_0800;

global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start_primary
    .global _start_secondary
    .global _start_secondary_spin

_start_primary:
    mov     x19, x0                 // device tree (0 when the loader has none)
    mov     x20, #0                 // logical CPU 0
    mov     x21, #1                 // the boot CPU
    b       1f

_start_secondary:
    mov     x19, #0
    mov     x20, x0                 // PSCI context id = logical index
    mov     x21, #0
    b       1f

_start_secondary_spin:
    mov     x19, #0
    mrs     x20, mpidr_el1
    and     x20, x20, #0xff         // Pi 4: cores are Aff0 = 0..3
    mov     x21, #0

1:  msr     daifset, #0xf           // no interrupt until Belfry asks for one
    cmp     x20, #{max_cpus}
    b.hs    9f                      // more CPUs than Belfry has stacks for: park
    adrp    x22, {per_cpu}
    add     x22, x22, :lo12:{per_cpu}
    mov     x10, #{per_cpu_size}
    madd    x22, x20, x10, x22      // this CPU's PerCpu block, for TPIDR_ELx
    mrs     x9, CurrentEL
    ubfx    x9, x9, #2, #2
    cmp     x9, #2
    b.ne    2f

    // EL2.
    ldr     x10, ={cptr}
    msr     cptr_el2, x10
    ldr     x10, ={hcr}
    msr     hcr_el2, x10
    mov     x10, #{cnthctl}
    msr     cnthctl_el2, x10
    msr     cntvoff_el2, xzr
    ldr     x10, ={sctlr2}
    msr     sctlr_el2, x10
    msr     tpidr_el2, x22          // before the vectors, which read it
    adr     x10, belfry_vectors
    msr     vbar_el2, x10
    b       3f

    // EL1: no virtualization; Belfry boots to say so.
2:  ldr     x10, ={sctlr1}
    msr     sctlr_el1, x10
    msr     tpidr_el1, x22
    adr     x10, belfry_vectors
    msr     vbar_el1, x10

3:  isb
    adrp    x10, __stacks_start
    add     x10, x10, :lo12:__stacks_start
    add     x11, x20, #1
    mov     x12, #{stack_size}
    madd    x10, x11, x12, x10      // top of this CPU's stack
    mov     sp, x10

    cbz     x21, 5f                 // only the boot CPU clears .bss
    adrp    x10, __bss_start
    add     x10, x10, :lo12:__bss_start
    adrp    x11, __bss_end
    add     x11, x11, :lo12:__bss_end
4:  cmp     x10, x11
    b.hs    5f
    stp     xzr, xzr, [x10], #16
    b       4b

5:  mov     x0, x19
    mov     x1, x20
    mov     x2, x21
    bl      belfry_main
9:  wfe
    b       9b
"#,
    cptr = const CPTR_EL2_VALUE,
    hcr = const HCR_EL2_VALUE,
    cnthctl = const CNTHCTL_EL2_VALUE,
    sctlr2 = const SCTLR_EL2_RES1,
    sctlr1 = const SCTLR_EL1_RES1,
    max_cpus = const crate::machine::MAX_CPUS,
    per_cpu = sym super::cpu::PER_CPU,
    per_cpu_size = const core::mem::size_of::<super::cpu::PerCpu>(),
    stack_size = const STACK_SIZE,
);

unsafe extern "C" {
    fn _start_secondary();
    fn _start_secondary_spin();
}

/// Where a CPU started with PSCI CPU_ON must begin (context id = its logical index).
pub fn secondary_entry_psci() -> u64 {
    _start_secondary as *const () as u64
}

/// Where a CPU released from the Pi 4 spin table must begin.
pub fn secondary_entry_spin_table() -> u64 {
    _start_secondary_spin as *const () as u64
}
