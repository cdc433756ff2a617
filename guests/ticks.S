// ticks: a static arm64 Linux program (not a Belfry test guest) that prints the virtual
// counter, CNTVCT_EL0, and its frequency, CNTFRQ_EL0, in decimal ("N F") and exits. The Linux
// initramfs runs it as its boot mark; under `-icount shift=0` they convert exactly into
// guest time.

    .text
    .global _start
_start:
    isb
    mrs     x6, cntvct_el0
    mrs     x0, cntfrq_el0
    adr     x1, end                 // digits are written backwards from `end`
    mov     x2, #10
    mov     w3, #'\n'
    strb    w3, [x1, #-1]!
    bl      decimal                 // the frequency, last
    mov     w3, #' '
    strb    w3, [x1, #-1]!
    mov     x0, x6
    bl      decimal                 // the count, first
    adr     x2, end
    sub     x2, x2, x1              // length
    mov     x0, #1                  // stdout
    mov     x8, #64                 // write
    svc     #0
    mov     x0, #0
    mov     x8, #93                 // exit
    svc     #0
    b       .

// decimal: writes x0 in decimal backwards before x1 (x1 moves down); x2 = 10. Clobbers x4, x5.
decimal:
1:  udiv    x4, x0, x2
    msub    x5, x4, x2, x0          // x5 = x0 % 10
    add     w5, w5, #'0'
    strb    w5, [x1, #-1]!
    mov     x0, x4
    cbnz    x0, 1b
    ret

    .data
buffer:
    .space  48
end:
