use crate::support::TestHost;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_path_gets_json_404() {
    let host = TestHost::start().await;
    let response = host.get("/no/such/place").await;
    assert_eq!(response.status(), 404);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "a 404 should be JSON"
    );
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("/no/such/place"),
        "expected the path in the error, got {body}"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_the_service_owning_the_path() {
    let host = TestHost::start().await;
    let alpha = host.get("/alpha/path/a/b/c").await;
    assert_eq!(alpha.status(), 200);
    assert_eq!(alpha.headers()["x-bazaar-service"], "alpha");
    assert_eq!(alpha.text().await.unwrap(), "a/b/c");
    let beta = host.get("/beta/path/x").await;
    assert_eq!(beta.headers()["x-bazaar-service"], "beta");
    // Inside a service, its own router answers unknown paths.
    let inner = host.get("/alpha/nothing-here").await;
    assert_eq!(inner.status(), 404);
    assert_eq!(inner.headers()["x-bazaar-service"], "alpha");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_is_served_like_an_http1_one() {
    let host = TestHost::start().await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let alpha = h2.get(host.url("/alpha/path/a/b")).send().await.unwrap();
    assert_eq!(alpha.version(), reqwest::Version::HTTP_2);
    assert_eq!(alpha.status(), 200);
    assert_eq!(alpha.headers()["x-bazaar-service"], "alpha");
    assert!(alpha.headers().contains_key("x-request-id"));
    assert_eq!(alpha.text().await.unwrap(), "a/b");
    let missing = h2.get(host.url("/no/such/place")).send().await.unwrap();
    assert_eq!(missing.version(), reqwest::Version::HTTP_2);
    assert_eq!(missing.status(), 404);
    // Many requests at once share the one connection.
    let answers = futures_util::future::join_all(
        (0..20).map(|i| h2.get(host.url(&format!("/beta/path/{i}"))).send()),
    )
    .await;
    for (i, answer) in answers.into_iter().enumerate() {
        let answer = answer.unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.text().await.unwrap(), i.to_string());
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_request_id_is_echoed() {
    let host = TestHost::start().await;
    let response = host
        .http
        .get(host.url("/api/products"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-123");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_routes_in_config_are_refused() {
    let services = r#"
[services.a]
component = "testbed.wasm"
routes = ["/x/{id}"]
[services.b]
component = "testbed.wasm"
routes = ["/x/{key}"]
"#;
    let dir = crate::support::temp_dir();
    let text = crate::support::gateway_toml(&dir, services, "");
    let config = bazaar::config::GatewayConfig::parse(
        &text,
        std::path::Path::new("g.toml"),
        crate::support::components_dir().to_path_buf(),
    )
    .unwrap();
    let err = match bazaar::host::start(config).await {
        Ok(_) => panic!("duplicate routes should stop the host from starting"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("`a`") && err.contains("`b`"),
        "expected both services named: {err}"
    );
}
