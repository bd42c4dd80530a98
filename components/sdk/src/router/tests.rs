//! Native tests of routing: precedence, HEAD, 405 and parameters.

use super::Router;
use crate::error::Result;
use crate::request::{Method, Request};
use crate::response::Response;

/// A handler answering `name` and its parameters, so a test sees which
/// route ran and with what.
fn answer(name: &'static str) -> impl Fn(Request) -> Result<Response> {
    move |req: Request| {
        let params: Vec<String> = req.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Ok(Response::new(200).with_body(format!("{name} {}", params.join(" "))))
    }
}

fn body(router: &Router, method: Method, path: &str) -> (u16, String) {
    let response = router.dispatch(Request::new(method, path));
    (
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    )
}

#[test]
fn literal_beats_param_beats_rest_whatever_the_registration_order() {
    let router = Router::new()
        .get("/{svc}/{*rest}", answer("rest"))
        .get("/{svc}/{id}", answer("param"))
        .get("/{svc}/me", answer("literal"));
    assert_eq!(body(&router, Method::Get, "/a/me").1, "literal svc=a");
    assert_eq!(body(&router, Method::Get, "/a/7").1, "param svc=a id=7");
    assert_eq!(
        body(&router, Method::Get, "/a/7/8").1,
        "rest svc=a rest=7/8"
    );
}

#[test]
fn earlier_segments_decide_before_length() {
    let router = Router::new()
        .get("/{a}/b/c", answer("param first"))
        .get("/a/{*rest}", answer("literal first"));
    assert_eq!(
        body(&router, Method::Get, "/a/b/c").1,
        "literal first rest=b/c"
    );
}

#[test]
fn longer_pattern_wins_at_equal_ranks() {
    let router = Router::new()
        .get("/files/{*rest}", answer("rest"))
        .get("/files/{name}/{*rest}", answer("longer"));
    assert_eq!(
        body(&router, Method::Get, "/files/x/y").1,
        "longer name=x rest=y"
    );
}

#[test]
fn equivalent_patterns_keep_the_first_registered() {
    let router = Router::new()
        .get("/items/{id}", answer("first"))
        .get("/items/{key}", answer("second"));
    assert_eq!(body(&router, Method::Get, "/items/1").1, "first id=1");
}

#[test]
fn rest_matches_zero_segments() {
    let router = Router::new().get("/{svc}/path/{*rest}", answer("rest"));
    assert_eq!(body(&router, Method::Get, "/a/path").1, "rest svc=a rest=");
}

#[test]
fn segments_after_a_rest_are_ignored() {
    // `/a/{*r}/b` is `/a/{*r}`: it matches `/a` and ties with it (it is
    // not longer), so the first registered wins.
    let router = Router::new()
        .get("/a/{*r}", answer("first"))
        .get("/a/{*r}/b", answer("second"));
    assert_eq!(body(&router, Method::Get, "/a").1, "first r=");
    assert_eq!(body(&router, Method::Get, "/a/x/y").1, "first r=x/y");
}

#[test]
fn the_root_pattern_matches_only_the_root_and_empty_segments_are_ignored() {
    let router = Router::new()
        .get("/", answer("root"))
        .get("//x//{id}/", answer("x"));
    assert_eq!(body(&router, Method::Get, "/").1, "root ");
    assert_eq!(body(&router, Method::Get, "/x/7").1, "x id=7");
    assert_eq!(body(&router, Method::Get, "/x//7/").1, "x id=7");
    assert_eq!(body(&router, Method::Get, "/y").0, 404);
}

#[test]
fn params_and_rest_are_percent_decoded() {
    let router = Router::new()
        .get("/p/{name}", answer("param"))
        .get("/r/{*rest}", answer("rest"));
    assert_eq!(body(&router, Method::Get, "/p/a%20b").1, "param name=a b");
    assert_eq!(
        body(&router, Method::Get, "/r/a%20b/c%2Fd").1,
        "rest rest=a b/c/d"
    );
}

#[test]
fn params_that_are_not_utf8_are_a_400() {
    let router = Router::new().get("/p/{name}", answer("param"));
    assert_eq!(body(&router, Method::Get, "/p/%FF").0, 400);
}

#[test]
fn head_runs_the_get_handler_without_a_body() {
    let router = Router::new().get("/x", |_| {
        Ok(Response::new(200)
            .with_header("content-length", "5")
            .with_header("x-kept", "yes")
            .with_body("hello"))
    });
    let response = router.dispatch(Request::new(Method::Head, "/x"));
    assert_eq!(response.status, 200);
    assert!(response.body.is_empty(), "HEAD must drop the body");
    assert_eq!(response.header("x-kept"), Some("yes"));
    assert_eq!(
        response.header("content-length"),
        None,
        "no length for an absent body"
    );
}

#[test]
fn an_explicit_head_route_beats_the_get_fallback() {
    let router = Router::new()
        .get("/x", answer("get"))
        .route(Method::Head, "/x", answer("head"));
    assert_eq!(body(&router, Method::Head, "/x").1, "head ");
}

#[test]
fn wrong_method_is_405_with_allow_and_unknown_path_is_404() {
    let router = Router::new()
        .get("/x", answer("get"))
        .patch("/x", answer("patch"))
        .post("/{svc}", answer("post"));
    let response = router.dispatch(Request::new(Method::Delete, "/x"));
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, PATCH, POST, HEAD"));
    assert_eq!(body(&router, Method::Patch, "/x").1, "patch ");
    assert_eq!(body(&router, Method::Get, "/x/y/z").0, 404);
}

#[test]
fn query_params_and_typed_params_read_from_the_request() {
    let router = Router::new().get("/n/{n}", |req: Request| {
        let n: u32 = req.param_as("n")?;
        let line = req.query_param("line").unwrap_or_default();
        Ok(Response::new(200).with_body(format!("{n} {line}")))
    });
    assert_eq!(body(&router, Method::Get, "/n/7?line=a+b%21").1, "7 a b!");
    assert_eq!(body(&router, Method::Get, "/n/seven").0, 400);
}

#[test]
fn a_pattern_shape_admits_the_path_lengths_its_segments_can_match() {
    use super::pattern::{Segment, Shape, segments};
    for pattern in [
        "/",
        "/a",
        "//a//b/",
        "/{svc}/{*rest}",
        "/{*}",
        "/a/{*rest}/ignored/{x}",
        "/{*rest",
        "/a}/{b}",
        "{*x}",
    ] {
        let shape = Shape::of(pattern);
        let fixed = segments(pattern)
            .filter(|s| !matches!(s, Segment::Rest(_)))
            .count();
        let rest = segments(pattern).any(|s| matches!(s, Segment::Rest(_)));
        for parts in 0..6 {
            let expected = if rest { parts >= fixed } else { parts == fixed };
            assert_eq!(
                shape.admits(parts),
                expected,
                "{pattern} with {parts} segments"
            );
        }
    }
}
