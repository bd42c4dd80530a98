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
    let response = host
        .http
        .get(host.admin_url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
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
