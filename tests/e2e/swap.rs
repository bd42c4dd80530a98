//! A hot swap never disturbs a request in flight on the service swapped.

use crate::support::{TestHost, hash, version_header, wasm_bytes, with_custom_section};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_streaming_during_a_swap_finishes_whole_on_the_old_version() {
    let host = TestHost::start().await;
    let old = hash(&wasm_bytes("testbed"));
    let next = with_custom_section(&wasm_bytes("testbed"), "swapped mid-stream");
    let new = hash(&next);

    // Ten chunks, 150 ms apart: the deploy lands while it streams.
    let mut streaming = host.get("/alpha/stream/10/150").await;
    assert_eq!(streaming.status(), 200);
    assert_eq!(version_header(&streaming), old);
    let first = streaming.chunk().await.unwrap().expect("a first chunk");
    let sleeping = {
        let (http, url) = (host.http.clone(), host.url("/alpha/sleep/800"));
        tokio::spawn(async move { http.get(url).send().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;

    assert_eq!(host.deploy("alpha", next).await.status(), 200);
    let after = host.get("/alpha/path/after").await;
    assert_eq!(
        version_header(&after),
        new,
        "a request after the swap gets the new version"
    );

    let mut body = first.to_vec();
    while let Some(chunk) = streaming.chunk().await.unwrap() {
        body.extend_from_slice(&chunk);
    }
    let expected: String = (0..10).map(|i| format!("chunk {i}\n")).collect();
    assert_eq!(
        String::from_utf8_lossy(&body),
        expected,
        "the streaming response should arrive whole"
    );
    let slept = sleeping.await.unwrap();
    assert_eq!(
        slept.status(),
        200,
        "a request in flight during the swap completes"
    );
    assert_eq!(version_header(&slept), old, "on the version it started on");
    assert_eq!(slept.text().await.unwrap(), "slept 800");
    host.stop().await;
}
