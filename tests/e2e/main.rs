//! End-to-end tests: the real host on ephemeral loopback ports, real
//! components built from `components/`, real HTTP.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

mod cli;
mod data;
mod deploy;
mod hostile;
mod passthrough;
mod products;
mod routing;
mod users;
