//! The service's store and events: raw reads and writes, counters, scans,
//! compare-and-swap, transactions (the outbox) and publishing.

use bazaar_sdk::events::{self, PublishError};
use bazaar_sdk::kv::{self, CommitError, Transaction};
use bazaar_sdk::{Error, Request, Response, Result};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Entries a scan returns when the request names no `limit`.
const DEFAULT_SCAN_LIMIT: u32 = 100;

/// The raw value of a key; 404 if absent.
pub fn kv_get(req: Request) -> Result<Response> {
    match kv::open(req.param("bucket")?)?.get(req.param("key")?)? {
        Some(value) => Ok(Response::new(200).with_body(value)),
        None => Err(Error::not_found("no such key")),
    }
}

/// Sets a key to the request body.
pub fn kv_put(req: Request) -> Result<Response> {
    kv::open(req.param("bucket")?)?.set(req.param("key")?, &req.body)?;
    Ok(Response::new(204))
}

/// Deletes a key.
pub fn kv_delete(req: Request) -> Result<Response> {
    kv::open(req.param("bucket")?)?.delete(req.param("key")?)?;
    Ok(Response::new(204))
}

/// Increments counter `key` of bucket `counters`: `{"value": n}`.
pub fn counter(req: Request) -> Result<Response> {
    let value = kv::open("counters")?.increment(req.param("key")?, 1)?;
    Response::json(200, &json!({ "value": value }))
}

/// `{"expected": text|null, "new": text|null}`, `null` meaning absent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Swap {
    #[serde(default)]
    expected: Option<String>,
    #[serde(default)]
    new: Option<String>,
}

/// Compare-and-swap on one key: `{"swapped": bool}`.
pub fn cas(req: Request) -> Result<Response> {
    let swap: Swap = req.json()?;
    let swapped = kv::open(req.param("bucket")?)?.compare_and_swap(
        req.param("key")?,
        swap.expected.as_deref().map(str::as_bytes),
        swap.new.as_deref().map(str::as_bytes),
    )?;
    Response::json(200, &json!({ "swapped": swapped }))
}

/// One page of keys: `?prefix=P&after=A&limit=N` → `{"keys": [...], "next": key|null}`.
pub fn scan(req: Request) -> Result<Response> {
    let prefix = req.query_param("prefix").unwrap_or_default();
    let after = req.query_param("after");
    let limit = match req.query_param("limit") {
        Some(limit) => limit
            .parse()
            .map_err(|_| Error::bad_request("limit must be a number"))?,
        None => DEFAULT_SCAN_LIMIT,
    };
    let page = kv::open(req.param("bucket")?)?.scan(&prefix, after.as_deref(), limit)?;
    let keys: Vec<String> = page.entries.into_iter().map(|(key, _)| key).collect();
    Response::json(200, &json!({ "keys": keys, "next": page.next }))
}

/// What `POST /{svc}/tx/{bucket}` commits.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TxInput {
    /// Keys that must not exist.
    #[serde(default)]
    require_absent: Vec<String>,
    /// Keys to set; a string value is stored as its text, anything else as JSON.
    #[serde(default)]
    set: Map<String, Value>,
    /// Events to publish if the commit succeeds.
    #[serde(default)]
    publish: Vec<TxEvent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TxEvent {
    topic: String,
    /// A string is published as its text, anything else as JSON.
    payload: Value,
}

fn bytes_of(value: &Value) -> Vec<u8> {
    match value {
        Value::String(text) => text.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    }
}

/// One transaction: `{"events": [ids]}`, or 409 on a conflict, 403 when a
/// topic is denied, 400 when the transaction is invalid.
pub fn tx(req: Request) -> Result<Response> {
    let input: TxInput = req.json()?;
    let bucket = kv::open(req.param("bucket")?)?;
    let mut tx = Transaction::new();
    for key in &input.require_absent {
        tx = tx.require_absent(&bucket, key);
    }
    for (key, value) in &input.set {
        tx = tx.set(&bucket, key, &bytes_of(value));
    }
    for event in &input.publish {
        tx = tx.publish(&event.topic, &bytes_of(&event.payload));
    }
    let ids = tx.commit().map_err(|error| {
        let status = match &error {
            CommitError::Conflict(_) => 409,
            CommitError::Denied(_) => 403,
            CommitError::Invalid(_) => 400,
            CommitError::Store(_) => 500,
        };
        Error::new(status, error.to_string())
    })?;
    Response::json(200, &json!({ "events": ids }))
}

/// Publishes the body to `topic`: `{"id": ...}`, or 403 when denied, 400
/// when invalid, 503 when events are unavailable.
pub fn publish(req: Request) -> Result<Response> {
    let id = events::publish(req.param("topic")?, &req.body).map_err(|error| {
        let status = match &error {
            PublishError::Denied(_) => 403,
            PublishError::Invalid(_) => 400,
            PublishError::Unavailable(_) => 503,
        };
        Error::new(status, error.to_string())
    })?;
    Response::json(200, &json!({ "id": id }))
}
