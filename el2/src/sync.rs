//! Synchronisation primitives, chosen per build:
//!
//! - `loom` model checks (`RUSTFLAGS="--cfg loom"`): loom's atomics, cells, mutex and condvar,
//!   so the model checker explores every interleaving of the code that uses them;
//! - host tests: std's;
//! - the firmware: core's atomics, and [`WaitQueue`] on the EL2 scheduler.
//!
//! [`WaitQueue`] is an *event count*: a waiter takes a ticket, re-checks its condition, and
//! sleeps only if nothing was notified since the ticket. That makes "check, then sleep" free of
//! lost wake-ups without tying the queue to the lock that guards the condition.

#[cfg(not(loom))]
pub use core::sync::atomic;
#[cfg(loom)]
pub use loom::sync::atomic;

#[cfg(loom)]
pub use loom::cell::UnsafeCell;

/// `UnsafeCell` with loom's `with`/`with_mut` access API, so the same code runs under loom.
#[cfg(not(loom))]
#[derive(Debug, Default)]
pub struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// A deadline in nanoseconds on the monotonic clock; [`INFINITE`] never passes.
pub type Deadline = i64;
/// `ZX_TIME_INFINITE`.
pub const INFINITE: Deadline = i64::MAX;

#[cfg(not(target_os = "none"))]
mod host {
    use super::Deadline;
    #[cfg(loom)]
    use loom::sync::{Condvar, Mutex};
    #[cfg(not(loom))]
    use std::sync::{Condvar, Mutex};

    /// See the module documentation.
    #[derive(Debug, Default)]
    pub struct WaitQueue {
        generation: Mutex<u64>,
        condvar: Condvar,
    }

    impl WaitQueue {
        pub fn new() -> Self {
            Self::default()
        }

        /// The ticket to pass to [`WaitQueue::wait`] after re-checking the condition.
        pub fn ticket(&self) -> u64 {
            *self.generation.lock().unwrap_or_else(|e| e.into_inner())
        }

        /// Sleeps until a notification newer than `ticket` or the deadline; returns `false` on
        /// timeout.
        pub fn wait(&self, ticket: u64, deadline: Deadline) -> bool {
            let mut generation = self.generation.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if *generation != ticket {
                    return true;
                }
                let now = super::now();
                if deadline != super::INFINITE && now >= deadline {
                    return false;
                }
                #[cfg(loom)]
                {
                    // loom has no timed wait; a finite deadline is modelled as "may time out".
                    if deadline != super::INFINITE {
                        return false;
                    }
                    generation = self.condvar.wait(generation).unwrap_or_else(|e| e.into_inner());
                }
                #[cfg(not(loom))]
                {
                    generation = if deadline == super::INFINITE {
                        self.condvar.wait(generation).unwrap_or_else(|e| e.into_inner())
                    } else {
                        let remaining = std::time::Duration::from_nanos((deadline - now) as u64);
                        self.condvar.wait_timeout(generation, remaining).unwrap_or_else(|e| e.into_inner()).0
                    };
                }
            }
        }

        /// Wakes every waiter; `true` (as the board's may say) when it may have woken one.
        pub fn notify_all(&self) -> bool {
            let mut generation = self.generation.lock().unwrap_or_else(|e| e.into_inner());
            *generation = generation.wrapping_add(1);
            self.condvar.notify_all();
            true
        }
    }

    /// Nanoseconds on the monotonic clock.
    pub fn now() -> Deadline {
        use std::sync::OnceLock;
        static START: OnceLock<std::time::Instant> = OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed().as_nanos() as Deadline
    }

    /// The calling thread's identity.
    pub fn current_thread() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        std::thread_local!(static ID: u64 = NEXT.fetch_add(1, Ordering::Relaxed));
        ID.with(|id| *id)
    }
}

#[cfg(not(target_os = "none"))]
pub use host::{current_thread, now, WaitQueue};

/// Before a VCPU enters its guest: on the board, arms the time slice when other threads wait
/// for this CPU. The host's threads are the OS's to schedule.
#[cfg(not(target_os = "none"))]
pub fn before_guest() {}

/// After a guest exit on a physical interrupt: on the board, lets the threads whose deadline
/// passed or whose time has come run first.
#[cfg(not(target_os = "none"))]
pub fn preempt_point() {}

/// A VCPU's thread after its guest's WFI: on the board, idles the CPU in place when no other
/// thread is ready there (see `thread::idle_in_place`); `false` when it did not. The host's
/// VCPUs always wait the generic way.
#[cfg(not(target_os = "none"))]
pub fn idle_in_place(_deadline: Deadline, _done: impl Fn() -> bool) -> bool {
    false
}

#[cfg(target_os = "none")]
pub use crate::thread::{before_guest, current_thread, idle_in_place, now, preempt_point, WaitQueue};
