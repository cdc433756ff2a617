// smp: starts its second CPU with PSCI CPU_ON (entry point and context id), waits for it to
// report the context id it was given and for PSCI's AFFINITY_INFO to say it is off, and powers
// the machine off; the second CPU turns itself off with CPU_OFF.

    .text
main:
    adr     x0, banner
    bl      puts
    mov     x1, #1                  // target: MPIDR Aff0 = 1
    adr     x2, secondary
    movz    x3, #0x5a17             // context id
    bl      cpu_on                  // CPU_ON
    mov     x7, x0
    adr     x0, refused
    cbnz    x7, 1f                  // not SUCCESS: say so and power off
    adr     x4, flag                // cpu1 prints first: wait for it before printing
2:  ldr     x19, [x4]
    cbz     x19, 2b
3:  movz    w0, #0x0004             // AFFINITY_INFO (SMC64) for cpu1, level 0: wait for OFF (1),
    movk    w0, #0xc400, lsl #16    // so its CPU_OFF is done before the machine goes off
    mov     x1, #1
    mov     x2, #0
    hvc     #0
    cmp     x0, #1
    b.ne    3b
    mov     x5, x19
    adr     x0, started
    bl      puts
    adr     x0, context_ok
    movz    x6, #0x5a17
    cmp     x5, x6
    b.eq    1f
    adr     x0, context_bad
1:  bl      puts
    adr     x0, goodbye
    bl      puts
    b       system_off

secondary:
    mov     x20, x0                 // the context id
    adr     x0, hello_cpu1
    bl      puts
    adr     x4, flag
    str     x20, [x4]
    movz    w0, #0x0002             // CPU_OFF
    movk    w0, #0x8400, lsl #16
    hvc     #0
    b       .

    .section .rodata
banner:      .asciz "smp: cpu0 starts cpu1 with PSCI CPU_ON"
started:     .asciz "smp: CPU_ON succeeded"
refused:     .asciz "smp: CPU_ON failed"
hello_cpu1:  .asciz "smp: cpu1 is up"
context_ok:  .asciz "smp: cpu1 got context id 0x5a17"
context_bad: .asciz "smp: cpu1 got the wrong context id"
goodbye:     .asciz "smp: PSCI SYSTEM_OFF"

    .data
    .balign 8
flag:       .quad 0
