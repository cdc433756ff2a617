// Shared by the test guests, assembled ahead of each: the arm64 Image header, a console on
// QEMU virt's PL011 and the PSCI calls. Each guest's code starts at `main`.

    .section .text.head, "ax"
    .global _start
_start:
    b       main                    // code0
    .long   0                       // code1
    .quad   0                       // text_offset
    .quad   _end                    // image_size (linked at 0)
    .quad   0xa                     // flags: little-endian, 4 KiB pages, anywhere in RAM
    .quad   0
    .quad   0
    .quad   0
    .ascii  "ARM\x64"               // magic
    .long   0

    .text
// puts: writes the NUL-terminated string at x0 and a newline. Clobbers x0, x9-x11.
puts:
    movz    x9, #0x0900, lsl #16
1:  ldrb    w10, [x0], #1
    cbz     w10, 3f
2:  ldr     w11, [x9, #0x18]        // UARTFR
    tbnz    w11, #5, 2b             // TXFF: wait while the FIFO is full
    str     w10, [x9]               // UARTDR
    b       1b
3:  mov     w10, #'\n'
4:  ldr     w11, [x9, #0x18]
    tbnz    w11, #5, 4b
    str     w10, [x9]
    ret

// cpu_on: PSCI CPU_ON (SMC64) over HVC for the CPU in x1, entered at x2 with x3 in its x0;
// returns PSCI's answer in x0.
cpu_on:
    movz    w0, #0x0003
    movk    w0, #0xc400, lsl #16
    hvc     #0
    ret

// system_off: PSCI SYSTEM_OFF over HVC; does not return.
system_off:
    movz    w0, #0x0008
    movk    w0, #0x8400, lsl #16
    hvc     #0
    b       .
