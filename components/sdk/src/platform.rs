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

/// Milliseconds since the Unix epoch.
pub fn unix_time_ms() -> u64 {
    let now = wall_clock::now();
    millis(now.seconds, now.nanoseconds)
}

/// A wall-clock reading in whole milliseconds, saturating rather than
/// wrapping on a clock far in the future.
fn millis(seconds: u64, nanoseconds: u32) -> u64 {
    seconds
        .saturating_mul(1000)
        .saturating_add(u64::from(nanoseconds / 1_000_000))
}

/// Blocks for `duration` on the monotonic clock (the host may cut a
/// request short first, per its timeout).
pub fn sleep(duration: std::time::Duration) {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    monotonic_clock::subscribe_duration(nanos).block();
}

#[cfg(test)]
mod tests {
    use super::millis;

    #[test]
    fn milliseconds_truncate_nanoseconds_and_saturate() {
        assert_eq!(millis(1_700_000_000, 999_999_999), 1_700_000_000_999);
        assert_eq!(millis(0, 1_000_000), 1);
        assert_eq!(millis(u64::MAX, 5_000_000), u64::MAX);
    }
}
