//! Outbound HTTP: granted exactly (scheme, host, port), denied otherwise;
//! no raw sockets.

use crate::support::{STANDARD_SERVICES, TestHost};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A local server counting its hits.
async fn upstream() -> (u16, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let app = axum::Router::new().fallback(move || {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            "hi from upstream"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, hits)
}

async fn fetch(host: &TestHost, service: &str, url: &str) -> (u16, Value) {
    let response = host
        .http
        .get(host.url(&format!("/{service}/fetch")))
        .query(&[("url", url)])
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_requests_need_an_exact_grant() {
    let (port, hits) = upstream().await;
    let services = format!(
        "{STANDARD_SERVICES}\n[services.gamma]\ncomponent = \"testbed.wasm\"\nroutes = [\"/gamma/{{*rest}}\"]\nallowed_outbound_hosts = [\"http://localhost:{port}\"]\n"
    )
    .replace(
        "publishes = [\"news\"]",
        &format!("publishes = [\"news\"]\nallowed_outbound_hosts = [\"http://127.0.0.1:{port}\"]"),
    );
    let host = TestHost::start_with(&services, "").await;
    let admin_port = host.running.admin_addr.port();

    let (status, body) = fetch(&host, "alpha", &format!("http://127.0.0.1:{port}/x")).await;
    assert_eq!(
        (status, &body["body"]),
        (200, &Value::from("hi from upstream")),
        "{body}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    for (service, url, why) in [
        (
            "beta",
            format!("http://127.0.0.1:{port}/x"),
            "ungranted service",
        ),
        (
            "alpha",
            format!("http://127.0.0.1:{admin_port}/services"),
            "another port (the admin API)",
        ),
        (
            "alpha",
            format!("https://127.0.0.1:{port}/x"),
            "another scheme",
        ),
        (
            "alpha",
            format!("http://localhost:{port}/x"),
            "a name for the granted IP",
        ),
        (
            "alpha",
            "http://example.com/".to_owned(),
            "an ungranted host",
        ),
    ] {
        let (status, body) = fetch(&host, service, &url).await;
        assert_eq!(status, 502, "{why}: {body}");
        assert_eq!(body["error"], "HTTP-request-denied", "{why}: {body}");
    }
    // A grant by name never reaches a loopback address.
    let (status, body) = fetch(&host, "gamma", &format!("http://localhost:{port}/x")).await;
    assert_eq!(status, 502);
    assert_eq!(body["error"], "destination-IP-prohibited", "{body}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "no denied request reached the server"
    );

    let socket = host
        .http
        .get(host.url("/alpha/socket"))
        .query(&[("addr", format!("127.0.0.1:{port}"))])
        .send()
        .await
        .unwrap();
    assert_eq!(socket.status(), 403, "{}", socket.text().await.unwrap());
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "a raw socket reaches nothing"
    );
    host.stop().await;
}
