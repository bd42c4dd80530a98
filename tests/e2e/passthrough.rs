use crate::support::TestHost;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_headers_query_and_body_pass_through() {
    let host = TestHost::start().await;
    let response = host
        .http
        .post(host.url("/alpha/echo?x=1&y=two"))
        .header("x-status", "418")
        .header("x-custom", "value with spaces")
        .body("hello body")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 418);
    assert_eq!(response.headers()["echo-x-custom"], "value with spaces");
    assert_eq!(response.headers()["x-method"], "POST");
    assert_eq!(response.headers()["x-query"], "x=1&y=two");
    assert_eq!(response.text().await.unwrap(), "hello body");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_mebibyte_bodies_pass_both_ways_intact() {
    let host = TestHost::start().await;
    let upload: Vec<u8> = (0..6 * 1024 * 1024u32)
        .map(|i| (i * 7 % 256) as u8)
        .collect();
    let echoed = host
        .http
        .post(host.url("/alpha/echo"))
        .body(upload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.status(), 200);
    let echoed = echoed.bytes().await.unwrap();
    assert!(
        echoed.as_ref() == upload.as_slice(),
        "the 6 MiB echo should come back byte for byte"
    );

    let len = 5 * 1024 * 1024 + 3;
    let download = host.get(&format!("/alpha/bytes/{len}")).await;
    assert_eq!(download.status(), 200);
    let body = download.bytes().await.unwrap();
    assert_eq!(body.len(), len);
    assert!(
        body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8),
        "every byte should match"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_refused_with_413() {
    let host =
        TestHost::start_with(crate::support::STANDARD_SERVICES, "max_body_bytes = 1024").await;
    let response = host
        .http
        .post(host.url("/alpha/echo"))
        .body(vec![0u8; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(host.get("/alpha/path/ok").await.status(), 200);
    host.stop().await;
}

/// A body the guest finished before its response went out is sent with a
/// `content-length`, in one piece; one it is still writing streams chunked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_bodies_get_a_length_and_streaming_ones_stay_chunked() {
    let host = TestHost::start().await;
    // One chunk, no pause: written and finished within the guest's run.
    // An epoch tick between its head and its return makes it yield there
    // and stream instead, so it gets three tries.
    let mut whole = None;
    for _ in 0..3 {
        let response = host.get("/alpha/stream/1/0").await;
        if response.headers().contains_key("content-length") {
            whole = Some(response);
            break;
        }
    }
    let whole = whole.expect("a body finished with its run should get a content-length");
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["content-length"], "8");
    assert!(whole.headers().get("transfer-encoding").is_none());
    assert_eq!(whole.text().await.unwrap(), "chunk 0\n");
    // A pause between chunks: the head goes out before the body ends.
    let streamed = host.get("/alpha/stream/2/50").await;
    assert_eq!(streamed.status(), 200);
    assert_eq!(streamed.headers()["transfer-encoding"], "chunked");
    assert!(streamed.headers().get("content-length").is_none());
    assert_eq!(streamed.text().await.unwrap(), "chunk 0\nchunk 1\n");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_and_proxy_headers_never_reach_a_service() {
    let host = TestHost::start().await;
    let response = host
        .http
        .get(host.url("/alpha/headers"))
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("proxy-connection", "keep-alive")
        .header("keep-alive", "timeout=5")
        .header("http2-settings", "AAMAAABkAAQAAP__")
        .header("x-custom", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen: serde_json::Value = response.json().await.unwrap();
    assert_eq!(seen["x-custom"], "kept", "{seen}");
    for forbidden in [
        "proxy-authorization",
        "proxy-connection",
        "keep-alive",
        "http2-settings",
        "host",
    ] {
        assert!(
            seen.get(forbidden).is_none(),
            "{forbidden} reached the service: {seen}"
        );
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_headers_the_host_refuses_are_dropped_alone() {
    let host = TestHost::start().await;
    let response = host.get("/alpha/refused-headers").await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["x-before"], "kept");
    assert_eq!(headers["x-after"], "kept");
    assert!(
        headers.get("connection").is_none(),
        "the service's `connection: close` reached the client: {headers:?}"
    );
    assert_eq!(response.text().await.unwrap(), "the body, intact\n");
    let logs = crate::support::logs();
    for refused in ["connection", "bad name"] {
        assert!(
            logs.contains(&format!("dropped response header `{refused}`")),
            "no warning for `{refused}`"
        );
    }
    // The connection stays usable, and the service answers again.
    assert_eq!(host.get("/alpha/path/again").await.status(), 200);
    host.stop().await;
}
