//! The admin API: deploy, rollback, add and remove services, watch events,
//! metrics, and a dashboard. It has its own listener so it can stay on
//! loopback while the gateway faces clients. Every API route requires the
//! bearer token; the dashboard's page and scripts do not (they hold no data,
//! and ask for the token, which they send with every call).
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | GET | `/services` | every service with its versions |
//! | GET | `/services/{name}` | one service |
//! | PUT | `/services/{name}` | body: a component; deploy it, or add the service |
//! | DELETE | `/services/{name}` | remove it (`?purge=true` deletes its data) |
//! | POST | `/services/{name}/rollback` | back to the version it replaced, or `{"to": V}` |
//! | GET | `/events` | each subscription's backlog and dead letters |
//! | GET | `/events/dead-letters` | the dead letters (`?subscriber=NAME`) |
//! | POST | `/events/dead-letters/replay` | `{"subscriber": S, "topic": T?}` |
//! | POST | `/auth/tokens` | `{"subject": S, "roles": [R], "ttl_s": N?}`: a signed token |
//! | GET | `/healthz` | `ok`, or `degraded` with the failed services |
//! | GET | `/metrics` | Prometheus text format |
//! | GET | `/stats` | recent request rate, error rate and p95 per service (JSON) |
//! | GET | `/dashboard` | the dashboard (no token for the page itself) |

mod dashboard;
mod events;
mod services;
pub mod token;

use crate::deploy::{DeployError, Deployer};
use crate::events::EventLog;
use crate::events::delivery::Delivery;
use crate::registry::ServiceRegistry;
use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{StatusCode, header};
use std::sync::Arc;

/// Request header naming the uploaded file, so errors can name it too.
pub const SOURCE_HEADER: &str = "x-bazaar-source";

/// What the admin API needs.
pub struct AdminState {
    /// Changes services.
    pub deployer: Arc<Deployer>,
    /// The services now.
    pub registry: Arc<ServiceRegistry>,
    /// Event backlogs and dead letters.
    pub log: Arc<dyn EventLog>,
    /// Woken after a replay.
    pub delivery: Arc<Delivery>,
    /// The bearer token.
    pub token: String,
    /// Signs tokens for operators (`bazaar token`).
    pub tokens: Arc<crate::auth::TokenAuthority>,
    /// Recent requests per service, for the dashboard.
    pub stats: Arc<crate::metrics::Stats>,
    /// `[admin] max_component_bytes`.
    pub max_component_bytes: usize,
    /// The fleet's shared state, on a fleet.
    pub fleet: Option<Arc<crate::fleet::FleetControl>>,
}

/// The admin router.
pub fn app(state: Arc<AdminState>) -> Router {
    let max_component = state.max_component_bytes;
    Router::new()
        .route("/services", get(services::list))
        .route(
            "/services/{name}",
            get(services::show)
                .put(services::deploy)
                .delete(services::remove),
        )
        .route("/services/{name}/rollback", post(services::rollback))
        .route("/fleet", get(services::fleet))
        .route("/events", get(events::subscriptions))
        .route("/events/dead-letters", get(events::dead_letters))
        .route("/events/dead-letters/replay", post(events::replay))
        .route("/auth/tokens", post(issue_token))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/stats", get(stats))
        .layer(DefaultBodyLimit::max(max_component))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            require_token,
        ))
        // After the token check, so outside it: the page and its script
        // hold no data; every call they make sends the token.
        .merge(dashboard::routes())
        .fallback(no_such_route)
        .with_state(state)
}

/// A failure of an admin call, with its status.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Missing or wrong bearer token.
    #[error(
        "missing or wrong bearer token; pass the admin token as `Authorization: Bearer <token>`"
    )]
    Unauthorized,
    /// The request itself is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// Nothing by that name.
    #[error("{0}")]
    NotFound(String),
    /// A deploy, rollback or removal was refused.
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// The uploaded component is over `[admin] max_component_bytes`.
    #[error("the component is larger than [admin] max_component_bytes = {0}")]
    TooLarge(usize),
    /// The host failed.
    #[error("{0}")]
    Internal(String),
}

impl AdminError {
    fn status(&self) -> StatusCode {
        use crate::control::VersionError as V;
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Deploy(e) => match e {
                DeployError::Version(V::TooShort { .. }) => StatusCode::BAD_REQUEST,
                DeployError::Load { .. }
                | DeployError::NeedsSpec(_)
                | DeployError::InvalidSpec { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                DeployError::UnknownService(_) | DeployError::Version(V::Unknown { .. }) => {
                    StatusCode::NOT_FOUND
                }
                DeployError::RouteConflict { .. }
                | DeployError::SpecFromConfig(_)
                | DeployError::NotExpected { .. }
                | DeployError::Version(_) => StatusCode::CONFLICT,
                DeployError::Storage { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "admin call failed");
        }
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

/// A JSON request body, whatever its `content-type` says (curl's `-d`
/// sends a form type): a body that is not the JSON expected is a 400 that
/// says why, in JSON like every admin error.
pub(super) struct JsonBody<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = AdminError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|e| AdminError::BadRequest(e.body_text()))?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| AdminError::BadRequest(format!("invalid request body: {e}")))
    }
}

/// The answer to a path the admin API does not have.
async fn no_such_route(method: http::Method, uri: http::Uri) -> AdminError {
    AdminError::NotFound(format!(
        "the admin API has no {method} {}; see the README's Admin API table",
        uri.path()
    ))
}

async fn require_token(
    State(state): State<Arc<AdminState>>,
    request: Request,
    next: Next,
) -> Result<Response, AdminError> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented.is_some_and(|token| token::matches(token, &state.token)) {
        return Ok(next.run(request).await);
    }
    let mut refused = AdminError::Unauthorized.into_response();
    if request.headers().contains_key(header::CONTENT_LENGTH)
        || request.headers().contains_key(header::TRANSFER_ENCODING)
    {
        // The body stays unread, so the connection cannot carry another
        // request; say so, or a client may reuse it and fail.
        refused
            .headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    Ok(refused)
}

async fn healthz(State(state): State<Arc<AdminState>>) -> Json<serde_json::Value> {
    let snapshot = state.registry.load();
    let failed: Vec<&str> = snapshot
        .services()
        .filter(|s| s.current().is_none())
        .map(|s| s.name())
        .collect();
    Json(serde_json::json!({
        "status": if failed.is_empty() { "ok" } else { "degraded" },
        "failed_services": failed,
    }))
}

/// Body of `POST /auth/tokens`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    /// Whom the token names.
    subject: String,
    /// Roles it carries.
    #[serde(default)]
    roles: Vec<String>,
    /// Lifetime in seconds; default `[auth] token_ttl_s`.
    ttl_s: Option<u64>,
}

/// Signs a token for an operator or a test client, e.g. one with the
/// `admin` role; only the holder of the admin token can ask.
async fn issue_token(
    State(state): State<Arc<AdminState>>,
    JsonBody(request): JsonBody<TokenRequest>,
) -> Result<Json<serde_json::Value>, AdminError> {
    if request.subject.is_empty() || request.subject.len() > 256 {
        return Err(AdminError::BadRequest(
            "subject must be 1-256 characters".into(),
        ));
    }
    let token = match request.ttl_s {
        Some(ttl) => state.tokens.issue_for(
            &request.subject,
            &request.roles,
            std::time::Duration::from_secs(ttl),
        ),
        None => state.tokens.issue(&request.subject, &request.roles),
    }
    .map_err(|e| AdminError::Internal(format!("{e:#}")))?;
    tracing::info!(subject = %request.subject, roles = ?request.roles, "issued a token through the admin API");
    Ok(Json(serde_json::json!({ "token": token })))
}

/// The Prometheus exposition, with the event backlogs, the instance
/// pools and the idle warm instances brought up to date.
async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    match state.log.stats().await {
        Ok(subscriptions) => {
            for s in &subscriptions {
                crate::metrics::backlog(&s.subscriber, &s.topic, s.backlog);
            }
        }
        Err(e) => tracing::warn!(
            error = format!("{e:#}"),
            "cannot read event backlogs for /metrics"
        ),
    }
    state.deployer.loader().record_pool_metrics();
    for slot in state.registry.load().services() {
        if let Some(pool) = &slot.context.warm {
            crate::metrics::warm_idle(&slot.context.name, pool.idle());
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        crate::metrics::render(),
    )
        .into_response()
}

/// Recent figures per service, for the dashboard.
async fn stats(State(state): State<Arc<AdminState>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "services": state.stats.snapshot() }))
}
