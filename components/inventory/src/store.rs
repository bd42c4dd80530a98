//! The bucket every change goes through, and the retry loop of its
//! compare-and-swap changes with this service's answer when they keep
//! losing races.

use bazaar_sdk::Result;
use bazaar_sdk::kv::{self, Attempt};

/// The inventory bucket.
pub fn bucket() -> Result<kv::Bucket> {
    Ok(kv::open("inventory")?)
}

/// Runs `attempt` until it is done (see [`kv::with_retries`]); a change
/// that loses every race is a 503.
pub fn with_retries<T>(attempt: impl FnMut() -> Result<Attempt<T>>) -> Result<T> {
    kv::with_retries(
        "inventory is busy with other changes to the same stock; retry",
        attempt,
    )
}
