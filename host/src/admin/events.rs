//! `/events`: subscriptions, dead letters, replay.

use super::{AdminError, AdminState};
use crate::events::{DeadLetter, SubscriptionStats};
use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use std::sync::Arc;

pub(super) async fn subscriptions(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<Vec<SubscriptionStats>>, AdminError> {
    let stats = state
        .log
        .stats()
        .await
        .map_err(|e| AdminError::Internal(format!("cannot read the event log: {e:#}")))?;
    Ok(Json(stats))
}

/// Query of `GET /events/dead-letters`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct DeadLetterQuery {
    /// Only this subscriber's.
    subscriber: Option<String>,
}

pub(super) async fn dead_letters(
    State(state): State<Arc<AdminState>>,
    Query(query): Query<DeadLetterQuery>,
) -> Result<Json<Vec<DeadLetter>>, AdminError> {
    let letters = state
        .log
        .dead_letters(query.subscriber)
        .await
        .map_err(|e| AdminError::Internal(format!("cannot read the event log: {e:#}")))?;
    Ok(Json(letters))
}

/// Body of `POST /events/dead-letters/replay`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayBody {
    /// Whose dead letters.
    subscriber: String,
    /// Of this topic only.
    #[serde(default)]
    topic: Option<String>,
}

pub(super) async fn replay(
    State(state): State<Arc<AdminState>>,
    super::JsonBody(body): super::JsonBody<ReplayBody>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let replayed = state
        .log
        .replay(body.subscriber.clone(), body.topic)
        .await
        .map_err(|e| AdminError::Internal(format!("cannot replay dead letters: {e:#}")))?;
    state.delivery.wake_subscriber(&body.subscriber);
    Ok(Json(serde_json::json!({ "replayed": replayed })))
}
