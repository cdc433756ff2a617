//! EL2 threads (firmware side of [`crate::sync`]).
//!
//! For now every CPU runs one thread, so blocking is waiting in place: a waiter sleeps in WFE
//! until a notification (which sends an event to every CPU) or its deadline. The per-CPU run
//! queues that let other threads run while one blocks are the next step.

use crate::arch::aarch64::{cpu, timer};
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::{Deadline, INFINITE};

/// See [`crate::sync`].
#[derive(Debug, Default)]
pub struct WaitQueue {
    generation: AtomicU64,
}

impl WaitQueue {
    pub const fn new() -> Self {
        Self { generation: AtomicU64::new(0) }
    }

    /// The ticket to pass to [`WaitQueue::wait`] after re-checking the condition.
    pub fn ticket(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Sleeps until a notification newer than `ticket` or the deadline; `false` on timeout.
    pub fn wait(&self, ticket: u64, deadline: Deadline) -> bool {
        loop {
            if self.generation.load(Ordering::Acquire) != ticket {
                return true;
            }
            if deadline != INFINITE && now() >= deadline {
                return false;
            }
            // The generic timer's event stream is not enabled, so a finite deadline polls.
            if deadline == INFINITE {
                cpu::wait_for_event();
            } else {
                core::hint::spin_loop();
            }
        }
    }

    /// Wakes every waiter on every CPU.
    pub fn notify_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        cpu::send_event();
    }
}

/// Nanoseconds since reset on the generic counter.
pub fn now() -> Deadline {
    (u128::from(timer::ticks()) * 1_000_000_000 / u128::from(timer::frequency())) as Deadline
}

/// The calling thread: one per CPU for now, identified by the CPU's logical index.
pub fn current_thread() -> u64 {
    cpu::index() as u64 + 1
}
