//! The public HTTP front door.
//!
//! A request's path through here, each step able to answer by itself:
//! 1. `access_log` gives it a request id and a log context, and writes one
//!    access line;
//! 2. the liveness endpoint answers load balancers;
//! 3. the URI length is checked, and the path routed to a service;
//! 4. a CORS preflight is answered from the route's policy;
//! 5. the caller is authenticated (bearer token or API key) and checked
//!    against the route's access rule, then its rate limit;
//! 6. headers only the host may set are replaced, the body is limited, and
//!    the request's [`RequestContext`] (deadline, trace, identity) is built;
//! 7. the runtime runs it in a fresh instance of the current version.
//!
//! Every failure becomes a JSON error at one place, [`GatewayError`].

mod body;
mod errors;

pub use errors::{GatewayError, error_response};

use crate::auth::{ApiKeys, Identity, TokenAuthority};
use crate::context::{REQUEST_ID_HEADER, RequestContext, TRACEPARENT_HEADER, TraceContext};
use crate::policy::Decision;
use crate::registry::ServiceRegistry;
use crate::runtime::Runtime;
use crate::telemetry::scope::RequestScope;
use axum::body::Body;
use axum::response::{IntoResponse as _, Response};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument as _;

/// Response header naming the service that answered.
pub const SERVICE_HEADER: HeaderName = HeaderName::from_static("x-bazaar-service");
/// Response header carrying the version (content hash) that answered.
pub const VERSION_HEADER: HeaderName = HeaderName::from_static("x-bazaar-version");
/// Request headers with this prefix are set only by the host.
pub const HOST_ONLY_PREFIX: &str = "x-bazaar-";
/// Request header carrying a machine client's API key.
pub const API_KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");
/// Unauthenticated liveness endpoint for load balancers; never routed to a service.
pub const LIVENESS_PATH: &str = "/.well-known/bazaar/health";

/// What the gateway needs: where requests go, how they run, and who may send them.
pub struct GatewayState {
    /// Services and routes.
    pub registry: Arc<ServiceRegistry>,
    /// Runs requests.
    pub runtime: Arc<Runtime>,
    /// Verifies bearer tokens.
    pub tokens: Arc<TokenAuthority>,
    /// Verifies API keys.
    pub api_keys: Arc<ApiKeys>,
    /// `[gateway] max_body_bytes`.
    pub max_body_bytes: usize,
    /// `[gateway] max_uri_bytes`.
    pub max_uri_bytes: usize,
    /// Recent requests per service, for the dashboard.
    pub stats: Arc<crate::metrics::Stats>,
}

/// The service that answered (or refused) a request and the version that
/// ran it, for the access log.
struct ServedBy {
    service: Arc<crate::registry::ServiceContext>,
    version: Option<Arc<str>>,
}

/// The gateway as its listener calls it: every request goes through
/// [`access_log`] to [`proxy`], with no router in between.
#[derive(Clone)]
pub struct Gateway(Arc<GatewayState>);

impl Gateway {
    /// The gateway of `state`.
    pub fn new(state: Arc<GatewayState>) -> Self {
        Self(state)
    }
}

impl crate::listener::Handler for Gateway {
    fn call(
        &self,
        request: http::Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response> + Send + use<> {
        // Boxed: the request's future is some kilobytes, and hyper moves
        // it more than once before it runs.
        Box::pin(access_log(Arc::clone(&self.0), request, peer))
    }
}

/// What a request that came in carries through the gateway.
type Request = http::Request<Incoming>;

/// The response to `request`, and who served it if it was routed;
/// `parent` is the client's trace context, if it sent one.
async fn proxy(
    state: &GatewayState,
    id: &Arc<str>,
    peer: SocketAddr,
    parent: Option<TraceContext>,
    request: Request,
) -> (Response, Option<ServedBy>) {
    if request.uri().path() == LIVENESS_PATH {
        let ok = axum::Json(serde_json::json!({ "status": "ok" })).into_response();
        return (ok, None);
    }
    let mut routed = None;
    // Boxed: its future is over 2 KiB, and the wrappers around this one
    // (the request's scope, its span) would otherwise each copy it whole
    // (callgrind: ~350 fewer instructions per request).
    let forwarded = forward(state, Arc::clone(id), peer, parent, request, &mut routed);
    let response = match Box::pin(forwarded).await {
        Ok(response) => response,
        Err(e) => e.into_response(id),
    };
    (response, routed)
}

async fn forward(
    state: &GatewayState,
    id: Arc<str>,
    peer: SocketAddr,
    parent: Option<TraceContext>,
    mut request: Request,
    routed: &mut Option<ServedBy>,
) -> Result<Response, GatewayError> {
    let started = tokio::time::Instant::now();
    let max_uri = state.max_uri_bytes;
    if request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len())
        > max_uri
    {
        return Err(GatewayError::UriTooLong(max_uri));
    }
    let snapshot = state.registry.load();
    let path = request.uri().path();
    let (slot, pattern) = snapshot
        .route(path)
        .ok_or_else(|| GatewayError::NoRoute(path.to_owned()))?;
    let served = routed.insert(ServedBy {
        service: Arc::clone(&slot.context),
        version: None,
    });
    crate::telemetry::scope::routed(&slot.context.name, pattern, request.method());
    let policy = &slot.context.policy;
    let origin = header_text(request.headers(), header::ORIGIN).map(str::to_owned);
    if let Some(preflight) = preflight(policy, pattern, &request, origin.as_deref())? {
        return Ok(preflight);
    }
    let decision = policy.decide(pattern, request.method());
    let identity = authenticate(state, request.headers(), &decision)?;
    decision.admit(identity.as_ref())?;
    decision.take(|| match &identity {
        Some(who) => who.subject.clone(),
        None => peer.ip().to_string(),
    })?;

    let version = slot.current().ok_or_else(|| {
        let why = match slot.error() {
            Some(error) => error,
            None if slot.is_starting() => "it is starting; retry shortly".into(),
            None => "it has no version loaded".into(),
        };
        GatewayError::Unavailable(slot.name().to_owned(), why)
    })?;
    crate::telemetry::scope::serving(&version.version);
    served.version = Some(Arc::clone(&version.version));
    let max = state.max_body_bytes;
    let declared = header_text(request.headers(), header::CONTENT_LENGTH)
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > max) {
        return Err(GatewayError::TooLarge(max));
    }

    let timeout = decision.timeout.unwrap_or(slot.context.limits.timeout);
    let trace = match crate::telemetry::current_trace() {
        // Exported: the request's own span is what guests and callees continue.
        Some(trace) => trace,
        // A span of its own in the client's trace, or in a new one.
        None => parent.map_or_else(TraceContext::new_root, |parent| parent.child()),
    };
    let ctx = RequestContext::entering(id, started + timeout, trace, &slot.context.name)
        .with_identity(identity);
    set_host_headers(request.headers_mut(), &ctx);
    let (request, over_limit) = body::limit(request, max);

    let version_header = version.version_header.clone();
    let response = state
        .runtime
        .handle_http(ctx, &slot.context, version, request)
        .await?;
    if over_limit.is_exceeded() {
        return Err(GatewayError::TooLarge(max));
    }
    let mut response = response.map(Body::new);
    let headers = response.headers_mut();
    headers.insert(SERVICE_HEADER, slot.context.name_header.clone());
    headers.insert(VERSION_HEADER, version_header);
    if let Some(allowed) = origin.as_deref().and_then(|o| decision.allowed_origin(o))
        && let Ok(value) = HeaderValue::from_str(allowed)
    {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.append(header::VARY, HeaderValue::from_static("origin"));
    }
    Ok(response)
}

fn header_text(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Answers a CORS preflight from the policy of the method it asks about.
fn preflight(
    policy: &crate::policy::RoutePolicy,
    pattern: &str,
    request: &Request,
    origin: Option<&str>,
) -> Result<Option<Response>, GatewayError> {
    let (Some(origin), &Method::OPTIONS) = (origin, request.method()) else {
        return Ok(None);
    };
    let Some(asked) = header_text(request.headers(), header::ACCESS_CONTROL_REQUEST_METHOD) else {
        return Ok(None);
    };
    let method = Method::from_bytes(asked.as_bytes()).unwrap_or(Method::GET);
    let decision = policy.decide(pattern, &method);
    let allowed = decision
        .allowed_origin(origin)
        .ok_or_else(|| GatewayError::OriginNotAllowed(origin.to_owned()))?;
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    let pairs = [
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed),
        (header::ACCESS_CONTROL_ALLOW_METHODS, method.as_str()),
        (
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            header_text(request.headers(), header::ACCESS_CONTROL_REQUEST_HEADERS)
                .unwrap_or("content-type, authorization"),
        ),
        (header::ACCESS_CONTROL_MAX_AGE, "600"),
        (header::VARY, "origin"),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    Ok(Some(response))
}

/// The caller's identity from a bearer token or an API key this route
/// accepts. Bad credentials are an error, except on a public route, where
/// they are ignored.
fn authenticate(
    state: &GatewayState,
    headers: &HeaderMap,
    decision: &Decision,
) -> Result<Option<Identity>, GatewayError> {
    let public = decision.access == crate::config::Access::Public;
    let refuse = |message: String| {
        if public {
            Ok(None)
        } else {
            Err(GatewayError::BadToken(message))
        }
    };
    if let Some(token) =
        header_text(headers, header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer "))
    {
        return match state.tokens.verify(token.trim()) {
            Ok(identity) => Ok(Some(identity)),
            Err(e) => refuse(e.to_string()),
        };
    }
    if let Some(key) = header_text(headers, API_KEY_HEADER) {
        return match state.api_keys.verify(key) {
            Some(identity)
                if identity
                    .api_key
                    .as_ref()
                    .is_some_and(|name| decision.api_keys.contains(name)) =>
            {
                Ok(Some(identity))
            }
            _ => refuse("this API key is not accepted here".into()),
        };
    }
    Ok(None)
}

/// Replaces every `x-bazaar-*` header with the host's own, and passes the
/// request id and trace context on; for client requests and service calls.
pub(crate) fn set_host_headers(headers: &mut HeaderMap, ctx: &RequestContext) {
    // Collecting none allocates nothing.
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
    if let Some(value) = ctx.trace.header_value() {
        headers.insert(TRACEPARENT_HEADER, value);
    }
    for (name, value) in ctx.identity_headers() {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

/// Gives each request an id (the client's `x-request-id` if it sent a sane
/// one), runs it in a log context carrying that id, and writes one access
/// line.
async fn access_log(state: Arc<GatewayState>, request: Request, peer: SocketAddr) -> Response {
    let id: Arc<str> = header_text(request.headers(), REQUEST_ID_HEADER)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(crate::context::new_request_id, Arc::from);
    let method = request.method().clone();
    // A `Uri` shares its bytes: cloning it copies no text.
    let uri = request.uri().clone();
    let path = uri.path();
    // Without an exporter the span only gives log lines made while the
    // request runs their context, and is made when the first such line
    // is (see `telemetry::scope`).
    let span = if crate::telemetry::exporting() {
        tracing::info_span!(
            "request",
            request_id = %id,
            method = %method,
            path = path,
            service = tracing::field::Empty,
            route = tracing::field::Empty,
            version = tracing::field::Empty,
            status = tracing::field::Empty,
            otel.name = %method,
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
        )
    } else if crate::telemetry::scope::eager() {
        crate::telemetry::scope::request_span(&id)
    } else {
        tracing::Span::none()
    };
    let parent = header_text(request.headers(), TRACEPARENT_HEADER).and_then(TraceContext::parse);
    if let Some(parent) = &parent {
        crate::telemetry::continue_trace(&span, parent);
    }
    let started = Instant::now();
    let scope = RequestScope::new(Arc::clone(&id), &span);
    let (mut response, served) = scope
        .run(proxy(&state, &id, peer, parent, request))
        .instrument(span.clone())
        .await;
    let elapsed = started.elapsed();
    let service = served.as_ref().map(|s| &s.service);
    let status = response.status().as_u16();
    match service {
        Some(service) => {
            service
                .metrics
                .request_served(status, elapsed, &state.stats);
        }
        None => crate::metrics::unrouted_request(status, elapsed),
    }
    span.record("status", i64::from(status));
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    crate::telemetry::access::record(&crate::telemetry::access::AccessEntry {
        request_id: &id,
        method: method.as_str(),
        path,
        service: service.map(|s| &*s.name),
        version: served.as_ref().and_then(|s| s.version.as_deref()),
        status,
        elapsed,
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}
