//! VCPUs: the syscalls' rules (thread binding, kick, interrupt, state) and the exit handling
//! that turns what the guest did into packets.
//!
//! A VCPU belongs to the thread that created it; `enter`, `read_state` and `write_state` from
//! another thread are BAD_STATE, and a thread has at most one VCPU. `kick` and `interrupt` work
//! from any thread.
//!
//! `enter` runs the guest until something needs the VMM: a MEM trap (the packet is returned,
//! and the next `enter` continues after the instruction), a kick (CANCELED), or an error.
//! BELL traps never leave `enter`: the packet goes into this VCPU's ring of the trap, the port
//! is notified, and the guest continues; if the ring is full the VCPU pauses until a packet is
//! dequeued (or it is kicked); if the port is closed, `enter` returns BAD_STATE and the next
//! `enter` continues after the instruction.

use super::exit::{Access, Exit, ExitCounts, ExitKind, EXIT_KINDS};
use super::guest::Guest;
use super::packet::{PortPacket, VcpuState, CPSR_USER_MASK};
use super::psci;
use super::ring::PushError;
use super::signals::Signals;
use super::trap::{DoorbellFilter, Trap, TrapKind, TrapMap};
use super::vmar::{Fault, GUEST_PHYSICAL_SIZE};
use super::{Status, ZxResult};
use crate::inject::GuestException;
use crate::sync;
use crate::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use alloc::collections::BTreeSet;
use alloc::sync::Arc;

/// `ZX_VCPU_STATE`.
pub const VCPU_STATE: u32 = 0;
/// `ZX_VCPU_IO`.
pub const VCPU_IO: u32 = 1;
/// Belfry extension: [`VcpuControl`], the guest PC and whether the instruction there is
/// skipped on the next entry (what the seL4 fault view's `restart` needs). Zircon defines no
/// kind with this value; unknown kinds stay INVALID_ARGS.
pub const BELFRY_VCPU_CONTROL: u32 = 0x4246_0001;
/// Belfry's extension to `zx_vcpu_read_state`: the VCPU's exits by kind, [`EXIT_KINDS`]
/// little-endian u64 counts in [`crate::object::exit::EXIT_KIND_NAMES`]' order (read only).
pub const BELFRY_VCPU_EXITS: u32 = 0x4246_0002;
/// Belfry's extension to `zx_vcpu_write_state`: one general-purpose register, 16 bytes (index
/// 0..=30, then the value, little-endian u64s): how a VMM completes an emulated load without
/// copying the whole state twice (write only).
pub const BELFRY_VCPU_REGISTER: u32 = 0x4246_0003;

/// The state behind [`BELFRY_VCPU_CONTROL`]: 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VcpuControl {
    /// The guest's program counter.
    pub pc: u64,
    /// Bit 0: the instruction at `pc` was emulated and is skipped on the next `enter`; clear
    /// it to re-execute the instruction (restart).
    pub flags: u64,
}

const _: () = assert!(size_of::<VcpuControl>() == 16);

pub use super::signals::NUM_INTERRUPTS;

/// Threads that own a VCPU.
static BOUND_THREADS: spin::Mutex<BTreeSet<u64>> = spin::Mutex::new(BTreeSet::new());

/// What the architecture keeps per VCPU besides `zx_vcpu_state_t`.
pub use crate::arch::VcpuArch;

/// The VCPU's register context, touched only by its own thread.
#[derive(Debug)]
pub struct Context {
    pub state: VcpuState,
    /// Guest PC (ELR_EL2 when the guest is not running).
    pub pc: u64,
    /// The instruction at `pc` was emulated (MEM trap, doorbell on a closed port): skip it on
    /// the next entry.
    pub skip_instruction: bool,
    pub arch: VcpuArch,
    /// The second access of a decoded load/store pair, reported by the next `enter`.
    pending_access: Option<(u64, Access)>,
    /// Applied to the base register when the emulated instruction is skipped: (register,
    /// bytes); register 31 is the stack pointer.
    pub writeback: Option<(u8, i64)>,
    /// The guest's traps as this VCPU last saw them.
    pub traps: TrapCache,
    /// This VCPU's exits so far, by kind.
    pub exits: ExitCounts,
}

/// A VCPU's copy of its guest's trap map, so that an exit finds its trap without locking the
/// guest: the map as of `generation` (replaced when the guest's generation moves on), where
/// in it the last trapped access found its trap ([`TrapMap::find_hinted`]) and its doorbells'
/// filter.
#[derive(Debug)]
pub struct TrapCache {
    guest: Arc<Guest>,
    vcpu: usize,
    map: Arc<TrapMap>,
    generation: u64,
    hint: usize,
    filter: DoorbellFilter,
}

impl TrapCache {
    /// Where the filter's three words are, for the vector code that applies it.
    pub const FILTER_OFFSETS: [usize; 3] = {
        let base = core::mem::offset_of!(Self, filter);
        let [pages, bell_pages, words] = DoorbellFilter::OFFSETS;
        [base + pages, base + bell_pages, base + words]
    };

    /// The guest's current map (fetched again only when its generation moved on).
    #[inline(always)]
    fn current(&mut self) -> &TrapMap {
        if self.generation != self.guest.trap_generation() {
            self.refresh();
        }
        &self.map
    }

    #[cold]
    #[inline(never)]
    fn refresh(&mut self) {
        (self.generation, self.map) = self.guest.traps();
        self.filter = DoorbellFilter::of(&self.map);
    }

    /// A write to `address` rung in place, from the short exit once the filter let it through
    /// (the guest's state all live, nothing saved but its general registers): when `address`
    /// is in a BELL trap of the current map, its packet is pushed into this VCPU's ring and the
    /// port notified (`Some`: whether that woke a waiter), and the caller resumes the guest
    /// past the store. `None` when anything else is due: no trap, a MEM trap, a stale map
    /// (fetching it may free the old one), a full ring (the VCPU must wait) or a closed one
    /// (`enter` reports it); the full exit then handles the access, and nothing was pushed.
    /// A stale filter only sends a doorbell to the full exit, which refreshes it.
    pub fn ring_in_place(&mut self, address: u64) -> Option<bool> {
        if self.generation != self.guest.trap_generation() {
            return None;
        }
        let trap = self.map.find_hinted(address, &mut self.hint)?;
        if !matches!(trap.kind, TrapKind::Bell) {
            return None;
        }
        let (ring, port) = (trap.ring(self.vcpu)?, trap.port()?);
        // SAFETY: this VCPU's ring of the trap; only this VCPU's thread (the one inside
        // `enter`, whose guest exited into the short exit) produces into it.
        unsafe { ring.push(PortPacket::bell(trap.key, address)) }.ok()?;
        Some(port.notify())
    }
}

/// See the module documentation.
pub struct Vcpu {
    guest: Arc<Guest>,
    id: usize,
    thread: u64,
    bound: AtomicBool,
    signals: Signals,
    /// 1 + the index of the CPU this VCPU's thread runs `enter` on; 0 outside `enter`.
    running_on: AtomicUsize,
    /// The guest did something Belfry cannot serve and was killed: every later `enter` is
    /// BAD_STATE.
    dead: AtomicBool,
    /// An exception was delivered to the guest and logged: later ones are not.
    warned: AtomicBool,
    context: spin::Mutex<Context>,
    pub(super) handles: AtomicUsize,
}

impl core::fmt::Debug for Vcpu {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Vcpu").field("id", &self.id).field("thread", &self.thread).finish_non_exhaustive()
    }
}

impl Vcpu {
    /// `zx_vcpu_create` once the handle checks passed: binds the VCPU to the calling thread.
    pub fn new(guest: Arc<Guest>, entry: u64) -> ZxResult<Self> {
        if entry >= GUEST_PHYSICAL_SIZE {
            return Err(Status::INVALID_ARGS);
        }
        let thread = sync::current_thread();
        {
            let mut bound = BOUND_THREADS.lock();
            if bound.contains(&thread) {
                return Err(Status::BAD_STATE);
            }
            bound.insert(thread);
        }
        let id = match guest.allocate_vcpu() {
            Ok(id) => id,
            Err(status) => {
                BOUND_THREADS.lock().remove(&thread);
                return Err(status);
            }
        };
        let (generation, map) = guest.traps();
        let filter = DoorbellFilter::of(&map);
        let traps = TrapCache { guest: guest.clone(), vcpu: id, map, generation, hint: 0, filter };
        let context = Context {
            state: VcpuState::default(),
            pc: entry,
            skip_instruction: false,
            arch: VcpuArch::new(id, guest.vmar().vttbr()),
            pending_access: None,
            writeback: None,
            traps,
            exits: ExitCounts::default(),
        };
        Ok(Self {
            guest,
            id,
            thread,
            bound: AtomicBool::new(true),
            signals: Signals::new(),
            dead: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            running_on: AtomicUsize::new(0),
            context: spin::Mutex::new(context),
            handles: AtomicUsize::new(0),
        })
    }

    /// The VCPU's index within its guest.
    pub fn id(&self) -> usize {
        self.id
    }

    /// The guest.
    pub fn guest(&self) -> &Arc<Guest> {
        &self.guest
    }

    fn check_thread(&self) -> ZxResult {
        if sync::current_thread() != self.thread {
            return Err(Status::BAD_STATE);
        }
        Ok(())
    }

    /// `zx_vcpu_kick`: the current or next `enter` returns CANCELED.
    pub fn kick(&self) {
        self.signals.kick();
        // Pairs with the fence in `enter`: either `enter` sees the kick before it runs the
        // guest, or we see where it runs and interrupt that CPU.
        core::sync::atomic::fence(Ordering::SeqCst);
        if let Some(cpu) = self.running_on.load(Ordering::Relaxed).checked_sub(1) {
            crate::arch::interrupt_cpu(cpu);
        }
    }

    /// `zx_vcpu_interrupt`: marks `vector` pending and wakes the VCPU if it waits for one.
    pub fn interrupt(&self, vector: u32) -> ZxResult {
        if vector >= NUM_INTERRUPTS {
            return Err(Status::OUT_OF_RANGE);
        }
        self.signals.raise(vector);
        // A VCPU running on a CPU takes the interrupt at its next entry: make that now.
        core::sync::atomic::fence(Ordering::SeqCst);
        if let Some(cpu) = self.running_on.load(Ordering::Relaxed).checked_sub(1) {
            crate::arch::interrupt_cpu(cpu);
        }
        Ok(())
    }

    /// Belfry extension (a GICv2 distributor model): SGI `vector` (0..16) sent by VCPU `source`
    /// (0..8); on a GICv2 the guest reads the source with the interrupt (GICC_IAR.CPUID), and
    /// each source's SGI is pending once.
    pub fn interrupt_sgi(&self, vector: u32, source: u8) -> ZxResult {
        if vector >= 16 || source >= 8 {
            return Err(Status::OUT_OF_RANGE);
        }
        self.signals.raise_sgi(vector, source);
        core::sync::atomic::fence(Ordering::SeqCst);
        if let Some(cpu) = self.running_on.load(Ordering::Relaxed).checked_sub(1) {
            crate::arch::interrupt_cpu(cpu);
        }
        Ok(())
    }

    /// Belfry extension (the VMM's distributor model): the priority `vector` is delivered with,
    /// as the guest programmed it (lower is more urgent). Takes effect at the next entry.
    pub fn set_interrupt_priority(&self, vector: u32, priority: u8) -> ZxResult {
        if vector >= NUM_INTERRUPTS {
            return Err(Status::OUT_OF_RANGE);
        }
        self.signals.set_priority(vector, priority);
        Ok(())
    }

    /// Whether `vector` is pending.
    pub fn is_pending(&self, vector: u32) -> bool {
        self.signals.is_pending(vector)
    }

    /// `zx_vcpu_read_state`.
    pub fn read_state(&self, kind: u32, buffer: &mut [u8]) -> ZxResult {
        self.check_thread()?;
        if kind == BELFRY_VCPU_CONTROL && buffer.len() == size_of::<VcpuControl>() {
            let context = self.context.lock();
            buffer[..8].copy_from_slice(&context.pc.to_le_bytes());
            buffer[8..].copy_from_slice(&u64::from(context.skip_instruction).to_le_bytes());
            return Ok(());
        }
        if kind == BELFRY_VCPU_EXITS && buffer.len() == EXIT_KINDS * 8 {
            let exits = self.context.lock().exits;
            for (chunk, count) in buffer.chunks_exact_mut(8).zip(exits.0) {
                chunk.copy_from_slice(&count.to_le_bytes());
            }
            return Ok(());
        }
        if kind != VCPU_STATE || buffer.len() != size_of::<VcpuState>() {
            return Err(Status::INVALID_ARGS);
        }
        let state = self.context.lock().state;
        buffer.copy_from_slice(state_bytes(&state));
        Ok(())
    }

    /// `zx_vcpu_write_state`. `ZX_VCPU_IO` has no meaning on aarch64 (no port I/O): INVALID_ARGS.
    pub fn write_state(&self, kind: u32, buffer: &[u8]) -> ZxResult {
        self.check_thread()?;
        if kind == BELFRY_VCPU_CONTROL && buffer.len() == size_of::<VcpuControl>() {
            let mut context = self.context.lock();
            let word = |at: usize| u64::from_le_bytes(core::array::from_fn(|i| buffer[at + i]));
            context.pc = word(0);
            context.skip_instruction = word(8) & 1 != 0;
            return Ok(());
        }
        if kind == BELFRY_VCPU_REGISTER && buffer.len() == 16 {
            let word = |at: usize| u64::from_le_bytes(core::array::from_fn(|i| buffer[at + i]));
            let mut context = self.context.lock();
            let register = usize::try_from(word(0)).ok().and_then(|index| context.state.x.get_mut(index));
            let Some(register) = register else { return Err(Status::INVALID_ARGS) };
            *register = word(8);
            return Ok(());
        }
        if kind != VCPU_STATE || buffer.len() != size_of::<VcpuState>() {
            return Err(Status::INVALID_ARGS);
        }
        let mut state = VcpuState::default();
        state_bytes_mut(&mut state).copy_from_slice(buffer);
        state.cpsr &= CPSR_USER_MASK;
        state.padding1 = [0; 4];
        self.context.lock().state = state;
        Ok(())
    }

    /// `zx_vcpu_enter`.
    pub fn enter(&self) -> ZxResult<PortPacket> {
        let mut packet = PortPacket::default();
        self.enter_into(&mut packet).map(|()| packet)
    }

    /// `zx_vcpu_enter` with the packet written into the caller's `out` (as the syscall writes
    /// it into the caller's buffer): a `ZxResult<PortPacket>` returned by value is moved with a
    /// `memcpy` at every layer it passes (its payload sits at a 4-byte offset), so the exit
    /// path builds the packet where the VMM reads it. `out` is left as it was on an error.
    pub fn enter_into(&self, out: &mut PortPacket) -> ZxResult {
        self.enter_writing(None, out)
    }

    /// Belfry extension: `zx_vcpu_write_state(BELFRY_VCPU_REGISTER)` of general-purpose
    /// register `index` (0..=30) to `value`, then `zx_vcpu_enter`, as one call: how a VMM
    /// completes an emulated load and resumes the guest. An index past 30 is INVALID_ARGS and
    /// nothing is written or run; otherwise the write is done whatever `enter` then returns.
    pub fn enter_with_register(&self, index: u8, value: u64, out: &mut PortPacket) -> ZxResult {
        self.enter_writing(Some((index, value)), out)
    }

    fn enter_writing(&self, register: Option<(u8, u64)>, out: &mut PortPacket) -> ZxResult {
        self.check_thread()?;
        let mut context = self.context.lock();
        if let Some((index, value)) = register {
            let Some(x) = context.state.x.get_mut(usize::from(index)) else { return Err(Status::INVALID_ARGS) };
            *x = value;
        }
        // Relaxed: only `kill`, on this VCPU's own thread inside `enter`, sets it.
        if self.dead.load(Ordering::Relaxed) {
            return Err(Status::BAD_STATE);
        }
        self.running_on.store(crate::arch::current_cpu() + 1, Ordering::Relaxed);
        core::sync::atomic::fence(Ordering::SeqCst);
        let result = self.run_until_exit(&mut context, out);
        self.running_on.store(0, Ordering::Release);
        result
    }

    /// Runs the guest until an exit the VMM must see: its packet in `out`.
    fn run_until_exit(&self, context: &mut Context, out: &mut PortPacket) -> ZxResult {
        // Looked at before it is taken: it is almost always empty.
        if let Some((address, access)) = context.pending_access {
            context.pending_access = None;
            if self.on_access(context, address, access, out)? {
                return Ok(());
            }
        }
        loop {
            if self.signals.take_kick() {
                return Err(Status::CANCELED);
            }
            sync::before_guest();
            match crate::arch::run(context, &self.signals) {
                Exit::Access { address, access } => {
                    if self.on_access(context, address, access, out)? {
                        return Ok(());
                    }
                }
                Exit::AccessWithoutSyndrome { address, write, aarch32: true, far, .. }
                    if context.traps.map.find(address).is_some() || self.guest.trap_at(address).is_some() =>
                {
                    // Belfry decodes only A64: an A32/T32 access it would have to emulate
                    // gets the external abort a device that cannot take it would give.
                    self.deliver(
                        context,
                        GuestException::DataAbort { far, write },
                        "an AArch32 access without syndrome to a trapped page",
                        address,
                    );
                }
                Exit::AccessWithoutSyndrome { address, write, pc_address, far, .. } => {
                    if self.on_unsyndromed_access(context, address, write, pc_address, far, out)? {
                        return Ok(());
                    }
                }
                Exit::InstructionFetch { address, far } => {
                    self.on_fetch(context, address, GuestException::PrefetchAbort { far })?
                }
                Exit::TableWalk { address, far, write } => {
                    self.on_fetch(context, address, GuestException::DataAbort { far, write })?
                }
                Exit::Hypercall { .. } => {
                    context.exits.count(ExitKind::Hypercall);
                    let machine = PsciMachine { guest: &self.guest, id: self.id };
                    match psci::handle(&mut context.state, &machine) {
                        psci::Outcome::Continue => {}
                        psci::Outcome::Packet(packet) => {
                            *out = packet;
                            return Ok(());
                        }
                        psci::Outcome::Status(status) => return Err(status),
                    }
                }
                Exit::SendSgi { value } => {
                    context.exits.count(ExitKind::Sgi);
                    if let Some(packet) = self.sgi_packet(value) {
                        *out = packet;
                        return Ok(());
                    }
                }
                Exit::WaitForInterrupt { pending: false, deadline } => {
                    context.exits.count(ExitKind::Wait);
                    self.signals.wait_for_interrupt(deadline.unwrap_or(sync::INFINITE))
                }
                Exit::WaitForInterrupt { pending: true, .. } => context.exits.count(ExitKind::Wait),
                Exit::Interrupted => sync::preempt_point(),
                Exit::Emulated => {}
                Exit::Unhandled { class, syndrome, pc } => {
                    context.exits.count(ExitKind::Other);
                    crate::kernel_error!(
                        "guest killed: unhandled exit, EC {=u8:#04x} ({=str}), ISS {=u32:#x}, PC {=u64:#x}",
                        class,
                        stage2::syndrome::ExceptionClass::from_bits(class).name(),
                        syndrome,
                        pc
                    );
                    return Err(self.kill());
                }
                Exit::Unsupported => return Err(Status::NOT_SUPPORTED),
            }
        }
    }

    /// The VCPU INTERRUPT packet for a guest's ICC_SGI1R_EL1 write: `mask` has bit n for VCPU n
    /// (whose affinity is Aff0 = n), `vector` the SGI. IRM (bit 40) targets every other VCPU.
    fn sgi_packet(&self, value: u64) -> Option<PortPacket> {
        let vector = ((value >> 24) & 0xf) as u8;
        let mask = if value & (1 << 40) != 0 {
            (0..super::MAX_VCPUS_PER_GUEST as u64)
                .filter(|&id| id != self.id as u64 && self.guest.vcpu_exists(id))
                .fold(0, |mask, id| mask | (1 << id))
        } else if value & 0x00ff_00ff_00ff_0000 == 0 {
            // Aff3, Aff2 and Aff1 are 0 for every VCPU: the target list names Aff0 values.
            value & 0xffff
        } else {
            0
        };
        (mask != 0).then(|| PortPacket::vcpu_interrupt(0, mask, vector))
    }

    /// Marks the VCPU dead; returns the status `enter` reports for it.
    fn kill(&self) -> Status {
        self.dead.store(true, Ordering::Relaxed);
        Status::NOT_SUPPORTED
    }

    /// An instruction fetch (or a stage-1 table walk) that stage 2 did not satisfy: demand-page
    /// guest memory; outside it, the external abort `abort`; only running out of memory kills.
    /// A trapped page is never mapped (its accesses must keep reaching
    /// the trap): a fetch from it, or a walk into it, is the external abort `abort` delivered to
    /// the guest, as a device page that cannot be executed or walked would give.
    fn on_fetch(&self, context: &mut Context, address: u64, abort: GuestException) -> ZxResult {
        let execute = matches!(abort, GuestException::PrefetchAbort { .. });
        if self.guest.trap_at(address).is_some() {
            let what =
                if execute { "an instruction fetch from a trapped page" } else { "a table walk into a trapped page" };
            self.deliver(context, abort, what, address);
            return Ok(());
        }
        let (_, traps) = self.guest.traps();
        match self.guest.vmar().fault(address, false, execute, &traps) {
            Fault::Mapped => {
                context.exits.count(ExitKind::Page);
                Ok(())
            }
            Fault::Unmapped | Fault::Denied => {
                let what = if execute {
                    "an instruction fetch outside guest memory"
                } else {
                    "a page-table walk outside guest memory"
                };
                self.deliver(context, abort, what, address);
                Ok(())
            }
            fault => {
                crate::kernel_error!(
                    "guest killed: {=str} at IPA {=u64:#x} ({=str}), PC {=u64:#x}",
                    if execute { "instruction fetch" } else { "page-table walk" },
                    address,
                    fault_name(fault),
                    context.pc
                );
                Err(self.kill())
            }
        }
    }

    /// Delivers `exception` to the guest's EL1 for `what` at IPA `address`; the first time
    /// only, says so in the log (a guest repeating it cannot flood the log).
    fn deliver(&self, context: &mut Context, exception: GuestException, what: &'static str, address: u64) {
        context.exits.count(ExitKind::Abort);
        if !self.warned.swap(true, Ordering::Relaxed) {
            crate::kernel_warn!(
                "guest VCPU {=usize}: {=str} at IPA {=u64:#x}, PC {=u64:#x}: delivered to the guest as an external abort (logged once)",
                self.id,
                what,
                address,
                context.pc
            );
        }
        context.pending_access = None;
        crate::arch::inject(context, exception);
    }

    /// An access without an instruction syndrome: RAM is paged in and the instruction restarts;
    /// in a trap, the instruction is read from guest memory, decoded and emulated access by
    /// access (a pair gives two packets, one per `enter`), with the base register written back
    /// when it is skipped. `true`: a packet for the VMM is in `out`.
    fn on_unsyndromed_access(
        &self,
        context: &mut Context,
        address: u64,
        write: bool,
        pc_address: Option<u64>,
        far: u64,
        out: &mut PortPacket,
    ) -> ZxResult<bool> {
        if context.traps.current().find(address).is_none() {
            let access = Access::new(write, 8, 31, false, false).with_far(far);
            return self.on_access(context, address, access, out);
        }
        let mut word = [0u8; 4];
        let fetched = pc_address
            .and_then(|pc| self.guest.vmar().translate(pc))
            .is_some_and(|(vmo, offset, _)| vmo.read(offset, &mut word).is_ok());
        let instruction = u32::from_le_bytes(word);
        let decoded = fetched.then(|| stage2::insn::decode(instruction)).flatten();
        let Some(decoded) = decoded.filter(|d| d.load != write) else {
            crate::kernel_error!(
                "guest killed: access without syndrome at IPA {=u64:#x}, instruction {=u32:#010x} at PC {=u64:#x} not emulated",
                address,
                instruction,
                context.pc
            );
            return Err(self.kill());
        };
        let access = |index: usize| {
            let register = decoded.registers[index];
            let value = if write { context.state.register(register) } else { 0 };
            let value = if decoded.size == 8 { value } else { value & ((1 << (8 * u32::from(decoded.size))) - 1) };
            Access::new(write, decoded.size, register, decoded.sign_extend, decoded.sixty_four_bit)
                .with_value(value)
                .with_far(far)
        };
        let accesses = [access(0), access(1)];
        // Which element faulted: the instruction's own address (base register and addressing
        // mode) against the fault's virtual address. The fault need not be in the first
        // element: a pair may start in RAM and end in the trap.
        let base = match decoded.base {
            31 => crate::arch::stack_pointer(context),
            register => context.state.register(register),
        };
        let start = base.wrapping_add_signed(decoded.address_offset);
        let size = u64::from(decoded.size);
        let into = far.wrapping_sub(start);
        if into >= size * u64::from(decoded.count) || into % size != 0 {
            crate::kernel_error!(
                "guest killed: access without syndrome at VA {=u64:#x} (IPA {=u64:#x}) is not an element of instruction {=u32:#010x} at PC {=u64:#x} (it straddles a page into a trap)",
                far,
                address,
                instruction,
                context.pc
            );
            return Err(self.kill());
        }
        context.writeback = decoded.writeback.map(|delta| (decoded.base, delta));
        if into == 0 {
            let first = accesses[0];
            if decoded.count == 2 {
                // On the same page it follows the first; on the next one, stage 1 says where.
                let second = if (address & 0xfff) + size < 0x1000 {
                    address + size
                } else {
                    crate::arch::translate_data(context, start.wrapping_add(size)).unwrap_or(address + size)
                };
                context.pending_access = Some((second, accesses[1]));
            }
            let packet = self.on_access(context, address, first, out)?;
            if !packet {
                // A doorbell took the first half: the second follows at once.
                if let Some((second_address, second)) = context.pending_access.take() {
                    return self.on_access(context, second_address, second, out);
                }
            } else if context.pending_access.is_some() {
                // The VMM emulates the first half now and the second on the next `enter`; the
                // instruction is skipped after the second.
                context.skip_instruction = false;
            }
            return Ok(packet);
        }
        // The second element faulted: the first lies before the trap, in RAM or in another
        // trap. In RAM, Belfry performs it itself; in a trap, it is the first packet.
        let Some(first_address) = crate::arch::translate_data(context, start) else {
            crate::kernel_error!(
                "guest killed: the first element of a split access at VA {=u64:#x} does not translate",
                start
            );
            return Err(self.kill());
        };
        let first = accesses[0];
        if context.traps.map.find(first_address).is_some() {
            context.pending_access = Some((address, accesses[1]));
            let packet = self.on_access(context, first_address, first, out)?;
            if packet {
                context.skip_instruction = false;
            } else if let Some((second_address, second)) = context.pending_access.take() {
                return self.on_access(context, second_address, second, out);
            }
            return Ok(packet);
        }
        if !self.access_ram(context, first_address, first) {
            crate::kernel_error!(
                "guest killed: the first element of a split access at IPA {=u64:#x} is outside guest memory, PC {=u64:#x}",
                first_address,
                context.pc
            );
            return Err(self.kill());
        }
        self.on_access(context, address, accesses[1], out)
    }

    /// Performs one element of an emulated instruction on guest RAM: a store writes the
    /// register's bytes, a load reads them into the register (extended as the access says).
    fn access_ram(&self, context: &mut Context, address: u64, access: Access) -> bool {
        let Some((vmo, offset, perms)) = self.guest.vmar().translate(address) else { return false };
        let size = usize::from(access.size());
        if (address & 0xfff) as usize + size > 0x1000 {
            return false;
        }
        if access.write() {
            if perms & super::vmar::VM_PERM_WRITE == 0 {
                return false;
            }
            vmo.write(offset, &access.value.to_le_bytes()[..size]).is_ok()
        } else {
            if perms & super::vmar::VM_PERM_READ == 0 {
                return false;
            }
            let mut bytes = [0u8; 8];
            if vmo.read(offset, &mut bytes[..size]).is_err() {
                return false;
            }
            let value = super::packet::mem_read_result(access.control(), u64::from_le_bytes(bytes));
            if let Some(register) = context.state.x.get_mut(usize::from(access.register())) {
                *register = value;
            }
            true
        }
    }

    /// Handles an access stage 2 did not satisfy; `true` (its packet in `out`) leaves `enter`.
    /// Inline: a MEM trap's packet is built in the run loop; the rest is out of line.
    #[inline(always)]
    fn on_access(&self, context: &mut Context, address: u64, access: Access, out: &mut PortPacket) -> ZxResult<bool> {
        context.traps.current();
        // Borrowed, not cloned: only other fields of `context` change while the trap is in use.
        let Some(trap) = context.traps.map.find_hinted(address, &mut context.traps.hint) else {
            return self.on_memory_fault(context, address, access);
        };
        context.exits.count(ExitKind::Trap);
        match trap.kind {
            TrapKind::Bell => return self.on_bell(trap, &mut context.skip_instruction, address, access),
            TrapKind::Mem => {}
        }
        context.skip_instruction = true;
        let data = if access.write() { access.value } else { 0 };
        *out = PortPacket::mem_words(trap.key, address, access.control(), data);
        Ok(true)
    }

    /// [`Vcpu::on_access`] where no trap covers the address: guest memory not yet mapped, or
    /// nothing there.
    #[inline(never)]
    fn on_memory_fault(&self, context: &mut Context, address: u64, access: Access) -> ZxResult<bool> {
        match self.guest.vmar().fault(address, access.write(), false, &context.traps.map) {
            Fault::Mapped => {
                context.exits.count(ExitKind::Page);
                Ok(false)
            }
            // Nothing behind the address, or memory that does not permit the access: the
            // synchronous external abort a board gives, taken by the guest's own EL1.
            Fault::Unmapped | Fault::Denied => {
                let what = if access.write() { "a write outside guest memory" } else { "a read outside guest memory" };
                let abort = GuestException::DataAbort { far: access.far, write: access.write() };
                self.deliver(context, abort, what, address);
                Ok(false)
            }
            fault => {
                crate::kernel_error!(
                    "guest killed: {=str} of {=u8} bytes at IPA {=u64:#x} ({=str}), PC {=u64:#x}",
                    if access.write() { "write" } else { "read" },
                    access.size(),
                    address,
                    fault_name(fault),
                    context.pc
                );
                Err(self.kill())
            }
        }
    }

    /// [`Vcpu::on_access`] of a BELL trap (one the short exit left to the full one); `skip`
    /// is the context's `skip_instruction`.
    #[inline(never)]
    fn on_bell(&self, trap: &Trap, skip: &mut bool, address: u64, access: Access) -> ZxResult<bool> {
        if !access.write() {
            return Err(Status::NOT_SUPPORTED);
        }
        let (Some(ring), Some(port)) = (trap.ring(self.id), trap.port()) else {
            return Err(Status::INTERNAL);
        };
        loop {
            // SAFETY: this VCPU's ring of the trap; only this VCPU's thread (the one inside
            // `enter`, checked above) produces into it.
            match unsafe { ring.push(PortPacket::bell(trap.key, address)) } {
                Ok(()) => {
                    port.notify();
                    *skip = true;
                    return Ok(false);
                }
                Err(PushError::Closed) => {
                    *skip = true;
                    return Err(Status::BAD_STATE);
                }
                Err(PushError::Full) => {
                    let kicked = || self.signals.is_kicked();
                    if !ring.wait_for_space(sync::INFINITE, kicked) && self.signals.take_kick() {
                        // The access re-executes (and rings again) on the next enter.
                        return Err(Status::CANCELED);
                    }
                }
            }
        }
    }

    /// The last handle closed: the thread may create another VCPU.
    pub(super) fn on_zero_handles(&self) {
        self.unbind();
    }

    fn unbind(&self) {
        if self.bound.swap(false, Ordering::AcqRel) {
            BOUND_THREADS.lock().remove(&self.thread);
        }
    }

    /// Test hook: the architecture context (the host's scripted guest).
    pub fn with_context<R>(&self, f: impl FnOnce(&mut Context) -> R) -> R {
        f(&mut self.context.lock())
    }
}

impl Drop for Vcpu {
    fn drop(&mut self) {
        self.unbind();
        self.guest.release_vcpu(self.id);
    }
}

/// PSCI's view of this VCPU's guest.
struct PsciMachine<'a> {
    guest: &'a Guest,
    id: usize,
}

impl psci::Machine for PsciMachine<'_> {
    fn power(&self, target: u64) -> Option<psci::Power> {
        self.guest.power(target)
    }

    fn claim(&self, target: u64) -> bool {
        self.guest.claim(target)
    }

    fn turn_off_self(&self) {
        self.guest.turn_off(self.id);
    }

    fn is_entry_point(&self, entry: u64) -> bool {
        entry.is_multiple_of(4)
            && self.guest.trap_at(entry).is_none()
            && self.guest.vmar().translate(entry).is_some_and(|(_, _, perms)| perms & super::vmar::VM_PERM_EXECUTE != 0)
    }
}

fn fault_name(fault: Fault) -> &'static str {
    match fault {
        Fault::Mapped => "mapped",
        Fault::Unmapped => "outside guest memory",
        Fault::Denied => "not permitted by the mapping",
        Fault::NoMemory => "out of memory",
    }
}

fn state_bytes(state: &VcpuState) -> &[u8] {
    // SAFETY: `VcpuState` is `repr(C)` plain data without implicit padding (explicit padding
    // field, checked size 264).
    unsafe { core::slice::from_raw_parts((state as *const VcpuState).cast::<u8>(), size_of::<VcpuState>()) }
}

fn state_bytes_mut(state: &mut VcpuState) -> &mut [u8] {
    // SAFETY: as above; every byte pattern is a valid `VcpuState`.
    unsafe { core::slice::from_raw_parts_mut((state as *mut VcpuState).cast::<u8>(), size_of::<VcpuState>()) }
}
