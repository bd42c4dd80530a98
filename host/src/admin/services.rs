//! `/services`: list, deploy (or add), remove and roll back.

use super::{AdminError, AdminState, SOURCE_HEADER};
use crate::config::ServiceSpec;
use crate::deploy::{DeployOutcome, DeployRequest, RemoveOutcome, ServiceStatus};
use crate::loader::{ComponentBytes, ComponentHasher};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use http_body_util::BodyExt as _;
use serde::Deserialize;
use std::sync::Arc;

pub(super) async fn list(State(state): State<Arc<AdminState>>) -> Json<Vec<ServiceStatus>> {
    Json(state.deployer.status().await)
}

pub(super) async fn show(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<ServiceStatus>, AdminError> {
    state
        .deployer
        .status()
        .await
        .into_iter()
        .find(|s| s.name == name)
        .map(Json)
        .ok_or_else(|| AdminError::NotFound(format!("there is no service `{name}`")))
}

/// `GET /fleet`: every host of the fleet and whether it serves the fleet's
/// versions; 404 on a host that is not in a fleet.
pub(super) async fn fleet(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<crate::fleet::follow::FleetView>, AdminError> {
    let Some(fleet) = &state.fleet else {
        return Err(AdminError::NotFound(
            "this host is not in a fleet ([backend] kind = \"embedded\")".into(),
        ));
    };
    let internal = |e: anyhow::Error| AdminError::Internal(format!("{e:#}"));
    let records = state.deployer.records().await.map_err(internal)?;
    let reports = fleet.hosts().await.map_err(internal)?;
    Ok(Json(crate::fleet::follow::view(
        fleet.host(),
        &records,
        reports,
    )))
}

/// Query of `PUT /services/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeployQuery {
    /// The service's spec as JSON, to add it or change a live-added one.
    spec: Option<String>,
    /// The version the client expects to be current (`none` for a new service).
    expected_version: Option<String>,
}

pub(super) async fn deploy(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    Query(query): Query<DeployQuery>,
    headers: http::HeaderMap,
    body: Body,
) -> Result<Json<DeployOutcome>, AdminError> {
    let spec = query
        .spec
        .map(|text| serde_json::from_str::<ServiceSpec>(&text))
        .transpose()
        .map_err(|e| AdminError::BadRequest(format!("the spec of `{name}` is invalid: {e}")))?;
    let source = headers
        .get(SOURCE_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 512)
        .unwrap_or("the uploaded component")
        .to_owned();
    let component = receive(&state, &name, &headers, body).await?;
    let request = DeployRequest {
        service: name,
        component,
        source,
        spec,
        expected: query.expected_version,
        from_file: false,
    };
    Ok(Json(state.deployer.deploy(request).await?))
}

/// Reads a component uploaded to `service`, at most the host's maximum
/// (declared or counted), keeping the pieces as they arrive while they
/// are hashed in parallel: no copy into one buffer, no second pass to hash
/// it. One whose declared size is that of a kept version of the service is
/// compared with it first (see [`ComponentHasher::start_matching`]).
async fn receive(
    state: &AdminState,
    service: &str,
    headers: &http::HeaderMap,
    mut body: Body,
) -> Result<ComponentBytes, AdminError> {
    let max = state.max_component_bytes;
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > max) {
        return Err(AdminError::TooLarge(max));
    }
    let candidates = match declared {
        Some(size) => state.deployer.kept_candidates(service, size).await,
        None => Vec::new(),
    };
    let mut component = ComponentHasher::start_matching(candidates);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            AdminError::BadRequest(format!("the upload was cut off or malformed: {e}"))
        })?;
        if let Ok(data) = frame.into_data() {
            if component.len().saturating_add(data.len()) > max {
                return Err(AdminError::TooLarge(max));
            }
            component.push(data);
        }
    }
    component
        .finish()
        .await
        .map_err(|e| AdminError::Internal(format!("{e:#}")))
}

/// Body of `POST /services/{name}/rollback`; both fields are optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RollbackBody {
    /// The version to activate; default: the one the current replaced.
    to: Option<String>,
    /// The version the client expects to be current.
    expected_version: Option<String>,
}

pub(super) async fn rollback(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<DeployOutcome>, AdminError> {
    let body: RollbackBody = if body.is_empty() {
        RollbackBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| AdminError::BadRequest(format!("invalid rollback request: {e}")))?
    };
    let outcome = state
        .deployer
        .rollback(&name, body.to.as_deref(), body.expected_version.as_deref())
        .await?;
    Ok(Json(outcome))
}

/// Query of `DELETE /services/{name}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RemoveQuery {
    /// Delete the service's data too.
    purge: bool,
}

pub(super) async fn remove(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    Query(query): Query<RemoveQuery>,
) -> Result<Json<RemoveOutcome>, AdminError> {
    Ok(Json(state.deployer.remove(&name, query.purge).await?))
}
