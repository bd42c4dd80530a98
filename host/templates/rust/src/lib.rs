//! The `{{name}}` service.
//!
//! Routes (all JSON):
//!
//! - `GET /api/{{name}}/items`: every item, in id order.
//! - `GET /api/{{name}}/items/{id}`: one item, or 404.
//! - `PUT /api/{{name}}/items/{id}`: creates or replaces an item,
//!   `{"name": "...", "quantity": 3}`.
//!
//! Keys in bucket `{{name}}`: `item:{id}` → the item; `event:{id}` marks an
//! event handled; `last-event:{topic}` → the last event handled per topic.

use bazaar_sdk::events::Event;
use bazaar_sdk::kv::{self, CommitError, Transaction};
use bazaar_sdk::{Error, Request, Response, Result, Router, log, platform};
use serde::{Deserialize, Serialize};

const BUCKET: &str = "{{name}}";
const ITEM_PREFIX: &str = "item:";
const MAX_NAME: usize = 100;

fn routes() -> Router {
    Router::new()
        .get("/api/{{name}}/items", list)
        .get("/api/{{name}}/items/{id}", get)
        .put("/api/{{name}}/items/{id}", put)
}

bazaar_sdk::service!(routes, events = on_event);

/// An item, as stored and returned.
#[derive(Debug, Serialize, Deserialize)]
struct Item {
    id: String,
    name: String,
    quantity: u32,
    updated_at: u64,
}

/// The fields a client sends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemInput {
    name: String,
    #[serde(default)]
    quantity: u32,
}

/// Checks an input and returns it normalised. Pure, so the unit tests below
/// run it natively.
fn validate(mut input: ItemInput) -> Result<ItemInput> {
    input.name = input.name.trim().to_owned();
    if !(1..=MAX_NAME).contains(&input.name.chars().count()) {
        return Err(Error::bad_request(format!(
            "name must be 1-{MAX_NAME} characters"
        )));
    }
    Ok(input)
}

fn key(id: &str) -> String {
    format!("{ITEM_PREFIX}{id}")
}

fn list(_req: Request) -> Result<Response> {
    let bucket = kv::open(BUCKET)?;
    let keys = bucket.keys_with_prefix(ITEM_PREFIX)?;
    let items: Vec<Item> = bucket.get_many_json(&keys)?;
    Response::json(200, &serde_json::json!({ "items": items }))
}

fn get(req: Request) -> Result<Response> {
    let id = req.param("id")?;
    let item: Item = kv::open(BUCKET)?
        .get_json(&key(id))?
        .ok_or_else(|| Error::not_found(format!("no item {id}")))?;
    Response::json(200, &item)
}

fn put(req: Request) -> Result<Response> {
    let input = validate(req.json()?)?;
    let item = Item {
        id: req.param("id")?.to_owned(),
        name: input.name,
        quantity: input.quantity,
        updated_at: platform::unix_time(),
    };
    kv::open(BUCKET)?.set_json(&key(&item.id), &item)?;
    Response::json(200, &item)
}

/// Handles the topics in this service's `subscribes`.
///
/// Delivery is at least once, so the event id is recorded in the same
/// transaction as the event's effect: a redelivery then conflicts and is
/// skipped. An error means "not handled": the host delivers it again.
fn on_event(event: Event) -> Result<()> {
    let bucket = kv::open(BUCKET)?;
    let marker = format!("event:{}", event.id);
    let summary = serde_json::json!({
        "id": event.id,
        "source": event.source,
        "payload": event.text(),
    });
    let committed = Transaction::new()
        .require_absent(&bucket, &marker)
        .set(&bucket, &marker, b"")
        .set_json(&bucket, &format!("last-event:{}", event.topic), &summary)
        .commit();
    match committed {
        Ok(_) => log::info(&format!("handled event {} on `{}`", event.id, event.topic)),
        Err(CommitError::Conflict(_)) => log::info(&format!("event {} was already handled", event.id)),
        Err(other) => return Err(other.into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: &str) -> ItemInput {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{json} should parse: {e}"))
    }

    #[test]
    fn names_are_trimmed_and_quantity_defaults_to_zero() {
        let item = validate(input(r#"{"name": "  tea "}"#)).expect("a valid item");
        assert_eq!((item.name.as_str(), item.quantity), ("tea", 0));
    }

    #[test]
    fn empty_and_overlong_names_are_a_400() {
        let long = format!(r#"{{"name": "{}"}}"#, "x".repeat(MAX_NAME + 1));
        for json in [r#"{"name": "  "}"#, long.as_str()] {
            let error = validate(input(json)).expect_err("expected a refusal");
            assert_eq!(error.status, 400, "for {json}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let parsed = serde_json::from_str::<ItemInput>(r#"{"name": "tea", "colour": "red"}"#);
        assert!(parsed.is_err(), "expected `colour` to be refused");
    }
}
