//! Group commit: writers arriving together share one commit (one
//! transaction, one sync), with the same durability as one each.
//!
//! A writer queues its operation. If no commit is running, it becomes the
//! leader: it takes everything queued, commits it in one go, and hands every
//! waiter its own outcome. Otherwise it waits for a leader to answer it.
//! Used by each service's key-value store and by the deployment records.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// The queue of one database's writers, and the outcomes not yet taken.
pub struct GroupCommit<Op, Outcome> {
    state: Mutex<State<Op, Outcome>>,
    answered: Condvar,
}

struct State<Op, Outcome> {
    next_ticket: u64,
    queued: Vec<(u64, Op)>,
    leading: bool,
    outcomes: HashMap<u64, Outcome>,
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
    /// by ticket and must give an outcome for every ticket (a writer left
    /// without one would wait for ever). Blocks: call it off the async
    /// threads.
    pub fn submit(
        &self,
        op: Op,
        commit: impl FnOnce(Vec<(u64, Op)>) -> Vec<(u64, Outcome)>,
    ) -> Outcome {
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
            drop(state);
            let outcomes = commit(group);
            state = self.lock();
            state.outcomes.extend(outcomes);
            state.leading = false;
            self.answered.notify_all();
        }
    }
}
