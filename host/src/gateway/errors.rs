//! Every response the gateway answers itself: JSON with the message, the
//! status and the request id, and the headers that go with the status.

use crate::policy::Refusal;
use crate::runtime::RuntimeError;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::Full;
use std::time::Duration;

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
    /// The path and query are over `[gateway] max_uri_bytes`.
    #[error("the request URI is longer than {0} bytes")]
    UriTooLong(usize),
    /// A bearer token that does not verify.
    #[error("{0}")]
    BadToken(String),
    /// Refused by the route's policy.
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// A browser origin the route does not allow.
    #[error("origin {0} may not call this route")]
    OriginNotAllowed(String),
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
            Self::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            Self::BadToken(_) | Self::Refused(Refusal::Unauthenticated(_)) => {
                StatusCode::UNAUTHORIZED
            }
            Self::Refused(Refusal::Forbidden(_)) | Self::OriginNotAllowed(_) => {
                StatusCode::FORBIDDEN
            }
            Self::Refused(Refusal::RateLimited(_)) => StatusCode::TOO_MANY_REQUESTS,
            Self::Runtime(e) => e.status(),
        }
    }

    /// Why the gateway refused the request itself, for the metrics.
    fn rejection(&self) -> Option<&'static str> {
        match self {
            Self::Refused(Refusal::RateLimited(_)) => Some("rate_limit"),
            Self::Refused(_) | Self::BadToken(_) | Self::OriginNotAllowed(_) => Some("auth"),
            Self::TooLarge(_) => Some("body_size"),
            Self::UriTooLong(_) => Some("uri_size"),
            Self::Runtime(RuntimeError::Busy) => Some("concurrency"),
            Self::Unavailable(..) => Some("unavailable"),
            _ => None,
        }
    }

    /// The response, with `request_id` in its body.
    pub fn into_response(self, request_id: &str) -> Response {
        if let Some(reason) = self.rejection() {
            crate::metrics::rejected(reason);
        }
        let status = self.status();
        let message = match &self {
            Self::Runtime(e) => e.client_message(),
            other => other.to_string(),
        };
        let mut response = error_response(status, &message, request_id).map(Body::new);
        let headers = response.headers_mut();
        match &self {
            Self::BadToken(_) | Self::Refused(Refusal::Unauthenticated(_)) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::Refused(Refusal::RateLimited(wait)) => {
                headers.insert(header::RETRY_AFTER, retry_after(*wait));
            }
            Self::Unavailable(..) | Self::Runtime(RuntimeError::Busy) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

/// Whole seconds, rounded up, at least one.
fn retry_after(wait: Duration) -> HeaderValue {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    HeaderValue::from(seconds.max(1))
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
