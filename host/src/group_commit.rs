//! Group commit: writers arriving together share one commit (one
//! transaction, one sync), with the same durability as one each.
//!
//! A writer queues its operation. If no commit is running, it becomes the
//! leader: it takes everything queued, commits it in one go, and hands every
//! waiter its own outcome. Otherwise it waits for a leader to answer it.
//! Used by each service's key-value store and by the deployment records.
//!
//! A leader whose commit panics, or leaves a ticket without an outcome,
//! does not leave the others waiting: every writer of its group gets
//! [`Abandoned`], and the next writer leads.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// The commit that carried a write ended without an outcome for it: it
/// panicked, or forgot the ticket. Whether the write is durable is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the commit carrying this write ended without an outcome for it; whether it is durable is unknown"
)]
pub struct Abandoned;

/// The queue of one database's writers, and the outcomes not yet taken.
pub struct GroupCommit<Op, Outcome> {
    state: Mutex<State<Op, Outcome>>,
    answered: Condvar,
}

struct State<Op, Outcome> {
    next_ticket: u64,
    queued: Vec<(u64, Op)>,
    leading: bool,
    outcomes: HashMap<u64, Result<Outcome, Abandoned>>,
}

impl<Op, Outcome> Default for GroupCommit<Op, Outcome> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                next_ticket: 0,
                queued: Vec::new(),
                leading: false,
                outcomes: HashMap::new(),
            }),
            answered: Condvar::new(),
        }
    }
}

impl<Op, Outcome> GroupCommit<Op, Outcome> {
    fn lock(&self) -> MutexGuard<'_, State<Op, Outcome>> {
        // Every change to the state is a whole assignment or push.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Commits `op` with whatever else is queued and returns its own
    /// outcome. When this writer leads, `commit` gets the queued operations
    /// by ticket and gives an outcome for every ticket; a ticket it leaves
    /// out, or every ticket of its group if it panics, gets [`Abandoned`].
    /// Blocks: call it off the async threads.
    pub fn submit(
        &self,
        op: Op,
        commit: impl FnOnce(Vec<(u64, Op)>) -> Vec<(u64, Outcome)>,
    ) -> Result<Outcome, Abandoned> {
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queued.push((ticket, op));
        let mut commit = Some(commit);
        loop {
            if let Some(outcome) = state.outcomes.remove(&ticket) {
                return outcome;
            }
            // A writer leads at most once: its own operation is in the
            // group it takes, so it has its outcome after.
            let commit = match (state.leading, commit.take()) {
                (false, Some(commit)) => commit,
                (_, unused) => {
                    commit = unused;
                    state = self
                        .answered
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                    continue;
                }
            };
            state.leading = true;
            let group = std::mem::take(&mut state.queued);
            let tickets: Vec<u64> = group.iter().map(|(ticket, _)| *ticket).collect();
            drop(state);
            // Nothing of the state is borrowed across the call: a panic
            // leaves it as it was, and the group is answered below.
            let outcomes = std::panic::catch_unwind(AssertUnwindSafe(|| commit(group)));
            state = self.lock();
            if let Ok(outcomes) = outcomes {
                state
                    .outcomes
                    .extend(outcomes.into_iter().map(|(t, outcome)| (t, Ok(outcome))));
            }
            for ticket in tickets {
                state.outcomes.entry(ticket).or_insert(Err(Abandoned));
            }
            state.leading = false;
            self.answered.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Runs `submit` on its own thread; the answer comes back on the channel.
    fn submit_on_thread(
        queue: &Arc<GroupCommit<u32, u32>>,
        op: u32,
        commit: impl FnOnce(Vec<(u64, u32)>) -> Vec<(u64, u32)> + Send + 'static,
    ) -> mpsc::Receiver<Result<u32, Abandoned>> {
        let (tx, rx) = mpsc::channel();
        let queue = Arc::clone(queue);
        std::thread::spawn(move || {
            let _ = tx.send(queue.submit(op, commit));
        });
        rx
    }

    fn doubled(group: Vec<(u64, u32)>) -> Vec<(u64, u32)> {
        group.into_iter().map(|(t, op)| (t, op * 2)).collect()
    }

    /// Polls `ready` for up to ten seconds.
    fn eventually(queue: &GroupCommit<u32, u32>, ready: impl Fn(&State<u32, u32>) -> bool) -> bool {
        for _ in 0..10_000 {
            if ready(&queue.lock()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    fn panics(_group: Vec<(u64, u32)>) -> Vec<(u64, u32)> {
        panic!("a commit that panics (on purpose, in a test)");
    }

    #[test]
    fn a_panicking_commit_answers_its_group_and_the_next_writer_leads() {
        let queue = Arc::new(GroupCommit::<u32, u32>::default());
        // A leads and holds the lead until B and C are queued behind it...
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let a = submit_on_thread(&queue, 1, move |group| {
            let _ = release_rx.recv_timeout(Duration::from_secs(10));
            doubled(group)
        });
        assert!(eventually(&queue, |s| s.leading), "A never led");
        let b = submit_on_thread(&queue, 2, panics);
        let c = submit_on_thread(&queue, 3, panics);
        assert!(
            eventually(&queue, |s| s.queued.len() == 2),
            "B and C never queued"
        );
        release_tx.send(()).expect("A is waiting");

        // ...so one of them leads a group of both, and its commit panics.
        let wait = Duration::from_secs(10);
        assert_eq!(a.recv_timeout(wait), Ok(Ok(2)));
        assert_eq!(b.recv_timeout(wait), Ok(Err(Abandoned)));
        assert_eq!(c.recv_timeout(wait), Ok(Err(Abandoned)));
        // The queue still works for a writer that comes later.
        let d = submit_on_thread(&queue, 5, doubled);
        assert_eq!(d.recv_timeout(wait), Ok(Ok(10)));
    }

    #[test]
    fn a_ticket_the_commit_leaves_out_is_abandoned_not_left_waiting() {
        let queue = Arc::new(GroupCommit::<u32, u32>::default());
        let wait = Duration::from_secs(10);
        let forgotten = submit_on_thread(&queue, 7, |_group| Vec::new());
        assert_eq!(forgotten.recv_timeout(wait), Ok(Err(Abandoned)));
        let next = submit_on_thread(&queue, 8, doubled);
        assert_eq!(next.recv_timeout(wait), Ok(Ok(16)));
    }
}
