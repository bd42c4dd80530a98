//! Metrics: `/metrics` scraped before and after traffic, failures, a
//! deploy, key-value writes and events; and the dashboard's `/stats`.
//!
//! The metrics recorder is one per process, shared by every host the tests
//! start, so these services have names no other test uses.

use crate::support::{self, TOKEN, TestHost, wasm_bytes, with_custom_section};
use serde_json::Value;

const SERVICES: &str = r#"
[services.metered]
component = "testbed.wasm"
routes = ["/metered/{*rest}"]
publishes = ["meter-news"]
[[services.metered.rules]]
routes = ["/metered/{*rest}"]
methods = ["DELETE"]
rate_limit = "1/min"

[services.meterwatch]
component = "testbed.wasm"
routes = ["/meterwatch/{*rest}"]
subscribes = ["meter-news"]
"#;

async fn scrape(host: &TestHost) -> String {
    let response = host.admin_get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "Prometheus text format"
    );
    response.text().await.unwrap()
}

/// The value of the sample of `name` carrying every label of `labels`
/// (0 when there is none yet).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_traffic_failures_deploys_storage_and_events() {
    let host = TestHost::start_with(SERVICES, "").await;
    let before = scrape(&host).await;
    let ok = [("service", "metered"), ("status", "2xx")];
    let failed = [("service", "metered"), ("status", "5xx")];

    for _ in 0..20 {
        assert_eq!(host.get("/metered/path/x").await.status(), 200);
    }
    for _ in 0..2 {
        assert_eq!(host.get("/metered/trap").await.status(), 500);
    }
    let put = host
        .http
        .put(host.url("/metered/kv/b/k"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    let first = host
        .http
        .delete(host.url("/metered/kv/b/k"))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 204);
    let limited = host
        .http
        .delete(host.url("/metered/kv/b/k"))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    let published = host
        .http
        .post(host.url("/metered/publish/meter-news"))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 200);
    let next = with_custom_section(&wasm_bytes("testbed"), "metered v2");
    assert_eq!(host.deploy("metered", next.clone()).await.status(), 200);
    assert_eq!(
        host.deploy("metered", b"not wasm".to_vec()).await.status(),
        422
    );

    let after = support::eventually(
        std::time::Duration::from_secs(20),
        "the delivery to be counted",
        || async {
            let text = scrape(&host).await;
            let delivered = sample(
                &text,
                "bazaar_events_delivered_total",
                &[("subscriber", "meterwatch"), ("topic", "meter-news")],
            );
            (delivered >= 1.0).then_some(text)
        },
    )
    .await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    assert_eq!(
        moved("bazaar_requests_total", &ok),
        20.0 + 3.0,
        "20 reads, a put, a delete, a publish"
    );
    assert_eq!(moved("bazaar_requests_total", &failed), 2.0);
    assert_eq!(
        moved(
            "bazaar_rejected_requests_total",
            &[("reason", "rate_limit")]
        )
        .min(1.0),
        1.0
    );
    assert!(
        moved(
            "bazaar_request_duration_seconds_count",
            &[("service", "metered")]
        ) >= 25.0
    );
    assert!(
        moved(
            "bazaar_instantiation_seconds_count",
            &[("service", "metered")]
        ) >= 24.0
    );
    assert!(moved("bazaar_cpu_seconds_count", &[("service", "metered")]) >= 24.0);
    assert_eq!(
        moved(
            "bazaar_kv_operations_total",
            &[("service", "metered"), ("op", "set")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "bazaar_kv_operations_total",
            &[("service", "metered"), ("op", "delete")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "bazaar_events_published_total",
            &[("service", "metered"), ("topic", "meter-news")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "bazaar_deploys_total",
            &[("service", "metered"), ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "bazaar_deploys_total",
            &[("service", "metered"), ("outcome", "failed")]
        ),
        1.0
    );
    let short = &crate::support::hash(&next)[..12];
    assert_eq!(
        sample(
            &after,
            "bazaar_service_version_info",
            &[("service", "metered"), ("version", short)]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "bazaar_event_backlog",
            &[("subscriber", "meterwatch")]
        ),
        0.0
    );
    assert!(sample(&after, "bazaar_resident_memory_bytes", &[]) > 1e6);
    assert!(
        after.contains("bazaar_open_connections"),
        "open connections are a gauge"
    );
    assert!(after.contains("bazaar_instances_in_flight{service=\"metered\"}"));

    let stats: Value = host.admin_json("/stats").await;
    let metered = &stats["services"]["metered"];
    assert!(metered["requests_total"].as_u64().unwrap() >= 25, "{stats}");
    assert!(metered["errors_total"].as_u64().unwrap() >= 2);
    assert!(metered["p95_ms"].as_f64().is_some());
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_made_for_a_request_the_guest_cannot_be_given_is_counted() {
    let services =
        "[services.meterraw]\ncomponent = \"testbed.wasm\"\nroutes = [\"/meterraw/{*rest}\"]\n";
    let host = TestHost::start_with(services, "").await;
    let made = [("service", "meterraw")];
    let before = scrape(&host).await;
    // HTTP/1.0 without a Host header: an instance is made for each, then
    // the request cannot be handed to it (a wasi:http request needs an
    // authority).
    let addr = host.running.gateway_addr;
    for _ in 0..3 {
        let answer = tokio::task::spawn_blocking(move || {
            support::send_raw(addr, b"GET /meterraw/path/x HTTP/1.0\r\n\r\n")
        })
        .await
        .unwrap();
        assert!(answer.starts_with("HTTP/1.0 400"), "{answer}");
    }
    let after = scrape(&host).await;
    assert_eq!(
        sample(&after, "bazaar_instantiation_seconds_count", &made)
            - sample(&before, "bazaar_instantiation_seconds_count", &made),
        3.0,
        "every instance made is timed, whether or not the guest ran"
    );
    host.stop().await;
}

/// A local OTLP/HTTP receiver: every span posted to it, as JSON.
async fn otlp_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    let spans = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&spans);
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = std::sync::Arc::clone(&sink);
            async move {
                if let Ok(export) = serde_json::from_slice::<Value>(&body) {
                    let mut spans = sink.lock().unwrap();
                    for resource in export["resourceSpans"].as_array().into_iter().flatten() {
                        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                            spans.extend(scope["spans"].as_array().into_iter().flatten().cloned());
                        }
                    }
                }
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, spans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_one_trace_from_the_client_through_calls_to_the_notification() {
    let (collector, spans) = otlp_receiver().await;
    let dir = support::temp_dir();
    let config = support::binary_config(&dir, crate::retailer::RETAILER);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[telemetry]\notlp_endpoint = \"{collector}\"\n"),
    )
    .unwrap();
    let host = support::BinaryHost::spawn(&config, &dir.join("trace.log"));
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", host.url);

    let email = "tracy@example.com";
    let user: Value = http
        .post(url("/api/users"))
        .json(&serde_json::json!({ "username": "tracy", "email": email, "password": "correct horse" }))
        .send().await.unwrap().json().await.unwrap();
    let login: Value = http
        .post(url("/api/users/login"))
        .json(&serde_json::json!({ "email": email, "password": "correct horse" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap();
    let admin: Value = http
        .post(format!("{}/auth/tokens", host.admin_url))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "subject": "ops", "roles": ["admin"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin = admin["token"].as_str().unwrap();
    let product: Value = http
        .post(url("/api/products"))
        .bearer_auth(admin)
        .json(&serde_json::json!({ "name": "Mug", "price_cents": 1299, "currency": "USD" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let product = product["id"].as_str().unwrap();
    let stocked = http
        .put(url(&format!("/api/inventory/{product}")))
        .bearer_auth(admin)
        .json(&serde_json::json!({ "quantity": 5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(stocked.status(), 200);

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let order = http
        .post(url("/api/orders"))
        .bearer_auth(token)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&serde_json::json!({ "user_id": user["id"], "items": [{ "product_id": product, "quantity": 1 }], "card": "4242424242424242" }))
        .send().await.unwrap();
    assert_eq!(order.status(), 201);

    let names = support::eventually(
        std::time::Duration::from_secs(30),
        "the trace's spans",
        || async {
            let names: Vec<String> = spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| {
                    s["traceId"]
                        .as_str()
                        .is_some_and(|t| t.eq_ignore_ascii_case(trace_id))
                })
                .filter_map(|s| s["name"].as_str().map(str::to_owned))
                .collect();
            let wanted = [
                "POST /api/orders",
                "call inventory",
                "call payments",
                "deliver order-placed to notifications",
            ];
            wanted
                .iter()
                .all(|w| names.iter().any(|n| n == w))
                .then_some(names)
        },
    )
    .await;
    let client_span = spans
        .lock()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "POST /api/orders")
        .cloned()
        .unwrap();
    assert_eq!(
        client_span["parentSpanId"]
            .as_str()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("00f067aa0ba902b7"),
        "the request continues the client's span: {names:?}"
    );
    let attribute = |key: &str| {
        client_span["attributes"]
            .as_array()
            .and_then(|all| all.iter().find(|a| a["key"] == key))
            .map(|a| a["value"].clone())
    };
    assert_eq!(
        attribute("service").and_then(|v| v["stringValue"].as_str().map(str::to_owned)),
        Some("orders".to_owned()),
        "{client_span}"
    );
    assert_eq!(
        attribute("status").map(|v| v["intValue"].to_string().trim_matches('"').to_owned()),
        Some("201".to_owned()),
        "the span carries the status the client got: {client_span}"
    );
    host.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_can_be_json() {
    let dir = support::temp_dir();
    let config = support::binary_config(&dir, support::STANDARD_SERVICES);
    let host =
        support::BinaryHost::spawn_with(&config, &dir.join("json.log"), &["--log-format", "json"]);
    let answer = reqwest::Client::new()
        .get(format!("{}/alpha/path/x", host.url))
        .header("x-request-id", "json-log-request")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let line = support::eventually(
        std::time::Duration::from_secs(10),
        "the access line",
        || async {
            host.log_text()
                .lines()
                .find(|l| l.contains("json-log-request") && l.contains("served"))
                .map(str::to_owned)
        },
    )
    .await;
    host.kill();
    let entry: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(entry["fields"]["status"], 200, "{entry}");
    assert_eq!(entry["span"]["request_id"], "json-log-request", "{entry}");
}

/// POSTs `line` to `path` as request `id`; the answer's `x-bazaar-version`.
async fn log_through(url: &str, path: &str, id: &str, line: &str) -> String {
    let answer = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .header("x-request-id", id)
        .body(line.to_owned())
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{path}: {}", answer.status());
    answer.headers()["x-bazaar-version"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// The first line of `host`'s log containing `text`, once there is one.
async fn log_line(host: &support::BinaryHost, text: &str) -> String {
    support::eventually(std::time::Duration::from_secs(10), text, || async {
        host.log_text()
            .lines()
            .find(|l| l.contains(text))
            .map(str::to_owned)
    })
    .await
}

/// A request's span is made only when a line needs it (see
/// `telemetry::scope`); lines logged while a request runs still carry it:
/// the guest's own, and a callee's, inside the caller's request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_logged_during_a_request_carry_its_context() {
    let dir = support::temp_dir();
    let config = support::binary_config(&dir, support::STANDARD_SERVICES);
    let host = support::BinaryHost::spawn(&config, &dir.join("context.log"));
    let version = log_through(&host.url, "/alpha/log", "ctx-direct", "a direct line").await;
    log_through(
        &host.url,
        "/alpha/call/beta/beta/log",
        "ctx-called",
        "a called line",
    )
    .await;
    // This guest fails after its head went out, in a task of its own.
    let streamed = reqwest::Client::new()
        .get(format!("{}/alpha/trap-mid-body/50", host.url))
        .header("x-request-id", "ctx-streaming")
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 200);
    assert!(streamed.bytes().await.is_err(), "the body should be broken");
    let direct = log_line(&host, "a direct line").await;
    let called = log_line(&host, "a called line").await;
    let failed = log_line(&host, "the service failed after setting its response head").await;
    let startup = log_line(&host, "deployed the component file").await;
    host.kill();
    let context = format!(
        " INFO request{{request_id=ctx-direct service=alpha version={}}}: bazaar::guest: a direct line",
        &version[..12]
    );
    assert!(
        direct.contains(&context),
        "{context:?} missing from {direct}"
    );
    assert!(
        called.contains(" INFO request{request_id=ctx-called service=alpha version=")
            && called.contains("}:call{caller=alpha callee=beta"),
        "the callee's line should be inside the caller's request and the call: {called}"
    );
    assert!(
        failed.contains(" WARN request{request_id=ctx-streaming service=alpha version="),
        "a line from the guest's own task should carry its request: {failed}"
    );
    assert!(!startup.contains("request{"), "{startup}");

    let dir = support::temp_dir();
    let config = support::binary_config(&dir, support::STANDARD_SERVICES);
    let host =
        support::BinaryHost::spawn_with(&config, &dir.join("json.log"), &["--log-format", "json"]);
    log_through(&host.url, "/alpha/log", "ctx-json", "a json line").await;
    let line = log_line(&host, "a json line").await;
    host.kill();
    let entry: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(entry["span"]["name"], "request", "{entry}");
    assert_eq!(entry["span"]["request_id"], "ctx-json", "{entry}");
    assert_eq!(entry["span"]["service"], "alpha", "{entry}");
}

/// A filter that selects by the request span sees it (spans are then made
/// up front, not when a line needs one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_can_select_lines_by_the_request_span() {
    let dir = support::temp_dir();
    let config = support::binary_config(&dir, support::STANDARD_SERVICES);
    let host = support::BinaryHost::spawn_filtered(
        &config,
        &dir.join("filtered.log"),
        "warn,[request{service=alpha}]=info",
    );
    log_through(&host.url, "/beta/log", "filter-beta", "a beta line").await;
    log_through(&host.url, "/alpha/log", "filter-alpha", "an alpha line").await;
    let alpha = log_line(&host, "an alpha line").await;
    let log = host.log_text();
    host.kill();
    assert!(
        alpha.contains("request{request_id=filter-alpha service=alpha"),
        "{alpha}"
    );
    assert!(
        !log.contains("a beta line"),
        "beta's info line is below the filter:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_has_one_access_line() {
    let dir = support::temp_dir();
    let config = support::binary_config(&dir, support::STANDARD_SERVICES);
    let host = support::BinaryHost::spawn(&config, &dir.join("text.log"));
    let client = reqwest::Client::new();
    for (path, id) in [
        ("/alpha/path/x", "text-log-ok"),
        ("/nowhere", "text-log-404"),
    ] {
        client
            .get(format!("{}{path}", host.url))
            .header("x-request-id", id)
            .send()
            .await
            .unwrap();
    }
    let lines = support::eventually(
        std::time::Duration::from_secs(10),
        "both access lines",
        || async {
            let log = host.log_text();
            let lines: Vec<String> = log
                .lines()
                .filter(|l| l.contains("bazaar::access"))
                .map(str::to_owned)
                .collect();
            (lines.len() >= 2).then_some(lines)
        },
    )
    .await;
    host.kill();
    let ok = lines.iter().find(|l| l.contains("request_id=text-log-ok"));
    let ok = ok.unwrap_or_else(|| panic!("no line for the routed request: {lines:#?}"));
    for part in [
        " INFO request{request_id=text-log-ok service=alpha version=",
        "}: bazaar::access: served method=GET path=/alpha/path/x status=200 elapsed_ms=",
    ] {
        assert!(ok.contains(part), "{part:?} missing from {ok}");
    }
    let missing = lines.iter().find(|l| l.contains("request_id=text-log-404"));
    let missing = missing.unwrap_or_else(|| panic!("no line for the unrouted request: {lines:#?}"));
    assert!(
        missing.contains("request{request_id=text-log-404}: bazaar::access: served method=GET path=/nowhere status=404"),
        "{missing}"
    );
}
