//! hyper's timer for HTTP/1 connections: the header-read timeout, started
//! each time a connection waits for a request's head (also what closes an
//! idle keep-alive connection).
//!
//! Almost every such deadline is cancelled long before it falls due: the
//! head arrives within microseconds under load, and the deadline is
//! dropped. With tokio's timer each one was a boxed timer entry made,
//! registered in the runtime's timer wheel under its lock, and taken out
//! again, and every worker parking afterwards recomputed its sleep from
//! the wheel: ~1,000 instructions a request (callgrind, warm hello). Here
//! a deadline is a slot in one table, registered on its first poll and
//! freed on drop, and a single thread of its own, asleep while the table
//! is empty, wakes the tasks whose deadline has passed.

use std::pin::Pin;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How late the thread may look, so that deadlines falling due within
/// this much of each other fire together, with one wake-up. None fires early.
const SLACK: Duration = Duration::from_millis(10);

/// The timer hyper's HTTP/1 connections get, shared by every listener.
#[derive(Clone)]
pub struct DeadlineTimer {
    table: &'static Table,
}

impl DeadlineTimer {
    /// The process's timer, its thread started on first use; `None` if
    /// that thread cannot be started (the caller keeps tokio's timer).
    pub fn shared() -> Option<Self> {
        static TABLE: OnceLock<Option<&'static Table>> = OnceLock::new();
        let table = *TABLE.get_or_init(|| {
            let table: &'static Table = Box::leak(Box::default());
            let started = std::thread::Builder::new()
                .name("bazaar-deadlines".into())
                .spawn(move || table.fire_forever());
            match started {
                Ok(_) => Some(table),
                Err(e) => {
                    tracing::warn!("header-read deadlines use tokio's timer: {e}");
                    None
                }
            }
        });
        table.map(|table| Self { table })
    }
}

impl hyper::rt::Timer for DeadlineTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Deadline {
            table: self.table,
            deadline,
            slot: None,
        })
    }
}

/// One deadline; a slot in the table once polled, until it is dropped.
struct Deadline {
    table: &'static Table,
    deadline: Instant,
    slot: Option<usize>,
}

impl Future for Deadline {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let table = self.table;
        match self.slot {
            // Only the table's thread reads the clock: a first poll costs
            // no clock read, and one that is already due is fired at once.
            None => {
                self.slot = Some(table.insert(self.deadline, cx.waker()));
                Poll::Pending
            }
            Some(slot) => {
                if table.poll_slot(slot, cx.waker()) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl hyper::rt::Sleep for Deadline {}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            self.table.remove(slot);
        }
    }
}

/// Every registered deadline, and the thread's plan.
#[derive(Default)]
struct Table {
    state: Mutex<State>,
    /// Wakes the thread when a deadline comes before its plan.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    slots: Vec<Slot>,
    /// Slots free for reuse.
    free: Vec<usize>,
    /// When the thread next looks, if it sleeps with a plan.
    next: Option<Instant>,
}

/// A slot of the table.
enum Slot {
    Free,
    /// Waiting: the task to wake when `deadline` passes.
    Waiting {
        deadline: Instant,
        waker: Waker,
    },
    /// Its deadline has passed; the next poll is ready.
    Fired,
}

impl Table {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The table is consistent between statements: a panic elsewhere
        // while it was held leaves nothing half done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn insert(&self, deadline: Instant, waker: &Waker) -> usize {
        let mut state = self.lock();
        let entry = Slot::Waiting {
            deadline,
            waker: waker.clone(),
        };
        let slot = match state.free.pop() {
            Some(slot) => {
                state.slots[slot] = entry;
                slot
            }
            None => {
                state.slots.push(entry);
                state.slots.len() - 1
            }
        };
        // Deadlines share one length, so a new one falls after the plan;
        // the thread is woken only for the first, or a shorter one.
        if state.next.is_none_or(|next| deadline < next) {
            state.next = Some(deadline);
            self.changed.notify_one();
        }
        slot
    }

    /// Whether `slot` has fired; if not, it will wake `waker`.
    fn poll_slot(&self, slot: usize, waker: &Waker) -> bool {
        let mut state = self.lock();
        match &mut state.slots[slot] {
            Slot::Fired => true,
            Slot::Waiting { waker: kept, .. } => {
                kept.clone_from(waker);
                false
            }
            Slot::Free => false,
        }
    }

    fn remove(&self, slot: usize) {
        let mut state = self.lock();
        let taken = std::mem::replace(&mut state.slots[slot], Slot::Free);
        state.free.push(slot);
        if state.free.len() == state.slots.len() {
            state.slots.clear();
            state.free.clear();
        }
        // Its waker is dropped once the table is unlocked: dropping the
        // last reference to a task drops the task's future, which may hold
        // a deadline of its own and lock the table again.
        drop(state);
        drop(taken);
    }

    /// The table's thread: fires what is due, then sleeps until the
    /// earliest deadline left, or until one is registered.
    fn fire_forever(&self) {
        let mut state = self.lock();
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            let mut next: Option<Instant> = None;
            for slot in &mut state.slots {
                if let Slot::Waiting { deadline, .. } = slot {
                    if *deadline <= now {
                        if let Slot::Waiting { waker, .. } = std::mem::replace(slot, Slot::Fired) {
                            due.push(waker);
                        }
                    } else {
                        next = Some(next.map_or(*deadline, |n| n.min(*deadline)));
                    }
                }
            }
            state.next = next;
            if !due.is_empty() {
                drop(state);
                due.into_iter().for_each(Waker::wake);
                state = self.lock();
                continue;
            }
            state = match next {
                None => self
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(next) => {
                    self.changed
                        .wait_timeout(state, (next + SLACK).saturating_duration_since(now))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer as _;

    /// Polls `deadline` once; whoever wakes it is not listening.
    fn poll_once(deadline: &mut Pin<Box<dyn hyper::rt::Sleep>>) -> Poll<()> {
        deadline
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deadline_fires_when_due_and_not_before() {
        let timer = DeadlineTimer::shared().expect("the deadline thread starts");
        let started = Instant::now();
        timer.sleep(Duration::from_millis(200)).await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(200),
            "fired early, after {waited:?}"
        );
        assert!(
            waited < Duration::from_secs(2),
            "fired late, after {waited:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shorter_deadline_after_a_longer_one_fires_first() {
        let timer = DeadlineTimer::shared().expect("the deadline thread starts");
        let mut long = timer.sleep(Duration::from_secs(30));
        assert!(poll_once(&mut long).is_pending());
        // Registered, and the thread (however late it started) has had
        // time to plan its next look for 30 s from now.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        timer.sleep(Duration::from_millis(100)).await;
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_secs(2),
            "the shorter deadline waited for the longer one's plan: {waited:?}"
        );
        assert!(
            poll_once(&mut long).is_pending(),
            "the longer deadline fired with the shorter"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_deadlines_free_their_slots() {
        let timer = DeadlineTimer::shared().expect("the deadline thread starts");
        for _ in 0..1000 {
            let mut deadline = timer.sleep(Duration::from_secs(60));
            assert!(poll_once(&mut deadline).is_pending());
        }
        // Other tests share the table; none holds 1,000 slots.
        assert!(timer.table.lock().slots.len() < 1000);
    }
}
