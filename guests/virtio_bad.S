// virtio_bad: a hostile virtio-blk driver. It sets the device up as the specification says,
// then makes available a request whose header is at the GIC distributor's address (MMIO, not
// RAM), then a descriptor chain that loops on itself, ringing the doorbell after each. It
// waits for the device to say DEVICE_NEEDS_RESET, resets it and powers off. Belfry's log must
// show the device failing that one request, then needing a reset, naming the VM and device.

    .equ VIRTIO, 0x0a000000
    .equ QUEUE, 0x40100000           // descriptors; available ring +0x1000; used ring +0x2000

    .text
main:
    adr     x0, banner
    bl      puts
    movz    x20, #0x0a00, lsl #16    // the slot's registers
    ldr     w1, [x20, #0x008]        // DeviceID: 2, a block device
    cmp     w1, #2
    b.ne    fail
    mov     w1, #3                   // ACKNOWLEDGE | DRIVER
    str     w1, [x20, #0x070]
    mov     w1, #1
    str     w1, [x20, #0x024]        // DriverFeaturesSel = 1
    str     w1, [x20, #0x020]        // VERSION_1
    mov     w1, #11                  // | FEATURES_OK
    str     w1, [x20, #0x070]
    str     wzr, [x20, #0x030]       // QueueSel 0
    mov     w1, #8
    str     w1, [x20, #0x038]        // QueueNum 8
    movz    x21, #0x4010, lsl #16    // QUEUE
    str     w21, [x20, #0x080]       // QueueDesc
    str     wzr, [x20, #0x084]
    add     x1, x21, #0x1000
    str     w1, [x20, #0x090]        // QueueDriver
    str     wzr, [x20, #0x094]
    add     x1, x21, #0x2000
    str     w1, [x20, #0x0a0]        // QueueDevice
    str     wzr, [x20, #0x0a4]
    mov     w1, #1
    str     w1, [x20, #0x044]        // QueueReady
    mov     w1, #15                  // | DRIVER_OK
    str     w1, [x20, #0x070]

    // Request 1: header at 0x0800_0000 (the GIC distributor), 512 data bytes, a status byte.
    movz    x1, #0x0800, lsl #16
    mov     w2, #16
    mov     w3, #1                   // NEXT
    mov     w4, #1
    bl      descriptor_0
    add     x1, x21, #0x3000
    mov     w2, #512
    mov     w3, #3                   // NEXT | WRITE
    mov     w4, #2
    add     x5, x21, #16
    bl      descriptor
    add     x1, x21, #0x4000
    mov     w2, #1
    mov     w3, #2                   // WRITE
    mov     w4, #0
    add     x5, x21, #32
    bl      descriptor
    mov     w1, #0xff
    add     x9, x21, #0x4000
    strb    w1, [x9]                 // the status byte, to see it written
    add     x6, x21, #0x1000
    strh    wzr, [x6, #4]            // ring[0] = head 0
    mov     w1, #1
    dsb     sy
    strh    w1, [x6, #2]             // idx 1
    dsb     sy
    str     wzr, [x20, #0x050]       // QueueNotify (a doorbell word)

    // Poll InterruptStatus (a register read: a VMM round trip each) until the used-buffer bit
    // says the request came back; then the used ring's index is 1.
    add     x7, x21, #0x2000
    movz    x8, #0x10, lsl #16
1:  ldr     w1, [x20, #0x060]
    tbnz    w1, #0, 2f
    subs    x8, x8, #1
    b.ne    1b
    b       fail
2:  str     w1, [x20, #0x064]        // InterruptACK
    ldrh    w1, [x7, #2]
    cmp     w1, #1
    b.ne    fail
    ldrb    w1, [x9]
    adr     x0, ioerr
    cmp     w1, #1                   // VIRTIO_BLK_S_IOERR
    b.eq    3f
    adr     x0, not_ioerr
3:  bl      puts

    // Request 2: a descriptor whose `next` is itself.
    add     x1, x21, #0x3000
    mov     w2, #16
    mov     w3, #1                   // NEXT
    mov     w4, #3                   // next: itself
    add     x5, x21, #48
    bl      descriptor
    mov     w1, #3
    strh    w1, [x6, #6]             // ring[1] = head 3
    mov     w1, #2
    dsb     sy
    strh    w1, [x6, #2]             // idx 2
    dsb     sy
    str     wzr, [x20, #0x050]

    // Wait for DEVICE_NEEDS_RESET (64) in the status register.
    movz    x8, #0x10, lsl #16
4:  ldr     w1, [x20, #0x070]
    tbnz    w1, #6, 5f
    subs    x8, x8, #1
    b.ne    4b
    b       fail
5:  adr     x0, needs_reset
    bl      puts
    str     wzr, [x20, #0x070]       // reset
    ldr     w1, [x20, #0x070]
    adr     x0, reset_done
    cbz     w1, 6f
    adr     x0, reset_failed
6:  bl      puts
    b       system_off

fail:
    adr     x0, failed
    bl      puts
    b       system_off

// descriptor_0 / descriptor: writes (x1 address, w2 length, w3 flags, w4 next) at x5 (at the
// table's start for descriptor_0).
descriptor_0:
    mov     x5, x21
descriptor:
    str     x1, [x5]
    str     w2, [x5, #8]
    strh    w3, [x5, #12]
    strh    w4, [x5, #14]
    ret

    .section .rodata
banner:       .asciz "virtio_bad: a hostile virtio-blk driver"
ioerr:        .asciz "virtio_bad: the request with its header at MMIO failed alone (IOERR)"
not_ioerr:    .asciz "virtio_bad: the request with its header at MMIO did not fail with IOERR"
needs_reset:  .asciz "virtio_bad: the looping chain put the device in DEVICE_NEEDS_RESET"
reset_done:   .asciz "virtio_bad: reset; powering off"
reset_failed: .asciz "virtio_bad: the reset did not clear the status"
failed:       .asciz "virtio_bad: the device did not answer"
