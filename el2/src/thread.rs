//! EL2 threads and the per-CPU scheduler (the firmware side of [`crate::sync`]).
//!
//! Each physical CPU has a run queue. A thread belongs to one CPU for its whole life; it runs
//! until it blocks (a [`WaitQueue`] wait: `port_wait`, a VCPU's WFI, a full trap ring) or
//! exits, and EL2 code is never preempted. Waking a thread puts it back on its CPU's run queue
//! and, when that is another CPU, sends it the wake SGI; a CPU with nothing to run sleeps in
//! WFI on the stack of the thread that blocked last.
//!
//! Invariants: a CPU's `current` and `previous` slots are touched only by that CPU, with
//! interrupts masked (always, at EL2); a thread's saved context is written only by its own CPU
//! while switching away from it, and read only by its own CPU while switching to it. A thread's
//! state moves BLOCKED -> READY only by a successful compare-exchange, so it is queued once per
//! wake-up, and READY -> RUNNING only when the scheduler takes it from the queue. Stale queue
//! entries (a wake racing a timeout, or a waiter that saw itself READY before its waker pushed
//! it) are dropped when taken unless their thread is READY: a thread that blocked again waits
//! for its next wake-up, and one that exited is never resumed.

use crate::arch::aarch64::mmu::{stack_layout, GUARD_SIZE, THREAD_SLOTS, THREAD_SLOT_SIZE};
use crate::arch::aarch64::switch::{initial_context, switch_context, SwitchContext};
use crate::arch::aarch64::{cpu, timer};
use crate::machine::MAX_CPUS;
use crate::object::{Status, ZxResult};
use crate::sync::atomic::{fence, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use crate::sync::{Deadline, INFINITE};
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::AtomicPtr;

use crate::sched::{pick, Pick, Sleepers, ThreadState, READY, RUNNING};

/// Thread stack slots in use (`mmu::THREAD_SLOTS` bits): a slot is a guard page and 16 KiB of
/// stack in the image's `.stacks` section. Their number bounds the EL2 threads that exist at
/// once; `spawn` beyond it is NO_RESOURCES.
static SLOTS: [AtomicU64; THREAD_SLOTS / 64] = [const { AtomicU64::new(0) }; THREAD_SLOTS / 64];

fn allocate_slot() -> Option<usize> {
    for (word_index, word) in SLOTS.iter().enumerate() {
        let mut current = word.load(Ordering::Relaxed);
        while current != u64::MAX {
            let bit = (!current).trailing_zeros() as usize;
            match word.compare_exchange_weak(current, current | (1 << bit), Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(word_index * 64 + bit),
                Err(seen) => current = seen,
            }
        }
    }
    None
}

fn free_slot(slot: usize) {
    if let Some(word) = SLOTS.get(slot / 64) {
        word.fetch_and(!(1 << (slot % 64)), Ordering::AcqRel);
    }
}

/// The top of slot `slot`'s stack (it grows down to the guard page).
fn slot_top(slot: usize) -> u64 {
    stack_layout().threads + ((slot + 1) * THREAD_SLOT_SIZE) as u64
}

/// The lowest usable address of slot `slot`'s stack.
pub fn slot_bottom(slot: usize) -> u64 {
    stack_layout().threads + (slot * THREAD_SLOT_SIZE) as u64 + GUARD_SIZE
}

type Entry = Box<dyn FnOnce() + Send>;

/// One EL2 thread.
pub struct Thread {
    id: u64,
    cpu: usize,
    name: &'static str,
    state: ThreadState,
    context: UnsafeCell<SwitchContext>,
    entry: spin::Mutex<Option<Entry>>,
    /// The stack slot (`None`: a CPU's boot thread, on its boot stack).
    stack: Option<usize>,
}

// SAFETY: `context` is accessed only by the thread's own CPU while switching (module
// invariants); everything else is atomic or locked.
unsafe impl Sync for Thread {}
// SAFETY: as above.
unsafe impl Send for Thread {}

impl Thread {
    /// The thread's identity (never reused).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The thread's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether the thread has finished.
    pub fn has_exited(&self) -> bool {
        self.state.get() == crate::sched::EXITED
    }
}

impl Drop for Thread {
    fn drop(&mut self) {
        if let Some(slot) = self.stack {
            free_slot(slot);
        }
    }
}

struct Cpu {
    run_queue: spin::Mutex<VecDeque<Arc<Thread>>>,
    /// `run_queue`'s length, written under its lock, read without it: `before_guest` and
    /// `yield_now` only ask whether anyone is waiting. A push on another CPU that this read
    /// misses is followed by that CPU's wake SGI (after a `dsb ishst`), which brings the guest
    /// out to look again.
    queued: AtomicUsize,
    /// Threads of this CPU blocked with a deadline, and the deadline.
    sleepers: spin::Mutex<Sleepers<Arc<Thread>>>,
    /// No sleeper's deadline is earlier than this (`INFINITE`: none sleeps). Only this CPU's
    /// threads add or remove its sleepers, and they change it with them: lowered by a push,
    /// set exactly when the expired are taken, left by a removal (still a lower bound). Before
    /// it, `wake_expired` has nothing to do and takes no lock.
    earliest_sleeper: AtomicI64,
    /// When the running guest's time slice ends (`INFINITE`: no slice).
    slice_end: AtomicI64,
    current: UnsafeCell<Option<Arc<Thread>>>,
    /// The thread switched away from last, kept alive until the switch is complete (its stack
    /// may be the one being left).
    previous: UnsafeCell<Option<Arc<Thread>>>,
}

// SAFETY: `current` and `previous` are touched only by the owning CPU (module invariants); the
// run queue is locked.
unsafe impl Sync for Cpu {}

static CPUS: [spin::Once<Cpu>; MAX_CPUS] = [const { spin::Once::new() }; MAX_CPUS];
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// This module's part of each CPU's [`cpu::PerCpu`] block.
pub(crate) struct ThreadCpu {
    /// The CPU's own `Cpu` once `init_cpu` has set it up, for that CPU alone: asked several
    /// times per switch and per guest entry, so one load rather than a bounds check and the
    /// `Once`'s state check.
    cpu: AtomicPtr<Cpu>,
    /// The CPU's running thread's identity (0: no thread yet), kept with `Cpu::current` for
    /// [`current_thread`], which every VCPU call asks: one load, not a walk to the thread.
    current_id: AtomicU64,
}

impl ThreadCpu {
    pub(crate) const fn new() -> Self {
        Self { cpu: AtomicPtr::new(core::ptr::null_mut()), current_id: AtomicU64::new(0) }
    }
}

fn this_cpu() -> Option<&'static Cpu> {
    // Relaxed: only the CPU itself stores its slot (in `init_cpu`) and reads it.
    let cpu = cpu::local().thread.cpu.load(Ordering::Relaxed);
    // SAFETY: null, or a `Cpu` inside `CPUS`, a static, initialized and never dropped.
    unsafe { cpu.as_ref() }
}

/// Turns the code running on this CPU into its first thread. Called once per CPU, after its
/// MMU is on and before anything blocks.
pub fn init_cpu(index: usize) {
    if let Some(slot) = CPUS.get(index) {
        slot.call_once(|| {
            let main = Arc::new(Thread {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                cpu: index,
                name: "main",
                state: ThreadState::new(RUNNING),
                context: UnsafeCell::new(SwitchContext::default()),
                entry: spin::Mutex::new(None),
                stack: None,
            });
            Cpu {
                run_queue: spin::Mutex::new(VecDeque::new()),
                queued: AtomicUsize::new(0),
                sleepers: spin::Mutex::new(Sleepers::new()),
                earliest_sleeper: AtomicI64::new(INFINITE),
                slice_end: AtomicI64::new(INFINITE),
                current: UnsafeCell::new(Some(main)),
                previous: UnsafeCell::new(None),
            }
        });
        if let (Some(state), Some(own)) = (slot.get(), cpu::all().get(index)) {
            own.thread.cpu.store(state as *const Cpu as *mut Cpu, Ordering::Relaxed);
            // SAFETY: only this CPU touches its `current` slot.
            if let Some(main) = unsafe { (*state.current.get()).as_ref() } {
                own.thread.current_id.store(main.id, Ordering::Relaxed);
            }
        }
    }
}

/// The running thread, once the scheduler runs on this CPU.
pub fn current() -> Option<Arc<Thread>> {
    // SAFETY: only this CPU touches its `current` slot.
    this_cpu().and_then(|cpu| unsafe { (*cpu.current.get()).clone() })
}

/// The calling thread's identity (the CPU's index before its scheduler starts).
#[inline]
pub fn current_thread() -> u64 {
    // Relaxed: only this CPU writes its slot (with `current`) and reads it.
    match cpu::local().thread.current_id.load(Ordering::Relaxed) {
        0 => 1 << 32 | cpu::index() as u64,
        id => id,
    }
}

/// Starts a thread running `entry` on CPU `target`.
pub fn spawn(target: usize, name: &'static str, entry: impl FnOnce() + Send + 'static) -> ZxResult<Arc<Thread>> {
    let queue = CPUS.get(target).and_then(|slot| slot.get()).ok_or(Status::INVALID_ARGS)?;
    let stack = allocate_slot().ok_or(Status::NO_RESOURCES)?;
    let thread = Arc::new(Thread {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        cpu: target,
        name,
        state: ThreadState::new(READY),
        context: UnsafeCell::new(SwitchContext::default()),
        entry: spin::Mutex::new(Some(Box::new(entry))),
        stack: Some(stack),
    });
    let top = slot_top(stack);
    // SAFETY: the thread is not running anywhere yet; nobody else sees its context.
    unsafe { *thread.context.get() = initial_context(top, Arc::as_ptr(&thread) as u64) };
    enqueue(queue, target, thread.clone());
    Ok(thread)
}

impl Cpu {
    fn push(&self, thread: Arc<Thread>) {
        let mut queue = self.run_queue.lock();
        queue.push_back(thread);
        self.queued.store(queue.len(), Ordering::Release);
    }

    /// Queues `thread` and takes the first, under one lock. With one thread queued (two
    /// sharing the CPU, the common case) that is an exchange, and the count stays.
    fn push_pop(&self, thread: Arc<Thread>) -> Option<Arc<Thread>> {
        let mut queue = self.run_queue.lock();
        if queue.len() == 1 {
            return queue.front_mut().map(|first| core::mem::replace(first, thread));
        }
        queue.push_back(thread);
        let first = queue.pop_front();
        self.queued.store(queue.len(), Ordering::Release);
        first
    }

    fn pop(&self) -> Option<Arc<Thread>> {
        let mut queue = self.run_queue.lock();
        let thread = queue.pop_front();
        self.queued.store(queue.len(), Ordering::Release);
        thread
    }

    /// Whether another thread of this CPU is ready (without the lock; see `queued`).
    fn others_ready(&self) -> bool {
        self.queued.load(Ordering::Acquire) != 0
    }
}

fn enqueue(queue: &Cpu, target: usize, thread: Arc<Thread>) {
    queue.push(thread);
    if target != cpu::index() {
        crate::irq::wake(target);
    }
}

/// Makes a blocked thread runnable again.
pub fn wake(thread: &Arc<Thread>) {
    if thread.state.wake() {
        if let Some(queue) = CPUS.get(thread.cpu).and_then(|slot| slot.get()) {
            enqueue(queue, thread.cpu, thread.clone());
        }
    }
}

/// Lets the other ready threads of this CPU run first.
pub fn yield_now() {
    let Some(cpu_state) = this_cpu() else { return };
    if !cpu_state.others_ready() {
        return;
    }
    // SAFETY: only this CPU touches its `current` slot.
    let Some(me) = (unsafe { (*cpu_state.current.get()).as_ref() }) else { return };
    me.state.yield_ready();
    schedule_requeued(None, true);
}

/// Wakes this CPU's sleepers whose deadline has passed, then sets the EL2 timer for the next
/// deadline or the end of the guest's time slice, whichever comes first.
fn wake_expired_and_rearm(cpu_state: &Cpu) {
    let (_, next) = wake_expired(cpu_state, now());
    rearm(cpu_state, next);
}

/// Wakes this CPU's sleepers whose deadline is `now` or earlier; returns whether it woke any,
/// and the earliest deadline of those left.
fn wake_expired(cpu_state: &Cpu, now: Deadline) -> (bool, Deadline) {
    let earliest = cpu_state.earliest_sleeper.load(Ordering::Relaxed);
    if now < earliest {
        return (false, earliest);
    }
    let mut woke = false;
    loop {
        // A few at a time, woken without the lock, with nothing allocated.
        let mut batch: [Option<Arc<Thread>>; 4] = Default::default();
        let (taken, next) = {
            let mut sleepers = cpu_state.sleepers.lock();
            let taken = sleepers.take_expired(now, &mut batch);
            cpu_state.earliest_sleeper.store(taken.1, Ordering::Relaxed);
            taken
        };
        for thread in batch.iter().flatten() {
            wake(thread);
        }
        woke |= taken > 0;
        if next > now {
            return (woke, next);
        }
    }
}

/// Sets the EL2 timer for `next` (the earliest sleeper's deadline) or the end of this CPU's
/// guest time slice, whichever comes first.
fn rearm(cpu_state: &Cpu, next: Deadline) {
    let next = next.min(cpu_state.slice_end.load(Ordering::Relaxed));
    if !cpu::at_el2() {
        // Entered at EL1: no EL2 timer (waits poll instead).
    } else {
        timer::set_scheduler_deadline(next);
    }
}

/// A VCPU's thread after its guest's WFI, alone on its CPU: idles the CPU right here until
/// `done()` or `deadline`, without a wait queue or a pass through the scheduler (no waiter to
/// register and remove, no thread to block, pick and resume); `true` when it waited so.
/// `false`, having waited for nothing, when it cannot: no scheduler yet, no EL2 (no timer to
/// end the wait), or another thread is ready here, now or after an interrupt (the caller then
/// waits the generic way, which lets that thread run). Sleepers that come due are woken as the
/// scheduler's idle loop wakes them.
///
/// No registration is needed because whatever ends a VCPU's WFI from elsewhere interrupts
/// this CPU: `Vcpu::interrupt`, `interrupt_sgi` and `kick` set their flag, then (SeqCst fence)
/// read where the VCPU runs, which `enter` published (SeqCst fence) before it ran the guest,
/// and send the wake SGI; so either `done()` here sees the flag or the SGI is pending, and a
/// pending interrupt ends the WFI even with IRQs masked at EL2 (as in the scheduler's idle
/// loop). A thread made ready on this CPU by another CPU comes with the same SGI.
pub fn idle_in_place(deadline: Deadline, done: impl Fn() -> bool) -> bool {
    let Some(cpu_state) = this_cpu() else { return false };
    if !cpu::at_el2() {
        return false;
    }
    loop {
        // The clock is read only when a deadline is in play, as in `schedule_requeued`.
        let earliest = cpu_state.earliest_sleeper.load(Ordering::Relaxed);
        let (next, passed) = if deadline == INFINITE && earliest == INFINITE {
            (INFINITE, false)
        } else {
            let now = now();
            // No sleeper due (the common case): no call.
            let next = if now < earliest { earliest } else { wake_expired(cpu_state, now).1 };
            (next, now >= deadline)
        };
        if cpu_state.others_ready() {
            return false;
        }
        if passed || done() {
            // The EL2 timer back to the sleepers' deadline (or off): left set for ours, it
            // would fire into the guest for nothing.
            rearm(cpu_state, next);
            return true;
        }
        rearm(cpu_state, next.min(deadline));
        idle_until_interrupt();
        crate::irq::drain();
    }
}

/// The CPU idles until an interrupt is pending: its PMU count published (the wait is no
/// one's work), the guest's virtual interface parked, the console pumped, then WFI (which a
/// pending interrupt ends even with IRQs masked). The caller drains the interrupts after.
fn idle_until_interrupt() {
    crate::arch::aarch64::pmu::publish();
    crate::arch::aarch64::vgic::park();
    crate::console::pump();
    aarch64_cpu::asm::wfi();
    crate::arch::aarch64::pmu::idle_end();
}

/// See [`crate::sync::before_guest`]: a guest shares its CPU in time slices only while another
/// thread of the CPU is ready; otherwise it runs until it exits on its own.
#[inline]
pub fn before_guest() {
    let Some(cpu_state) = this_cpu() else { return };
    let sliced = cpu_state.slice_end.load(Ordering::Relaxed) != INFINITE;
    let others_ready = cpu_state.others_ready();
    if others_ready != sliced {
        decide_slice(cpu_state, sliced, others_ready);
    }
}

/// [`before_guest`] when the slice must change: out of line, as it is rare.
#[inline(never)]
#[cold]
fn decide_slice(cpu_state: &Cpu, sliced: bool, others_ready: bool) {
    // Sleepers that are due are woken first, before the slice is decided: a sleeper woken here
    // is a thread waiting for this CPU, and deciding on the queue as it was would leave it
    // behind a guest that never exits (the 4-VCPUs-on-2-CPUs guest hung so, 1 run in 4).
    let now = now();
    let (woke, next) = wake_expired(cpu_state, now);
    if let Some(end) = crate::sched::slice(sliced, others_ready, woke, now) {
        cpu_state.slice_end.store(end, Ordering::Relaxed);
    }
    rearm(cpu_state, next);
}

/// See [`crate::sync::preempt_point`].
pub fn preempt_point() {
    let Some(cpu_state) = this_cpu() else { return };
    let end = cpu_state.slice_end.load(Ordering::Relaxed);
    let slice_over = end != INFINITE && now() >= end;
    if slice_over {
        cpu_state.slice_end.store(INFINITE, Ordering::Relaxed);
    }
    wake_expired_and_rearm(cpu_state);
    if slice_over {
        yield_now();
    }
}

/// Ends the calling thread.
pub fn exit() -> ! {
    if let Some(me) = current() {
        me.state.exit();
        drop(me);
        schedule(None);
    }
    // The first thread of a CPU has nowhere to go back to.
    cpu::park()
}

/// Blocks the calling thread for good, leaving its CPU to the threads spawned on it.
pub fn serve_forever() -> ! {
    loop {
        if let Some(me) = current() {
            me.state.block();
        }
        schedule(None);
    }
}

/// Runs the next thread of this CPU, or sleeps until there is one, until the current thread
/// is RUNNING again (woken and picked), or `deadline` passes. Returns whether it put the
/// current thread on the CPU's sleepers (the caller takes it off again).
///
/// A deadline goes on the sleepers only when the thread is about to switch away: while it
/// stays current (it idles on its own stack) its deadline is on the EL2 timer through
/// `rearm`, and `pick` returns when it has passed. A timed WFI of a VCPU alone on its CPU so
/// neither queues itself as a sleeper nor is woken into the run queue to be popped again.
fn schedule(deadline: Option<Deadline>) -> bool {
    schedule_requeued(deadline, false)
}

/// [`schedule`], with the current thread (yielding, READY) queued first when `requeue`, under
/// the lock of the scheduler's first look at the queue. The slot's own reference moves into
/// the queue (nothing cloned, nothing left in `previous` to drop after the switch): the entry
/// keeps the thread alive, as only this CPU takes entries off its queue, and it takes this one
/// off only after it has switched away or, popping it here, when the thread resumes (the
/// reference then moves back into the slot).
fn schedule_requeued(deadline: Option<Deadline>, mut requeue: bool) -> bool {
    let Some(cpu_state) = this_cpu() else {
        // No scheduler yet on this CPU: wait in place.
        cpu::wait_for_event();
        return false;
    };
    // Only this CPU touches its `current` slot (each access below borrows it briefly: the
    // idle loop runs code that may read it).
    let current = cpu_state.current.get();
    // SAFETY: see above.
    let Some(me) = (unsafe { (*current).as_ref() }).map(Arc::as_ptr) else { return false };
    // SAFETY: the thread is alive while this function runs on its stack: its reference is in
    // `current` or, once requeued, in this CPU's queue, which only this CPU pops (here, where
    // popping it moves it back into `current`).
    let me = unsafe { &*me };
    loop {
        // The clock is read only when a deadline is in play (a switch between threads with no
        // sleepers reads none).
        let earliest = cpu_state.earliest_sleeper.load(Ordering::Relaxed);
        let (wake_at, deadline_passed) = if deadline.is_none() && earliest == INFINITE {
            (INFINITE, false)
        } else {
            let now = now();
            let next = wake_expired(cpu_state, now).1;
            match deadline {
                Some(deadline) if now >= deadline => (next, true),
                Some(deadline) => (next.min(deadline), false),
                None => (next, false),
            }
        };
        rearm(cpu_state, wake_at);
        let next = if core::mem::take(&mut requeue) {
            // SAFETY: see `current`.
            unsafe { (*current).take() }.and_then(|thread| cpu_state.push_pop(thread))
        } else {
            cpu_state.pop()
        };
        let popped = next.as_ref().map(|next| (core::ptr::eq(Arc::as_ptr(next), me), &next.state));
        // The policy (`sched::pick`): a stale entry of an exiting thread must not bring it back
        // (its `exit` would fall through to parking the CPU); only a READY thread runs (an entry
        // of a thread that blocked again or exited since it was queued is dropped).
        match pick(&me.state, popped, deadline_passed) {
            Pick::Resume => {
                // Our own entry: the reference goes back into the slot if it was requeued
                // (otherwise the slot holds one and this one is dropped).
                // SAFETY: see `current`.
                let slot = unsafe { &mut *current };
                if slot.is_none() {
                    *slot = next;
                }
                return false;
            }
            Pick::Return => return false,
            Pick::Skip => continue,
            Pick::SwitchTo => {
                let Some(next) = next else { return false };
                // Leaving the CPU: a deadline still ahead goes where the other threads'
                // scheduling sees it (the EL2 timer is already set for it, by this pass's
                // `rearm`); one that has passed means the wait timed out, so the thread is
                // runnable now and queues itself behind the one it switches to (on the sleeper
                // list, with the timer set for nothing, it would wait for an interrupt that
                // might never come: a guest alone on the CPU need not exit).
                let mut slept = false;
                // SAFETY: see `current` (a thread with a deadline was not requeued: the slot
                // holds its reference).
                if let (Some(deadline), Some(mine)) = (deadline, unsafe { (*current).as_ref() }) {
                    if deadline_passed {
                        if me.state.wake() {
                            cpu_state.push(mine.clone());
                        }
                    } else {
                        cpu_state.sleepers.lock().push(deadline, mine.clone());
                        cpu_state.earliest_sleeper.fetch_min(deadline, Ordering::Relaxed);
                        slept = true;
                    }
                }
                let to = next.context.get();
                let from = me.context.get();
                // A guest's virtual interface is not left enabled under another thread.
                crate::arch::aarch64::vgic::park();
                cpu::local().thread.current_id.store(next.id, Ordering::Relaxed);
                // `previous` keeps the thread we leave (and its stack) alive until the next
                // thread has finished switching, unless its reference went into the queue
                // (requeued: the slot is empty). `me` is not used past this point.
                // SAFETY: see `current`.
                let leaving = unsafe { (*current).replace(next) };
                if leaving.is_some() {
                    // SAFETY: only this CPU touches its `previous` slot.
                    unsafe { *cpu_state.previous.get() = leaving };
                }
                // SAFETY: `to` was saved by `switch_context` or built by `initial_context` on a
                // live stack; `from` belongs to a thread kept alive by `previous` or by its
                // queue entry.
                unsafe { switch_context(from, to) };
                finish_switch();
                return slept;
            }
            Pick::Idle => {
                if deadline.is_some() && !cpu::at_el2() {
                    // Entered at EL1 (no hypervisor): no EL2 timer, so a finite wait polls.
                    core::hint::spin_loop();
                } else {
                    // A deadline of this CPU's is on the EL2 timer, whose interrupt ends the WFI.
                    idle_until_interrupt();
                }
                crate::irq::drain();
            }
        }
    }
}

/// After a switch, on the new thread's stack: release the thread we came from.
fn finish_switch() {
    if let Some(cpu_state) = this_cpu() {
        // SAFETY: only this CPU touches its `previous` slot.
        let previous = unsafe { (*cpu_state.previous.get()).take() };
        drop(previous);
    }
}

/// Where a spawned thread begins (from the trampoline in `switch.rs`).
#[unsafe(no_mangle)]
extern "C" fn belfry_thread_start(thread: *const Thread) -> ! {
    finish_switch();
    // SAFETY: the pointer is the thread's own `Arc`, kept alive by this CPU's `current` slot
    // while it runs.
    let entry = unsafe { (*thread).entry.lock().take() };
    if let Some(entry) = entry {
        entry();
    }
    exit()
}

/// See [`crate::sync`].
#[derive(Default)]
pub struct WaitQueue {
    generation: AtomicU64,
    waiters: spin::Mutex<Vec<Arc<Thread>>>,
    /// How many threads `waiters` holds, written under its lock: a notifier that finds it 0
    /// after its generation bump skips the lock (see `notify_all`).
    waiting: AtomicUsize,
}

impl core::fmt::Debug for WaitQueue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WaitQueue").field("generation", &self.generation).finish_non_exhaustive()
    }
}

impl WaitQueue {
    pub const fn new() -> Self {
        Self { generation: AtomicU64::new(0), waiters: spin::Mutex::new(Vec::new()), waiting: AtomicUsize::new(0) }
    }

    /// The ticket to pass to [`WaitQueue::wait`] after re-checking the condition.
    pub fn ticket(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Blocks the calling thread until a notification newer than `ticket` or the deadline;
    /// `false` on timeout.
    pub fn wait(&self, ticket: u64, deadline: Deadline) -> bool {
        loop {
            if self.generation.load(Ordering::Acquire) != ticket {
                return true;
            }
            if deadline != INFINITE && now() >= deadline {
                return false;
            }
            let Some(me) = current() else {
                // Before the scheduler runs on this CPU: wait in place.
                if deadline == INFINITE {
                    cpu::wait_for_event();
                }
                continue;
            };
            {
                let mut waiters = self.waiters.lock();
                if self.generation.load(Ordering::Acquire) != ticket {
                    return true;
                }
                me.state.block();
                waiters.push(me.clone());
                // Published before the generation is looked at again: a notifier bumps the
                // generation before it reads `waiting` (SeqCst fences on both sides), so either
                // it sees this waiter or this waiter sees its bump (`sched`'s loom model
                // `a_notifier_skipping_an_empty_queue_loses_no_wakeup`).
                self.waiting.store(waiters.len(), Ordering::Relaxed);
                fence(Ordering::SeqCst);
                if self.generation.load(Ordering::Acquire) != ticket {
                    waiters.pop();
                    self.waiting.store(waiters.len(), Ordering::Relaxed);
                    me.state.run();
                    return true;
                }
            }
            let sleeping = deadline != INFINITE;
            let slept = schedule(sleeping.then_some(deadline));
            {
                let mut waiters = self.waiters.lock();
                waiters.retain(|waiter| !Arc::ptr_eq(waiter, &me));
                self.waiting.store(waiters.len(), Ordering::Relaxed);
            }
            if let Some(cpu_state) = this_cpu().filter(|_| slept) {
                cpu_state.sleepers.lock().remove(|sleeper| Arc::ptr_eq(sleeper, &me));
            }
        }
    }

    /// Wakes every waiter; whether there were any (a thread made ready, maybe on this CPU).
    pub fn notify_all(&self) -> bool {
        self.generation.fetch_add(1, Ordering::AcqRel);
        // Most notifications find nobody waiting (a port nobody waits on, a VCPU raising its
        // own interrupt): then no lock. See `wait` for why an empty count is trustworthy.
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) == 0 {
            cpu::send_event();
            return false;
        }
        // Taken out a few at a time and woken without the lock, leaving the vector's capacity
        // in place: waiting and being notified allocate nothing once a queue has been used
        // (taking the whole vector freed it, and the next wait allocated again).
        loop {
            let mut batch: [Option<Arc<Thread>>; 4] = Default::default();
            let mut taken = 0;
            {
                let mut waiters = self.waiters.lock();
                while taken < batch.len() {
                    let Some(waiter) = waiters.pop() else { break };
                    batch[taken] = Some(waiter);
                    taken += 1;
                }
                self.waiting.store(waiters.len(), Ordering::Relaxed);
            }
            for waiter in batch.iter().flatten() {
                wake(waiter);
            }
            if taken < batch.len() {
                break;
            }
        }
        // CPUs waiting before their scheduler started wait in WFE.
        cpu::send_event();
        true
    }
}

/// Nanoseconds since reset on the generic counter.
pub fn now() -> Deadline {
    timer::ticks_to_ns(timer::ticks()).min(Deadline::MAX as u64) as Deadline
}
