use crate::support::TestHost;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_loop_and_memory_bomb_cost_only_their_own_request() {
    let host = TestHost::start().await;
    let trap = host.get("/alpha/trap").await;
    assert_eq!(trap.status(), 500, "a panic should become a 500");
    let body = trap.text().await.unwrap();
    assert!(
        !body.contains("panicked"),
        "trap details stay in the log: {body}"
    );

    let spin = host.get("/alpha/loop").await;
    assert_eq!(
        spin.status(),
        504,
        "an endless loop should hit the CPU limit"
    );

    let oom = host.get("/alpha/oom").await;
    assert!(
        oom.status().is_server_error(),
        "a memory bomb should become a 5xx, got {}",
        oom.status()
    );

    // Everything still works, including the misbehaving service itself.
    assert_eq!(host.get("/alpha/path/fine").await.status(), 200);
    assert_eq!(host.get("/beta/path/fine").await.status(), 200);
    assert_eq!(host.get("/api/products").await.status(), 200);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_does_not_block_other_requests() {
    let host = TestHost::start().await;
    let http = host.http.clone();
    let url = host.url("/alpha/loop");
    let spinning = tokio::spawn(async move { http.get(url).send().await.unwrap().status() });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    for _ in 0..5 {
        assert_eq!(host.get("/beta/path/ok").await.status(), 200);
    }
    assert_eq!(spinning.await.unwrap(), 504);
    host.stop().await;
}
