//! The admin API: deploy, rollback, list, health. It has its own listener so
//! it can stay on loopback while the gateway faces clients, and every route
//! requires the bearer token.

use crate::deploy::{DeployError, RollbackError};
use crate::host::HostShared;
use crate::registry::ServiceStatus;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use http::{StatusCode, header};
use std::sync::Arc;

/// The admin router.
pub fn app(shared: Arc<HostShared>) -> Router {
    let max_component = shared.max_component_bytes;
    Router::new()
        .route("/services", get(list))
        .route("/services/{name}", put(deploy))
        .route("/services/{name}/rollback", post(rollback))
        .route("/healthz", get(healthz))
        .layer(DefaultBodyLimit::max(max_component))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            require_token,
        ))
        .with_state(shared)
}

/// A failure of an admin call, with its status.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Missing or wrong bearer token.
    #[error(
        "missing or wrong bearer token; pass the admin token as `Authorization: Bearer <token>`"
    )]
    Unauthorized,
    /// No such service in `gateway.toml`.
    #[error(
        "service `{0}` is not in gateway.toml; add a [services.{0}] section with its routes first"
    )]
    UnknownService(String),
    /// The component was refused.
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// Nothing to roll back to.
    #[error(transparent)]
    Rollback(#[from] RollbackError),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::UnknownService(_) => StatusCode::NOT_FOUND,
            Self::Deploy(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Rollback(_) => StatusCode::CONFLICT,
        };
        let body =
            Json(serde_json::json!({ "error": self.to_string(), "status": status.as_u16() }));
        let mut response = (status, body).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

async fn require_token(
    State(shared): State<Arc<HostShared>>,
    request: Request,
    next: Next,
) -> Result<Response, AdminError> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), shared.admin_token.as_bytes()) => {
            Ok(next.run(request).await)
        }
        _ => Err(AdminError::Unauthorized),
    }
}

/// Compares without leaking, through timing, how long a matching prefix is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn list(State(shared): State<Arc<HostShared>>) -> Json<Vec<ServiceStatus>> {
    Json(shared.registry.services().map(|s| s.status()).collect())
}

/// Request header naming the uploaded file, so errors can name it too.
pub const SOURCE_HEADER: &str = "x-bazaar-source";

async fn deploy(
    State(shared): State<Arc<HostShared>>,
    Path(name): Path<String>,
    headers: http::HeaderMap,
    body: Bytes,
) -> Result<Response, AdminError> {
    let slot = shared
        .registry
        .get(&name)
        .ok_or_else(|| AdminError::UnknownService(name.clone()))?;
    let source = headers
        .get(SOURCE_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 512)
        .unwrap_or("the uploaded component")
        .to_owned();
    let outcome = shared.deployer.deploy(slot, body.to_vec(), source).await?;
    Ok(Json(outcome).into_response())
}

async fn rollback(
    State(shared): State<Arc<HostShared>>,
    Path(name): Path<String>,
) -> Result<Response, AdminError> {
    let slot = shared
        .registry
        .get(&name)
        .ok_or_else(|| AdminError::UnknownService(name.clone()))?;
    let outcome = shared.deployer.roll_back(slot).await?;
    Ok(Json(outcome).into_response())
}

async fn healthz(State(shared): State<Arc<HostShared>>) -> Json<serde_json::Value> {
    let failed: Vec<&str> = shared
        .registry
        .services()
        .filter(|s| s.current().is_none())
        .map(|s| s.name.as_str())
        .collect();
    Json(serde_json::json!({
        "status": if failed.is_empty() { "ok" } else { "degraded" },
        "failed_services": failed,
    }))
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison_requires_exact_match() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
