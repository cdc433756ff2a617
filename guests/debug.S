// debug: the guest's own breakpoints, watchpoints and software step, taken at its EL1.
// cpu0 unlocks its OS lock, arms breakpoint 0 on `target` (MDSCR_EL1.MDE and KDE, PSTATE.D
// clear) and calls it; arms watchpoint 0 on `watched` and loads from it; steps three
// instructions with MDSCR_EL1.SS; then arms breakpoint 0 on `shared` and starts cpu1, which has
// its own debug state (MDE and KDE set, no breakpoint) and calls `shared` without a trap; last,
// cpu0 calls `shared` and takes its breakpoint. Every exception's class and address is checked.

    .text
main:
    adr     x0, banner
    bl      puts
    adr     x0, vectors
    msr     vbar_el1, x0
    msr     oslar_el1, xzr          // the OS lock (locked at reset) off
    isb
    msr     daifclr, #8             // PSTATE.D clear: debug exceptions at EL1

    // Breakpoint 0 on `target`: E, PMC = EL1 and EL0, BAS = all four bytes.
    adr     x0, target
    msr     dbgbvr0_el1, x0
    mov     x0, #0x1e7
    msr     dbgbcr0_el1, x0
    mov     x0, #0xa000             // MDE | KDE
    msr     mdscr_el1, x0
    isb
    bl      target
    ldr     x1, hits
    cmp     x1, #1
    b.ne    fail
    ldr     x1, last_class
    cmp     x1, #0x31               // breakpoint, same EL
    b.ne    fail
    ldr     x1, last_elr
    adr     x2, target
    cmp     x1, x2
    b.ne    fail
    adr     x0, said_breakpoint
    bl      puts

    // Watchpoint 0 on `watched`: E, PAC = EL1 and EL0, LSC = load and store, BAS = 8 bytes.
    adr     x0, watched
    msr     dbgwvr0_el1, x0
    mov     x0, #0x1fff
    msr     dbgwcr0_el1, x0
    isb
    adr     x3, watched
    ldr     x1, [x3]
    cmp     x1, #0x77
    b.ne    fail
    ldr     x1, hits
    cmp     x1, #2
    b.ne    fail
    ldr     x1, last_class
    cmp     x1, #0x35               // watchpoint, same EL
    b.ne    fail
    ldr     x1, last_far
    cmp     x1, x3
    b.ne    fail
    adr     x0, said_watchpoint
    bl      puts

    // Software step: MDSCR_EL1.SS (with PSTATE.D set, or this code would be stepped), then an
    // ERET with SPSR_EL1.SS set and D clear into `stepped`.
    msr     daifset, #8
    mov     x0, #0xa001             // MDE | KDE | SS
    msr     mdscr_el1, x0
    isb
    adr     x0, stepped
    msr     elr_el1, x0
    mov     x0, #0x1c5              // EL1h, A, I, F masked, D clear
    orr     x0, x0, #(1 << 21)      // SS
    msr     spsr_el1, x0
    mov     x22, #0
    eret
stepped:
    add     x22, x22, #1
    add     x22, x22, #1
    add     x22, x22, #1
    add     x22, x22, #1
    ldr     x1, steps
    cmp     x1, #3
    b.ne    fail
    cmp     x22, #4
    b.ne    fail
    ldr     x1, last_class
    cmp     x1, #0x33               // software step, same EL
    b.ne    fail
    ldr     x1, last_elr
    adr     x2, stepped
    add     x2, x2, #12             // the third step ended before the fourth add
    cmp     x1, x2
    b.ne    fail
    adr     x0, said_step
    bl      puts

    // Breakpoint 0 on `shared`, then cpu1 (on the same host CPU under Belfry) calls it.
    adr     x0, shared
    msr     dbgbvr0_el1, x0
    mov     x0, #0x1e7
    msr     dbgbcr0_el1, x0
    mov     x0, #0xa000
    msr     mdscr_el1, x0
    isb
    mov     x1, #1
    adr     x2, secondary
    mov     x3, #0
    bl      cpu_on                  // CPU_ON
    cbnz    x0, fail
1:  ldr     x1, cpu1_done
    cbz     x1, 1b
    ldr     x1, hits
    cmp     x1, #2                  // cpu1 took nothing
    b.ne    fail
    bl      shared
    ldr     x1, hits
    cmp     x1, #3
    b.ne    fail
    ldr     x1, last_elr
    adr     x2, shared
    cmp     x1, x2
    b.ne    fail
    adr     x0, said_own
    bl      puts
    b       system_off

fail:
    adr     x0, said_fail
    bl      puts
    b       system_off

secondary:
    adr     x0, vectors
    msr     vbar_el1, x0
    msr     oslar_el1, xzr
    msr     dbgbcr0_el1, xzr        // its own breakpoint 0: disabled
    mov     x0, #0xa000             // MDE | KDE: its debug is on, with nothing armed
    msr     mdscr_el1, x0
    isb
    msr     daifclr, #8
    mov     x19, #200
2:  bl      shared
    subs    x19, x19, #1
    b.ne    2b
    adr     x0, said_cpu1
    bl      puts
    mov     x1, #1
    adr     x2, cpu1_done
    str     x1, [x2]
3:  wfi
    b       3b

target:
    ret
shared:
    nop
    ret

// The vector table: only "current EL with SP_ELx, synchronous" is expected.
    .balign 2048
vectors:
    .rept   4
    b       unexpected
    .balign 128
    .endr
    b       synchronous             // + 0x200
    .balign 128
    .rept   11
    b       unexpected
    .balign 128
    .endr

synchronous:
    mrs     x12, esr_el1
    lsr     x12, x12, #26
    adr     x13, last_class
    str     x12, [x13]
    mrs     x14, elr_el1
    adr     x13, last_elr
    str     x14, [x13]
    mrs     x14, far_el1
    adr     x13, last_far
    str     x14, [x13]
    cmp     x12, #0x33
    b.eq    4f
    // A breakpoint or watchpoint: count it and disarm both, so the instruction runs again.
    adr     x13, hits
    ldr     x14, [x13]
    add     x14, x14, #1
    str     x14, [x13]
    msr     dbgbcr0_el1, xzr
    msr     dbgwcr0_el1, xzr
    isb
    eret
4:  // A step: three, then step no more.
    adr     x13, steps
    ldr     x14, [x13]
    add     x14, x14, #1
    str     x14, [x13]
    cmp     x14, #3
    b.hs    5f
    mrs     x15, spsr_el1
    orr     x15, x15, #(1 << 21)
    msr     spsr_el1, x15
    eret
5:  mov     x15, #0xa000
    msr     mdscr_el1, x15
    isb
    eret

unexpected:
    adr     x0, said_unexpected
    bl      puts
    b       system_off

    .data
    .balign 8
hits:       .quad 0
steps:      .quad 0
last_class: .quad 0
last_elr:   .quad 0
last_far:   .quad 0
watched:    .quad 0x77
cpu1_done:  .quad 0

    .section .rodata
banner:          .asciz "debug: breakpoints, watchpoints and single-step at the guest's EL1"
said_breakpoint: .asciz "debug: breakpoint 0 hit at its address (EC 0x31)"
said_watchpoint: .asciz "debug: watchpoint 0 hit on a load, FAR its address (EC 0x35)"
said_step:       .asciz "debug: three single steps, one instruction each (EC 0x33)"
said_cpu1:       .asciz "debug: cpu1 ran the code cpu0 watches 200 times without a trap"
said_own:        .asciz "debug: cpu0's breakpoint still fires for cpu0"
said_fail:       .asciz "debug: FAILED"
said_unexpected: .asciz "debug: an unexpected exception"
