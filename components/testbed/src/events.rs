//! The event handler, steered by data so tests can make it fail, trap or
//! stall, and the record it keeps of what it received.
//!
//! Keys in bucket `events`: `deliveries:{id}` counts every delivery that
//! reached the recording step (so duplicates show), `seen:{id}` marks an
//! id recorded, and `log:{seq}` (zero-padded, so keys sort in arrival
//! order) holds each id's first delivery, recorded exactly once.

use bazaar_sdk::events::Event;
use bazaar_sdk::kv::{self, CommitError, Transaction};
use bazaar_sdk::{Error, Request, Response, Result, platform};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One recorded delivery.
#[derive(Serialize, Deserialize)]
struct Entry {
    id: String,
    topic: String,
    source: String,
    /// The payload as text (invalid UTF-8 becomes U+FFFD).
    payload: String,
    attempt: u32,
}

/// Handles one event; the payload and bucket `control` decide how:
///
/// - `control`/`fail` = `1`: fail ("told to fail");
/// - payload `fail-until:N`: fail while the attempt is below N;
/// - payload `trap...`: panic;
/// - payload `sleep:MS`: sleep MS milliseconds, then record;
/// - anything else: record.
///
/// Every delivery counts in the instance's memory counter (see
/// [`crate::basic::count_served`]).
pub fn handle(event: Event) -> Result<(), String> {
    crate::basic::count_served();
    let text = event.text();
    if kv::open("control")
        .and_then(|c| c.get("fail"))
        .map_err(|e| e.to_string())?
        == Some(b"1".to_vec())
    {
        return Err("told to fail".into());
    }
    if let Some(until) = text.strip_prefix("fail-until:") {
        let until: u32 = leading_number(until);
        if event.attempt < until {
            return Err(format!(
                "failing until attempt {until}; this is attempt {}",
                event.attempt
            ));
        }
    }
    if text.starts_with("trap") {
        panic!("the testbed was told to trap on event {}", event.id);
    }
    if let Some(ms) = text.strip_prefix("sleep:") {
        platform::sleep(Duration::from_millis(leading_number(ms)));
    }
    record(&event, text).map_err(|e| e.to_string())
}

/// The decimal number `text` starts with (0 if none).
fn leading_number<T: std::str::FromStr + Default>(text: &str) -> T {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.get(..end)
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_default()
}

/// Counts the delivery, then records the id's first delivery once: the
/// sequence number is taken first, and the commit that claims it requires
/// `seen:{id}` absent, so a duplicate (even a concurrent one) conflicts
/// and is dropped, leaving at most a gap in the numbering.
fn record(event: &Event, payload: String) -> Result<(), Box<dyn std::error::Error>> {
    let bucket = kv::open("events")?;
    bucket.increment(&format!("deliveries:{}", event.id), 1)?;
    let seen = format!("seen:{}", event.id);
    if bucket.exists(&seen)? {
        return Ok(());
    }
    let seq = bucket.increment("log-seq", 1)?;
    let entry = Entry {
        id: event.id.clone(),
        topic: event.topic.clone(),
        source: event.source.clone(),
        payload,
        attempt: event.attempt,
    };
    let committed = Transaction::new()
        .require_absent(&bucket, &seen)
        .set(&bucket, &seen, b"1")
        .set_json(&bucket, &format!("log:{seq:020}"), &entry)
        .commit();
    match committed {
        Ok(_) | Err(CommitError::Conflict(_)) => Ok(()),
        Err(other) => Err(other.into()),
    }
}

/// The recorded deliveries in arrival order, each with `deliveries`: how
/// many times its id was delivered.
pub fn list(_req: Request) -> Result<Response> {
    let bucket = kv::open("events")?;
    let mut entries = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = bucket.scan_json::<Entry>("log:", after.as_deref(), 1000)?;
        for (_, entry) in page.entries {
            // Adding 0 reads a counter without changing it.
            let deliveries = bucket.increment(&format!("deliveries:{}", entry.id), 0)?;
            let mut value = serde_json::to_value(&entry).map_err(Error::internal)?;
            value["deliveries"] = deliveries.into();
            entries.push(value);
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Response::json(200, &entries)
}
