//! The service's `[services.NAME.config]` values (`wasi:config`).

use crate::bindings::wasi::config::store;

/// The value of `key`, if set.
pub fn get(key: &str) -> Option<String> {
    store::get(key).ok().flatten()
}

/// The value of `key` parsed as `T`, or `default` if unset or unparsable.
pub fn get_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    get(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Every key and value.
pub fn all() -> Vec<(String, String)> {
    store::get_all().unwrap_or_default()
}
