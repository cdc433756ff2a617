// flood: prints 16384 lines of 63 characters (1 MiB with the newlines) as fast as the PL011
// takes them, then powers off: a console flood, for the other VMs to run beside.

    .text
main:
    mov     x19, #16384
1:  adr     x0, line
    bl      puts
    subs    x19, x19, #1
    b.ne    1b
    adr     x0, done
    bl      puts
    b       system_off

    .section .rodata
line:   .asciz "flood: 0123456789abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRS"
done:   .asciz "flood: done"
