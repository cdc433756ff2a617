//! Guests running under Belfry on every board: DESIGN.md Appendix A (Zircon's hypervisor
//! tests) and Belfry's own cases. Each case boots a fresh QEMU, runs one guest program through
//! the test kit (`testkit::suite`, linked into the test firmware) and passes on its exact log lines plus exit code 0.
//!
//! Every item of Appendix A (1 to 22) is here; item 23, the trap map rules, is a kernel unit
//! test (`el2::object::trap`), as in Zircon. The host tests (`el2/tests/*.rs`) cover the same
//! API rules without guest code.

use belfry_system_tests::*;

/// 1. VcpuEnter.
#[test]
fn vcpu_enter() {
    run_guest_everywhere("vcpu-enter", &["vcpu-enter: MEM packet key 0x0, addr 0xfff000, size 8, read false, xt 31"]);
}

/// 2. VcpuKick, across CPUs: the running guest is interrupted by the wake SGI.
#[test]
fn vcpu_kick() {
    run_guest_everywhere(
        "kick",
        &["kick: a guest spinning on cpu0, kicked from cpu1: enter returned ZX_ERR_CANCELED(-23)"],
    );
}

/// Belfry's doorbell words: a BELL on one word of a MEM trap's page (a virtio-mmio QueueNotify).
#[test]
fn bell_words_inside_a_mem_trap() {
    run_guest_everywhere(
        "bell-words",
        &["bell-words: word 0xffe050 rang BELL key 0xbe11 twice (4- and 1-byte stores), 0xffe054 stayed MEM"],
    );
}

/// 4. GuestSetTrapWithMem.
#[test]
fn guest_set_trap_with_mem() {
    run_guest_everywhere("set-trap-mem", &["set-trap-mem: MEM packet key 0x1234 at 0xffe000, then a clean exit"]);
}

/// 5. GuestSetTrapWithBell.
#[test]
fn guest_set_trap_with_bell() {
    run_guest_everywhere(
        "set-trap-bell",
        &["set-trap-bell: the guest ran to its exit; the port holds BELL key 0x1234 addr 0xffe000"],
    );
}

/// 6 and 7. GuestSetTrapWithBellDrop / GuestSetTrapWithBellAndUser.
#[test]
fn guest_set_trap_with_bell_drop() {
    run_guest_everywhere(
        "set-trap-bell-drop",
        &["set-trap-bell-drop: guest destroyed with a BELL queued; the user packet with the same key survived"],
    );
}

/// 9. GuestSetTrapClosePort.
#[test]
fn guest_set_trap_close_port() {
    run_guest_everywhere("close-port", &["close-port: enter returned BAD_STATE, then the guest exited cleanly"]);
}

/// 11. VcpuInterruptOutOfBounds.
#[test]
fn vcpu_interrupt_out_of_bounds() {
    run_guest_everywhere(
        "interrupt-out-of-bounds",
        &["interrupt-out-of-bounds: ZX_ERR_OUT_OF_RANGE(-14), and the guest still ran to its exit"],
    );
}

/// 12. VmarProtect.
#[test]
fn vmar_protect() {
    run_guest_everywhere(
        "vmar-protect",
        &["vmar-protect: guest page 0 made read+execute; the guest still ran to its exit"],
    );
}

/// 13. VcpuReadWriteState: x[i] = 2i, sp = 128, cpsr = Z and C after `cmp sp, #128`.
#[test]
fn vcpu_read_write_state() {
    run_guest_everywhere("read-write-state", &["read-write-state: x1 2, x30 60, sp 128, cpsr 0x60000000"]);
}

/// 19. VcpuPsciSystemOff (SMC conduit) and VcpuPsciSystemReset (HVC conduit).
#[test]
fn vcpu_psci_system_off_and_reset() {
    run_guest_everywhere("psci-system-off", &["psci: vcpu_enter returned ZX_ERR_UNAVAILABLE(-28)"]);
    run_guest_everywhere("psci-system-reset", &["psci: vcpu_enter returned ZX_ERR_CANCELED(-23)"]);
}

/// 20. VcpuWriteStateIo.
#[test]
fn vcpu_write_state_io() {
    run_guest_everywhere("write-state-io", &["write-state-io: ZX_ERR_INVALID_ARGS(-10)"]);
}

/// 21. DataCacheSetWayOperations.
#[test]
fn data_cache_set_way_operations() {
    run_guest_everywhere("set-way", &["set-way: dc csw, cisw and isw were emulated"]);
}

/// Demand paging: a guest that touches every page of its 16 MiB gets each one mapped on its
/// first touch, and its stores land in the VMO.
#[test]
fn demand_paging_of_all_guest_memory() {
    run_guest_everywhere(
        "touch-all-memory",
        &["touch-all-memory: 4094 pages mapped on demand; the word at 0x123000 reads 0x123000"],
    );
}

/// A load from, and a branch to, an address with nothing behind it are synchronous external
/// aborts taken by the guest's own EL1 (a data abort and a prefetch abort, as a board without
/// memory there gives); the guest carries on. Belfry says so once per VCPU.
#[test]
fn a_stray_access_is_an_abort_the_guest_takes() {
    run_guest_everywhere(
        "stray",
        &["stray: a load from IPA 0x40000000 took ESR_EL1 0x96000010 FAR_EL1 0x40000000, a branch there ESR_EL1 0x86000010 FAR_EL1 0x40000000; the guest carried on to its exit"],
    );
}

/// Setting a trap on a page the guest already touched takes effect at once.
#[test]
fn a_trap_set_on_touched_memory_takes_effect() {
    run_guest_everywhere(
        "trap-after-touch",
        &["trap-after-touch: after the trap was set, the store gave a MEM packet key 0x1234 at 0xffe000"],
    );
}

/// MMIO through a MEM trap: loads of every size, zero- and sign-extended into W and X
/// registers and into XZR, completed by the VMM's fault view; stores of every size and of XZR.
#[test]
fn mmio_of_every_size_and_extension() {
    run_guest_everywhere(
        "mmio",
        &[
            "mmio: w1 0x81 w2 0xffffff81 x3 0xffffffffffffff81 w4 0x8382 x5 0xffffffffffff8382",
            "mmio: w6 0x87868584 x7 0xffffffff87868584 x8 0x8f8e8d8c8b8a8988; 9 reads",
            "mmio: write of 1 bytes at +16 data 0x88",
            "mmio: write of 2 bytes at +18 data 0x7788",
            "mmio: write of 4 bytes at +20 data 0x55667788",
            "mmio: write of 8 bytes at +24 data 0x1122334455667788",
            "mmio: write of 8 bytes at +32 data 0x0",
        ],
    );
}

/// Accesses without an instruction syndrome (ISV = 0) through a MEM trap: STP, LDP, a
/// pre-indexed LDR, a post-indexed STR and LDPSW are decoded from guest memory and emulated
/// access by access, with the base register written back.
#[test]
fn load_store_pairs_and_writeback_forms() {
    run_guest_everywhere(
        "mmio-pair",
        &[
            "mmio-pair: x1 0x8786858483828180 x2 0x8f8e8d8c8b8a8988 x3 0x8f8e8d8c8b8a8988 x4 0xffffffff93929190 x5 0xffffffff97969594; base x6 0xffe010; 5 reads",
            "mmio-pair: write of 8 bytes at +16 data 0x1122334455667788",
            "mmio-pair: write of 8 bytes at +24 data 0x99aabbccddeeff00",
            "mmio-pair: write of 4 bytes at +8 data 0x55667788",
        ],
    );
}

/// The `cargo xtask run` demo: a guest prints through the emulated PL011 (its lines reach
/// Belfry's log tagged with the guest), rings a doorbell that a VMM thread on cpu1 serves from
/// a port by injecting interrupt 40, takes the interrupt, and powers off with PSCI SYSTEM_OFF.
#[test]
fn the_demo_guest() {
    for board in Board::ALL {
        let outcome = boot_scenario(board, "guest:demo");
        expect_exit(&outcome, exit_code::SUCCESS);
        for line in [
            "vmm: starting guest 1 (demo) at 0x0 with a PL011 at 0x9000000",
            "guest 1: Hello from the Belfry demo guest!",
            "guest 1: It prints through an emulated PL011, rings a doorbell, takes an interrupt and powers off.",
            "vmm: guest 1 took interrupt 40 and acknowledged it",
            "vmm: guest 1 exited: vcpu_enter returned ZX_ERR_UNAVAILABLE(-28)",
            "vmm: guest 1 powered off (PSCI SYSTEM_OFF)",
        ] {
            expect_line(&outcome, Some(0), line);
        }
        expect_line(&outcome, Some(1), "vmm: doorbell 0xd00b rung at 0xa000000, served on cpu1");
        expect_line(&outcome, Some(1), "vmm: interrupt 40 injected from cpu1: ZX_OK(0)");
    }
}

/// VcpuFp (Appendix A item 18), with lazy switching: two guests' VCPUs on one CPU both use
/// d0; each reads back its own value.
#[test]
fn vcpu_fp_lazy_switch() {
    run_guest_everywhere(
        "fp",
        &[
            "fp: the second guest, on the same CPU, read back 0xfedcba9876543210",
            "fp: the first guest read back 0x123456789abcdef after the other guest used FP",
        ],
    );
}

/// Pointer-authentication keys switched per VCPU, loaded only once a VCPU uses them: two
/// guests on one CPU each read their own key (0 before setting one, though the CPU holds the
/// other's), and each signs alike before and after the other's turn. `rpi4`'s Cortex-A72 has no
/// FEAT_PAuth: the scenario says so and runs nothing.
#[test]
fn pointer_authentication_keys_per_vcpu() {
    for board in Board::ALL {
        let outcome = boot_scenario(board, "guest:pauth-keys");
        expect_exit(&outcome, exit_code::SUCCESS);
        let line = if board == Board::Rpi4 {
            "pauth-keys: no FEAT_PAuth on this CPU: nothing to switch"
        } else {
            "pauth-keys: 2 guests on one cpu: each read key 0 before setting its own, each signed alike before and after the other's turn and read its own key back"
        };
        expect_line(&outcome, Some(0), line);
        expect_line(&outcome, Some(0), "guest scenario pauth-keys: passed");
    }
}

/// 22. EnableMmu / DisableMmu.
#[test]
fn enable_and_disable_mmu() {
    run_guest_everywhere(
        "mmu",
        &["mmu: written with the MMU off, read 0xdeadbeef with it on and 0xdeadbeef off again"],
    );
}

/// Isolation: while a guest counts in its memory on cpu1, guests on cpu0 store to its frame's
/// physical address and to Belfry's image address (as their IPAs) and read a register their
/// CPU does not have: a store beyond the attacker's memory is an external abort in the
/// attacker, one within it lands in its own memory, the register read an exception there; the
/// counting guest goes on, memory intact.
#[test]
fn hostile_guests_leave_the_others_running_and_intact() {
    run_guest_everywhere(
        "isolation",
        &[
            "isolation: stray stores aborted in or stayed in their guests, a missing register an exception there; the counting guest went on (true) with its memory intact (true)",
        ],
    );
}

/// 14. VcpuInterrupt: vector 32 injected before `enter` is taken at VBAR_EL1 + 0x280.
#[test]
fn vcpu_interrupt() {
    run_guest_everywhere(
        "interrupt",
        &["interrupt: vector 32 injected before enter; the guest took it at VBAR+0x280 (PC 0xa84)"],
    );
}

/// 15. VcpuWfi: WFI with an expired virtual timer does not block.
#[test]
fn vcpu_wfi_with_an_expired_timer() {
    run_guest_everywhere("wfi-timer", &["wfi-timer: WFI with an expired virtual timer did not block"]);
}

/// VcpuWfiPendingInterrupt (Appendix A item 16): with 32 and 33 injected, the handler
/// acknowledges 32 (ICC_IAR1_EL1 on GICv3, GICC_IAR of the GICV frame on GICv2) and its WFI
/// does not block while 33 is pending.
#[test]
fn vcpu_wfi_with_a_pending_interrupt() {
    run_guest_everywhere(
        "wfi-pending",
        &["wfi-pending: the guest acknowledged interrupt 32 and its WFI did not block while the other was pending"],
    );
}

/// 17. VcpuWfiAarch32: WFI at AArch32 EL0, then a 4-byte MEM exit with data 0 from AArch32.
#[test]
fn vcpu_wfi_aarch32() {
    run_guest_everywhere(
        "wfi-aarch32",
        &["wfi-aarch32: after WFI at AArch32 EL0, MEM exit at 0xfff000: 4 bytes, read false, data 0x0"],
    );
}

/// VcpuFpAarch32 (Appendix A item 18): FP at AArch32 EL0 traps to the guest's EL1, which
/// enables it; Belfry's lazy switch then loads the VCPU's FP state.
#[test]
fn vcpu_fp_aarch32() {
    run_guest_everywhere(
        "fp-aarch32",
        &["fp-aarch32: AArch32 EL0 moved 0x1234 through s0 after its EL1 enabled FP (4-byte store)"],
    );
}

/// 3. VcpuInvalidThreadReuse.
#[test]
fn vcpu_invalid_thread_reuse() {
    run_guest_everywhere("thread-reuse", &["thread-reuse: a second vcpu_create on this thread: ZX_ERR_BAD_STATE(-20)"]);
}

/// 8. GuestSetTrapWithBellAndMaxUser.
#[test]
fn guest_set_trap_with_bell_and_max_user() {
    run_guest_everywhere(
        "bell-max-user",
        &["bell-max-user: 2048 user packets filled the port; the doorbell still arrived (1)"],
    );
}

/// 10. VcpuUseAfterThreadExits / VcpuDeleteFromOtherThread.
#[test]
fn vcpu_use_after_thread_exits() {
    run_guest_everywhere(
        "thread-exits",
        &["thread-exits: after the owning thread ended: interrupt ZX_OK(0), enter ZX_ERR_BAD_STATE(-20), close ZX_OK(0)"],
    );
}

/// `vcpu_interrupt` from another CPU reaches a guest that is running (not in WFI) at once: the
/// running CPU is sent the wake SGI, which makes the guest exit and re-enter with the interrupt.
#[test]
fn interrupt_to_a_running_vcpu_from_another_cpu() {
    run_guest_everywhere(
        "interrupt-running",
        &["interrupt-running: interrupt 48 from cpu3 reached the guest running on cpu0"],
    );
}

/// The EL1 physical timer, emulated per VCPU (RTOS guests use it): TVAL and CTL read as the
/// architecture says, and PPI 30 arrives at (never before) its deadline, from WFI and while
/// the guest spins.
#[test]
fn the_el1_physical_timer_fires_at_its_deadline() {
    run_guest_everywhere(
        "physical-timer",
        &["physical-timer: TVAL 0x7fff0000 read back below it and above 0: true; CTL disabled 0x0; 4 ticks of INTID 30 (2 from WFI, 2 running), 0 before the deadline; CTL in the handler 0x5"],
    );
}

/// F1/F10: 100 000 CPU_ON calls for a VCPU already on start nothing (ALREADY_ON, DEN0022), an
/// MPIDR no VCPU can have is INVALID_PARAMETERS (and no longer ends the boot VCPU's service),
/// an entry outside guest memory INVALID_ADDRESS, and the SMC32 call ignores the upper halves.
#[test]
fn cpu_on_storm() {
    run_guest_everywhere(
        "cpu-on-storm",
        &["cpu-on-storm: CPU_ON 0, then 100000 of 100000 ALREADY_ON; MPIDR 0x100 -2, entry outside RAM -9, SMC32 with high garbage 0, AFFINITY_INFO 0; 2 VCPUs started"],
    );
}

/// The residue test (F2: ICC_AP0R0_EL1 and the other active-priority registers; F4: DISR_EL1
/// and the PMU): what one guest writes into any register it can reach, the next guest on that
/// CPU does not see. The counts are per board: GICv3 shows 8 ICC registers, GICv2 5 GICV ones;
/// the Cortex-A72 has no DISR_EL1 (the guest's read UNDEFs at its own EL1). MDSCR_EL1 is VCPU
/// state since the guest's debug is switched (one more changed register than when it was RAZ/WI).
#[test]
fn residue() {
    for (board, registers, changed) in [(Board::Virt, 46, 34), (Board::VirtGicv2, 43, 31), (Board::Rpi4, 43, 30)] {
        let outcome = boot_scenario(board, "guest:residue");
        expect_exit(&outcome, exit_code::SUCCESS);
        expect_line(
            &outcome,
            Some(0),
            &format!("residue: {registers} registers read by a fresh guest, changed {changed} of them in the next, 0 leaked to a third on the same CPU"),
        );
        expect_line(&outcome, Some(0), "guest scenario residue: passed");
    }
}

/// F3: a trapped page is never mapped: an instruction fetch from it and a stage-1 table walk
/// into it are synchronous external aborts delivered to the guest (EC 0x21 and 0x25, FSC
/// 0x10), and a store to it afterwards is still a MEM packet.
#[test]
fn a_trapped_page_is_never_mapped() {
    run_guest_everywhere(
        "trap-fetch",
        &["trap-fetch: fetch from the trapped page: ESR_EL1 0x86000010, FAR_EL1 0xffe000, ELR_EL1 0xffe000; the store after it a MEM packet; walk into it: ESR_EL1 0x96000010, FAR_EL1 0xffffff8000000000"],
    );
}

/// F7: WFIT's timeout ends the wait (it was a WFI without one). The Cortex-A72 of the Pi 4
/// has no FEAT_WFxT (WFIT is UNDEFINED there), so this runs on the `virt` boards.
#[test]
fn wfit_returns_at_its_timeout() {
    for board in [Board::Virt, Board::VirtGicv2] {
        let outcome = boot_scenario(board, "guest:wfit");
        expect_exit(&outcome, exit_code::SUCCESS);
        expect_line(&outcome, Some(0), "wfit: WFIT with a timeout 200000 ticks ahead returned by it: true");
        expect_line(&outcome, Some(0), "guest scenario wfit: passed");
    }
}

/// F9: an AArch32 access without syndrome (STM) to a trapped page is delivered to the guest as
/// an external data abort from a lower EL (EC 0x24, WnR, FSC 0x10), and r0 is untouched.
#[test]
fn an_aarch32_access_without_syndrome_is_an_abort() {
    run_guest_everywhere(
        "aarch32-stm",
        &["aarch32-stm: STM at AArch32 EL0 into the trapped page: ESR_EL1 0x92000050, FAR_EL1 0xffe000, r0 7"],
    );
}

/// F5: the run's end and status are Belfry's alone: a guest's semihosting SYS_WRITE0 and
/// SYS_EXIT are undefined instructions at its own EL1 (QEMU runs without semihosting), nothing
/// reaches the host, and the run ends with Belfry's exit line.
#[test]
fn a_guest_cannot_use_semihosting() {
    run_guest_everywhere(
        "semihosting",
        &["semihosting: the guest's SYS_WRITE0 and SYS_EXIT were 2 undefined instructions at its EL1 (ESR_EL1 0x2000000)"],
    );
}

/// F8: a pair without syndrome that starts in RAM and ends in a trap is emulated element by
/// element at the right addresses: the RAM half on guest memory, the trapped half as a MEM
/// packet (it used to take the fault address for the start of the access).
#[test]
fn a_pair_straddling_ram_and_a_trap() {
    run_guest_everywhere(
        "mmio-straddle",
        &["mmio-straddle: RAM word 0x1122334455667788; device writes 1 (+0: 0x99aabbccddeeff00), reads 2; x1 0x1122334455667788 x2 0x8786858483828180 x3 0x1122334455667788 x4 0x8786858483828180 x7 0xffdff8"],
    );
}
