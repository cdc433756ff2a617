//! The EL2 scheduler's policy, apart from its mechanism (`thread.rs`: stacks, context switches,
//! WFI, the EL2 timer). Pure logic on atomics and plain data, so it runs in host tests and under
//! loom:
//!
//! - [`ThreadState`]: RUNNING, READY, BLOCKED, EXITED and the transitions the scheduler makes.
//!   A wake-up is a compare-exchange BLOCKED -> READY, so a thread is queued once per wake-up;
//!   only a READY thread may be picked (READY -> RUNNING), so a stale run-queue entry of a thread
//!   that blocked again or exited is dropped, never resumed.
//! - [`pick`]: what `schedule` does with the entry it popped from its run queue.
//! - [`Sleepers`]: threads blocked with a deadline; the expired ones are taken with the
//!   earliest remaining deadline (what the EL2 timer is set to).
//! - [`slice()`]: whether a guest about to run gets a time slice, decided *after* the due
//!   sleepers are woken (deciding before left a woken sleeper behind a guest that never exits).

use crate::sync::atomic::{AtomicU8, Ordering};
use crate::sync::{Deadline, INFINITE};
use alloc::vec::Vec;

pub const RUNNING: u8 = 0;
pub const READY: u8 = 1;
pub const BLOCKED: u8 = 2;
pub const EXITED: u8 = 3;

/// How long a guest runs while other threads of its CPU are ready (1 ms).
pub const TIME_SLICE: Deadline = 1_000_000;

/// A thread's scheduling state.
#[derive(Debug)]
pub struct ThreadState(AtomicU8);

impl ThreadState {
    pub fn new(state: u8) -> Self {
        Self(AtomicU8::new(state))
    }

    pub fn get(&self) -> u8 {
        self.0.load(Ordering::Acquire)
    }

    /// The thread is about to wait (it will be queued again by [`ThreadState::wake`]).
    pub fn block(&self) {
        self.0.store(BLOCKED, Ordering::Release);
    }

    /// The thread gives its CPU away but stays runnable (it queues itself).
    pub fn yield_ready(&self) {
        self.0.store(READY, Ordering::Release);
    }

    /// The thread runs (it found itself runnable, or its wait timed out).
    pub fn run(&self) {
        self.0.store(RUNNING, Ordering::Release);
    }

    pub fn exit(&self) {
        self.0.store(EXITED, Ordering::Release);
    }

    /// BLOCKED -> READY; `true` when this call made it READY, and the caller must queue it.
    pub fn wake(&self) -> bool {
        self.0.compare_exchange(BLOCKED, READY, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// READY -> RUNNING for a thread picked from a run queue; `false` for a stale entry.
    pub fn claim(&self) -> bool {
        self.0.compare_exchange(READY, RUNNING, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }
}

/// What the scheduler does after popping its run queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// The current thread itself was picked: it runs on (RUNNING).
    Resume,
    /// A stale entry: pop again.
    Skip,
    /// Switch to the popped thread (already claimed RUNNING).
    SwitchTo,
    /// Nothing to switch to and the current thread may go on (woken meanwhile, or its deadline
    /// passed).
    Return,
    /// Nothing runnable: wait for an interrupt, then look again.
    Idle,
}

/// Decides for the popped entry (`Some(true)`: the current thread's own entry, with its
/// state `me`; `Some(false)`: another thread's, with state `other`) or an empty queue (`None`).
pub fn pick(me: &ThreadState, popped: Option<(bool, &ThreadState)>, deadline_passed: bool) -> Pick {
    match popped {
        // A stale entry of a thread that is exiting must not bring it back.
        Some((true, _)) if me.get() == EXITED => Pick::Skip,
        Some((true, _)) => {
            me.run();
            Pick::Resume
        }
        Some((false, other)) => {
            if other.claim() {
                Pick::SwitchTo
            } else {
                Pick::Skip
            }
        }
        None => {
            let state = me.get();
            if state == READY || state == RUNNING || deadline_passed {
                me.run();
                Pick::Return
            } else {
                Pick::Idle
            }
        }
    }
}

/// Threads blocked with a deadline.
#[derive(Debug)]
pub struct Sleepers<T> {
    list: Vec<(Deadline, T)>,
}

impl<T> Default for Sleepers<T> {
    fn default() -> Self {
        Self { list: Vec::new() }
    }
}

impl<T> Sleepers<T> {
    pub const fn new() -> Self {
        Self { list: Vec::new() }
    }

    pub fn push(&mut self, deadline: Deadline, thread: T) {
        self.list.push((deadline, thread));
    }

    /// Drops the entries `is_it` matches (a sleeper that woke for another reason).
    pub fn remove(&mut self, is_it: impl Fn(&T) -> bool) {
        self.list.retain(|(_, thread)| !is_it(thread));
    }

    /// Takes sleepers whose deadline is `now` or earlier into `batch`, as many as fit; returns
    /// how many it took and the earliest deadline of those left ([`INFINITE`] when none; `now`
    /// or earlier when expired ones did not fit). Allocates nothing: a VCPU's timed WFI passes
    /// here on every wake-up.
    pub fn take_expired(&mut self, now: Deadline, batch: &mut [Option<T>]) -> (usize, Deadline)
    where
        T: Clone,
    {
        let mut taken = 0;
        let mut next = INFINITE;
        self.list.retain(|(deadline, thread)| {
            if let Some(slot) = batch.get_mut(taken).filter(|_| *deadline <= now) {
                *slot = Some(thread.clone());
                taken += 1;
                false
            } else {
                next = next.min(*deadline);
                true
            }
        });
        (taken, next)
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// The time-slice decision before a guest runs: `sliced` whether a slice is armed now,
/// `others_ready` whether the run queue holds another thread, `woke` whether waking the due
/// sleepers queued one. `None`: leave it as it is; `Some(end)`: the new slice end
/// ([`INFINITE`]: the guest runs until it exits on its own).
pub fn slice(sliced: bool, others_ready: bool, woke: bool, now: Deadline) -> Option<Deadline> {
    // Nothing changes when the slice already matches the queue, unless a sleeper just woke
    // into an unsliced CPU.
    let woke_unsliced = woke && !sliced;
    if others_ready == sliced && !woke_unsliced {
        return None;
    }
    Some(if others_ready || woke { now.saturating_add(TIME_SLICE) } else { INFINITE })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        let t = ThreadState::new(RUNNING);
        assert!(!t.wake(), "a running thread is not woken");
        t.block();
        assert!(t.wake());
        assert!(!t.wake(), "one wake-up, one queue entry");
        assert!(t.claim());
        assert!(!t.claim(), "a thread is picked once");
        t.exit();
        assert!(!t.wake() && !t.claim());
    }

    #[test]
    fn picks() {
        let me = ThreadState::new(RUNNING);
        assert_eq!(pick(&me, Some((true, &me)), false), Pick::Resume);
        me.exit();
        assert_eq!(pick(&me, Some((true, &me)), false), Pick::Skip, "an exiting thread's stale entry");
        let me = ThreadState::new(BLOCKED);
        let other = ThreadState::new(READY);
        assert_eq!(pick(&me, Some((false, &other)), false), Pick::SwitchTo);
        assert_eq!(other.get(), RUNNING);
        let blocked = ThreadState::new(BLOCKED);
        assert_eq!(pick(&me, Some((false, &blocked)), false), Pick::Skip, "blocked again since queued");
        let exited = ThreadState::new(EXITED);
        assert_eq!(pick(&me, Some((false, &exited)), false), Pick::Skip);
        assert_eq!(pick(&me, None, false), Pick::Idle);
        assert_eq!(pick(&me, None, true), Pick::Return, "the wait timed out");
        assert_eq!(me.get(), RUNNING);
        let woken = ThreadState::new(READY);
        assert_eq!(pick(&woken, None, false), Pick::Return, "woken while looking");
    }

    #[test]
    fn sleepers() {
        let mut s = Sleepers::new();
        s.push(30, 'a');
        s.push(10, 'b');
        s.push(20, 'c');
        let mut batch = [None; 4];
        assert_eq!(s.take_expired(5, &mut batch), (0, 10));
        assert_eq!(s.take_expired(20, &mut batch), (2, 30));
        assert_eq!(batch, [Some('b'), Some('c'), None, None]);
        s.remove(|&t| t == 'a');
        assert_eq!(s.take_expired(100, &mut [None; 4]), (0, INFINITE));
        assert!(s.is_empty());
        // More expired than the batch holds: the rest stay, and the deadline says so.
        for (deadline, t) in [(1, 'x'), (2, 'y'), (3, 'z')] {
            s.push(deadline, t);
        }
        let mut small = [None; 2];
        assert_eq!(s.take_expired(10, &mut small), (2, 3));
        assert_eq!(small, [Some('x'), Some('y')]);
        assert_eq!(s.take_expired(10, &mut small), (1, INFINITE));
    }

    #[test]
    fn slices() {
        // Alone on the CPU: no slice.
        assert_eq!(slice(false, false, false, 0), None);
        // Another thread is ready: a slice.
        assert_eq!(slice(false, true, false, 5), Some(5 + TIME_SLICE));
        // A sleeper woken just now (scheduler bug 2): a slice, though the queue looked empty.
        assert_eq!(slice(false, false, true, 5), Some(5 + TIME_SLICE));
        // Sliced, and still others: keep the slice.
        assert_eq!(slice(true, true, false, 5), None);
        // Sliced, nobody else any more: the slice ends.
        assert_eq!(slice(true, false, false, 5), Some(INFINITE));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicU64;
    use loom::sync::{Arc, Mutex};

    /// The event-count wait against a notifier on another CPU: the waiter takes a ticket,
    /// re-checks under the waiter lock, blocks and registers; the notifier bumps the generation,
    /// takes the waiters and wakes them into the run queue. Whatever the interleaving, the
    /// waiter either sees the notification or ends up READY in the run queue exactly once: no
    /// lost wake-up, no double queueing.
    #[test]
    fn a_wakeup_is_never_lost_or_doubled() {
        loom::model(|| {
            let generation = Arc::new(AtomicU64::new(0));
            let waiters: Arc<Mutex<Vec<Arc<ThreadState>>>> = Arc::new(Mutex::new(Vec::new()));
            let run_queue: Arc<Mutex<Vec<Arc<ThreadState>>>> = Arc::new(Mutex::new(Vec::new()));
            let me = Arc::new(ThreadState::new(RUNNING));

            let (g, w, q) = (generation.clone(), waiters.clone(), run_queue.clone());
            let notifier = loom::thread::spawn(move || {
                g.fetch_add(1, Ordering::AcqRel);
                let taken = core::mem::take(&mut *w.lock().unwrap());
                for thread in taken {
                    if thread.wake() {
                        q.lock().unwrap().push(thread);
                    }
                }
            });

            let ticket = 0;
            let saw_it = {
                let mut list = waiters.lock().unwrap();
                if generation.load(Ordering::Acquire) != ticket {
                    true
                } else {
                    me.block();
                    list.push(me.clone());
                    false
                }
            };
            notifier.join().unwrap();
            let queued = run_queue.lock().unwrap().iter().filter(|t| Arc::ptr_eq(t, &me)).count();
            if saw_it {
                assert_eq!((queued, me.get()), (0, RUNNING));
            } else {
                assert_eq!((queued, me.get()), (1, READY));
                let entry = run_queue.lock().unwrap().pop().unwrap();
                assert_eq!(pick(&ThreadState::new(BLOCKED), Some((false, &entry)), false), Pick::SwitchTo);
            }
        });
    }

    /// `thread::WaitQueue` as built: the notifier skips the waiter lock when the waiter count
    /// it reads after its generation bump is 0; the waiter publishes its count, fences, and
    /// looks at the generation again after registering (undoing the registration if it moved).
    /// SeqCst fences on both sides: whatever the interleaving, the waiter sees the bump or
    /// ends up READY in the run queue exactly once.
    #[test]
    fn a_notifier_skipping_an_empty_queue_loses_no_wakeup() {
        use loom::sync::atomic::{fence, AtomicUsize};
        loom::model(|| {
            let generation = Arc::new(AtomicU64::new(0));
            let waiting = Arc::new(AtomicUsize::new(0));
            let waiters: Arc<Mutex<Vec<Arc<ThreadState>>>> = Arc::new(Mutex::new(Vec::new()));
            let run_queue: Arc<Mutex<Vec<Arc<ThreadState>>>> = Arc::new(Mutex::new(Vec::new()));
            let me = Arc::new(ThreadState::new(RUNNING));

            let (g, n, w, q) = (generation.clone(), waiting.clone(), waiters.clone(), run_queue.clone());
            let notifier = loom::thread::spawn(move || {
                g.fetch_add(1, Ordering::AcqRel);
                fence(Ordering::SeqCst);
                if n.load(Ordering::Relaxed) == 0 {
                    return;
                }
                let taken = {
                    let mut list = w.lock().unwrap();
                    let taken = core::mem::take(&mut *list);
                    n.store(0, Ordering::Relaxed);
                    taken
                };
                for thread in taken {
                    if thread.wake() {
                        q.lock().unwrap().push(thread);
                    }
                }
            });

            let ticket = generation.load(Ordering::Acquire);
            let saw_it = ticket != 0 || {
                let mut list = waiters.lock().unwrap();
                if generation.load(Ordering::Acquire) != ticket {
                    true
                } else {
                    me.block();
                    list.push(me.clone());
                    waiting.store(list.len(), Ordering::Relaxed);
                    fence(Ordering::SeqCst);
                    if generation.load(Ordering::Acquire) != ticket {
                        list.pop();
                        waiting.store(list.len(), Ordering::Relaxed);
                        me.run();
                        true
                    } else {
                        false
                    }
                }
            };
            notifier.join().unwrap();
            let queued = run_queue.lock().unwrap().iter().filter(|t| Arc::ptr_eq(t, &me)).count();
            if saw_it {
                assert_eq!((queued, me.get()), (0, RUNNING));
            } else {
                // Registered and not seeing the bump: the notifier must have taken it.
                assert_eq!((queued, me.get()), (1, READY));
            }
        });
    }

    /// A stale entry: the thread was woken and queued, but ran on another path (it found itself
    /// READY and went on) and blocked again before the entry was popped: the pop must skip it.
    #[test]
    fn a_stale_entry_is_skipped() {
        loom::model(|| {
            let thread = Arc::new(ThreadState::new(BLOCKED));
            let queue: Arc<Mutex<Vec<Arc<ThreadState>>>> = Arc::new(Mutex::new(Vec::new()));
            let (t, q) = (thread.clone(), queue.clone());
            let waker = loom::thread::spawn(move || {
                if t.wake() {
                    q.lock().unwrap().push(t.clone());
                }
            });
            // The thread itself: runs on if it sees itself READY, then blocks again.
            let me_idle = ThreadState::new(BLOCKED);
            let _ = pick(&thread, None, false);
            waker.join().unwrap();
            if thread.get() == RUNNING {
                thread.block();
            }
            let popped = queue.lock().unwrap().pop();
            if let Some(entry) = popped {
                let decision = pick(&me_idle, Some((false, &entry)), false);
                // Either it is still READY (never ran on its own) or it is stale.
                assert!(decision == Pick::SwitchTo || decision == Pick::Skip);
                if decision == Pick::SwitchTo {
                    assert_eq!(entry.get(), RUNNING);
                }
            }
        });
    }
}
