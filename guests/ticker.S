// ticker: twenty ticks 10 ms apart on the virtual counter (busy-waiting, no interrupt), each
// printed as it comes: its lines' times in Belfry's log show whether it was held up.

    .text
main:
    adr     x0, banner
    bl      puts
    mrs     x20, cntfrq_el0
    mov     x1, #100
    udiv    x20, x20, x1            // 10 ms in counter ticks
    isb
    mrs     x21, cntvct_el0         // the next deadline
    mov     x19, #20
1:  add     x21, x21, x20
2:  isb
    mrs     x1, cntvct_el0
    cmp     x1, x21
    b.lo    2b
    adr     x0, tick
    bl      puts
    subs    x19, x19, #1
    b.ne    1b
    adr     x0, done
    bl      puts
    b       system_off

    .section .rodata
banner: .asciz "ticker: 20 ticks, 10 ms apart"
tick:   .asciz "ticker: tick"
done:   .asciz "ticker: done"
