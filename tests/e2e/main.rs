//! End-to-end tests: the real host on ephemeral loopback ports, real
//! components built from `components/`, real HTTP.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

mod calls;
mod cli;
mod data;
mod deploy;
mod events;
mod fleet;
mod hostile;
mod lifecycle;
mod observe;
mod outbound;
mod passthrough;
mod policies;
mod products;
mod retailer;
mod routing;
mod scaffold;
mod stdio;
mod swap;
mod users;
mod warm;
