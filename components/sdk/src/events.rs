//! Durable events between services (`bazaar:platform/events`).
//!
//! Publish with [`publish`] (or inside a [`crate::kv::Transaction`], so the
//! event is stored with the writes it announces). Receive the topics a
//! service subscribes to by naming a handler in [`crate::service!`]:
//!
//! ```ignore
//! fn on_event(event: Event) -> Result<(), bazaar_sdk::Error> {
//!     let order: Order = event.json()?;
//!     // ...
//!     Ok(())
//! }
//! bazaar_sdk::service!(routes, events = on_event);
//! ```
//!
//! Delivery is at least once: an error or a trap means "deliver again
//! later", and a redelivery carries the same [`Event::id`].

use crate::bindings::bazaar::platform::events as wit;
use crate::error::Error;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// One event, as a subscriber receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Unique id, the same on every redelivery: drop duplicates by it.
    pub id: String,
    /// The topic it was published to.
    pub topic: String,
    /// The service that published it.
    pub source: String,
    /// The payload, as published.
    pub payload: Vec<u8>,
    /// When it was published, in milliseconds since the Unix epoch.
    pub published_at: u64,
    /// 1 on the first delivery, 2 on the first retry, and so on.
    pub attempt: u32,
}

impl Event {
    /// The payload decoded from JSON. The error converts with `?` into
    /// either a `String` or an [`Error`], whichever the handler returns.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        serde_json::from_slice(&self.payload).map_err(|e| {
            PayloadError(format!(
                "event {} on `{}` is not the JSON expected: {e}",
                self.id, self.topic
            ))
        })
    }

    /// The payload as text (invalid UTF-8 becomes U+FFFD).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// An event payload that is not the JSON expected; names the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError(String);

impl std::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PayloadError {}

impl From<PayloadError> for String {
    fn from(err: PayloadError) -> Self {
        err.0
    }
}

/// A 400: the publisher sent a payload this service cannot read.
impl From<PayloadError> for Error {
    fn from(err: PayloadError) -> Self {
        Error::bad_request(err.0)
    }
}

impl From<wit::Event> for Event {
    fn from(event: wit::Event) -> Self {
        Self {
            id: event.id,
            topic: event.topic,
            source: event.source,
            payload: event.payload,
            published_at: event.published_at,
            attempt: event.attempt,
        }
    }
}

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// The service may not publish to this topic (`publishes` in `gateway.toml`).
    Denied(String),
    /// The topic or payload is not acceptable (empty, too long, too large).
    Invalid(String),
    /// The event could not be stored.
    Unavailable(String),
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Denied(m) => write!(f, "denied: {m}"),
            Self::Invalid(m) => write!(f, "invalid: {m}"),
            Self::Unavailable(m) => write!(f, "unavailable: {m}"),
        }
    }
}

impl std::error::Error for PublishError {}

impl From<wit::PublishError> for PublishError {
    fn from(err: wit::PublishError) -> Self {
        match err {
            wit::PublishError::Denied(m) => Self::Denied(m),
            wit::PublishError::Invalid(m) => Self::Invalid(m),
            wit::PublishError::Unavailable(m) => Self::Unavailable(m),
        }
    }
}

/// A denied or invalid publish is the service's own mistake (its grants or
/// its code), not the client's: a 500 whose detail is logged, not sent. An
/// unavailable event store is a 503 the client may retry.
impl From<PublishError> for Error {
    fn from(err: PublishError) -> Self {
        match err {
            PublishError::Unavailable(m) => {
                crate::log::error(&format!("publish failed: {m}"));
                Error::new(503, "events are unavailable; retry later")
            }
            other => Error::internal(format!("publish failed: {other}")),
        }
    }
}

/// Publishes `payload` to `topic`; the event is stored durably before this
/// returns. Returns its id.
pub fn publish(topic: &str, payload: &[u8]) -> Result<String, PublishError> {
    Ok(wit::publish(topic, payload)?)
}

/// Publishes `value` as JSON to `topic`. Returns the event's id.
pub fn publish_json<T: Serialize + ?Sized>(topic: &str, value: &T) -> Result<String, PublishError> {
    let payload = serde_json::to_vec(value)
        .map_err(|e| PublishError::Invalid(format!("payload is not encodable as JSON: {e}")))?;
    publish(topic, &payload)
}

/// Runs `handler` on a delivered event; its error's `Display` becomes the
/// `string` the host logs before redelivering (for an [`Error`], its status
/// and client message; [`Error::internal`] has already logged the detail).
/// Called by [`crate::service!`].
#[doc(hidden)]
pub fn deliver<E: std::fmt::Display>(
    event: wit::Event,
    handler: impl FnOnce(Event) -> Result<(), E>,
) -> Result<(), String> {
    handler(event.into()).map_err(|e| e.to_string())
}

/// The event handler of a service that names none in [`crate::service!`].
#[doc(hidden)]
pub fn no_events(_event: Event) -> Result<(), String> {
    Err("this service handles no events".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payload: &str) -> wit::Event {
        wit::Event {
            id: "e1".into(),
            topic: "orders".into(),
            source: "shop".into(),
            payload: payload.as_bytes().to_vec(),
            published_at: 7,
            attempt: 2,
        }
    }

    #[test]
    fn a_handlers_error_text_is_what_the_host_gets() {
        let result = deliver(event("x"), |e: Event| Err(format!("no {}", e.text())));
        assert_eq!(result, Err("no x".to_owned()));
        let ok = deliver(event("x"), |e: Event| {
            assert_eq!((e.id.as_str(), e.attempt, e.published_at), ("e1", 2, 7));
            Ok::<(), String>(())
        });
        assert_eq!(ok, Ok(()));
    }

    #[test]
    fn services_without_a_handler_refuse_events() {
        assert_eq!(
            deliver(event("x"), no_events),
            Err("this service handles no events".to_owned())
        );
    }

    #[test]
    fn payload_errors_convert_to_string_and_to_a_400() {
        let bad = Event::from(event("not json"));
        let as_text: String = bad.json::<u32>().map_err(String::from).unwrap_err();
        assert!(as_text.contains("event e1 on `orders`"), "got {as_text}");
        let as_error: Error = bad.json::<u32>().map_err(Error::from).unwrap_err();
        assert_eq!(as_error.status, 400);
    }
}
