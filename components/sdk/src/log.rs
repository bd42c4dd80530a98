//! Log lines (`wasi:logging`); the host adds the service name and version.

use crate::bindings::wasi::logging::logging::{Level, log};

/// Logs at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, "", message);
}

/// Logs at info level.
pub fn info(message: &str) {
    log(Level::Info, "", message);
}

/// Logs at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, "", message);
}

/// Logs at error level.
pub fn error(message: &str) {
    log(Level::Error, "", message);
}
