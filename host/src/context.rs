//! What travels with one request: its id, its deadline, the chain of
//! services it has passed through, and its W3C trace context.
//!
//! The gateway makes one per client request; a service call derives a child
//! from the caller's, so the callee shares the id, the deadline and the trace.

use http::HeaderName;
use std::sync::Arc;
use tokio::time::Instant;

// Header names are constants made at compile time: a `&str` name is
// parsed again on every insert.

/// Request header carrying the request id.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Request header carrying the W3C trace context.
pub const TRACEPARENT_HEADER: HeaderName = HeaderName::from_static("traceparent");
/// Request header naming the calling service on a service call. The gateway
/// strips it from client requests, so a service can trust it.
pub const CALLER_HEADER: HeaderName = HeaderName::from_static("x-bazaar-caller");
/// Request header with the verified caller's subject (token `sub`, or
/// `api-key:NAME`); set only by the host.
pub const USER_HEADER: HeaderName = HeaderName::from_static("x-bazaar-user");
/// Request header with the verified caller's roles, comma-separated; set
/// only by the host.
pub const ROLES_HEADER: HeaderName = HeaderName::from_static("x-bazaar-roles");

/// The context of one request, cheap to clone.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request id, the same for every call the request causes.
    pub id: Arc<str>,
    /// When the whole request, calls included, must be done.
    pub deadline: Instant,
    /// The services this request has entered, in order.
    pub chain: Arc<[Arc<str>]>,
    /// The trace this request belongs to, with this request's span id.
    pub trace: TraceContext,
    /// Who the gateway verified the caller to be, if anyone; service calls
    /// carry it on.
    pub identity: Option<Arc<crate::auth::Identity>>,
}

impl RequestContext {
    /// A request from outside: no service entered yet.
    pub fn new(id: Arc<str>, deadline: Instant, trace: TraceContext) -> Self {
        Self {
            id,
            deadline,
            chain: Arc::from(Vec::new()),
            trace,
            identity: None,
        }
    }

    /// A request from outside as it enters its first `service`, in `trace`
    /// (whose span id is this request's own).
    pub fn entering(
        id: Arc<str>,
        deadline: Instant,
        trace: TraceContext,
        service: &Arc<str>,
    ) -> Self {
        Self {
            id,
            deadline,
            chain: Arc::from([Arc::clone(service)]),
            trace,
            identity: None,
        }
    }

    /// A context for event deliveries and other host-made requests.
    pub fn internal(id: impl Into<Arc<str>>, deadline: Instant) -> Self {
        Self::new(id.into(), deadline, TraceContext::new_root())
    }

    /// How many services the request has entered.
    pub fn depth(&self) -> usize {
        self.chain.len()
    }

    /// Whether `service` is already on the path, so calling it would loop.
    pub fn has_entered(&self, service: &str) -> bool {
        self.chain.iter().any(|s| &**s == service)
    }

    /// The context inside `service`: the same id, deadline and trace, a new
    /// span, and `service` added to the chain.
    pub fn enter(&self, service: &Arc<str>) -> Self {
        let mut chain: Vec<Arc<str>> = self.chain.to_vec();
        chain.push(Arc::clone(service));
        Self {
            id: Arc::clone(&self.id),
            deadline: self.deadline,
            chain: chain.into(),
            trace: self.trace.child(),
            identity: self.identity.clone(),
        }
    }

    /// The request with `identity` as its verified caller.
    pub fn with_identity(mut self, identity: Option<crate::auth::Identity>) -> Self {
        self.identity = identity.map(Arc::new);
        self
    }

    /// The identity headers a service receives: the verified subject and
    /// roles, if any.
    pub fn identity_headers(&self) -> Vec<(HeaderName, String)> {
        match &self.identity {
            Some(who) => vec![
                (USER_HEADER, who.subject.clone()),
                (ROLES_HEADER, who.roles.join(",")),
            ],
            None => Vec::new(),
        }
    }

    /// The chain as `a → b → c`, for error messages.
    pub fn path(&self) -> String {
        self.chain.join(" → ")
    }
}

/// A W3C trace context (`traceparent`, version 00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace id, shared by every span of the trace.
    pub trace_id: [u8; 16],
    /// The id of the current span.
    pub span_id: [u8; 8],
    /// Trace flags; bit 0 is "sampled".
    pub flags: u8,
}

impl TraceContext {
    /// A new trace with a random id.
    pub fn new_root() -> Self {
        let random = uuid::Uuid::new_v4().into_bytes();
        let mut span_id = [0; 8];
        span_id.copy_from_slice(&random[8..]);
        Self {
            trace_id: uuid::Uuid::new_v4().into_bytes(),
            span_id,
            flags: 1,
        }
    }

    /// Continues a client's `traceparent`, or `None` if it is malformed.
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() {
            return None;
        }
        let trace_id: [u8; 16] = hex(trace)?.try_into().ok()?;
        let span_id: [u8; 8] = hex(span)?.try_into().ok()?;
        let flags = *hex(flags)?.first()?;
        // All-zero ids are invalid by the spec.
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// A child span of this one, in the same trace.
    pub fn child(&self) -> Self {
        let random = uuid::Uuid::new_v4().into_bytes();
        let mut span_id = [0; 8];
        span_id.copy_from_slice(&random[..8]);
        Self { span_id, ..*self }
    }

    /// The trace id as 32 hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex_text(&self.trace_id).as_str().to_owned()
    }

    /// The `traceparent` header value.
    pub fn header(&self) -> String {
        String::from_utf8_lossy(&self.encoded()).into_owned()
    }

    /// The `traceparent` header value, ready for a header map.
    pub fn header_value(&self) -> Option<http::HeaderValue> {
        http::HeaderValue::from_bytes(&self.encoded()).ok()
    }

    /// `00-{trace id}-{span id}-{flags}`, written without the formatter or
    /// an allocation (one is made on every request).
    fn encoded(&self) -> [u8; 55] {
        let mut out = [b'-'; 55];
        out[..2].copy_from_slice(b"00");
        write_hex(&mut out[3..35], &self.trace_id);
        write_hex(&mut out[36..52], &self.span_id);
        write_hex(&mut out[53..], &[self.flags]);
        out
    }
}

/// A new request id: a random (v4) UUID as 32 hex digits, no dashes.
pub fn new_request_id() -> Arc<str> {
    Arc::from(hex_text(uuid::Uuid::new_v4().as_bytes()).as_str())
}

/// Sixteen bytes as 32 lowercase hex digits, on the stack.
struct HexText([u8; 32]);

impl HexText {
    fn as_str(&self) -> &str {
        // Hex digits only: always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

fn hex_text(bytes: &[u8; 16]) -> HexText {
    let mut out = [0; 32];
    write_hex(&mut out, bytes);
    HexText(out)
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Writes `bytes` as lowercase hex into `out`, twice their length.
fn write_hex(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_32_random_hex_digits() {
        let (a, b) = (new_request_id(), new_request_id());
        for id in [&a, &b] {
            assert_eq!(id.len(), 32, "{id}");
            assert!(
                id.bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
                "{id}"
            );
        }
        assert_ne!(a, b);
    }

    #[test]
    fn a_client_traceparent_is_continued_with_a_new_span() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parent = TraceContext::parse(header).expect("valid traceparent");
        assert_eq!(parent.header(), header);
        let child = parent.child();
        assert_eq!(child.trace_id, parent.trace_id);
        assert_ne!(child.span_id, parent.span_id);
        assert!(
            child
                .header()
                .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
        );
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-xyz-00f067aa0ba902b7-01",
        ] {
            assert!(
                TraceContext::parse(bad).is_none(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn entering_services_builds_the_chain() {
        let root = RequestContext::internal("r1", Instant::now());
        let a: Arc<str> = "a".into();
        let inside = root.enter(&a).enter(&"b".into());
        assert_eq!(inside.depth(), 2);
        assert!(inside.has_entered("a") && !inside.has_entered("c"));
        assert_eq!(inside.path(), "a → b");
        assert_eq!(inside.id, root.id);
    }
}
