//! Errors that are HTTP responses.

use crate::response::Response;

/// A handler's failure: an HTTP status and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// HTTP status, e.g. 404.
    pub status: u16,
    /// Shown to the client as `{"error": message}`.
    pub message: String,
}

/// A handler's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with any status.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400: the request is malformed or fails validation.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    /// 401: the caller is not who it claims.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, message)
    }

    /// 403: the caller may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, message)
    }

    /// 404: no such thing.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }

    /// 409: conflicts with existing state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, message)
    }

    /// 500: the service failed; the detail is logged, not sent.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        crate::log::error(&format!("internal error: {detail}"));
        Self::new(500, "internal error")
    }

    /// The error as a JSON response.
    pub fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "status": self.status });
        Response::json(self.status, &body).unwrap_or_else(|_| Response::new(self.status))
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for Error {}

impl From<crate::kv::KvError> for Error {
    fn from(err: crate::kv::KvError) -> Self {
        Self::internal(err)
    }
}
