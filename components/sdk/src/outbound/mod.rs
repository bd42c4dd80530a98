//! Outbound HTTP requests (`wasi:http/outgoing-handler`), blocking until
//! the whole response has arrived: [`send`] with a body in hand,
//! [`send_streaming`] with one written as it is produced.
//!
//! The host allows only the hosts granted to the service; anything else
//! fails with `HTTP-request-denied`. To call another Bazaar service, use
//! [`crate::call`], which builds the `http://NAME.internal` URL.

mod code;
mod url;

pub use code::{code_text, gateway_status};

use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingBody, IncomingResponse,
    Method as WasiMethod, OutgoingBody, OutgoingRequest, Scheme as WasiScheme, http_error_code,
};
use crate::bindings::wasi::io::streams::StreamError;
use crate::body::{self, BodyWriter};
use crate::request::Method;

/// A response to an outbound request, with its body read.
#[derive(Debug, Clone)]
pub struct ClientResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers in arrival order; names are lowercase.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl ClientResponse {
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
}

/// Why an outbound request produced no response.
#[derive(Debug, Clone)]
pub enum OutboundError {
    /// The URL is not absolute or has parts `wasi:http` refuses.
    InvalidUrl(String),
    /// A request header was refused (invalid, or forbidden by the host).
    Header(String),
    /// The host or the network failed the request with this `wasi:http`
    /// error code; its `Display` is the code's WIT name, e.g.
    /// `HTTP-request-denied` or `loop-detected`.
    Http(ErrorCode),
    /// The response body broke off without an error code.
    Body(String),
}

impl OutboundError {
    /// The `wasi:http` error code, when the failure has one.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Self::Http(code) => Some(code),
            _ => None,
        }
    }
}

impl std::fmt::Display for OutboundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidUrl(m) => write!(f, "invalid URL: {m}"),
            Self::Header(m) => write!(f, "invalid request header: {m}"),
            Self::Http(code) => f.write_str(&code_text(code)),
            Self::Body(m) => write!(f, "response body broke off: {m}"),
        }
    }
}

impl std::error::Error for OutboundError {}

/// Sends `method url` with `headers` and `body` (empty for none) and waits
/// for the whole response. A non-empty body is sent with a
/// `content-length` unless `headers` has one.
pub fn send(
    method: &Method,
    url: &str,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
) -> Result<ClientResponse, OutboundError> {
    let request = build(method, url, headers, body)?;
    // Taking the body only when there is one lets the host send a GET with
    // no body at all rather than an empty chunked one.
    let outgoing_body = match body.is_empty() {
        true => None,
        false => Some(
            request
                .body()
                .map_err(|()| OutboundError::Body("request body already taken".into()))?,
        ),
    };
    // The request must be handed over before its body is written: the host
    // only drains the body stream once the request is on its way.
    let future = outgoing_handler::handle(request, None).map_err(OutboundError::Http)?;
    if let Some(outgoing_body) = outgoing_body {
        write_body(&outgoing_body, body)?;
        OutgoingBody::finish(outgoing_body, None).map_err(OutboundError::Http)?;
    }
    read_response(wait(&future)?)
}

/// Sends `method url` with `headers` and a body that `produce` writes as
/// it goes (sent chunked), then waits for the whole response. The host
/// sends each chunk as it is flushed ([`BodyWriter::send`]), so the body
/// may be larger than memory or produced slowly. An error from `produce`
/// is returned and the body is dropped unfinished, which the host sends
/// as broken, never as if complete.
pub fn send_streaming(
    method: &Method,
    url: &str,
    headers: &[(String, Vec<u8>)],
    produce: impl FnOnce(&mut BodyWriter) -> std::io::Result<()>,
) -> Result<ClientResponse, OutboundError> {
    let request = build(method, url, headers, &[])?;
    let outgoing_body = request
        .body()
        .map_err(|()| OutboundError::Body("request body already taken".into()))?;
    let future = outgoing_handler::handle(request, None).map_err(OutboundError::Http)?;
    let stream = outgoing_body
        .write()
        .map_err(|()| OutboundError::Body("request body stream already taken".into()))?;
    let mut writer = BodyWriter::new(stream);
    let produced = produce(&mut writer);
    // The stream is a child of the body and must go before it is finished.
    drop(writer);
    if let Err(e) = produced {
        // Dropping an unfinished body tells the host it is broken.
        drop(outgoing_body);
        return Err(OutboundError::Body(format!(
            "could not produce the request body: {e}"
        )));
    }
    OutgoingBody::finish(outgoing_body, None).map_err(OutboundError::Http)?;
    read_response(wait(&future)?)
}

fn build(
    method: &Method,
    url: &str,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
) -> Result<OutgoingRequest, OutboundError> {
    let target = url::parse(url).map_err(OutboundError::InvalidUrl)?;
    let fields = Fields::new();
    for (name, value) in headers {
        fields
            .append(name, value)
            .map_err(|e| OutboundError::Header(format!("`{name}`: {e:?}")))?;
    }
    let has_length = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-length"));
    if !body.is_empty() && !has_length {
        fields
            .append("content-length", body.len().to_string().as_bytes())
            .map_err(|e| OutboundError::Header(format!("`content-length`: {e:?}")))?;
    }
    let request = OutgoingRequest::new(fields);
    let scheme = match target.scheme {
        url::Scheme::Http => WasiScheme::Http,
        url::Scheme::Https => WasiScheme::Https,
        url::Scheme::Other(name) => WasiScheme::Other(name),
    };
    let invalid =
        |part: &str| OutboundError::InvalidUrl(format!("the {part} of `{url}` is refused"));
    request
        .set_method(&wasi_method(method))
        .map_err(|()| invalid("method"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    request
        .set_authority(Some(&target.authority))
        .map_err(|()| invalid("authority"))?;
    request
        .set_path_with_query(Some(&target.path_with_query))
        .map_err(|()| invalid("path"))?;
    Ok(request)
}

fn wasi_method(method: &Method) -> WasiMethod {
    match method {
        Method::Get => WasiMethod::Get,
        Method::Post => WasiMethod::Post,
        Method::Put => WasiMethod::Put,
        Method::Patch => WasiMethod::Patch,
        Method::Delete => WasiMethod::Delete,
        Method::Head => WasiMethod::Head,
        Method::Options => WasiMethod::Options,
        Method::Other(name) => WasiMethod::Other(name.clone()),
    }
}

fn write_body(outgoing: &OutgoingBody, bytes: &[u8]) -> Result<(), OutboundError> {
    let stream = outgoing
        .write()
        .map_err(|()| OutboundError::Body("request body stream already taken".into()))?;
    BodyWriter::new(stream)
        .send(bytes)
        .map_err(|e| OutboundError::Body(format!("could not send the request body: {e}")))
}

fn wait(future: &FutureIncomingResponse) -> Result<IncomingResponse, OutboundError> {
    let ready = future.subscribe();
    loop {
        match future.get() {
            None => ready.block(),
            Some(Ok(Ok(response))) => return Ok(response),
            Some(Ok(Err(code))) => return Err(OutboundError::Http(code)),
            Some(Err(())) => return Err(OutboundError::Body("response already taken".into())),
        }
    }
}

fn read_response(response: IncomingResponse) -> Result<ClientResponse, OutboundError> {
    let status = response.status();
    let headers = response.headers().entries();
    let incoming = response
        .consume()
        .map_err(|()| OutboundError::Body("response body already taken".into()))?;
    let stream = incoming
        .stream()
        .map_err(|()| OutboundError::Body("response body stream already taken".into()))?;
    let body = body::read_to_end(&stream).map_err(|error| match error {
        StreamError::LastOperationFailed(e) => match http_error_code(&e) {
            Some(code) => OutboundError::Http(code),
            None => OutboundError::Body(e.to_debug_string()),
        },
        StreamError::Closed => OutboundError::Body("closed early".into()),
    })?;
    // The stream is a child of the body and must go before it is finished.
    drop(stream);
    drop(IncomingBody::finish(incoming));
    Ok(ClientResponse {
        status,
        headers,
        body,
    })
}
