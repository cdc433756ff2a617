//! Guest programs: a few lines of AArch64 assembly each, assembled into Belfry's read-only data
//! and copied into guest memory at guest-physical 0 (the Zircon fixture: guest code at 0, the
//! exit MEM trap at `EXIT_TEST_ADDR` = 0xFFF000, another trap at `TRAP_ADDR` = 0xFFE000).

use core::arch::global_asm;

macro_rules! guest {
    ($name:ident, $start:ident, $end:ident, $($code:expr),+ $(,)?) => {
        global_asm!(concat!(
            ".section .rodata.guest.",
            stringify!($name),
            ", \"a\"\n",
            // 2 KiB: vector tables inside a program keep their alignment in the guest.
            ".balign 2048\n",
            // Some programs use FP/SIMD; the directive must not depend on assembly order.
            ".arch_extension fp\n.arch_extension simd\n",
            ".global ",
            stringify!($start),
            "\n",
            ".global ",
            stringify!($end),
            "\n",
            stringify!($start),
            ":\n",
            $($code,)+
            "\n",
            stringify!($end),
            ":\n",
        ));
        unsafe extern "C" {
            static $start: u8;
            static $end: u8;
        }

        /// The guest program's bytes.
        pub fn $name() -> &'static [u8] {
            let start = &raw const $start;
            let end = &raw const $end;
            // SAFETY: the two symbols delimit one assembled block in read-only data.
            unsafe { core::slice::from_raw_parts(start, end as usize - start as usize) }
        }
    };
}

/// Guest assembly: acknowledges the guest's best pending interrupt into x12 (x20 = 3: GICv3,
/// through ICC_IAR1_EL1; otherwise GICC_IAR of the GICV page at 0x0801_0000, base left in x13).
/// Uses local labels 90 and 91.
macro_rules! ack_x12 {
    () => {
        concat!(
            "    cmp     x20, #3\n    b.ne    90f\n    mrs     x12, icc_iar1_el1\n    b       91f\n",
            "90: movz    x13, #0x0801, lsl #16\n    ldr     w12, [x13, #0xc]\n91:\n",
        )
    };
}

/// Guest assembly: ends the interrupt in x12 (`ack_x12`'s counterpart: ICC_EOIR1_EL1 or the
/// GICV page's EOIR). Uses local labels 92 and 93.
macro_rules! eoi_x12 {
    () => {
        concat!(
            "    cmp     x20, #3\n    b.ne    92f\n    msr     icc_eoir1_el1, x12\n    b       93f\n",
            "92: movz    x13, #0x0801, lsl #16\n    str     w12, [x13, #0x10]\n93:\n",
        )
    };
}

/// Guest assembly: ICC_SRE_EL1.SRE on GICv3 (x20 = 3), VBAR_EL1 at local label 20, x19 = 0,
/// the virtual timer armed 20 000 ticks ahead, IRQs unmasked. Uses local label 1.
macro_rules! timer_in_20000_ticks {
    () => {
        concat!(
            "    cmp     x20, #3\n    b.ne    1f\n    mov     x0, #1\n    msr     icc_sre_el1, x0\n",
            "1:  adr     x0, 20f\n    msr     vbar_el1, x0\n    isb\n    mov     x19, #0\n",
            "    mrs     x1, cntvct_el0\n    movz    x2, #20000\n    add     x1, x1, x2\n",
            "    msr     cntv_cval_el0, x1\n    mov     x1, #1\n    msr     cntv_ctl_el0, x1\n    isb\n",
            "    msr     daifclr, #2\n",
        )
    };
}

/// Guest assembly: a 2 KiB-aligned vector table at local label 90 whose only live entry is the
/// synchronous exception from the current EL with SP_ELx (at +0x200, where the code after this
/// macro lands); the other entries before it spin.
macro_rules! spx_sync_vector {
    () => {
        concat!(
            "    .balign 2048\n90: b       .\n    .balign 0x80\n    b       .\n",
            "    .balign 0x80\n    b       .\n    .balign 0x80\n    b       .\n    .balign 0x80\n",
        )
    };
}

// 1. VcpuEnter: store to the exit address.
guest!(
    vcpu_enter,
    guest_vcpu_enter_start,
    guest_vcpu_enter_end,
    r#"
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// 4. GuestSetTrapWithMem: store to the MEM trap, then to the exit address.
guest!(
    set_trap_mem,
    guest_set_trap_mem_start,
    guest_set_trap_mem_end,
    r#"
    mov     x0, #0xffe000
    str     xzr, [x0]
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// 5. GuestSetTrapWithBell (and 6, 7, 9): ring the doorbell, then exit.
guest!(
    set_trap_bell,
    guest_set_trap_bell_start,
    guest_set_trap_bell_end,
    r#"
    mov     x0, #0xffe000
    str     xzr, [x0]
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// Doorbell words inside a MEM trap: ring the word at 0x50 (a 32-bit store of 7), store 9 to
// the word after it (MEM), ring the word again with a byte store, then exit.
guest!(
    bell_words,
    guest_bell_words_start,
    guest_bell_words_end,
    r#"
    mov     x0, #0xffe000
    mov     w1, #7
    str     w1, [x0, #0x50]
    mov     w1, #9
    str     w1, [x0, #0x54]
    strb    w1, [x0, #0x52]
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// 13. VcpuReadWriteState: add i to every x[i], 64 to sp, then compare sp with 128 and exit.
guest!(
    read_write_state,
    guest_read_write_state_start,
    guest_read_write_state_end,
    r#"
    add     x1, x1, #1
    add     x2, x2, #2
    add     x3, x3, #3
    add     x4, x4, #4
    add     x5, x5, #5
    add     x6, x6, #6
    add     x7, x7, #7
    add     x8, x8, #8
    add     x9, x9, #9
    add     x10, x10, #10
    add     x11, x11, #11
    add     x12, x12, #12
    add     x13, x13, #13
    add     x14, x14, #14
    add     x15, x15, #15
    add     x16, x16, #16
    add     x17, x17, #17
    add     x18, x18, #18
    add     x19, x19, #19
    add     x20, x20, #20
    add     x21, x21, #21
    add     x22, x22, #22
    add     x23, x23, #23
    add     x24, x24, #24
    add     x25, x25, #25
    add     x26, x26, #26
    add     x27, x27, #27
    add     x28, x28, #28
    add     x29, x29, #29
    add     x30, x30, #30
    add     sp, sp, #64
    cmp     sp, #128
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// 19. VcpuPsciSystemOff.
guest!(
    psci_system_off,
    guest_psci_system_off_start,
    guest_psci_system_off_end,
    r#"
    movz    x0, #0x0008
    movk    x0, #0x8400, lsl #16
    smc     #0
    b       .
"#
);

// 19. VcpuPsciSystemReset (through HVC: Belfry accepts both conduits).
guest!(
    psci_system_reset,
    guest_psci_system_reset_start,
    guest_psci_system_reset_end,
    r#"
    movz    x0, #0x0009
    movk    x0, #0x8400, lsl #16
    hvc     #0
    b       .
"#
);

// 2. VcpuKick: spin in place until kicked.
guest!(
    spin,
    guest_spin_start,
    guest_spin_end,
    r#"
    b       .
"#
);

// 21. DataCacheSetWayOperations: set/way maintenance is emulated, then exit.
guest!(
    set_way,
    guest_set_way_start,
    guest_set_way_end,
    r#"
    mov     x1, #0
    dc      csw, x1
    dc      cisw, x1
    dc      isw, x1
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// Beyond Zircon: touch one word in every 4 KiB page of the first 16 MiB, then exit.
guest!(
    touch_all_memory,
    guest_touch_all_memory_start,
    guest_touch_all_memory_end,
    r#"
    mov     x1, #0x1000
    mov     x2, #0xffe000
1:  str     x1, [x1]
    add     x1, x1, #0x1000
    cmp     x1, x2
    b.lo    1b
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// Beyond Zircon: a load from, then a branch to, an address with nothing behind it (1 GiB,
// beyond the 16 MiB of RAM). Each is a synchronous external abort at the guest's own EL1, as
// on a board without memory there: its vector records ESR_EL1, FAR_EL1 and ELR_EL1 in
// x21..x23 and returns to x24; the load's are kept in x25, x26, the fetch's in x27, x28.
guest!(
    stray,
    guest_stray_start,
    guest_stray_end,
    r#"
    adr     x1, 90f
    msr     vbar_el1, x1
    isb
    adr     x24, 1f
    mov     x1, #0x40000000
    ldr     x2, [x1]
1:  mov     x25, x21
    mov     x26, x22
    adr     x24, 2f
    br      x1
2:  mov     x27, x21
    mov     x28, x22
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#,
    spx_sync_vector!(),
    r#"
    mrs     x21, esr_el1
    mrs     x22, far_el1
    mrs     x23, elr_el1
    msr     elr_el1, x24
    eret
"#
);

// Beyond Zircon: MMIO through a MEM trap at 0xFFE000, every size, with and without sign
// extension, into W, X and XZR; then stores of every size and of XZR. x9 is set by the VMM.
guest!(
    mmio,
    guest_mmio_start,
    guest_mmio_end,
    r#"
    mov     x0, #0xffe000
    ldrb    w1, [x0, #1]
    ldrsb   w2, [x0, #1]
    ldrsb   x3, [x0, #1]
    ldrh    w4, [x0, #2]
    ldrsh   x5, [x0, #2]
    ldr     w6, [x0, #4]
    ldrsw   x7, [x0, #4]
    ldr     x8, [x0, #8]
    ldr     xzr, [x0, #8]
    strb    w9, [x0, #16]
    strh    w9, [x0, #18]
    str     w9, [x0, #20]
    str     x9, [x0, #24]
    str     xzr, [x0, #32]
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// Beyond Zircon: accesses the hardware reports without a syndrome, through the MEM trap at
// 0xFFE000: a store pair, a load pair, a pre-indexed load, a post-indexed store and a
// sign-extending load pair, all based on x6. x9 and x10 are set by the VMM.
guest!(
    mmio_pair,
    guest_mmio_pair_start,
    guest_mmio_pair_end,
    r#"
    mov     x6, #0xffe000
    stp     x9, x10, [x6, #16]
    ldp     x1, x2, [x6]
    ldr     x3, [x6, #8]!
    str     w9, [x6], #8
    ldpsw   x4, x5, [x6]
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// The `cargo xtask run` demo: print through the PL011 at 0x0900_0000 (waiting on UARTFR.TXFF),
// ring the doorbell at 0x0A00_0000, wait with IRQs unmasked for an interrupt (x20 = 3 on a
// GICv3 host: acknowledge through ICC_IAR1_EL1; else through the GICC frame at 0x0801_0000),
// report its ID to the status register at 0x0A00_1000, then power off with PSCI SYSTEM_OFF.
guest!(
    demo,
    guest_demo_start,
    guest_demo_end,
    r#"
    movz    x1, #0x0900, lsl #16
    adr     x2, 4f
1:  ldrb    w3, [x2], #1
    cbz     w3, 2f
3:  ldr     w4, [x1, #0x18]
    tbnz    w4, #5, 3b
    str     w3, [x1]
    b       1b
2:  adr     x0, 8f
    msr     vbar_el1, x0
    isb
    cmp     x20, #3
    b.ne    5f
    mov     x0, #1
    msr     icc_sre_el1, x0
    isb
5:  movz    x1, #0x0a00, lsl #16
    mov     w3, #1
    str     w3, [x1]
    msr     daifclr, #2
6:  cbnz    x21, 7f
    wfi
    b       6b
7:  movz    x0, #0x0008
    movk    x0, #0x8400, lsl #16
    hvc     #0
    b       .
4:  .asciz  "Hello from the Belfry demo guest!\nIt prints through an emulated PL011, rings a doorbell, takes an interrupt and powers off.\n"
    .balign 0x800
8:  .skip   0x280
    cmp     x20, #3
    b.ne    9f
    mrs     x22, icc_iar1_el1
    msr     icc_eoir1_el1, x22
    b       10f
9:  movz    x23, #0x0801, lsl #16
    ldr     w22, [x23, #0xc]
    str     w22, [x23, #0x10]
10: movz    x24, #0x0a00, lsl #16
    str     w22, [x24, #0x1000]
    mov     x21, #1
    eret
"#
);

// 18. VcpuFp: enable FP/SIMD at EL1, put x2 (set by the VMM) into d0, exit; then read d0 back
// into x1 and exit again. Between the two exits another VCPU uses the FP registers of the same
// CPU, so d0 survives only if the lazy FP switch saved and restored it.
guest!(
    fp,
    guest_fp_start,
    guest_fp_end,
    r#"
    .arch_extension fp
    .arch_extension simd
    mov     x0, #(3 << 20)
    msr     cpacr_el1, x0
    isb
    fmov    d0, x2
    mov     x3, #0xfff000
    str     xzr, [x3]
    fmov    x1, d0
    str     xzr, [x3]
    b       .
"#
);

// Pointer authentication's keys, per VCPU: reads its own APGAKeyLo_EL1 (never set: 0) and
// exits; sets APGAKey to x2 (both halves), signs x5 with modifier x6 (PACGA) into x4 and exits;
// signs again into x7, reads the key back into x8 and exits. The key registers by encoding and
// PACGA as a word: the assembler needs no pointer-authentication extension.
guest!(
    pauth_keys,
    guest_pauth_keys_start,
    guest_pauth_keys_end,
    r#"
    mov     x3, #0xfff000
    mrs     x1, s3_0_c2_c3_0
    str     xzr, [x3]
    msr     s3_0_c2_c3_0, x2
    msr     s3_0_c2_c3_1, x2
    isb
    .inst   0x9ac630a4
    str     xzr, [x3]
    .inst   0x9ac630a7
    mrs     x8, s3_0_c2_c3_0
    str     xzr, [x3]
    b       .
"#
);

// 22. EnableMmu / DisableMmu: data written with the MMU off reads the same with the MMU and
// caches on (a 1 GiB identity block), and off again.
guest!(
    mmu,
    guest_mmu_start,
    guest_mmu_end,
    r#"
    mov     x1, #0x20000
    movz    x2, #0xbeef
    movk    x2, #0xdead, lsl #16
    str     x2, [x1]
    mov     x3, #0x10000
    mov     x4, #0x701
    str     x4, [x3]
    mov     x5, #0xff
    msr     mair_el1, x5
    movz    x6, #0x3519
    movk    x6, #0x80, lsl #16
    msr     tcr_el1, x6
    msr     ttbr0_el1, x3
    isb
    mrs     x7, sctlr_el1
    orr     x7, x7, #1
    orr     x7, x7, #(1 << 2)
    orr     x7, x7, #(1 << 12)
    msr     sctlr_el1, x7
    isb
    ldr     x8, [x1]
    bic     x7, x7, #1
    msr     sctlr_el1, x7
    isb
    ldr     x9, [x1]
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// Isolation: a guest that counts in its own memory forever.
guest!(
    counter,
    guest_counter_start,
    guest_counter_end,
    r#"
    mov     x1, #0x20000
1:  ldr     x2, [x1]
    add     x2, x2, #1
    str     x2, [x1]
    b       1b
"#
);

// Isolation: a store to the address in x1 (set by the VMM), then the exit; a synchronous
// exception on the way (the external abort of a store outside its memory) is taken by its own
// vector, which puts ESR_EL1 in x3 and exits.
guest!(
    store_x1,
    guest_store_x1_start,
    guest_store_x1_end,
    r#"
    adr     x3, 90f
    msr     vbar_el1, x3
    isb
    mov     x3, #0
    movz    x2, #0x6666
    str     x2, [x1]
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#,
    spx_sync_vector!(),
    r#"
    mrs     x3, esr_el1
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// Isolation: a read of ZCR_EL1, a register of a feature the guest's CPU does not have (SVE is
// hidden, or absent): an exception at its own EL1 (UNDEF, or its own CPACR_EL1.ZEN trap, which
// the architecture checks first), which its vector reports in x3 before exiting.
guest!(
    unhandled,
    guest_unhandled_start,
    guest_unhandled_end,
    r#"
    adr     x3, 90f
    msr     vbar_el1, x3
    isb
    mov     x3, #0
    mrs     x0, s3_0_c1_c2_0
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#,
    spx_sync_vector!(),
    r#"
    mrs     x3, esr_el1
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// The EL1 physical timer, emulated: TVAL (0x7fff0000) written then read back, CTL read while disabled; then
// four rounds of CVAL = now + 20 000 with the timer enabled, even rounds in WFI, odd ones
// spinning; the handler (PPI 30) reads the counter and CTL, counts a tick taken before its
// deadline in x28, disables the timer and ends the interrupt.
guest!(
    physical_timer,
    guest_physical_timer_start,
    guest_physical_timer_end,
    r#"
    cmp     x20, #3
    b.ne    1f
    mov     x0, #1
    msr     icc_sre_el1, x0
1:  adr     x0, 20f
    msr     vbar_el1, x0
    isb
    mov     x19, #0
    movz    x1, #0x7fff, lsl #16
    msr     cntp_tval_el0, x1
    mrs     x22, cntp_tval_el0
    mrs     x23, cntp_ctl_el0
    mov     x28, #0
    msr     daifclr, #2
2:  mov     x21, x19
    mrs     x1, cntpct_el0
    movz    x2, #20000
    add     x1, x1, x2
    mov     x24, x1
    msr     cntp_cval_el0, x1
    mov     x1, #1
    msr     cntp_ctl_el0, x1
    isb
    tbz     x21, #0, 4f
3:  cmp     x19, x21
    b.eq    3b
    b       5f
4:  msr     daifset, #2
    cmp     x19, x21
    b.ne    41f
    wfi
    msr     daifclr, #2
    b       4b
41: msr     daifclr, #2
5:  cmp     x19, #4
    b.lo    2b
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
    .balign 0x800
20: .skip   0x280
    cmp     x20, #3
    b.ne    21f
    mrs     x12, icc_iar1_el1
    b       22f
21: movz    x13, #0x0801, lsl #16
    ldr     w12, [x13, #0xc]
22: and     x15, x12, #0x3ff
    cmp     x15, #30
    b.ne    23f
    mrs     x25, cntpct_el0
    cmp     x25, x24
    cinc    x28, x28, lo
    mrs     x26, cntp_ctl_el0
    msr     cntp_ctl_el0, xzr
    isb
    mov     x27, x15
    add     x19, x19, #1
23: cmp     x20, #3
    b.ne    24f
    msr     icc_eoir1_el1, x12
    eret
24: movz    x13, #0x0801, lsl #16
    str     w12, [x13, #0x10]
    eret
"#
);

// 14. VcpuInterrupt: install a vector table, unmask IRQs, wait; the injected interrupt's
// handler (current EL, SPx, IRQ: VBAR + 0x280) stores to the exit address.
guest!(
    interrupt,
    guest_interrupt_start,
    guest_interrupt_end,
    r#"
    adr     x0, 2f
    msr     vbar_el1, x0
    isb
    msr     daifclr, #2
1:  wfi
    b       1b
    .balign 0x800
2:  .skip   0x280
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// 15. VcpuWfi: an expired, enabled virtual timer; WFI must not block.
guest!(
    wfi_timer,
    guest_wfi_timer_start,
    guest_wfi_timer_end,
    r#"
    msr     cntv_cval_el0, xzr
    mov     x0, #1
    msr     cntv_ctl_el0, x0
    isb
    wfi
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// 16. VcpuWfiPendingInterrupt, GICv3: the handler acknowledges one interrupt through
// ICC_IAR1_EL1 and executes WFI, which must not block while the other is pending.
guest!(
    wfi_pending_v3,
    guest_wfi_pending_v3_start,
    guest_wfi_pending_v3_end,
    r#"
    mov     x0, #1
    msr     icc_sre_el1, x0
    isb
    adr     x0, 2f
    msr     vbar_el1, x0
    isb
    msr     daifclr, #2
1:  wfi
    b       1b
    .balign 0x800
2:  .skip   0x280
    mrs     x1, icc_iar1_el1
    msr     daifset, #2
    wfi
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// 16. VcpuWfiPendingInterrupt, GICv2: the same through GICC_IAR of the GICV frame at
// 0x0801_0000.
guest!(
    wfi_pending_v2,
    guest_wfi_pending_v2_start,
    guest_wfi_pending_v2_end,
    r#"
    adr     x0, 2f
    msr     vbar_el1, x0
    isb
    msr     daifclr, #2
1:  wfi
    b       1b
    .balign 0x800
2:  .skip   0x280
    movz    x2, #0x0801, lsl #16
    ldr     w1, [x2, #0xc]
    msr     daifset, #2
    wfi
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// 17. VcpuWfiAarch32: drop to AArch32 EL0, whose WFI traps to the guest's own EL1
// (SCTLR_EL1.nTWI = 0), which skips it and returns; EL0 then stores r0 (0) to the exit address.
guest!(
    wfi_aarch32,
    guest_wfi_aarch32_start,
    guest_wfi_aarch32_end,
    r#"
    adr     x0, 9f
    msr     vbar_el1, x0
    adr     x0, 8f
    msr     elr_el1, x0
    mov     x0, #0x10
    msr     spsr_el1, x0
    mov     x0, #0
    mov     x1, #0xfff000
    isb
    eret
    .balign 0x800
9:  .skip   0x600
    mrs     x2, elr_el1
    add     x2, x2, #4
    msr     elr_el1, x2
    eret
    .balign 0x800
8:  .word   0xe320f003
    .word   0xe5810000
    .word   0xeafffffe
"#
);

// 18. VcpuFpAarch32: AArch32 EL0 moves r0 through s0 with FP disabled; the FP trap goes to the
// guest's EL1, which enables FP (CPACR_EL1.FPEN) and returns; then Belfry's lazy switch; EL0
// stores the value that went through s0 to the exit address.
guest!(
    fp_aarch32,
    guest_fp_aarch32_start,
    guest_fp_aarch32_end,
    r#"
    msr     cpacr_el1, xzr
    adr     x0, 9f
    msr     vbar_el1, x0
    adr     x0, 8f
    msr     elr_el1, x0
    mov     x0, #0x10
    msr     spsr_el1, x0
    mov     x0, #0x1234
    mov     x1, #0xfff000
    isb
    eret
    .balign 0x800
9:  .skip   0x600
    mrs     x3, esr_el1
    lsr     x3, x3, #26
    cmp     x3, #0x07
    b.ne    1f
    mov     x3, #(3 << 20)
    msr     cpacr_el1, x3
    isb
    eret
1:  b       1b
    .balign 0x800
8:  .word   0xee000a10
    .word   0xee102a10
    .word   0xe5812000
    .word   0xeafffffe
"#
);

// A guest that spins (no WFI) with IRQs unmasked; its IRQ vector exits.
guest!(
    interrupt_spin,
    guest_interrupt_spin_start,
    guest_interrupt_spin_end,
    r#"
    adr     x0, 2f
    msr     vbar_el1, x0
    isb
    msr     daifclr, #2
1:  b       1b
    .balign 0x800
2:  .skip   0x280
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// More pending interrupts than list registers: the handler acknowledges each (x20 = 3: GICv3
// system registers, else the GICC frame at 0x0801_0000), records its ID at 0x30000 + 8n, ends
// it; the main loop spins (no WFI, so only the maintenance interrupt brings the refills) until
// 8 have arrived, then exits.
guest!(
    many_interrupts,
    guest_many_interrupts_start,
    guest_many_interrupts_end,
    r#"
    adr     x0, 2f
    msr     vbar_el1, x0
    cmp     x20, #3
    b.ne    3f
    mov     x0, #1
    msr     icc_sre_el1, x0
3:  isb
    mov     x10, #0
    mov     x11, #0x30000
    msr     daifclr, #2
1:  cmp     x10, #8
    b.lo    1b
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
    .balign 0x800
2:  .skip   0x280
    cmp     x20, #3
    b.ne    5f
    mrs     x12, icc_iar1_el1
    str     x12, [x11, x10, lsl #3]
    msr     icc_eoir1_el1, x12
    b       6f
5:  movz    x13, #0x0801, lsl #16
    ldr     w12, [x13, #0xc]
    str     x12, [x11, x10, lsl #3]
    str     w12, [x13, #0x10]
6:  add     x10, x10, #1
    eret
"#
);

// SGI 3 to itself on GICv3: ICC_SGI1R_EL1 = INTID 3, target list {Aff0 0}. The handler records
// the acknowledged ID at 0x30000 and exits.
guest!(
    self_ipi_v3,
    guest_self_ipi_v3_start,
    guest_self_ipi_v3_end,
    r#"
    mov     x0, #1
    msr     icc_sre_el1, x0
    isb
    adr     x0, 2f
    msr     vbar_el1, x0
    isb
    msr     daifclr, #2
    movz    x0, #1
    movk    x0, #0x0300, lsl #16
    msr     icc_sgi1r_el1, x0
1:  b       1b
    .balign 0x800
2:  .skip   0x280
    mrs     x12, icc_iar1_el1
    msr     icc_eoir1_el1, x12
    mov     x11, #0x30000
    str     x12, [x11]
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// SGI 3 to itself on GICv2: GICD_SGIR (distributor at 0x0800_0000) = filter "self", INTID 3;
// the handler acknowledges through the GICC frame at 0x0801_0000.
guest!(
    self_ipi_v2,
    guest_self_ipi_v2_start,
    guest_self_ipi_v2_end,
    r#"
    adr     x0, 2f
    msr     vbar_el1, x0
    isb
    msr     daifclr, #2
    movz    x1, #0x0800, lsl #16
    movz    w2, #3
    movk    w2, #0x0200, lsl #16
    str     w2, [x1, #0xf00]
1:  b       1b
    .balign 0x800
2:  .skip   0x280
    movz    x13, #0x0801, lsl #16
    ldr     w12, [x13, #0xc]
    str     w12, [x13, #0x10]
    mov     x11, #0x30000
    str     x12, [x11]
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// SMP ping-pong. VCPU 0 starts VCPU 1 with PSCI CPU_ON, then answers each of its SGI 1 pings
// with SGI 2 until it has counted 100; VCPU 1 pings and waits for each pong, 100 times. Both
// exit through the exit address. x20 = 3 on a GICv3 host (system registers), else GICv2 (GICD
// at 0x0800_0000 for SGIR, GICC at 0x0801_0000). Registers: x19 pings seen by VCPU 0, x21
// pongs seen and x22 pings sent by VCPU 1; x9/x10 sending, x12..x15 interrupt handlers.
guest!(
    ping_pong,
    guest_ping_pong_start,
    guest_ping_pong_end,
    r#"
    cmp     x20, #3
    b.ne    1f
    mov     x0, #1
    msr     icc_sre_el1, x0
1:  adr     x0, 20f
    msr     vbar_el1, x0
    isb
    mov     x19, #0
    movz    x0, #0x0003
    movk    x0, #0xc400, lsl #16
    mov     x1, #1
    adr     x2, 10f
    mov     x3, #1
    hvc     #0
    msr     daifclr, #2
2:  cmp     x19, #100
    b.lo    2b
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .

10: cmp     x20, #3
    b.ne    11f
    mov     x9, #1
    msr     icc_sre_el1, x9
11: adr     x9, 30f
    msr     vbar_el1, x9
    isb
    mov     x21, #0
    mov     x22, #0
    msr     daifclr, #2
12: add     x22, x22, #1
    cmp     x20, #3
    b.ne    13f
    movz    x9, #1
    movk    x9, #0x0100, lsl #16
    msr     icc_sgi1r_el1, x9
    b       14f
13: movz    x9, #0x0800, lsl #16
    movz    w10, #1
    movk    w10, #1, lsl #16
    str     w10, [x9, #0xf00]
14: cmp     x21, x22
    b.lo    14b
    cmp     x22, #100
    b.lo    12b
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .

    .balign 0x800
20: .skip   0x280
    cmp     x20, #3
    b.ne    21f
    mrs     x12, icc_iar1_el1
    b       22f
21: movz    x13, #0x0801, lsl #16
    ldr     w12, [x13, #0xc]
22: and     x15, x12, #0x3ff
    cmp     x15, #1
    b.ne    25f
    add     x19, x19, #1
    cmp     x20, #3
    b.ne    23f
    movz    x14, #2
    movk    x14, #0x0200, lsl #16
    msr     icc_sgi1r_el1, x14
    b       25f
23: movz    x14, #0x0800, lsl #16
    movz    w15, #2
    movk    w15, #2, lsl #16
    str     w15, [x14, #0xf00]
25: cmp     x20, #3
    b.ne    26f
    msr     icc_eoir1_el1, x12
    eret
26: movz    x13, #0x0801, lsl #16
    str     w12, [x13, #0x10]
    eret

    .balign 0x800
30: .skip   0x280
    cmp     x20, #3
    b.ne    31f
    mrs     x12, icc_iar1_el1
    b       32f
31: movz    x13, #0x0801, lsl #16
    ldr     w12, [x13, #0xc]
32: and     x15, x12, #0x3ff
    cmp     x15, #2
    b.ne    33f
    add     x21, x21, #1
33: cmp     x20, #3
    b.ne    34f
    msr     icc_eoir1_el1, x12
    eret
34: movz    x13, #0x0801, lsl #16
    str     w12, [x13, #0x10]
    eret
"#
);

// Virtual timer ticks: ten times, arm CNTV for 20 000 counter ticks ahead and wait (WFI, or
// spinning on odd rounds so the expiry must exit a running guest). The WFI waits with IRQs
// masked after checking the count (a pending interrupt still ends it): a tick taken between
// the check and the WFI would otherwise leave the guest asleep with its timer off, which a
// busy host made happen 1 run in 10. The handler acknowledges
// PPI 27, disables the timer, ends the interrupt and counts in x19. Then exit. x20 = 3 on GICv3.
guest!(
    timer_ticks,
    guest_timer_ticks_start,
    guest_timer_ticks_end,
    r#"
    cmp     x20, #3
    b.ne    1f
    mov     x0, #1
    msr     icc_sre_el1, x0
1:  adr     x0, 20f
    msr     vbar_el1, x0
    isb
    mov     x19, #0
    msr     daifclr, #2
2:  mov     x21, x19
    mrs     x1, cntvct_el0
    movz    x2, #20000
    add     x1, x1, x2
    msr     cntv_cval_el0, x1
    mov     x1, #1
    msr     cntv_ctl_el0, x1
    isb
    tbz     x21, #0, 4f
3:  cmp     x19, x21
    b.eq    3b
    b       5f
4:  msr     daifset, #2
    cmp     x19, x21
    b.ne    41f
    wfi
    msr     daifclr, #2
    b       4b
41: msr     daifclr, #2
5:  cmp     x19, #10
    b.lo    2b
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
    .balign 0x800
20: .skip   0x280
    cmp     x20, #3
    b.ne    21f
    mrs     x12, icc_iar1_el1
    b       22f
21: movz    x13, #0x0801, lsl #16
    ldr     w12, [x13, #0xc]
22: and     x15, x12, #0x3ff
    cmp     x15, #27
    b.ne    23f
    msr     cntv_ctl_el0, xzr
    isb
    add     x19, x19, #1
23: cmp     x20, #3
    b.ne    24f
    msr     icc_eoir1_el1, x12
    eret
24: movz    x13, #0x0801, lsl #16
    str     w12, [x13, #0x10]
    eret
"#
);

// Every list register active: the guest splits priority drop from deactivation (EOImode 1),
// acknowledges and drops the first four interrupts without deactivating them (x20 = 3: GICv3
// system registers; else the GICV frame, DIR at +0x1000), deactivates those four, then takes the
// rest normally; eight in all, recorded at 0x30000 + 8n.
guest!(
    all_active,
    guest_all_active_start,
    guest_all_active_end,
    r#"
    cmp     x20, #3
    b.ne    1f
    mov     x0, #1
    msr     icc_sre_el1, x0
    isb
    mov     x0, #2
    msr     icc_ctlr_el1, x0
    b       2f
1:  movz    x13, #0x0801, lsl #16
    mov     w0, #0x201
    str     w0, [x13]
2:  adr     x0, 20f
    msr     vbar_el1, x0
    isb
    mov     x10, #0
    mov     x11, #0x30000
    msr     daifclr, #2
3:  cmp     x10, #4
    b.lo    3b
    msr     daifset, #2
    mov     x16, #0
4:  ldr     x12, [x11, x16, lsl #3]
    cmp     x20, #3
    b.ne    5f
    msr     icc_dir_el1, x12
    b       6f
5:  movz    x13, #0x0801, lsl #16
    add     x14, x13, #0x1000
    str     w12, [x14]
6:  add     x16, x16, #1
    cmp     x16, #4
    b.lo    4b
    msr     daifclr, #2
7:  cmp     x10, #8
    b.lo    7b
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
    .balign 0x800
20: .skip   0x280
    cmp     x20, #3
    b.ne    21f
    mrs     x12, icc_iar1_el1
    msr     icc_eoir1_el1, x12
    b       22f
21: movz    x13, #0x0801, lsl #16
    ldr     w12, [x13, #0xc]
    str     w12, [x13, #0x10]
22: str     x12, [x11, x10, lsl #3]
    add     x10, x10, #1
    cmp     x10, #4
    b.ls    24f
    cmp     x20, #3
    b.ne    23f
    msr     icc_dir_el1, x12
    eret
23: movz    x13, #0x0801, lsl #16
    add     x14, x13, #0x1000
    str     w12, [x14]
24: eret
"#
);

// Interrupt priorities through the emulated distributor (GICD at 0x0800_0000, x20 = 3 on a
// GICv3 host): SPIs 32..39 get group 1 (v3) or target VCPU 0 (v2), priority
// 0x80 + 0x10 * (3n mod 8) for SPI 32 + n (byte stores to IPRIORITYR), are enabled, and the
// distributor is switched on. A store to 0xFFE000 asks the VMM to raise all eight; then, IRQs
// unmasked, the handler records each acknowledged ID at 0x30000 + 8n and ends it; after eight,
// exit. The guest's GICv2 CPU interface is the GICV page at 0x0801_0000.
guest!(
    priority_order,
    guest_priority_order_start,
    guest_priority_order_end,
    r#"
    adr     x0, 20f
    msr     vbar_el1, x0
    isb
    movz    x1, #0x0800, lsl #16
    cmp     x20, #3
    b.ne    1f
    mov     x0, #1
    msr     icc_sre_el1, x0
    isb
    movn    w0, #0
    str     w0, [x1, #0x84]
    b       2f
1:  movz    w0, #0x0101
    movk    w0, #0x0101, lsl #16
    str     w0, [x1, #0x820]
    str     w0, [x1, #0x824]
2:  mov     x2, #0
    add     x4, x1, #0x420
3:  add     x3, x2, x2, lsl #1
    and     x3, x3, #7
    lsl     x3, x3, #4
    add     x3, x3, #0x80
    strb    w3, [x4, x2]
    add     x2, x2, #1
    cmp     x2, #8
    b.lo    3b
    mov     w0, #0xff
    str     w0, [x1, #0x104]
    mov     w0, #1
    mov     w5, #2
    cmp     x20, #3
    csel    w0, w5, w0, eq
    str     w0, [x1]
    mov     x19, #0
    mov     x0, #0xffe000
    str     xzr, [x0]
    msr     daifclr, #2
4:  cmp     x19, #8
    b.lo    4b
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
    .balign 0x800
20: .skip   0x280
"#,
    ack_x12!(),
    r#"
    mov     x11, #0x30000
    str     x12, [x11, x19, lsl #3]
    add     x19, x19, #1
"#,
    eoi_x12!(),
    r#"
    eret
"#
);

// Nesting six deep through four list registers: SPIs 32..37 with priorities 0xE0 down to
// 0x90 (each more urgent than the last), set up as in `priority_order`. A store of n to 0xFFE000
// asks the VMM to raise SPI 32 + n. The main program asks for 32; the handler of SPI 32 + k
// saves ELR/SPSR on its stack, records the ID at 0x30000 + 8i, asks for SPI 33 + k (up to 37),
// unmasks IRQs and waits until all six were taken, so the next one preempts it; then it masks
// IRQs, records its ID at 0x30100 + 8j (the end order), ends it and returns. Exit after six
// ends.
guest!(
    nested,
    guest_nested_start,
    guest_nested_end,
    r#"
    mov     x0, #0x40000
    mov     sp, x0
    adr     x0, 20f
    msr     vbar_el1, x0
    isb
    movz    x1, #0x0800, lsl #16
    cmp     x20, #3
    b.ne    1f
    mov     x0, #1
    msr     icc_sre_el1, x0
    isb
    movn    w0, #0
    str     w0, [x1, #0x84]
    b       2f
1:  movz    w0, #0x0101
    movk    w0, #0x0101, lsl #16
    str     w0, [x1, #0x820]
    str     w0, [x1, #0x824]
2:  mov     x2, #0
    add     x4, x1, #0x420
    mov     x3, #0xe0
3:  strb    w3, [x4, x2]
    sub     x3, x3, #0x10
    add     x2, x2, #1
    cmp     x2, #6
    b.lo    3b
    mov     w0, #0x3f
    str     w0, [x1, #0x104]
    mov     w0, #1
    mov     w5, #2
    cmp     x20, #3
    csel    w0, w5, w0, eq
    str     w0, [x1]
    mov     x19, #0
    mov     x21, #0
    mov     x14, #0xffe000
    str     xzr, [x14]
    msr     daifclr, #2
4:  cmp     x21, #6
    b.lo    4b
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
    .balign 0x800
20: .skip   0x280
    sub     sp, sp, #32
    mrs     x9, elr_el1
    mrs     x10, spsr_el1
    stp     x9, x10, [sp]
"#,
    ack_x12!(),
    r#"
    str     x12, [sp, #16]
    mov     x11, #0x30000
    str     x12, [x11, x19, lsl #3]
    add     x19, x19, #1
    and     x15, x12, #0x3ff
    sub     x15, x15, #31
    cmp     x15, #6
    b.hs    25f
    mov     x14, #0xffe000
    str     x15, [x14]
    msr     daifclr, #2
23: cmp     x19, #6
    b.lo    23b
    msr     daifset, #2
25: ldr     x12, [sp, #16]
    movz    x11, #0x3, lsl #16
    movk    x11, #0x0100
    str     x12, [x11, x21, lsl #3]
    add     x21, x21, #1
"#,
    eoi_x12!(),
    r#"
    ldp     x9, x10, [sp]
    msr     elr_el1, x9
    msr     spsr_el1, x10
    add     sp, sp, #32
    eret
"#
);

// Four VCPUs exchanging IPIs and timer ticks. Every VCPU (index n in x28: 0 for the first, the
// PSCI context for the others) programs its own SGI 1 and PPI 27 (GICv3: wakes its
// redistributor at 0x080A_0000 + n * 0x20000, group 1, priorities, enables; GICv2: the banked
// GICD registers), marks itself online at 0x31000 + 8n and unmasks IRQs. VCPU 0 also enables
// the distributor, starts VCPUs 1..3 with PSCI CPU_ON (entry 10f, context n) and waits for them
// online. Then each takes five virtual timer ticks (20 000 counter ticks apart, in WFI), and a
// token (SGI 1) goes round the ring 0 -> 1 -> 2 -> 3 -> 0 twenty-five times, started by VCPU
// 0; each VCPU forwards every token it gets except VCPU 0's last. Each VCPU stores its tick
// count (x19) and token count (x21) at 0x30000 + 0x100 n, then exits.
guest!(
    smp4,
    guest_smp4_start,
    guest_smp4_end,
    r#"
    mov     x0, #0
10: mov     x28, x0
    cmp     x20, #3
    b.ne    1f
    mov     x0, #1
    msr     icc_sre_el1, x0
1:  adr     x0, 30f
    msr     vbar_el1, x0
    isb
    mov     x19, #0
    mov     x21, #0
    movz    x1, #0x0800, lsl #16
    mov     x27, #0x30000
    add     x27, x27, x28, lsl #8
    cmp     x20, #3
    b.ne    2f
    movz    x2, #0x080a, lsl #16
    add     x2, x2, x28, lsl #17
    str     wzr, [x2, #0x14]
    add     x3, x2, #0x10, lsl #12
    movn    w0, #0
    str     w0, [x3, #0x80]
    b       3f
2:  mov     x3, x1
3:  movz    w0, #0x0002
    movk    w0, #0x0800, lsl #16
    str     w0, [x3, #0x100]
    mov     w0, #0x80
    strb    w0, [x3, #0x401]
    mov     w0, #0x90
    strb    w0, [x3, #0x41b]
    cbnz    x28, 4f
    mov     w0, #1
    mov     w5, #2
    cmp     x20, #3
    csel    w0, w5, w0, eq
    str     w0, [x1]
4:  movz    x4, #0x3, lsl #16
    movk    x4, #0x1000
    mov     x5, #1
    str     x5, [x4, x28, lsl #3]
    msr     daifclr, #2
    cbnz    x28, 6f
    mov     x6, #1
5:  movz    x0, #0x0003
    movk    x0, #0xc400, lsl #16
    mov     x1, x6
    adr     x2, 10b
    mov     x3, x6
    hvc     #0
    add     x6, x6, #1
    cmp     x6, #4
    b.lo    5b
    movz    x4, #0x3, lsl #16
    movk    x4, #0x1000
51: ldr     x5, [x4, #8]
    ldr     x6, [x4, #16]
    and     x5, x5, x6
    ldr     x6, [x4, #24]
    and     x5, x5, x6
    cbz     x5, 51b
6:  mov     x7, x19
    mrs     x1, cntvct_el0
    movz    x2, #20000
    add     x1, x1, x2
    msr     cntv_cval_el0, x1
    mov     x1, #1
    msr     cntv_ctl_el0, x1
    isb
7:  msr     daifset, #2
    cmp     x19, x7
    b.ne    71f
    wfi
    msr     daifclr, #2
    b       7b
71: msr     daifclr, #2
    cmp     x19, #5
    b.lo    6b
    cbnz    x28, 8f
    msr     daifset, #2
    mov     x16, #1
    bl      41f
    msr     daifclr, #2
8:  cmp     x21, #25
    b.lo    8b
    str     x19, [x27]
    str     x21, [x27, #8]
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .

    .balign 0x800
30: .skip   0x280
    mov     x17, x30
"#,
    ack_x12!(),
    r#"
    and     x15, x12, #0x3ff
    cmp     x15, #27
    b.ne    33f
    msr     cntv_ctl_el0, xzr
    isb
    add     x19, x19, #1
    b       35f
33: cmp     x15, #1
    b.ne    35f
    add     x21, x21, #1
    cbnz    x28, 34f
    cmp     x21, #25
    b.hs    35f
34: add     x16, x28, #1
    and     x16, x16, #3
    bl      41f
35:
"#,
    eoi_x12!(),
    r#"
    mov     x30, x17
    eret

    // Send SGI 1 to VCPU x16 (uses x9, x10; the main program calls it with IRQs masked).
41: cmp     x20, #3
    b.ne    42f
    mov     x9, #1
    lsl     x9, x9, x16
    orr     x9, x9, #(1 << 24)
    msr     icc_sgi1r_el1, x9
    ret
42: mov     x9, #0x10000
    lsl     x9, x9, x16
    orr     x9, x9, #1
    movz    x10, #0x0800, lsl #16
    str     w9, [x10, #0xf00]
    ret
"#
);

/// A benchmark guest (`cargo xtask bench`): `setup`, then a mark (the virtual counter stored to
/// the marker page at 0xFFD000, a MEM trap where the VMM reads Belfry's EL2 instruction
/// counter), `op` x19 times, a mark, `op` 2 * x19 times, a mark, the exit; `tail` follows (a
/// vector table, if any). `op` may use local labels 5 and 6; the skeleton uses 1 and 2.
macro_rules! bench_guest {
    ($name:ident, $start:ident, $end:ident, setup: $setup:expr, op: $op:expr, tail: $($tail:expr),+ $(,)?) => {
        guest!(
            $name,
            $start,
            $end,
            concat!(
                $setup,
                "    movz    x24, #0xff, lsl #16\n    movk    x24, #0xd000\n    mov     x22, x19\n",
                "    isb\n    mrs     x23, cntvct_el0\n    str     x23, [x24]\n1:\n",
                $op,
                "    subs    x22, x22, #1\n    b.ne    1b\n",
                "    isb\n    mrs     x23, cntvct_el0\n    str     x23, [x24]\n    lsl     x22, x19, #1\n2:\n",
                $op,
                "    subs    x22, x22, #1\n    b.ne    2b\n",
                "    isb\n    mrs     x23, cntvct_el0\n    str     x23, [x24]\n",
                "    mov     x0, #0xfff000\n    str     xzr, [x0]\n    b       .\n",
                $($tail),+
            )
        );
    };
}

// Benchmark guests (`cargo xtask bench`). Each stores the virtual counter to the marker page at
// 0xFFD000 (a MEM trap; the VMM reads Belfry's EL2 instruction counter there), runs its
// operation x19 times, marks again, runs it 2 * x19 times and marks a third time, then exits.
// The difference of the two windows, divided by x19, is the operation's cost without the
// markers'. Registers: x21 a fresh page, x25 an unknown PSCI function, x27 the MEM trap,
// x28 the BELL trap.

// Benchmark: hvc #0 with PSCI_VERSION (x0 = x25): Belfry answers 1.1 itself (in its exception
// vector, from a table).
bench_guest!(
    bench_null_hvc,
    guest_bench_null_hvc_start,
    guest_bench_null_hvc_end,
    setup: r#"
    movz    x25, #0x8400, lsl #16
    mov     x27, #0xffe000
    movz    x28, #0xff, lsl #16
    movk    x28, #0xc000
    movz    x21, #0x10, lsl #16
"#,
    op: r#"
    mov     x0, x25
    hvc     #0
"#,
    tail: ""
);

// Benchmark: a trapped ID register read (HCR_EL2.TID3), answered in EL2 from the guest's CPU
// model.
bench_guest!(
    bench_sysreg,
    guest_bench_sysreg_start,
    guest_bench_sysreg_end,
    setup: r#"
    movz    x25, #0x8400, lsl #16
    movk    x25, #0x00ff
    mov     x27, #0xffe000
    movz    x28, #0xff, lsl #16
    movk    x28, #0xc000
    movz    x21, #0x10, lsl #16
"#,
    op: r#"
    mrs     x0, id_aa64pfr0_el1
"#,
    tail: ""
);

// Benchmark: a store to the MEM trap at x27, completed by the VMM.
bench_guest!(
    bench_mem_store,
    guest_bench_mem_store_start,
    guest_bench_mem_store_end,
    setup: r#"
    movz    x25, #0x8400, lsl #16
    movk    x25, #0x00ff
    mov     x27, #0xffe000
    movz    x28, #0xff, lsl #16
    movk    x28, #0xc000
    movz    x21, #0x10, lsl #16
"#,
    op: r#"
    str     x26, [x27]
"#,
    tail: ""
);

// Benchmark: a load from the MEM trap at x27, completed by the VMM.
bench_guest!(
    bench_mem_load,
    guest_bench_mem_load_start,
    guest_bench_mem_load_end,
    setup: r#"
    movz    x25, #0x8400, lsl #16
    movk    x25, #0x00ff
    mov     x27, #0xffe000
    movz    x28, #0xff, lsl #16
    movk    x28, #0xc000
    movz    x21, #0x10, lsl #16
"#,
    op: r#"
    ldr     x26, [x27]
"#,
    tail: ""
);

// Benchmark: a store to the BELL trap at x28 (a packet queued; the guest goes on).
bench_guest!(
    bench_bell,
    guest_bench_bell_start,
    guest_bench_bell_end,
    setup: r#"
    movz    x25, #0x8400, lsl #16
    movk    x25, #0x00ff
    mov     x27, #0xffe000
    movz    x28, #0xff, lsl #16
    movk    x28, #0xc000
    movz    x21, #0x10, lsl #16
"#,
    op: r#"
    str     xzr, [x28]
"#,
    tail: ""
);

// Benchmark: WFI with an interrupt pending in a list register (IRQs masked): no sleep.
bench_guest!(
    bench_wfi_pending,
    guest_bench_wfi_pending_start,
    guest_bench_wfi_pending_end,
    setup: r#"
    movz    x25, #0x8400, lsl #16
    movk    x25, #0x00ff
    mov     x27, #0xffe000
    movz    x28, #0xff, lsl #16
    movk    x28, #0xc000
    movz    x21, #0x10, lsl #16
"#,
    op: r#"
    wfi
"#,
    tail: ""
);

// Benchmark: a store to a page not yet mapped (stage-2 demand paging).
bench_guest!(
    bench_demand_page,
    guest_bench_demand_page_start,
    guest_bench_demand_page_end,
    setup: r#"
    movz    x25, #0x8400, lsl #16
    movk    x25, #0x00ff
    mov     x27, #0xffe000
    movz    x28, #0xff, lsl #16
    movk    x28, #0xc000
    movz    x21, #0x10, lsl #16
"#,
    op: r#"
    str     xzr, [x21]
    add     x21, x21, #4096
"#,
    tail: ""
);

// Benchmark: one add: a CPU-bound loop with no exits.
bench_guest!(
    bench_guest_loop,
    guest_bench_guest_loop_start,
    guest_bench_guest_loop_end,
    setup: r#"
    movz    x25, #0x8400, lsl #16
    movk    x25, #0x00ff
    mov     x27, #0xffe000
    movz    x28, #0xff, lsl #16
    movk    x28, #0xc000
    movz    x21, #0x10, lsl #16
"#,
    op: r#"
    add     x1, x1, #1
"#,
    tail: ""
);

// Benchmark: an EOI of the spurious ID 1023 (ICC_EOIR1_EL1 on GICv3, the GICV page's EOIR on GICv2): no exit.
bench_guest!(
    bench_eoi,
    guest_bench_eoi_start,
    guest_bench_eoi_end,
    setup: r#"
    cmp     x20, #3
    b.ne    9f
    mov     x0, #1
    msr     icc_sre_el1, x0
    isb
9:  mov     x26, #1023
    movz    x13, #0x0801, lsl #16
"#,
    op: r#"
    cmp     x20, #3
    b.ne    5f
    msr     icc_eoir1_el1, x26
    b       6f
5:  str     w26, [x13, #0x10]
6:
"#,
    tail: ""
);

// Benchmark: arm the virtual timer 1 000 ticks ahead and WFI until its interrupt (Belfry sleeps to the deadline).
bench_guest!(
    bench_wfi_timer,
    guest_bench_wfi_timer_start,
    guest_bench_wfi_timer_end,
    setup: r#"
    cmp     x20, #3
    b.ne    9f
    mov     x0, #1
    msr     icc_sre_el1, x0
9:  adr     x0, 20f
    msr     vbar_el1, x0
    isb
    msr     daifclr, #2
"#,
    op: r#"
    mov     x9, #0
    mrs     x1, cntvct_el0
    add     x1, x1, #1000
    msr     cntv_cval_el0, x1
    mov     x1, #1
    msr     cntv_ctl_el0, x1
    isb
5:  wfi
    cbz     x9, 5b
"#,
    tail: r#"
    .balign 0x800
20: .skip   0x280
"#,
    ack_x12!(),
    r#"

    msr     cntv_ctl_el0, xzr
    isb
    mov     x9, #1
"#,
    eoi_x12!(),
    r#"
    eret
"#
);

// Benchmark: wait (spinning, IRQs unmasked) for the next interrupt a thread on cpu1 injects; the handler counts in x9 and at 0x30000.
bench_guest!(
    bench_interrupt_wait,
    guest_bench_interrupt_wait_start,
    guest_bench_interrupt_wait_end,
    setup: r#"
    cmp     x20, #3
    b.ne    9f
    mov     x0, #1
    msr     icc_sre_el1, x0
9:  adr     x0, 20f
    msr     vbar_el1, x0
    isb
    msr     daifclr, #2
    mov     x9, #0
    mov     x10, #0
    mov     x16, #0x30000
"#,
    op: r#"
    add     x10, x10, #1
5:  cmp     x9, x10
    b.lo    5b
"#,
    tail: r#"
    .balign 0x800
20: .skip   0x280
"#,
    ack_x12!(),
    r#"

    add     x9, x9, #1
    str     x9, [x16]
"#,
    eoi_x12!(),
    r#"
    eret
"#
);

// Benchmark: send SGI 1 to VCPU 1 (ICC_SGI1R_EL1, or GICD_SGIR through the VMM) and wait for its handler's count at 0x30000.
bench_guest!(
    bench_ipi,
    guest_bench_ipi_start,
    guest_bench_ipi_end,
    setup: r#"
    cmp     x20, #3
    b.ne    9f
    mov     x0, #1
    msr     icc_sre_el1, x0
    isb
9:  mov     x10, #0
    mov     x16, #0x30000
    movz    x14, #0x0100, lsl #16
    orr     x14, x14, #2
    movz    x17, #0x2, lsl #16
    orr     x17, x17, #1
    movz    x15, #0x0800, lsl #16
"#,
    op: r#"
    add     x10, x10, #1
    cmp     x20, #3
    b.ne    5f
    msr     icc_sgi1r_el1, x14
    b       6f
5:  str     w17, [x15, #0xf00]
6:  ldr     x9, [x16]
    cmp     x9, x10
    b.lo    6b
"#,
    tail: ""
);

// Benchmark companion: a second VCPU that stores to the MEM trap forever; its VMM thread, like
// VCPU 0's in the `vcpu-switch` path, yields the CPU after each store (`bench_mem_store`'s
// partner).
guest!(
    bench_switch_partner,
    guest_bench_switch_partner_start,
    guest_bench_switch_partner_end,
    r#"
    mov     x27, #0xffe000
1:  str     xzr, [x27]
    b       1b
"#
);

// Benchmark companion: VCPU 1 of `bench_ipi`, spinning with IRQs unmasked; its handler counts
// the SGIs at 0x30000.
guest!(
    bench_ipi_target,
    guest_bench_ipi_target_start,
    guest_bench_ipi_target_end,
    r#"
    cmp     x20, #3
    b.ne    9f
    mov     x0, #1
    msr     icc_sre_el1, x0
9:  adr     x0, 20f
    msr     vbar_el1, x0
    isb
    msr     daifclr, #2
    mov     x16, #0x30000
    b       .
    .balign 0x800
20: .skip   0x280
"#,
    ack_x12!(),
    r#"

    ldr     x9, [x16]
    add     x9, x9, #1
    str     x9, [x16]
"#,
    eoi_x12!(),
    r#"
    eret
"#
);

// F1/F10, the CPU_ON storm: VCPU 0 starts VCPU 1, then calls CPU_ON(1) 100 000 times and
// counts the ALREADY_ON answers (x21); then CPU_ON with MPIDR 0x100 (x23), with an entry point
// outside guest memory (x24), the SMC32 CPU_ON with garbage in the upper halves of its
// arguments, which starts VCPU 2 (x25), and AFFINITY_INFO of VCPU 2 (x26). x19 holds the first
// CPU_ON's answer. VCPUs 1 and 2 stay on (a VCPU whose handle closed is OFF again) until VCPU 0
// sets the word at 0x30000, then go to the exit address.
guest!(
    cpu_on_storm,
    guest_cpu_on_storm_start,
    guest_cpu_on_storm_end,
    r#"
    movz    x0, #0x0003
    movk    x0, #0xc400, lsl #16
    mov     x1, #1
    adr     x2, 20f
    mov     x3, #0
    hvc     #0
    mov     x19, x0
    mov     x21, #0
    movz    x22, #0x86a0
    movk    x22, #0x1, lsl #16
1:  movz    x0, #0x0003
    movk    x0, #0xc400, lsl #16
    mov     x1, #1
    adr     x2, 20f
    mov     x3, #0
    hvc     #0
    cmn     x0, #4
    cinc    x21, x21, eq
    subs    x22, x22, #1
    b.ne    1b
    movz    x0, #0x0003
    movk    x0, #0xc400, lsl #16
    mov     x1, #0x100
    adr     x2, 20f
    hvc     #0
    mov     x23, x0
    movz    x0, #0x0003
    movk    x0, #0xc400, lsl #16
    mov     x1, #2
    movz    x2, #0x4000, lsl #16
    hvc     #0
    mov     x24, x0
    movz    x0, #0x0003
    movk    x0, #0x8400, lsl #16
    mov     x1, #2
    movk    x1, #0xffff, lsl #32
    adr     x2, 20f
    movk    x2, #0xdead, lsl #32
    hvc     #0
    mov     x25, x0
    movz    x0, #0x0004
    movk    x0, #0xc400, lsl #16
    mov     x1, #2
    mov     x2, #0
    hvc     #0
    mov     x26, x0
    mov     x0, #0x30000
    mov     x1, #1
    str     x1, [x0]
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
20: mov     x0, #0x30000
21: ldr     x1, [x0]
    cbz     x1, 21b
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// The residue test: x0 = 1 writes a pattern into every register below, then (like x0 = 0)
// reads them all into 0x40000 + 8 i in `RESIDUE_REGISTERS` order, then the GIC CPU interface's
// (`RESIDUE_GICV3` through ICC_* when x20 = 3, else `RESIDUE_GICV2` in the GICV page). A
// register the CPU lacks (DISR_EL1 without RAS) UNDEFs at EL1: the guest's handler skips it
// and 0xdead is recorded.
guest!(
    residue,
    guest_residue_start,
    guest_residue_end,
    r#"
    adr     x1, 90f
    msr     vbar_el1, x1
    movz    x1, #0x30, lsl #16
    msr     cpacr_el1, x1
    isb
    mov     x19, x0
    movz    x2, #0x5a5a
    movk    x2, #0x5a5a, lsl #16
    movk    x2, #0x5a5a, lsl #32
    movk    x2, #0x5a5a, lsl #48
    cbz     x19, 50f
    movz    x3, #0x0
    movk    x3, #0x8000, lsl #16
    msr     s3_0_c12_c1_1, x3
    msr     tpidr_el0, x2
    msr     tpidrro_el0, x2
    msr     tpidr_el1, x2
    msr     contextidr_el1, x2
    msr     ttbr0_el1, x2
    msr     ttbr1_el1, x2
    msr     tcr_el1, x2
    msr     mair_el1, x2
    msr     amair_el1, x2
    msr     esr_el1, x2
    msr     far_el1, x2
    msr     afsr0_el1, x2
    msr     afsr1_el1, x2
    msr     par_el1, x2
    msr     sp_el0, x2
    msr     elr_el1, x2
    msr     spsr_el1, x2
    movz    x3, #0x2
    msr     csselr_el1, x3
    movz    x3, #0x3
    msr     cntkctl_el1, x3
    msr     cntv_cval_el0, x2
    movz    x3, #0x2
    msr     cntv_ctl_el0, x3
    msr     mdscr_el1, x2
    movz    x3, #0x1
    msr     pmcr_el0, x3
    movz    x3, #0xf
    movk    x3, #0x8000, lsl #16
    msr     pmcntenset_el0, x3
    movz    x3, #0x1
    msr     pmselr_el0, x3
    movz    x3, #0xf
    msr     pmuserenr_el0, x3
    movz    x3, #0x3
    msr     pmintenset_el1, x3
    movz    x3, #0x0
    movk    x3, #0x8000, lsl #16
    msr     pmccfiltr_el0, x3
    movz    x3, #0x1
    msr     pmovsset_el0, x3
    movz    x3, #0x11
    msr     pmevtyper0_el0, x3
    msr     pmccntr_el0, x2
    movz    x3, #0x0
    movk    x3, #0x3c0, lsl #16
    msr     fpcr, x3
    movz    x3, #0x9f
    movk    x3, #0xf800, lsl #16
    msr     fpsr, x3
    mrs     x3, sctlr_el1
    orr     x3, x3, #(1 << 12)
    msr     sctlr_el1, x3
    fmov    d0, x2
    fmov    d31, x2
    fmov    d15, x2
    cmp     x20, #3
    b.ne    20f
    movz    x3, #0x80
    msr     icc_pmr_el1, x3
    movz    x3, #0x3
    msr     icc_bpr0_el1, x3
    movz    x3, #0x4
    msr     icc_bpr1_el1, x3
    movz    x3, #0xffff
    movk    x3, #0xffff, lsl #16
    msr     icc_ap0r0_el1, x3
    movz    x3, #0xffff
    movk    x3, #0xffff, lsl #16
    msr     icc_ap1r0_el1, x3
    movz    x3, #0x1
    msr     icc_igrpen0_el1, x3
    movz    x3, #0x0
    msr     icc_igrpen1_el1, x3
    movz    x3, #0x2
    msr     icc_ctlr_el1, x3
    b       30f
20: movz    x4, #0x0801, lsl #16
    movz    x3, #0x201
    str     w3, [x4, #0x0]
    movz    x3, #0x80
    str     w3, [x4, #0x4]
    movz    x3, #0x3
    str     w3, [x4, #0x8]
    movz    x3, #0x4
    str     w3, [x4, #0x1c]
    movz    x3, #0xffff
    movk    x3, #0xffff, lsl #16
    str     w3, [x4, #0xd0]
30: isb
50: mov     x9, #0x40000
    mov     x1, #0xdead
    mrs     x1, tpidr_el0
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, tpidrro_el0
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, tpidr_el1
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, contextidr_el1
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, ttbr0_el1
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, ttbr1_el1
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, tcr_el1
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, mair_el1
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, amair_el1
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, esr_el1
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, far_el1
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, afsr0_el1
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, afsr1_el1
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, par_el1
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, sp_el0
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, elr_el1
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, spsr_el1
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, csselr_el1
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, cntkctl_el1
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, cntv_cval_el0
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, cntv_ctl_el0
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, mdscr_el1
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, pmcr_el0
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, pmcntenset_el0
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, pmselr_el0
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, pmuserenr_el0
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, pmintenset_el1
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, pmccfiltr_el0
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, pmovsset_el0
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, pmevtyper0_el0
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, pmccntr_el0
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, fpcr
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, fpsr
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, sctlr_el1
    str     x1, [x9], #8
    mov     x1, #0xdead
    mrs     x1, s3_0_c12_c1_1
    str     x1, [x9], #8
    fmov    x1, d0
    str     x1, [x9], #8
    fmov    x1, d31
    str     x1, [x9], #8
    fmov    x1, d15
    str     x1, [x9], #8
    cmp     x20, #3
    b.ne    60f
    mrs     x1, icc_pmr_el1
    str     x1, [x9], #8
    mrs     x1, icc_bpr0_el1
    str     x1, [x9], #8
    mrs     x1, icc_bpr1_el1
    str     x1, [x9], #8
    mrs     x1, icc_ap0r0_el1
    str     x1, [x9], #8
    mrs     x1, icc_ap1r0_el1
    str     x1, [x9], #8
    mrs     x1, icc_igrpen0_el1
    str     x1, [x9], #8
    mrs     x1, icc_igrpen1_el1
    str     x1, [x9], #8
    mrs     x1, icc_ctlr_el1
    str     x1, [x9], #8
    b       70f
60: movz    x4, #0x0801, lsl #16
    ldr     w1, [x4, #0x0]
    str     x1, [x9], #8
    ldr     w1, [x4, #0x4]
    str     x1, [x9], #8
    ldr     w1, [x4, #0x8]
    str     x1, [x9], #8
    ldr     w1, [x4, #0x1c]
    str     x1, [x9], #8
    ldr     w1, [x4, #0xd0]
    str     x1, [x9], #8
70: mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#,
    spx_sync_vector!(),
    r#"
    mrs     x10, elr_el1
    add     x10, x10, #4
    msr     elr_el1, x10
    eret
"#
);

/// The registers `residue` reads, in order.
pub const RESIDUE_REGISTERS: [&str; 38] = [
    "TPIDR_EL0",
    "TPIDRRO_EL0",
    "TPIDR_EL1",
    "CONTEXTIDR_EL1",
    "TTBR0_EL1",
    "TTBR1_EL1",
    "TCR_EL1",
    "MAIR_EL1",
    "AMAIR_EL1",
    "ESR_EL1",
    "FAR_EL1",
    "AFSR0_EL1",
    "AFSR1_EL1",
    "PAR_EL1",
    "SP_EL0",
    "ELR_EL1",
    "SPSR_EL1",
    "CSSELR_EL1",
    "CNTKCTL_EL1",
    "CNTV_CVAL_EL0",
    "CNTV_CTL_EL0",
    "MDSCR_EL1",
    "PMCR_EL0",
    "PMCNTENSET_EL0",
    "PMSELR_EL0",
    "PMUSERENR_EL0",
    "PMINTENSET_EL1",
    "PMCCFILTR_EL0",
    "PMOVSSET_EL0",
    "PMEVTYPER0_EL0",
    "PMCCNTR_EL0",
    "FPCR",
    "FPSR",
    "SCTLR_EL1",
    "DISR_EL1",
    "V0",
    "V31",
    "V15",
];
/// The GICv3 CPU interface registers `residue` reads after those.
pub const RESIDUE_GICV3: [&str; 8] = [
    "ICC_PMR_EL1",
    "ICC_BPR0_EL1",
    "ICC_BPR1_EL1",
    "ICC_AP0R0_EL1",
    "ICC_AP1R0_EL1",
    "ICC_IGRPEN0_EL1",
    "ICC_IGRPEN1_EL1",
    "ICC_CTLR_EL1",
];
/// The GICv2 virtual CPU interface registers `residue` reads after those.
pub const RESIDUE_GICV2: [&str; 5] = ["GICV_CTLR", "GICV_PMR", "GICV_BPR", "GICV_ABPR", "GICV_APR0"];

// F3: a trapped page is never mapped. The guest (1) jumps into the MEM-trapped page at
// 0xffe000, (2) stores 0x77 there, which must still be a MEM packet, then (3) turns its MMU on
// with TTBR1_EL1 pointing into the trapped page and loads from the bottom of the TTBR1 range,
// so its own table walk reads the trapped page. Its EL1 vector (current EL, SPx, sync) records
// ESR_EL1, FAR_EL1 and ELR_EL1 in x21..x23 and returns to x24. The fetch's are kept in
// x25..x27, the walk's in x28 and x29.
guest!(
    trap_fetch,
    guest_trap_fetch_start,
    guest_trap_fetch_end,
    r#"
    adr     x1, 90f
    msr     vbar_el1, x1
    isb
    adr     x24, 1f
    mov     x0, #0xffe000
    br      x0
1:  mov     x25, x21
    mov     x26, x22
    mov     x27, x23
    mov     x0, #0xffe000
    mov     x5, #0x77
    str     x5, [x0]
    mov     x3, #0x10000
    mov     x4, #0x701
    str     x4, [x3]
    mov     x5, #0xff
    msr     mair_el1, x5
    movz    x6, #0x3519
    movk    x6, #0x8019, lsl #16
    msr     tcr_el1, x6
    msr     ttbr0_el1, x3
    mov     x7, #0xffe000
    msr     ttbr1_el1, x7
    isb
    mrs     x7, sctlr_el1
    orr     x7, x7, #1
    msr     sctlr_el1, x7
    isb
    adr     x24, 2f
    movz    x0, #0xff80, lsl #32
    movk    x0, #0xffff, lsl #48
    ldr     x6, [x0]
2:  mov     x28, x21
    mov     x29, x22
    bic     x7, x7, #1
    msr     sctlr_el1, x7
    isb
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#,
    spx_sync_vector!(),
    r#"
    mrs     x21, esr_el1
    mrs     x22, far_el1
    mrs     x23, elr_el1
    msr     elr_el1, x24
    eret
"#
);

// F7: WFIT with a timeout 200 000 counter ticks ahead and no interrupt, repeated until the
// virtual count reaches the timeout (a WFIT may end early, as a WFI may): it must not sleep
// forever. x4 counts the WFITs, x2 is the virtual count after the last.
guest!(
    wfit,
    guest_wfit_start,
    guest_wfit_end,
    r#"
    mrs     x1, cntvct_el0
    movz    x3, #0x0d40
    movk    x3, #0x3, lsl #16
    add     x1, x1, x3
    mov     x4, #0
1:  .inst   0xd5031001
    add     x4, x4, #1
    isb
    mrs     x2, cntvct_el0
    cmp     x2, x1
    b.lo    1b
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// F9: AArch32 EL0 stores two registers with STM into the MEM-trapped page, an access without
// syndrome that Belfry does not decode: the guest's EL1 gets the external data abort (its
// lower-EL AArch32 vector records ESR_EL1, FAR_EL1 and ELR_EL1 in x21..x23, then exits).
guest!(
    aarch32_stm,
    guest_aarch32_stm_start,
    guest_aarch32_stm_end,
    r#"
    adr     x0, 9f
    msr     vbar_el1, x0
    adr     x0, 8f
    msr     elr_el1, x0
    mov     x0, #0x10
    msr     spsr_el1, x0
    mov     x0, #7
    mov     x1, #0xffe000
    mov     x2, #0x11
    mov     x3, #0x22
    isb
    eret
    .balign 0x800
9:  .skip   0x600
    mrs     x21, esr_el1
    mrs     x22, far_el1
    mrs     x23, elr_el1
    mov     x9, #0xfff000
    str     xzr, [x9]
    b       .
    .balign 0x800
8:  .word   0xe881000c
    .word   0xeafffffe
"#
);

// F5: the guest makes the semihosting calls SYS_WRITE0 and SYS_EXIT (`HLT #0xF000`, x0 the
// operation, x1 its parameter block). Belfry's QEMU has no semihosting, so each is an
// undefined instruction at the guest's own EL1: its handler counts them in x21, keeps ESR_EL1
// in x22 and skips the instruction. Then the guest exits normally.
guest!(
    semihosting,
    guest_semihosting_start,
    guest_semihosting_end,
    r#"
    adr     x1, 90f
    msr     vbar_el1, x1
    isb
    mov     x21, #0
    mov     x0, #0x04
    adr     x1, 80f
    hlt     #0xf000
    mov     x0, #0x18
    adr     x1, 81f
    hlt     #0xf000
    mov     x9, #0xfff000
    str     xzr, [x9]
    b       .
80: .asciz  "a guest writes on the host console\n"
    .balign 8
81: .quad   0x20026
    .quad   0
"#,
    spx_sync_vector!(),
    r#"
    add     x21, x21, #1
    mrs     x22, esr_el1
    mrs     x10, elr_el1
    add     x10, x10, #4
    msr     elr_el1, x10
    eret
"#
);

// F8: pairs that start in RAM and end in the MEM trap at 0xffe000: STP of x9, x10 at
// 0xffdff8 (x9 to RAM, x10 to the device), LDP back into x1, x2, and a pre-indexed LDP of x3,
// x4 at [x7, #-8]! with x7 = 0xffe000.
guest!(
    mmio_straddle,
    guest_mmio_straddle_start,
    guest_mmio_straddle_end,
    r#"
    mov     x6, #0xffe000
    sub     x6, x6, #8
    stp     x9, x10, [x6]
    ldp     x1, x2, [x6]
    mov     x7, #0xffe000
    ldp     x3, x4, [x7, #-8]!
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// F12: the virtual timer is level-triggered. The guest arms it 20 000 ticks ahead and waits;
// its handler acknowledges PPI 27, counts it in x19, then calls PSCI_VERSION (an exit to EL2
// while the interrupt is active and the timer condition still holds) before it disables the
// timer and ends the interrupt. Then it spins 200 000 iterations with IRQs unmasked: a second
// delivery of the same expiry would count again. x20 = 3 on GICv3.
guest!(
    timer_level,
    guest_timer_level_start,
    guest_timer_level_end,
    timer_in_20000_ticks!(),
    r#"
2:  cbz     x19, 2b
    movz    x3, #0x0d40
    movk    x3, #0x3, lsl #16
3:  subs    x3, x3, #1
    b.ne    3b
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
    .balign 0x800
20: .skip   0x280
"#,
    ack_x12!(),
    r#"
    and     x15, x12, #0x3ff
    cmp     x15, #27
    b.ne    23f
    add     x19, x19, #1
    movz    x0, #0x8400, lsl #16
    hvc     #0
    msr     cntv_ctl_el0, xzr
    isb
23:
"#,
    eoi_x12!(),
    r#"
    eret
"#
);

// A timer that comes due while the VMM serves a MEM exit. The guest arms the virtual timer
// 20 000 ticks ahead and stores to the MEM trap at 0xffe000 in a loop, counting its accesses in
// x18, until its handler has taken PPI 27 (counted in x19; it disables the timer and ends the
// interrupt) or 10 000 accesses went by; then it stores to the exit address. The VMM spends
// 25 000 ticks on each access, so the timer comes due while EL2 serves the first. x20 = 3 on
// GICv3.
guest!(
    timer_during_mem,
    guest_timer_during_mem_start,
    guest_timer_during_mem_end,
    timer_in_20000_ticks!(),
    r#"
    mov     x18, #0
    mov     x3, #0xffe000
    movz    x4, #10000
2:  cbnz    x19, 4f
    str     x18, [x3]
    add     x18, x18, #1
    cmp     x18, x4
    b.lo    2b
4:  mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
    .balign 0x800
20: .skip   0x280
"#,
    ack_x12!(),
    r#"
    and     x15, x12, #0x3ff
    cmp     x15, #27
    b.ne    23f
    add     x19, x19, #1
    msr     cntv_ctl_el0, xzr
    isb
23:
"#,
    eoi_x12!(),
    r#"
    eret
"#
);

// The virtual timer's physical PPI is the guest's to end: its handler acknowledges PPI 27,
// counts it in x19 and, the first two times, ends it with the timer still asserted (enabled,
// expired); only the third time does it disable the timer first. A level-triggered interrupt
// ended while its level holds is taken again. The guest waits up to 200 000 iterations (no
// exit) for each next interrupt; when none comes it executes WFI (a full exit to EL2, which
// finds the timer fired), counted in x18, and waits again (at most 8 times). Then it spins 200 000 iterations with IRQs unmasked: no
// fourth interrupt may come. x20 = 3 on GICv3.
guest!(
    timer_reasserted,
    guest_timer_reasserted_start,
    guest_timer_reasserted_end,
    timer_in_20000_ticks!(),
    r#"
    mov     x18, #0
2:  cmp     x19, #3
    b.hs    4f
    mov     x5, x19
    movz    x4, #0x3, lsl #16
    movk    x4, #0x0d40
5:  cmp     x19, x5
    b.ne    2b
    subs    x4, x4, #1
    b.ne    5b
    add     x18, x18, #1
    wfi
    cmp     x18, #8
    b.lo    2b
4:  movz    x3, #0x0d40
    movk    x3, #0x3, lsl #16
3:  subs    x3, x3, #1
    b.ne    3b
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
    .balign 0x800
20: .skip   0x280
"#,
    ack_x12!(),
    r#"
    and     x15, x12, #0x3ff
    cmp     x15, #27
    b.ne    23f
    add     x19, x19, #1
    cmp     x19, #3
    b.lo    23f
    msr     cntv_ctl_el0, xzr
    isb
23:
"#,
    eoi_x12!(),
    r#"
    eret
"#
);

// The short exit writes back any general register: an ID register read into each of x1..x30
// (x1..x30 set to 0x5a5a first), stored at 0x30000; PSCI_FEATURES(PSCI_VERSION) with xN = N
// (x1's answer at 0x31000, x2..x30 after the call at 0x31008..); a PMU read (RAZ) into x29 at
// 0x32000.
guest!(
    short_exit_registers,
    guest_short_exit_registers_start,
    guest_short_exit_registers_end,
    r#"
    .macro store_x1_to_x30 base
    stp     x1, x2, [\base, #0]
    stp     x3, x4, [\base, #16]
    stp     x5, x6, [\base, #32]
    stp     x7, x8, [\base, #48]
    stp     x9, x10, [\base, #64]
    stp     x11, x12, [\base, #80]
    stp     x13, x14, [\base, #96]
    stp     x15, x16, [\base, #112]
    stp     x17, x18, [\base, #128]
    stp     x19, x20, [\base, #144]
    stp     x21, x22, [\base, #160]
    stp     x23, x24, [\base, #176]
    stp     x25, x26, [\base, #192]
    stp     x27, x28, [\base, #208]
    stp     x29, x30, [\base, #224]
    .endm
    movz    x1, #0x5a5a
    mov     x2, x1
    mov     x3, x1
    mov     x4, x1
    mov     x5, x1
    mov     x6, x1
    mov     x7, x1
    mov     x8, x1
    mov     x9, x1
    mov     x10, x1
    mov     x11, x1
    mov     x12, x1
    mov     x13, x1
    mov     x14, x1
    mov     x15, x1
    mov     x16, x1
    mov     x17, x1
    mov     x18, x1
    mov     x19, x1
    mov     x20, x1
    mov     x21, x1
    mov     x22, x1
    mov     x23, x1
    mov     x24, x1
    mov     x25, x1
    mov     x26, x1
    mov     x27, x1
    mov     x28, x1
    mov     x29, x1
    mov     x30, x1
    mrs     x1, id_aa64pfr0_el1
    mrs     x2, id_aa64pfr0_el1
    mrs     x3, id_aa64pfr0_el1
    mrs     x4, id_aa64pfr0_el1
    mrs     x5, id_aa64pfr0_el1
    mrs     x6, id_aa64pfr0_el1
    mrs     x7, id_aa64pfr0_el1
    mrs     x8, id_aa64pfr0_el1
    mrs     x9, id_aa64pfr0_el1
    mrs     x10, id_aa64pfr0_el1
    mrs     x11, id_aa64pfr0_el1
    mrs     x12, id_aa64pfr0_el1
    mrs     x13, id_aa64pfr0_el1
    mrs     x14, id_aa64pfr0_el1
    mrs     x15, id_aa64pfr0_el1
    mrs     x16, id_aa64pfr0_el1
    mrs     x17, id_aa64pfr0_el1
    mrs     x18, id_aa64pfr0_el1
    mrs     x19, id_aa64pfr0_el1
    mrs     x20, id_aa64pfr0_el1
    mrs     x21, id_aa64pfr0_el1
    mrs     x22, id_aa64pfr0_el1
    mrs     x23, id_aa64pfr0_el1
    mrs     x24, id_aa64pfr0_el1
    mrs     x25, id_aa64pfr0_el1
    mrs     x26, id_aa64pfr0_el1
    mrs     x27, id_aa64pfr0_el1
    mrs     x28, id_aa64pfr0_el1
    mrs     x29, id_aa64pfr0_el1
    mrs     x30, id_aa64pfr0_el1
    mov     x0, #0x30000
    store_x1_to_x30 x0
    mov     x2, #2
    mov     x3, #3
    mov     x4, #4
    mov     x5, #5
    mov     x6, #6
    mov     x7, #7
    mov     x8, #8
    mov     x9, #9
    mov     x10, #10
    mov     x11, #11
    mov     x12, #12
    mov     x13, #13
    mov     x14, #14
    mov     x15, #15
    mov     x16, #16
    mov     x17, #17
    mov     x18, #18
    mov     x19, #19
    mov     x20, #20
    mov     x21, #21
    mov     x22, #22
    mov     x23, #23
    mov     x24, #24
    mov     x25, #25
    mov     x26, #26
    mov     x27, #27
    mov     x28, #28
    mov     x29, #29
    mov     x30, #30
    movz    x0, #0x8400, lsl #16
    movk    x0, #0x000a
    movz    x1, #0x8400, lsl #16
    hvc     #0
    mov     x1, x0
    movz    x0, #0x3, lsl #16
    movk    x0, #0x1000
    store_x1_to_x30 x0
    mov     x29, #0x77
    mrs     x29, pmcr_el0
    movz    x0, #0x3, lsl #16
    movk    x0, #0x2000
    str     x29, [x0]
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// Attack suite: the system-register sweep. x0 = the first index; for each index i up to 32767
// the guest writes `MRS x9, <op0 = 2 + i / 16384, op1:CRn:CRm:op2 = i % 16384>` into its code
// slot at 0x8000 (followed by RET), records i at 0x30000 and calls the slot. Its EL1 vector
// counts undefined instructions at 0x30008 and skips them. A read Belfry kills the guest for
// ends it: the VMM starts the next guest after the recorded index.
guest!(
    sysreg_sweep,
    guest_sysreg_sweep_start,
    guest_sysreg_sweep_end,
    r#"
    adr     x2, 90f
    msr     vbar_el1, x2
    isb
    mov     x19, x0
    mov     x3, #0x30000
    mov     x6, #0x8000
    movz    x7, #0x03c0
    movk    x7, #0xd65f, lsl #16
    str     w7, [x6, #4]
    movz    x8, #0xd530, lsl #16
    movk    x8, #9
1:  str     x19, [x3]
    orr     x4, x8, x19, lsl #5
    str     w4, [x6]
    dsb     ish
    ic      iallu
    dsb     ish
    isb
    blr     x6
    add     x19, x19, #1
    cmp     x19, #0x8000
    b.lo    1b
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#,
    spx_sync_vector!(),
    r#"
    mov     x10, #0x30000
    ldr     x11, [x10, #8]
    add     x11, x11, #1
    str     x11, [x10, #8]
    mrs     x10, elr_el1
    add     x10, x10, #4
    msr     elr_el1, x10
    eret
"#
);

// Attack suite: the PSCI/SMCCC sweep. x0 = the number of function IDs in the table at 0x40000;
// the guest calls each with garbage in x1..x3 (0xdead0000 + i...), through HVC for even i and
// SMC for odd i, and stores x0 after each call at 0x50000 + 8 i.
guest!(
    psci_sweep,
    guest_psci_sweep_start,
    guest_psci_sweep_end,
    r#"
    mov     x19, x0
    mov     x20, #0
    mov     x21, #0x40000
    mov     x22, #0x50000
1:  cmp     x20, x19
    b.hs    3f
    ldr     x0, [x21, x20, lsl #3]
    movz    x1, #0xdead, lsl #16
    add     x1, x1, x20
    mvn     x2, x1
    eor     x3, x1, x2, lsl #7
    tbnz    x20, #0, 2f
    hvc     #0
    b       4f
2:  smc     #0
4:  str     x0, [x22, x20, lsl #3]
    add     x20, x20, #1
    b       1b
3:  mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// Attack suite: doorbells to a consumer on the same CPU. x0 = how many times to ring the
// doorbell at 0xffe000; then the guest spins with no other exit.
guest!(
    doorbell_spin,
    guest_doorbell_spin_start,
    guest_doorbell_spin_end,
    r#"
    mov     x1, #0xffe000
1:  str     x0, [x1]
    subs    x0, x0, #1
    b.ne    1b
    b       .
"#
);

// Attack suite: the doorbell flood. x0 = how many times to ring the doorbell at 0xffe000.
guest!(
    doorbell_flood,
    guest_doorbell_flood_start,
    guest_doorbell_flood_end,
    r#"
    mov     x1, #0xffe000
1:  str     x0, [x1]
    subs    x0, x0, #1
    b.ne    1b
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// Attack suite: random instruction words. The VMM fills 0x10000..0x20000 with random words;
// the guest points its vectors at a handler that skips the faulting instruction (using only
// x28), and jumps into them. Whatever the words do ends in an exit, a kill, or a kick.
guest!(
    random_words,
    guest_random_words_start,
    guest_random_words_end,
    r#"
    adr     x2, 90f
    msr     vbar_el1, x2
    isb
    mov     x0, #0x10000
    br      x0
    .balign 2048
90: .rept   16
    mrs     x28, elr_el1
    add     x28, x28, #4
    msr     elr_el1, x28
    eret
    .balign 0x80
    .endr
"#
);

// Attack suite: the emulated-GIC fuzz. x0 = how many accesses; with IRQs masked, the guest
// makes pseudo-random accesses (xorshift in x5) to its distributor (64 KiB at 0x0800_0000 on
// GICv3, 4 KiB on GICv2) and, on GICv3, its redistributors at 0x080A_0000: random offsets,
// widths of 1, 2, 4 or 8 bytes, reads and writes of random values. Then it exits.
guest!(
    gic_fuzz,
    guest_gic_fuzz_start,
    guest_gic_fuzz_end,
    r#"
    mov     x19, x0
    movz    x5, #0x7f4a
    movk    x5, #0x9e37, lsl #16
    movk    x5, #0x1234, lsl #32
1:  eor     x5, x5, x5, lsl #13
    eor     x5, x5, x5, lsr #7
    eor     x5, x5, x5, lsl #17
    movz    x1, #0x0800, lsl #16
    cmp     x20, #3
    b.ne    2f
    tbz     x5, #40, 3f
    movz    x1, #0x080a, lsl #16
    and     x2, x5, #0x1fff8
    b       4f
3:  and     x2, x5, #0xfff8
    b       4f
2:  and     x2, x5, #0xff8
4:  add     x1, x1, x2
    lsr     x6, x5, #20
    and     x6, x6, #7
    cmp     x6, #0
    b.eq    10f
    cmp     x6, #1
    b.eq    11f
    cmp     x6, #2
    b.eq    12f
    cmp     x6, #3
    b.eq    13f
    cmp     x6, #4
    b.eq    14f
    cmp     x6, #5
    b.eq    15f
    cmp     x6, #6
    b.eq    16f
    ldrb    w7, [x1]
    b       20f
10: str     x5, [x1]
    b       20f
11: str     w5, [x1]
    b       20f
12: strh    w5, [x1]
    b       20f
13: strb    w5, [x1]
    b       20f
14: ldr     x7, [x1]
    b       20f
15: ldr     w7, [x1]
    b       20f
16: ldrh    w7, [x1]
20: subs    x19, x19, #1
    b.ne    1b
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);

// Attack suite: the interrupt flood. With IRQs unmasked, the guest takes whatever arrives
// (acknowledge, count in x21, end) until the VMM sets the word at 0x30000, then masks IRQs,
// stores its count at 0x30008 and exits.
guest!(
    interrupt_flood,
    guest_interrupt_flood_start,
    guest_interrupt_flood_end,
    r#"
    cmp     x20, #3
    b.ne    1f
    mov     x0, #1
    msr     icc_sre_el1, x0
1:  adr     x0, 90f
    msr     vbar_el1, x0
    isb
    mov     x21, #0
    mov     x3, #0x30000
    msr     daifclr, #2
2:  ldr     x4, [x3]
    cbz     x4, 2b
    msr     daifset, #2
    str     x21, [x3, #8]
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
    .balign 0x800
90: .skip   0x280
"#,
    ack_x12!(),
    r#"
    add     x21, x21, #1
"#,
    eoi_x12!(),
    r#"
    eret
"#
);

// F6: every list register active-and-pending, and more waiting. With IRQs masked the guest,
// in EOImode 1 (priority drop apart from deactivation), acknowledges and drops four interrupts
// without deactivating them (32..35: all four list registers active), stores to the trap
// page (the VMM raises 32..36 again: four active-and-pending, one waiting), then spins 100 000
// iterations and stores the virtual-count ticks they took at 0x30000. A self-livelock (NPIE
// while no register is pending alone) would exit the guest before each of its instructions.
guest!(
    active_pending,
    guest_active_pending_start,
    guest_active_pending_end,
    r#"
    cmp     x20, #3
    b.ne    1f
    mov     x0, #1
    msr     icc_sre_el1, x0
    isb
    mov     x0, #2
    msr     icc_ctlr_el1, x0
    b       8f
1:  movz    x13, #0x0801, lsl #16
    mov     w0, #0x201
    str     w0, [x13]
8:  mov     x22, #4
2:
"#,
    ack_x12!(),
    eoi_x12!(),
    r#"
    subs    x22, x22, #1
    b.ne    2b
    mov     x1, #0xffe000
    str     xzr, [x1]
    mrs     x2, cntvct_el0
    movz    x3, #0x86a0
    movk    x3, #0x1, lsl #16
3:  subs    x3, x3, #1
    b.ne    3b
    mrs     x4, cntvct_el0
    sub     x4, x4, x2
    mov     x5, #0x30000
    str     x4, [x5]
    mov     x0, #0xfff000
    str     xzr, [x0]
    b       .
"#
);
