//! Randomness and time from WASI.

use crate::bindings::wasi::clocks::{monotonic_clock, wall_clock};
use crate::bindings::wasi::random::random;

/// `len` cryptographically secure random bytes.
pub fn random_bytes(len: u64) -> Vec<u8> {
    random::get_random_bytes(len)
}

/// A random identifier: 16 lowercase hex digits.
pub fn random_id() -> String {
    random_bytes(8).iter().map(|b| format!("{b:02x}")).collect()
}

/// Seconds since the Unix epoch.
pub fn unix_time() -> u64 {
    wall_clock::now().seconds
}

/// Blocks for `duration` on the monotonic clock (the host may cut a
/// request short first, per its timeout).
pub fn sleep(duration: std::time::Duration) {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    monotonic_clock::subscribe_duration(nanos).block();
}
