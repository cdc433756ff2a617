// poweroff: cpu0 starts cpus 1, 2 and 3 with PSCI CPU_ON; cpus 2 and 3 and cpu0 then spin
// forever, and cpu1 powers the machine off: PSCI SYSTEM_OFF from any CPU ends them all.

    .text
main:
    adr     x0, banner
    bl      puts
    mov     x19, #1
1:  mov     x1, x19
    adr     x2, secondary
    mov     x3, x19                 // context id: the CPU's number
    bl      cpu_on                  // CPU_ON
    add     x19, x19, #1
    cmp     x19, #4
    b.lo    1b
2:  b       2b                      // cpu0 spins

secondary:
    cmp     x0, #1
    b.eq    3f
4:  b       4b                      // cpus 2 and 3 spin
3:  mov     x5, #0x100000           // cpu1: wait a little so the others run, then power off
5:  subs    x5, x5, #1
    b.ne    5b
    adr     x0, off
    bl      puts
    b       system_off

    .section .rodata
banner:     .asciz "poweroff: cpu0 starts three CPUs; cpu1 will power off"
off:        .asciz "poweroff: cpu1 calls SYSTEM_OFF while three CPUs spin"

