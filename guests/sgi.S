// sgi: on a GICv2 (QEMU virt with gic-version=2: GICD at 0x0800_0000, GICC at 0x0801_0000),
// cpu1 sends SGI 5 to cpu0 through GICD_SGIR, and cpu0 reads it from GICC_IAR: the CPUID
// field (bits 12:10) must name cpu1, the sender.

    .text
main:
    adr     x0, banner
    bl      puts
    movz    x20, #0x0800, lsl #16   // GICD
    movz    x21, #0x0801, lsl #16   // GICC
    mov     w0, #1
    str     w0, [x20]               // GICD_CTLR: group 0 on
    mov     w0, #0xff
    str     w0, [x21, #0x4]         // GICC_PMR: every priority
    mov     w0, #1
    str     w0, [x21]               // GICC_CTLR: on
    mov     x1, #1
    adr     x2, secondary
    mov     x3, #0
    bl      cpu_on                  // CPU_ON
    cbnz    x0, fail
    movz    x19, #0x100, lsl #16    // give up after this many polls
1:  ldr     w1, [x21, #0xc]         // GICC_IAR
    and     w2, w1, #0x3ff
    cmp     w2, #1023               // spurious: nothing yet
    b.ne    2f
    subs    x19, x19, #1
    b.ne    1b
    b       fail
2:  str     w1, [x21, #0x10]        // GICC_EOIR
    cmp     w2, #5
    b.ne    fail
    ubfx    w3, w1, #10, #3         // CPUID: the sender
    cmp     w3, #1
    b.ne    fail
    adr     x0, said_ok
    bl      puts
    b       system_off

fail:
    adr     x0, said_fail
    bl      puts
    b       system_off

secondary:
    movz    x20, #0x0800, lsl #16
    mov     w0, #5                  // SGI 5, filter 0 (the list),
    movk    w0, #0x0001, lsl #16    // target list: cpu0
    str     w0, [x20, #0xf00]       // GICD_SGIR
3:  wfi
    b       3b

    .section .rodata
banner:    .asciz "sgi: cpu1 sends SGI 5 to cpu0 through GICD_SGIR"
said_ok:   .asciz "sgi: cpu0 read SGI 5 from cpu1 in GICC_IAR"
said_fail: .asciz "sgi: FAILED"
