//! Errors that are HTTP responses.

use crate::response::Response;
use std::cell::RefCell;

thread_local! {
    /// The id the gateway gave the request being served (`x-request-id`).
    static REQUEST_ID: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Notes the id of the request now being served, for error bodies; `None`
/// once it is answered (a warm instance serves the next one).
pub(crate) fn set_request_id(id: Option<&str>) {
    REQUEST_ID.with(|current| *current.borrow_mut() = id.map(str::to_owned));
}

/// The id the gateway gave the request being served, if any: what a
/// client quotes when it reports a problem.
pub fn request_id() -> Option<String> {
    REQUEST_ID.with(|current| current.borrow().clone())
}

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

    /// The error as a JSON response: `{"error", "status", "request_id"}`,
    /// like the gateway's own errors (`request_id` when the request has one).
    pub fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message, "status": self.status });
        if let Some(id) = request_id() {
            body["request_id"] = id.into();
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn body(response: &Response) -> serde_json::Value {
        serde_json::from_slice(&response.body).expect("a JSON body")
    }

    #[test]
    fn an_error_body_quotes_the_request_id_while_its_request_is_served() {
        set_request_id(Some("req-42"));
        let served = Error::not_found("no such order").into_response();
        assert_eq!(served.status, 404);
        assert_eq!(
            body(&served),
            serde_json::json!({"error": "no such order", "status": 404, "request_id": "req-42"})
        );
        set_request_id(None);
        let after = Error::conflict("taken").into_response();
        assert_eq!(
            body(&after),
            serde_json::json!({"error": "taken", "status": 409})
        );
    }
}
