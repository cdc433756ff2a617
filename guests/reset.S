// reset: reports that it booted and asks for PSCI SYSTEM_RESET; Belfry builds the VM again from
// the bundle, so it boots again, and again (a system test ends the run after a few rounds).

    .text
main:
    adr     x0, booted
    bl      puts
    movz    w0, #0x0009             // SYSTEM_RESET
    movk    w0, #0x8400, lsl #16
    hvc     #0
    adr     x0, returned
    bl      puts
    b       system_off

    .section .rodata
booted:     .asciz "reset: booted"
returned:   .asciz "reset: SYSTEM_RESET returned"
