//! The public HTTP front door.
//!
//! A request's path through here: `access_log` gives it a request id and a
//! span → `proxy` strips the headers only the host may set, routes it,
//! loads the service's current version, checks the body size, builds the
//! request's [`RequestContext`] → the runtime runs it in a fresh instance.
//! Every failure becomes a JSON error at one place, [`GatewayError`].

use crate::context::{REQUEST_ID_HEADER, RequestContext, TRACEPARENT_HEADER, TraceContext};
use crate::loader::short;
use crate::registry::ServiceRegistry;
use crate::runtime::{Runtime, RuntimeError};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument as _;

/// Response header naming the service that answered.
pub const SERVICE_HEADER: &str = "x-bazaar-service";
/// Response header carrying the version (content hash) that answered.
pub const VERSION_HEADER: &str = "x-bazaar-version";
/// Request headers with this prefix are set only by the host.
const HOST_ONLY_PREFIX: &str = "x-bazaar-";

/// What the gateway needs: where requests go and how they run.
pub struct GatewayState {
    /// Services and routes.
    pub registry: Arc<ServiceRegistry>,
    /// Runs requests.
    pub runtime: Arc<Runtime>,
    /// `[gateway] max_body_bytes`.
    pub max_body_bytes: usize,
    /// `[gateway] request_timeout_ms`.
    pub request_timeout: Duration,
}

/// The request id, put in the request's extensions by `access_log`.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

/// The gateway's router: every path goes to `proxy`.
pub fn app(state: Arc<GatewayState>) -> Router {
    Router::new()
        .fallback(proxy)
        .with_state(state)
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
    #[error("service `{0}` is not available: {1}")]
    Unavailable(String, String),
    /// The body is over `[gateway] max_body_bytes`.
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    /// The runtime could not produce a response.
    #[error("{0}")]
    Runtime(#[from] RuntimeError),
}

impl GatewayError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute(_) => StatusCode::NOT_FOUND,
            Self::Unavailable(..) => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Runtime(e) => e.status(),
        }
    }

    fn into_response(self, request_id: &str) -> Response {
        let status = self.status();
        let message = match &self {
            Self::Runtime(e) => e.client_message(),
            other => other.to_string(),
        };
        error_response(status, &message, request_id).map(Body::new)
    }
}

/// A JSON error: `{"error": message, "status": n, "request_id": id}`.
pub fn error_response(
    status: StatusCode,
    message: &str,
    request_id: &str,
) -> http::Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": message, "status": status.as_u16(), "request_id": request_id });
    let mut response = http::Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn proxy(State(state): State<Arc<GatewayState>>, request: Request) -> Response {
    let id = request
        .extensions()
        .get::<RequestId>()
        .map_or_else(|| Arc::from("-"), |r| Arc::clone(&r.0));
    match forward(&state, Arc::clone(&id), request).await {
        Ok(response) => response,
        Err(e) => e.into_response(&id),
    }
}

async fn forward(
    state: &GatewayState,
    id: Arc<str>,
    mut request: Request,
) -> Result<Response, GatewayError> {
    let started = tokio::time::Instant::now();
    let snapshot = state.registry.load();
    let path = request.uri().path();
    let (slot, pattern) = snapshot
        .route(path)
        .ok_or_else(|| GatewayError::NoRoute(path.to_owned()))?;
    let span = tracing::Span::current();
    span.record("service", tracing::field::display(slot.name()));
    span.record("route", tracing::field::display(pattern));
    let version = slot.current().ok_or_else(|| {
        let why = slot
            .error()
            .unwrap_or_else(|| "it has no version loaded".into());
        GatewayError::Unavailable(slot.name().to_owned(), why)
    })?;
    span.record("version", tracing::field::display(short(&version.version)));

    let max = state.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > max) {
        return Err(GatewayError::TooLarge(max));
    }

    let trace = request
        .headers()
        .get(TRACEPARENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse)
        .unwrap_or_else(TraceContext::new_root);
    let ctx =
        RequestContext::new(id, started + state.request_timeout, trace).enter(&slot.context.name);
    let headers = request.headers_mut();
    let forged: Vec<_> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(HOST_ONLY_PREFIX))
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
    if let Ok(value) = HeaderValue::from_str(&ctx.id) {
        headers.insert(REQUEST_ID_HEADER, value);
    }
    if let Ok(value) = HeaderValue::from_str(&ctx.trace.header()) {
        headers.insert(TRACEPARENT_HEADER, value);
    }
    let request = request.map(|body| {
        Limited::new(body, max)
            .map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())))
    });

    let version_header = version.version_header.clone();
    let response = state
        .runtime
        .handle_http(ctx, &slot.context, version, request)
        .await?;
    let mut response = response.map(Body::new);
    let headers = response.headers_mut();
    headers.insert(SERVICE_HEADER, slot.context.name_header.clone());
    headers.insert(VERSION_HEADER, version_header);
    Ok(response)
}

/// Gives each request an id (the client's `x-request-id` if it sent a sane
/// one), runs it inside a span carrying that id, and writes one access line.
async fn access_log(mut request: Request, next: Next) -> Response {
    let id: Arc<str> = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(
            || uuid::Uuid::new_v4().simple().to_string().into(),
            Arc::from,
        );
    request.extensions_mut().insert(RequestId(Arc::clone(&id)));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        service = tracing::field::Empty,
        route = tracing::field::Empty,
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
