//! Turning events into messages, exactly once per event id although
//! delivery is at least once.

use crate::message::{compose, marker_key, message_key};
use crate::store;
use bazaar_sdk::events::Event;
use bazaar_sdk::kv::{CommitError, Transaction};
use bazaar_sdk::log;

/// Handles one `user-registered` or `order-placed` event. The marker
/// `event:{id}` is required absent and written with the message in one
/// commit, so of two deliveries of one event, even concurrent ones, only
/// one writes; the other loses on the marker and is done. An event that
/// can never make a message is logged and acknowledged: retrying it would
/// fail the same way forever.
pub fn handle(event: Event) -> Result<(), String> {
    let note = match compose(&event.topic, &event.payload, &event.id, event.published_at) {
        Ok(note) => note,
        Err(reason) => {
            log::warn(&format!("skipping event {}: {reason}", event.id));
            return Ok(());
        }
    };
    let bucket = store::bucket().map_err(|e| e.to_string())?;
    let marker = marker_key(&event.id);
    let key = message_key(&note.user_id, event.published_at, &event.id);
    let committed = Transaction::new()
        .require_absent(&bucket, &marker)
        .set_json(&bucket, &marker, &key)
        .set_json(&bucket, &key, &note)
        .commit();
    match committed {
        Ok(_) => Ok(()),
        // The marker is the only condition: this event was handled already.
        Err(CommitError::Conflict(_)) => {
            log::debug(&format!("event {} was handled already", event.id));
            Ok(())
        }
        // The store failed: not handled, so the host delivers it again.
        Err(other) => Err(format!(
            "storing the message of event {}: {other}",
            event.id
        )),
    }
}
