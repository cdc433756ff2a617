// hello: the smallest guest. Checks that x0 points at a device tree, reports its exception
// level, and powers the machine off.

    .text
main:
    mov     x19, x0
    adr     x0, banner
    bl      puts
    ldr     w1, [x19]               // the FDT magic 0xd00dfeed, stored big-endian
    movz    w2, #0x0dd0
    movk    w2, #0xedfe, lsl #16
    adr     x0, tree_ok
    cmp     w1, w2
    b.eq    1f
    adr     x0, tree_bad
1:  bl      puts
    mrs     x1, CurrentEL
    adr     x0, at_el1
    cmp     x1, #(1 << 2)
    b.eq    2f
    adr     x0, at_other
2:  bl      puts
    adr     x0, goodbye
    bl      puts
    b       system_off

    .section .rodata
banner:     .asciz "hello: an arm64 Image on QEMU virt's machine"
tree_ok:    .asciz "hello: x0 holds a device tree"
tree_bad:   .asciz "hello: x0 holds no device tree"
at_el1:     .asciz "hello: running at EL1"
at_other:   .asciz "hello: not running at EL1"
goodbye:    .asciz "hello: PSCI SYSTEM_OFF"
