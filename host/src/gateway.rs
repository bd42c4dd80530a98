//! The public HTTP front door.
//!
//! A request's path through here: [`access_log`] gives it a request id and a
//! span → [`proxy`] checks its size, routes it to a service, loads that
//! service's current version → the runtime runs it in a fresh instance.
//! Every failure becomes a JSON error at one place, [`GatewayError`].

use crate::host::HostShared;
use crate::loader::short;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt as _, Limited};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument as _;

/// Response header naming the service that answered.
pub const SERVICE_HEADER: &str = "x-bazaar-service";
/// Response header carrying the version (content hash) that answered.
pub const VERSION_HEADER: &str = "x-bazaar-version";
/// Request/response header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The gateway's router: every path goes to [`proxy`].
pub fn app(shared: Arc<HostShared>) -> Router {
    Router::new()
        .fallback(proxy)
        .with_state(shared)
        // Outermost, so the span and access line cover every response,
        // including the gateway's own errors.
        .layer(middleware::from_fn(access_log))
}

/// A failure answered by the gateway itself.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No service owns the path.
    #[error("no service is routed at {0}")]
    NoRoute(String),
    /// The owning service has no loaded version.
    #[error("service `{0}` is not available: it failed to load; deploy a working component")]
    Unavailable(String),
    /// The body is over `[gateway] max_body_bytes`.
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    /// The runtime could not produce a response.
    #[error("{0}")]
    Runtime(#[from] crate::runtime::RuntimeError),
}

impl GatewayError {
    fn status(&self) -> StatusCode {
        use crate::runtime::RuntimeError as R;
        match self {
            Self::NoRoute(_) => StatusCode::NOT_FOUND,
            Self::Unavailable(_) | Self::Runtime(R::Busy) => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Runtime(R::BadRequest(_)) => StatusCode::BAD_REQUEST,
            Self::Runtime(R::CpuLimit | R::Timeout) => StatusCode::GATEWAY_TIMEOUT,
            Self::Runtime(R::Failed(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Runtime(R::Guest(_)) => StatusCode::BAD_GATEWAY,
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            // Trap details and guest error codes go to the log, not the client.
            Self::Runtime(crate::runtime::RuntimeError::Failed(detail)) => {
                tracing::error!(error = %detail, "service failed");
                "the service failed while handling the request".to_owned()
            }
            other => {
                if status.is_server_error() {
                    tracing::warn!(error = %other, "request failed");
                }
                other.to_string()
            }
        };
        let body = serde_json::json!({ "error": message, "status": status.as_u16() });
        (status, axum::Json(body)).into_response()
    }
}

async fn proxy(
    State(shared): State<Arc<HostShared>>,
    request: Request,
) -> Result<Response, GatewayError> {
    let path = request.uri().path().to_owned();
    let slot = shared
        .registry
        .route(&path)
        .ok_or_else(|| GatewayError::NoRoute(path.clone()))?;
    let service = slot
        .current()
        .ok_or_else(|| GatewayError::Unavailable(slot.name.clone()))?;
    let span = tracing::Span::current();
    span.record("service", slot.name.as_str());
    span.record("version", short(&service.version));

    let max = shared.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > max) {
        return Err(GatewayError::TooLarge(max));
    }
    let request = request.map(|body| {
        Limited::new(body, max)
            .map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())))
    });

    let version = HeaderValue::from_str(&service.version).ok();
    let response = shared
        .runtime
        .handle(Arc::clone(&slot.grants), service, request)
        .await?;
    let mut response = response.map(Body::new);
    let headers = response.headers_mut();
    if let Ok(name) = HeaderValue::from_str(&slot.name) {
        headers.insert(SERVICE_HEADER, name);
    }
    if let Some(version) = version {
        headers.insert(VERSION_HEADER, version);
    }
    Ok(response)
}

/// Gives each request an id (the client's `x-request-id` if it sent a sane
/// one), runs it inside a span carrying that id, and writes one access line.
async fn access_log(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        service = tracing::field::Empty,
        version = tracing::field::Empty,
    );
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            target: "bazaar::access",
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "served"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}
