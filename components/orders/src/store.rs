//! The bucket and the clock.

use bazaar_sdk::bindings::wasi::clocks::wall_clock;
use bazaar_sdk::{Result, kv};

/// The orders bucket.
pub fn bucket() -> Result<kv::Bucket> {
    Ok(kv::open("orders")?)
}

/// Now, in milliseconds since the Unix epoch (the SDK's clock has seconds).
pub fn now_ms() -> u64 {
    let now = wall_clock::now();
    now.seconds
        .saturating_mul(1000)
        .saturating_add(u64::from(now.nanoseconds / 1_000_000))
}
