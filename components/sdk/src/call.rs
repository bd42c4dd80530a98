//! Calls to other Bazaar services: `http://NAME.internal/...`, which the
//! host answers in-process (a service may call only the services its
//! `gateway.toml` section grants).
//!
//! ```ignore
//! let stock: Stock = call::get("inventory", &format!("/api/stock/{sku}"))?.json()?;
//! ```

use crate::error::Error;
use crate::outbound::{self, OutboundError};
use crate::request::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The reply of a called service, with its body read.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The callee's HTTP status.
    pub status: u16,
    /// Headers in arrival order; names are lowercase.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole body.
    pub body: Vec<u8>,
    /// The callee, for error messages.
    service: String,
}

impl Reply {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name` (case-insensitive), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The body as text (invalid UTF-8 becomes U+FFFD).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body decoded from JSON. A non-2xx reply is an [`Error`] with the
    /// callee's status and its `{"error": ...}` message, so `?` passes a
    /// callee's 404 or 409 on; a 2xx body that does not decode is a 502.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        if !self.is_success() {
            return Err(self.error());
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::new(
                502,
                format!(
                    "service `{}` answered JSON that does not fit: {e}",
                    self.service
                ),
            )
        })
    }

    /// The callee's message for a failure: the `error` of its JSON body
    /// (every SDK error has one), else "service `NAME` answered STATUS".
    pub fn error_message(&self) -> String {
        #[derive(serde::Deserialize)]
        struct Body {
            error: String,
        }
        serde_json::from_slice::<Body>(&self.body)
            .map(|body| body.error)
            .unwrap_or_else(|_| format!("service `{}` answered {}", self.service, self.status))
    }

    /// The callee's failure as an [`Error`] with its status and
    /// [`Reply::error_message`].
    pub fn error(&self) -> Error {
        Error::new(self.status, self.error_message())
    }
}

/// A call that produced no reply.
#[derive(Debug, Clone)]
pub struct CallError {
    /// The callee.
    pub service: String,
    /// What went wrong; its `Display` is the `wasi:http` error code when
    /// there is one, e.g. `HTTP-request-denied`.
    pub cause: OutboundError,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "calling service `{}` failed: {}",
            self.service, self.cause
        )
    }
}

impl std::error::Error for CallError {}

/// 504 for a timeout, 503 when the callee is unavailable or at its limit,
/// 502 for other transport failures, each naming the callee and the code;
/// a request this service built wrongly is a 500.
impl From<CallError> for Error {
    fn from(err: CallError) -> Self {
        match &err.cause {
            OutboundError::Http(code) => {
                Error::new(outbound::gateway_status(code), err.to_string())
            }
            OutboundError::Body(_) => Error::new(502, err.to_string()),
            OutboundError::InvalidUrl(_) | OutboundError::Header(_) => Error::internal(err),
        }
    }
}

/// The URL of `path` (starting with `/`) on `service`.
pub fn url(service: &str, path: &str) -> String {
    let slash = if path.starts_with('/') { "" } else { "/" };
    format!("http://{service}.internal{slash}{path}")
}

/// Sends `method path` (with its query, if any) to `service` with `headers`
/// and `body` (empty for none); the full-control form of [`send`].
pub fn send_with(
    service: &str,
    method: &Method,
    path: &str,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
) -> Result<Reply, CallError> {
    match outbound::send(method, &url(service, path), headers, body) {
        Ok(response) => Ok(Reply {
            status: response.status,
            headers: response.headers,
            body: response.body,
            service: service.to_owned(),
        }),
        Err(cause) => Err(CallError {
            service: service.to_owned(),
            cause,
        }),
    }
}

/// Sends `method path` to `service` with an optional body.
pub fn send(
    service: &str,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Reply, Error> {
    Ok(send_with(
        service,
        &method,
        path,
        &[],
        &body.unwrap_or_default(),
    )?)
}

/// GETs `path` from `service`.
pub fn get(service: &str, path: &str) -> Result<Reply, Error> {
    send(service, Method::Get, path, None)
}

/// POSTs to `path` on `service` with no body.
pub fn post(service: &str, path: &str) -> Result<Reply, Error> {
    send(service, Method::Post, path, None)
}

/// POSTs `value` as JSON to `path` on `service`.
pub fn post_json<T: Serialize + ?Sized>(
    service: &str,
    path: &str,
    value: &T,
) -> Result<Reply, Error> {
    send_json(service, Method::Post, path, value)
}

/// PUTs `value` as JSON to `path` on `service`.
pub fn put_json<T: Serialize + ?Sized>(
    service: &str,
    path: &str,
    value: &T,
) -> Result<Reply, Error> {
    send_json(service, Method::Put, path, value)
}

fn send_json<T: Serialize + ?Sized>(
    service: &str,
    method: Method,
    path: &str,
    value: &T,
) -> Result<Reply, Error> {
    let body = serde_json::to_vec(value).map_err(Error::internal)?;
    let headers = [("content-type".to_owned(), b"application/json".to_vec())];
    Ok(send_with(service, &method, path, &headers, &body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
            service: "payments".to_owned(),
        }
    }

    #[test]
    fn a_callees_error_message_is_its_json_error() {
        let declined = reply(402, r#"{"error":"the card was declined","status":402}"#);
        assert_eq!(declined.error_message(), "the card was declined");
        assert_eq!(
            declined.json::<serde_json::Value>(),
            Err(Error::new(402, "the card was declined")),
            "json() passes the callee's failure on"
        );
    }

    #[test]
    fn a_reply_without_a_json_error_names_the_callee_and_status() {
        for body in ["", "<html>oops</html>", r#"{"message":"x"}"#] {
            assert_eq!(
                reply(503, body).error_message(),
                "service `payments` answered 503",
                "body {body:?}"
            );
        }
    }

    #[test]
    fn urls_name_the_service_and_keep_the_path() {
        assert_eq!(
            url("users", "/api/users/1"),
            "http://users.internal/api/users/1"
        );
        assert_eq!(url("users", "api?x=1"), "http://users.internal/api?x=1");
    }
}
