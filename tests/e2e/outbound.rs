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

/// A raw HTTP/1 upstream: reads each request until its chunked body has
/// ended (then answers 200) or the peer closes the connection, and sends
/// the bytes it read.
async fn raw_sink() -> (u16, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sender, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let sender = sender.clone();
            tokio::spawn(async move {
                let (mut seen, mut buffer) = (Vec::new(), [0u8; 4096]);
                while let Ok(n @ 1..) = socket.read(&mut buffer).await {
                    seen.extend_from_slice(&buffer[..n]);
                    if seen.ends_with(b"\r\n0\r\n\r\n") {
                        let answer =
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                        let _ = socket.write_all(answer).await;
                        break;
                    }
                }
                let _ = sender.send(seen);
            });
        }
    });
    (port, received)
}

/// A guest streaming a request body out when its own client goes away:
/// the upstream sees the body cut off, never a shorter body that ended
/// cleanly (which is how wasi-http ends a body whose store is dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_cut_off_by_a_cancelled_request_never_looks_complete() {
    let (port, mut received) = raw_sink().await;
    let services = STANDARD_SERVICES.replace(
        "publishes = [\"news\"]",
        &format!("publishes = [\"news\"]\nallowed_outbound_hosts = [\"http://127.0.0.1:{port}\"]"),
    );
    let host = TestHost::start_with(&services, "").await;
    let sink = format!("http://127.0.0.1:{port}/sink");
    let next_upload = async |received: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>| {
        let seen = tokio::time::timeout(std::time::Duration::from_secs(10), received.recv())
            .await
            .expect("the upstream should see the upload end within 10 s")
            .expect("the upstream is running");
        (String::from_utf8_lossy(&seen).into_owned(), seen)
    };

    // Whole: two chunks, then the body's end.
    let whole = host
        .http
        .get(host.url("/alpha/send-slowly"))
        .query(&[("url", sink.as_str()), ("chunks", "2"), ("ms", "10")])
        .send()
        .await
        .unwrap();
    assert_eq!(whole.status(), 200, "{}", whole.text().await.unwrap());
    let (text, seen) = next_upload(&mut received).await;
    assert!(seen.ends_with(b"chunk 1\n\r\n0\r\n\r\n"), "{text}");

    // Cut off: the client gives up while the guest is between chunks.
    let cut = host
        .http
        .get(host.url("/alpha/send-slowly"))
        .query(&[("url", sink.as_str()), ("chunks", "50"), ("ms", "100")])
        .timeout(std::time::Duration::from_millis(350))
        .send()
        .await;
    assert!(cut.is_err(), "the client should have given up first");
    let (text, seen) = next_upload(&mut received).await;
    assert!(text.contains("chunk 0\n"), "{text}");
    assert!(
        !seen.ends_with(b"\r\n0\r\n\r\n"),
        "the upstream got the cut-off body as a whole one:\n{text}"
    );

    // The same to another service, which stores the body it gets.
    let cut = host
        .http
        .get(host.url("/alpha/send-slowly"))
        .query(&[
            ("url", "http://beta.internal/beta/kv/uploads/cut"),
            ("method", "PUT"),
            ("chunks", "50"),
            ("ms", "100"),
        ])
        .timeout(std::time::Duration::from_millis(350))
        .send()
        .await;
    assert!(cut.is_err(), "the client should have given up first");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let stored = host.get("/beta/kv/uploads/cut").await;
    let status = stored.status();
    assert_eq!(
        status,
        404,
        "beta stored a cut-off body: {}",
        stored.text().await.unwrap()
    );
    assert_eq!(host.get("/alpha/path/x").await.status(), 200);
    host.stop().await;
}
