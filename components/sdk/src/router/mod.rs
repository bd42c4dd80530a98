//! Method + path routing with `{param}` and trailing `{*rest}` segments.

mod pattern;
#[cfg(test)]
mod tests;

use crate::error::{Error, Result};
use crate::request::{Method, Request};
use crate::response::Response;

type Handler = Box<dyn Fn(Request) -> Result<Response>>;

struct Route {
    method: Method,
    /// The pattern's text, read by `pattern`'s functions at each match.
    pattern: Box<str>,
    /// How many segments the pattern takes, counted once.
    shape: pattern::Shape,
    handler: Handler,
}

/// Handlers by method and path pattern.
///
/// When several patterns match a path, the most specific wins, as in the
/// host's router: segments are compared left to right (a literal beats a
/// `{param}`, which beats a `{*rest}`), then the longer pattern wins.
/// Registration order only breaks ties between equivalent patterns (the
/// first one wins). A HEAD request with no HEAD route runs the GET handler
/// and drops its body.
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
        self.routes.push(Route {
            method,
            pattern: pattern.into(),
            shape: pattern::Shape::of(pattern),
            handler: Box::new(handler),
        });
        self
    }

    /// Adds a GET route (which also answers HEAD).
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

    /// Adds a PATCH route.
    pub fn patch(
        self,
        pattern: &str,
        handler: impl Fn(Request) -> Result<Response> + 'static,
    ) -> Self {
        self.route(Method::Patch, pattern, handler)
    }

    /// Adds a DELETE route.
    pub fn delete(
        self,
        pattern: &str,
        handler: impl Fn(Request) -> Result<Response> + 'static,
    ) -> Self {
        self.route(Method::Delete, pattern, handler)
    }

    /// Runs the most specific matching handler: 404 when no pattern matches
    /// the path, 405 (with `allow`) when it matches under other methods only,
    /// 400 when a path parameter is not UTF-8 once percent-decoded.
    pub fn dispatch(&self, mut request: Request) -> Response {
        let path = request.path.clone();
        let parts: Vec<&str> = pattern::split(&path).collect();
        let matching: Vec<&Route> = self
            .routes
            .iter()
            .filter(|route| {
                route.shape.admits(parts.len()) && pattern::matches(&route.pattern, &parts)
            })
            .collect();
        let Some(route) = best(&matching, &request.method) else {
            return refuse(&request, &matching);
        };
        request.params = match pattern::params(&route.pattern, &parts) {
            Ok(params) => params,
            Err(name) => {
                return Error::bad_request(format!(
                    "path parameter `{name}` is not valid UTF-8 once percent-decoded"
                ))
                .into_response();
            }
        };
        let head_via_get = request.method == Method::Head && route.method == Method::Get;
        let response = (route.handler)(request).unwrap_or_else(Error::into_response);
        if head_via_get {
            response.without_body()
        } else {
            response
        }
    }
}

/// The route to run for `method`: the most specific one, and at equal
/// specificity an exact method before a GET standing in for HEAD, then the
/// first registered.
fn best<'r>(matching: &[&'r Route], method: &Method) -> Option<&'r Route> {
    let exact = |route: &Route| route.method == *method;
    let mut best: Option<&Route> = None;
    for &route in matching {
        let usable = exact(route) || (*method == Method::Head && route.method == Method::Get);
        if !usable {
            continue;
        }
        let better = best.is_none_or(|current| {
            pattern::specificity(&route.pattern, &current.pattern)
                .then(exact(route).cmp(&exact(current)))
                .is_gt()
        });
        if better {
            best = Some(route);
        }
    }
    best
}

/// The 404 or 405 for a request no route accepts.
fn refuse(request: &Request, matching: &[&Route]) -> Response {
    if matching.is_empty() {
        return Error::not_found(format!("no route for {}", request.path)).into_response();
    }
    let mut allowed: Vec<&str> = Vec::new();
    for route in matching {
        let name = route.method.as_str();
        if !allowed.contains(&name) {
            allowed.push(name);
        }
    }
    if allowed.contains(&"GET") && !allowed.contains(&"HEAD") {
        allowed.push("HEAD");
    }
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
