//! Optimistic changes: read, build a [`Transaction`] that `require`s what
//! was read, commit; when another change got there first, read again.
//!
//! ```ignore
//! let stock = kv::with_retries("the stock is busy; retry", || {
//!     let stored = bucket.get(&key)?;
//!     let mut stock: Stock = match &stored {
//!         Some(bytes) => kv::decode_json(&key, bytes)?,
//!         None => Stock::default(),
//!     };
//!     stock.on_hand += 1;
//!     Transaction::new()
//!         .require(&bucket, &key, stored.as_deref())
//!         .set_json(&bucket, &key, &stock)
//!         .commit_or_retry(stock)
//! })?;
//! ```

use super::transaction::{CommitError, Transaction};
use crate::error::{Error, Result};
use crate::platform;
use std::time::Duration;

/// How many times [`with_retries`] runs a change that keeps losing races;
/// each loss means another change went through, so this bounds the wait,
/// not the progress.
pub const MAX_ATTEMPTS: u32 = 50;
/// Longest pause between two attempts, in ms.
const MAX_BACKOFF_MS: u64 = 20;

/// The end of one attempt at a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt<T> {
    /// Finished: answer with this.
    Done(T),
    /// Lost a race: what was read changed before the commit; read again.
    Retry,
}

impl Transaction {
    /// Commits; `done` is the answer once it has, and a conflict (a
    /// `require` that no longer held) asks [`with_retries`] for another
    /// attempt. Any other failure is an error (see [`CommitError`]).
    pub fn commit_or_retry<T>(self, done: T) -> Result<Attempt<T>> {
        match self.commit() {
            Ok(_) => Ok(Attempt::Done(done)),
            Err(CommitError::Conflict(_)) => Ok(Attempt::Retry),
            Err(other) => Err(other.into()),
        }
    }
}

/// Runs `attempt` until it is done, at most [`MAX_ATTEMPTS`] times, with a
/// short random pause after each lost race so that racers spread out
/// instead of colliding again at once; then a 503 saying `busy`.
pub fn with_retries<T>(busy: &str, mut attempt: impl FnMut() -> Result<Attempt<T>>) -> Result<T> {
    for round in 0..MAX_ATTEMPTS {
        if let Attempt::Done(value) = attempt()? {
            return Ok(value);
        }
        let random = platform::random_bytes(1).first().copied().unwrap_or(0);
        platform::sleep(Duration::from_millis(
            u64::from(random) % (backoff_ceiling_ms(round) + 1),
        ));
    }
    Err(Error::new(503, busy))
}

/// The longest pause after losing round `round` (from 0): 1 ms, doubling
/// each round, up to [`MAX_BACKOFF_MS`].
fn backoff_ceiling_ms(round: u32) -> u64 {
    1u64.checked_shl(round.min(5))
        .unwrap_or(MAX_BACKOFF_MS)
        .min(MAX_BACKOFF_MS)
}

/// A stored value of `key` decoded from JSON; one that does not decode is
/// the service's own fault, so a 500 whose detail is logged, not sent.
pub fn decode_json<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::internal(format!("`{key}` is not valid: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_doubles_from_one_millisecond_up_to_its_ceiling() {
        let ceilings: Vec<u64> = (0..8).map(backoff_ceiling_ms).collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 20, 20, 20]);
        assert_eq!(backoff_ceiling_ms(u32::MAX), MAX_BACKOFF_MS);
    }
}
