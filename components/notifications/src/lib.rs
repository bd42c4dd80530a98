//! The `notifications` service: a message for each user on the events
//! that concern them — a welcome on `user-registered`, a confirmation on
//! `order-placed` — and `GET /api/notifications?user={id}` to read them,
//! which only that user or an `admin` may.
//!
//! Keys in bucket `notifications`:
//! - `event:{event_id}` → the key of the message it made: the marker
//!   that keeps a redelivered event from making a second one;
//! - `msg:{user_id}:{(u64::MAX - published_at_ms):020}:{event_id}` → the
//!   message, newest first within each user.
//!
//! # Layout
//!
//! - `message`: messages, their text and their keys.
//! - `handler`: the event handler, once per event id.
//! - `read`: listing a user's messages.
//! - `store`: the bucket.

mod handler;
mod message;
mod read;
mod store;

use bazaar_sdk::Router;

fn routes() -> Router {
    Router::new().get("/api/notifications", read::list)
}

bazaar_sdk::service!(routes, events = handler::handle);
