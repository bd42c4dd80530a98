//! Method + path routing with `{param}` and trailing `{*rest}` segments.

use crate::error::{Error, Result};
use crate::http::{Method, Request, Response};

type Handler = Box<dyn Fn(Request) -> Result<Response>>;

enum Segment {
    Literal(String),
    Param(String),
    Rest(String),
}

struct Route {
    method: Method,
    segments: Vec<Segment>,
    handler: Handler,
}

/// Handlers by method and path pattern; the first match in registration
/// order wins, so register literal paths before patterns that overlap them.
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route for any method.
    pub fn route(
        mut self,
        method: Method,
        pattern: &str,
        handler: impl Fn(Request) -> Result<Response> + 'static,
    ) -> Self {
        let segments = pattern
            .split('/')
            .filter(|s| !s.is_empty())
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => match name.strip_prefix('*') {
                        Some(rest) => Segment::Rest(rest.to_owned()),
                        None => Segment::Param(name.to_owned()),
                    },
                    None => Segment::Literal(s.to_owned()),
                },
            )
            .collect();
        self.routes.push(Route {
            method,
            segments,
            handler: Box::new(handler),
        });
        self
    }

    /// Adds a GET route.
    pub fn get(
        self,
        pattern: &str,
        handler: impl Fn(Request) -> Result<Response> + 'static,
    ) -> Self {
        self.route(Method::Get, pattern, handler)
    }

    /// Adds a POST route.
    pub fn post(
        self,
        pattern: &str,
        handler: impl Fn(Request) -> Result<Response> + 'static,
    ) -> Self {
        self.route(Method::Post, pattern, handler)
    }

    /// Adds a PUT route.
    pub fn put(
        self,
        pattern: &str,
        handler: impl Fn(Request) -> Result<Response> + 'static,
    ) -> Self {
        self.route(Method::Put, pattern, handler)
    }

    /// Adds a DELETE route.
    pub fn delete(
        self,
        pattern: &str,
        handler: impl Fn(Request) -> Result<Response> + 'static,
    ) -> Self {
        self.route(Method::Delete, pattern, handler)
    }

    /// Runs the matching handler: 404 when no pattern matches the path, 405
    /// (with `allow`) when the path matches under other methods only.
    pub fn dispatch(&self, mut request: Request) -> Response {
        let parts: Vec<&str> = request.path.split('/').filter(|s| !s.is_empty()).collect();
        let mut allowed = Vec::new();
        for route in &self.routes {
            let Some(params) = match_segments(&route.segments, &parts) else {
                continue;
            };
            if route.method != request.method {
                allowed.push(route.method.as_str().to_owned());
                continue;
            }
            request.params = params;
            return (route.handler)(request).unwrap_or_else(Error::into_response);
        }
        if allowed.is_empty() {
            Error::not_found(format!("no route for {}", request.path)).into_response()
        } else {
            let allow = allowed.join(", ");
            Error::new(
                405,
                format!(
                    "method {} not allowed; use {allow}",
                    request.method.as_str()
                ),
            )
            .into_response()
            .with_header("allow", allow)
        }
    }
}

fn match_segments(segments: &[Segment], parts: &[&str]) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        match segment {
            Segment::Rest(name) => {
                params.push((name.clone(), parts.get(i..).unwrap_or_default().join("/")));
                return Some(params);
            }
            Segment::Param(name) => params.push((name.clone(), decode(parts.get(i)?))),
            Segment::Literal(text) if parts.get(i) == Some(&text.as_str()) => {}
            Segment::Literal(_) => return None,
        }
    }
    (segments.len() == parts.len()).then_some(params)
}

/// Percent-decodes a path segment; invalid escapes are kept as written.
fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
