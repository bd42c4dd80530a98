//! The messages events turn into, and their keys: pure, so they run in
//! native unit tests.

use serde::{Deserialize, Serialize};

/// A message for a user, at [`message_key`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The id of the event it came from: one event, one message.
    pub id: String,
    /// Whom it is for.
    pub user_id: String,
    /// `welcome` or `order-confirmation`.
    pub kind: String,
    /// The text to show.
    pub message: String,
    /// The event it came from.
    pub event_id: String,
    /// When the event was published, in ms since the Unix epoch: the same
    /// on every redelivery, and the time the key sorts by.
    pub created_at_ms: u64,
}

/// The `user-registered` payload, as far as a message needs it.
#[derive(Deserialize)]
struct UserRegistered {
    user_id: String,
    username: String,
}

/// The `order-placed` payload, as far as a message needs it.
#[derive(Deserialize)]
struct OrderPlaced {
    order_id: String,
    user_id: String,
    items: Vec<PlacedItem>,
    total_cents: u64,
    currency: String,
}

#[derive(Deserialize)]
struct PlacedItem {
    quantity: u64,
}

/// The message for an event; `Err` says why the event makes none (an
/// unknown topic or a payload that does not fit), which is final: the same
/// event will never make one.
pub fn compose(
    topic: &str,
    payload: &[u8],
    event_id: &str,
    published_at_ms: u64,
) -> Result<Notification, String> {
    let (user_id, kind, message) = match topic {
        "user-registered" => {
            let event: UserRegistered = decode(topic, payload)?;
            let text = format!("Welcome to Bazaar, {}!", event.username);
            (event.user_id, "welcome", text)
        }
        "order-placed" => {
            let event: OrderPlaced = decode(topic, payload)?;
            let units = event
                .items
                .iter()
                .fold(0u64, |sum, item| sum.saturating_add(item.quantity));
            let text = format!(
                "Your order {} of {units} item(s) for {} {} is confirmed.",
                event.order_id,
                format_amount(event.total_cents),
                event.currency
            );
            (event.user_id, "order-confirmation", text)
        }
        other => return Err(format!("no message for topic `{other}`")),
    };
    if !bazaar_sdk::is_valid_id(&user_id) {
        return Err(format!("`{topic}` names an invalid user id"));
    }
    Ok(Notification {
        id: event_id.to_owned(),
        user_id,
        kind: kind.to_owned(),
        message,
        event_id: event_id.to_owned(),
        created_at_ms: published_at_ms,
    })
}

fn decode<'a, T: Deserialize<'a>>(topic: &str, payload: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(payload).map_err(|e| format!("`{topic}` payload does not fit: {e}"))
}

/// Cents as a decimal amount: 1299 → `12.99`, 5 → `0.05`.
pub fn format_amount(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// The marker that an event was handled.
pub fn marker_key(event_id: &str) -> String {
    format!("event:{event_id}")
}

/// The prefix of a user's messages.
pub fn user_prefix(user_id: &str) -> String {
    format!("msg:{user_id}:")
}

/// A message's key: the time counts down, so a prefix scan, which goes up
/// in key order, meets the newest message first.
pub fn message_key(user_id: &str, published_at_ms: u64, event_id: &str) -> String {
    format!(
        "{}{:020}:{event_id}",
        user_prefix(user_id),
        u64::MAX - published_at_ms
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_have_two_decimals() {
        assert_eq!(format_amount(1299), "12.99");
        assert_eq!(format_amount(5), "0.05");
        assert_eq!(format_amount(100), "1.00");
        assert_eq!(format_amount(0), "0.00");
    }

    #[test]
    fn newer_messages_sort_first() {
        let older = message_key("u", 1_000, "e1");
        let newer = message_key("u", 2_000, "e2");
        assert!(newer < older, "{newer} should sort before {older}");
        assert!(newer.starts_with(&user_prefix("u")));
        assert_eq!(
            message_key("u", u64::MAX, "e"),
            format!("msg:u:{:020}:e", 0)
        );
    }

    #[test]
    fn a_registration_makes_a_welcome() {
        let payload = br#"{"user_id":"u1","username":"ann","email":"a@x.io"}"#;
        let note = compose("user-registered", payload, "e1", 7).unwrap();
        assert_eq!(note.kind, "welcome");
        assert_eq!(note.message, "Welcome to Bazaar, ann!");
        assert_eq!((note.id.as_str(), note.user_id.as_str()), ("e1", "u1"));
        assert_eq!(note.created_at_ms, 7);
    }

    #[test]
    fn an_order_makes_a_confirmation_counting_units() {
        let payload = br#"{"order_id":"o1","user_id":"u1","items":[
            {"product_id":"p","name":"P","quantity":2,"unit_price_cents":500},
            {"product_id":"q","name":"Q","quantity":1,"unit_price_cents":299}],
            "total_cents":1299,"currency":"USD","payment_id":"pay1"}"#;
        let note = compose("order-placed", payload, "e2", 9).unwrap();
        assert_eq!(note.kind, "order-confirmation");
        assert_eq!(
            note.message,
            "Your order o1 of 3 item(s) for 12.99 USD is confirmed."
        );
    }

    #[test]
    fn garbage_unknown_topics_and_bad_user_ids_make_no_message() {
        assert!(compose("user-registered", b"not json", "e", 1).is_err());
        assert!(compose("price-changed", b"{}", "e", 1).is_err());
        let sneaky = br#"{"user_id":"u1:x","username":"ann"}"#;
        assert!(compose("user-registered", sneaky, "e", 1).is_err());
    }
}
