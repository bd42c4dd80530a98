//! The dashboard: a page on the admin listener that shows every service
//! with its state, version, routes and recent traffic, the event
//! subscriptions with their backlogs and dead letters, and each service's
//! deploy history, updated live; it rolls back and replays dead letters
//! with a click.
//!
//! 1. `GET /dashboard` serves the page, `GET /dashboard/{file}` its script
//!    and style sheet. They are embedded in the binary (no CDN, no fonts:
//!    the page works offline) and hold no data, so they are served without
//!    the token.
//! 2. The script asks for the admin token once, keeps it in the tab's
//!    `sessionStorage` (never `localStorage` or a cookie), and sends it as
//!    a bearer token with every call to the JSON API (`/services`,
//!    `/stats`, `/events`, ...), which checks it as for any other client.
//!    A 401 asks for the token again.
//! 3. Every response carries a Content-Security-Policy that allows only
//!    this origin's scripts, styles and API: the script writes API data
//!    into the page with `textContent`, and the policy is the second line
//!    of defence should a name or an error message ever hold markup.

use axum::Router;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};

/// One embedded file: its name under `/dashboard/`, content type and text.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// The page and everything it loads. `include_str!` (rather than
/// `include_dir!`) makes Cargo rebuild the host when one of them changes.
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../../assets/dashboard/index.html"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../assets/dashboard/style.css"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../assets/dashboard/api.js"),
    },
    Asset {
        name: "view.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../assets/dashboard/view.js"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../assets/dashboard/app.js"),
    },
];

/// Only this origin's scripts, styles and API; no frames, no plug-ins.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes, for [`super::app`] to mount outside the token
/// check; they take no state, so they fit any router's.
pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/dashboard", get(index))
        .route("/dashboard/", get(index))
        .route("/dashboard/{file}", get(asset))
}

async fn index() -> Response {
    serve("index.html")
}

async fn asset(Path(file): Path<String>) -> Response {
    serve(&file)
}

/// The embedded file `name`, or 404.
fn serve(name: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such dashboard file\n").into_response();
    };
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Revalidated every time, so a new host's page never runs an old script.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http::Request;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    async fn get(path: &str) -> (StatusCode, Option<String>, String) {
        let response = routes::<()>()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn serves_the_embedded_page_and_assets_with_their_content_types() {
        for (path, expected_type, expected_text) in [
            ("/dashboard", "text/html", "<title>Bazaar"),
            ("/dashboard/", "text/html", "<title>Bazaar"),
            ("/dashboard/index.html", "text/html", "/dashboard/app.js"),
            ("/dashboard/app.js", "text/javascript", "sessionStorage"),
            ("/dashboard/api.js", "text/javascript", "Bearer"),
            ("/dashboard/view.js", "text/javascript", "textContent"),
            ("/dashboard/style.css", "text/css", "data-state"),
        ] {
            let (status, content_type, body) = get(path).await;
            assert_eq!(status, StatusCode::OK, "GET {path} should answer 200");
            let content_type = content_type.unwrap_or_default();
            assert!(
                content_type.starts_with(expected_type),
                "GET {path} should be {expected_type}, was {content_type:?}"
            );
            assert!(
                body.contains(expected_text),
                "GET {path} should contain {expected_text:?}"
            );
        }
    }

    #[tokio::test]
    async fn answers_404_for_a_file_it_does_not_embed() {
        for path in ["/dashboard/missing.js", "/dashboard/..%2FCargo.toml"] {
            let (status, ..) = get(path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "GET {path} should be 404");
        }
    }

    #[test]
    fn the_page_loads_nothing_from_another_origin_and_uses_no_browser_storage_but_the_tab() {
        for asset in ASSETS {
            for outside in [
                "http://",
                "https://",
                "//fonts.",
                "localStorage",
                "document.cookie",
            ] {
                assert!(
                    !asset.body.contains(outside),
                    "{} should not mention {outside:?}: the page works offline and keeps the token in the tab",
                    asset.name
                );
            }
            assert!(
                !asset.body.contains("innerHTML"),
                "{} should put API data into the page with textContent, not innerHTML",
                asset.name
            );
        }
    }
}
