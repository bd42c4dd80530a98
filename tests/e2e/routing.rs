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

const ALPHA_ONLY: &str = r#"
[services.alpha]
component = "testbed.wasm"
routes = ["/alpha/{*rest}"]
"#;

/// `bazaar_gateway_thread_connections` of each thread, from `/metrics`.
async fn thread_connections(admin_url: &str, threads: usize) -> Vec<f64> {
    let text = reqwest::Client::new()
        .get(format!("{admin_url}/metrics"))
        .bearer_auth(crate::support::TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    (0..threads)
        .map(|thread| {
            let name = format!("bazaar_gateway_thread_connections{{thread=\"{thread}\"}} ");
            text.lines()
                .find_map(|line| line.strip_prefix(name.as_str()))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
        })
        .collect()
}

/// Each connection goes to the gateway thread serving the fewest, so a
/// burst of keep-alive connections spreads evenly over the threads. A
/// process of its own: the metrics are one per process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_spread_evenly_over_the_gateway_threads() {
    let dir = crate::support::temp_dir();
    let config = crate::support::binary_config(&dir, ALPHA_ONLY);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("[gateway]\n", "[gateway]\nthreads = 3\n"),
    )
    .unwrap();
    let host = crate::support::BinaryHost::spawn(&config, &dir.join("host.log"));

    // Six clients, six connections, opened at once and kept alive.
    let clients: Vec<reqwest::Client> = (0..6).map(|_| reqwest::Client::new()).collect();
    let answers = futures_util::future::join_all(
        clients
            .iter()
            .enumerate()
            .map(|(i, client)| client.get(format!("{}/alpha/path/c{i}", host.url)).send()),
    )
    .await;
    for (i, answer) in answers.into_iter().enumerate() {
        let answer = answer.unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.text().await.unwrap(), format!("c{i}"));
    }
    assert_eq!(thread_connections(&host.admin_url, 3).await, vec![2.0; 3]);

    // Closed connections are counted off their thread.
    drop(clients);
    crate::support::eventually(
        std::time::Duration::from_secs(10),
        "every thread's connections to close",
        || async { (thread_connections(&host.admin_url, 3).await == vec![0.0; 3]).then_some(()) },
    )
    .await;
}

/// Stopping the host refuses new connections at once and lets the requests
/// in flight finish, whether connections are served by the gateway's own
/// threads or on the shared runtime (`threads = 0`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_refuses_new_connections_and_finishes_requests_in_flight() {
    for threads in ["threads = 3", "threads = 0"] {
        let host = TestHost::start_with(ALPHA_ONLY, threads).await;
        let addr = host.running.gateway_addr;
        // Four responses under way: heads received, bodies still streaming
        // (three chunks, 400 ms apart).
        let heads = futures_util::future::join_all((0..4).map(|_| {
            reqwest::Client::new()
                .get(host.url("/alpha/stream/3/400"))
                .send()
        }))
        .await;
        let in_flight: Vec<_> = heads
            .into_iter()
            .map(|head| {
                let response = head.unwrap();
                assert_eq!(response.status(), 200, "{threads}");
                tokio::spawn(response.text())
            })
            .collect();
        let stopping = tokio::spawn(host.stop());
        crate::support::eventually(
            std::time::Duration::from_secs(5),
            "the listener to close",
            || async { tokio::net::TcpStream::connect(addr).await.err().map(|_| ()) },
        )
        .await;
        assert!(
            !stopping.is_finished(),
            "{threads}: the stop waited for nothing"
        );
        for body in in_flight {
            let body = body.await.unwrap().unwrap();
            assert_eq!(body, "chunk 0\nchunk 1\nchunk 2\n", "{threads}");
        }
        stopping.await.unwrap();
    }
}
