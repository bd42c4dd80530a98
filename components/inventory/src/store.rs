//! The bucket and the compare-and-swap retry loop every change goes
//! through.

use bazaar_sdk::kv::{self, CommitError, Transaction};
use bazaar_sdk::{Error, Result, platform};
use std::time::Duration;

/// How many times a change is re-read and retried after losing a race;
/// each loss means another change went through, so this bounds the wait,
/// not the progress.
const MAX_ATTEMPTS: u32 = 50;
/// Longest pause between two attempts, in ms.
const MAX_BACKOFF_MS: u64 = 20;

/// The inventory bucket.
pub fn bucket() -> Result<kv::Bucket> {
    Ok(kv::open("inventory")?)
}

/// The end of one attempt at a change.
pub enum Attempt<T> {
    /// Finished: answer with this.
    Done(T),
    /// Lost a race: what was read changed before the commit; read again.
    Retry,
}

/// Commits `tx`; a conflict asks for another attempt, and `done` is the
/// answer once it committed.
pub fn commit<T>(tx: Transaction, done: T) -> Result<Attempt<T>> {
    match tx.commit() {
        Ok(_) => Ok(Attempt::Done(done)),
        Err(CommitError::Conflict(_)) => Ok(Attempt::Retry),
        Err(other) => Err(other.into()),
    }
}

/// Runs `attempt` until it is done, at most [`MAX_ATTEMPTS`] times, with a
/// short random pause after each lost race so that racers spread out
/// instead of colliding again at once; then a 503.
pub fn with_retries<T>(mut attempt: impl FnMut() -> Result<Attempt<T>>) -> Result<T> {
    for round in 0..MAX_ATTEMPTS {
        if let Attempt::Done(value) = attempt()? {
            return Ok(value);
        }
        platform::sleep(Duration::from_millis(backoff_ms(round)));
    }
    Err(Error::new(
        503,
        "inventory is busy with other changes to the same stock; retry",
    ))
}

/// A random pause below a ceiling that doubles each round up to
/// [`MAX_BACKOFF_MS`].
fn backoff_ms(round: u32) -> u64 {
    let ceiling = 1u64
        .checked_shl(round.min(5))
        .unwrap_or(MAX_BACKOFF_MS)
        .min(MAX_BACKOFF_MS);
    let random = platform::random_bytes(1).first().copied().unwrap_or(0);
    u64::from(random) % (ceiling + 1)
}

/// A stored value decoded from JSON; a value that does not decode is the
/// service's own fault, so a 500.
pub fn decode<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::internal(format!("`{key}` is not valid: {e}")))
}
