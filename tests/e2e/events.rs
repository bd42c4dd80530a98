//! Durable events: publish order, retries, dead letters and replay, the
//! outbox, redeploys and kill -9 mid-stream.

use crate::support::{
    self, BinaryHost, STANDARD_SERVICES, TOKEN, TestHost, wasm_bytes, with_custom_section,
};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

async fn publish(host: &TestHost, service: &str, topic: &str, payload: &str) -> reqwest::Response {
    host.http
        .post(host.url(&format!("/{service}/publish/{topic}")))
        .body(payload.to_owned())
        .send()
        .await
        .unwrap()
}

/// The events beta recorded, once it has at least `count`.
async fn recorded(host: &TestHost, count: usize) -> Vec<Value> {
    support::eventually(WAIT, &format!("{count} recorded events"), || async {
        let list: Value = host.get("/beta/events").await.json().await.ok()?;
        let list = list.as_array()?.clone();
        (list.len() >= count).then_some(list)
    })
    .await
}

fn payloads(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["payload"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_subscriber_once_each_in_publish_order() {
    let host = TestHost::start().await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let published = publish(&host, "alpha", "news", &format!("n{i}")).await;
        assert_eq!(published.status(), 200);
        ids.push(
            published.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let events = recorded(&host, 20).await;
    assert_eq!(
        payloads(&events),
        (0..20).map(|i| format!("n{i}")).collect::<Vec<_>>()
    );
    for (event, id) in events.iter().zip(&ids) {
        assert_eq!(event["id"], id.as_str());
        assert_eq!(
            (event["topic"].as_str(), event["source"].as_str()),
            (Some("news"), Some("alpha"))
        );
        assert_eq!(event["deliveries"], 1, "{event}");
    }
    let stats = host.admin_json("/events").await;
    assert_eq!(stats[0]["subscriber"], "beta");
    assert_eq!(stats[0]["backlog"], 0);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_needs_a_grant() {
    let host = TestHost::start().await;
    assert_eq!(publish(&host, "beta", "news", "x").await.status(), 403);
    assert_eq!(publish(&host, "alpha", "gossip", "x").await.status(), 403);
    let tx = host
        .http
        .post(host.url("/alpha/tx/orders"))
        .json(&json!({ "set": { "o-9": "x" }, "publish": [{ "topic": "gossip", "payload": "p" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(tx.status(), 403);
    assert_eq!(
        host.get("/alpha/kv/orders/o-9").await.status(),
        404,
        "a refused transaction writes nothing"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_subscriber_is_retried_then_dead_lettered_and_replayed() {
    let host = TestHost::start().await;
    assert_eq!(
        publish(&host, "alpha", "news", "fail-until:3")
            .await
            .status(),
        200
    );
    let events = recorded(&host, 1).await;
    assert_eq!(
        events[0]["attempt"], 3,
        "delivered on its third attempt: {events:?}"
    );

    let fail = host
        .http
        .put(host.url("/beta/kv/control/fail"))
        .body("1")
        .send()
        .await
        .unwrap();
    assert_eq!(fail.status(), 204);
    assert_eq!(
        publish(&host, "alpha", "news", "doomed").await.status(),
        200
    );
    let dead = support::eventually(WAIT, "a dead letter", || async {
        let dead = host
            .admin_json("/events/dead-letters?subscriber=beta")
            .await;
        (dead.as_array()?.len() == 1).then_some(dead)
    })
    .await;
    assert_eq!(dead[0]["attempts"], 4, "{dead}");
    assert_eq!(dead[0]["error"], "told to fail");
    assert_eq!(host.admin_json("/events").await[0]["dead_letters"], 1);

    let recover = host
        .http
        .put(host.url("/beta/kv/control/fail"))
        .body("0")
        .send()
        .await
        .unwrap();
    assert_eq!(recover.status(), 204);
    let replayed: Value = host
        .http
        .post(host.admin_url("/events/dead-letters/replay"))
        .bearer_auth(TOKEN)
        .json(&json!({ "subscriber": "beta" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(replayed["replayed"], 1);
    let events = recorded(&host, 2).await;
    assert_eq!(payloads(&events), ["fail-until:3", "doomed"]);
    assert_eq!(host.admin_json("/events/dead-letters").await, json!([]));
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_publishes_exactly_when_the_writes_commit() {
    let host = TestHost::start().await;
    let tx = json!({
        "require_absent": ["o-1"],
        "set": { "o-1": "placed" },
        "publish": [{ "topic": "news", "payload": "order o-1 placed" }],
    });
    let first = host
        .http
        .post(host.url("/alpha/tx/orders"))
        .json(&tx)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let second = host
        .http
        .post(host.url("/alpha/tx/orders"))
        .json(&tx)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 409, "the condition fails the second time");
    assert_eq!(
        publish(&host, "alpha", "news", "marker").await.status(),
        200
    );
    let events = recorded(&host, 2).await;
    assert_eq!(
        payloads(&events),
        ["order o-1 placed", "marker"],
        "the failed transaction announced nothing"
    );
    assert_eq!(
        host.get("/alpha/kv/orders/o-1").await.text().await.unwrap(),
        "placed"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_for_a_subscriber_being_redeployed() {
    let host = TestHost::start().await;
    for i in 0..10 {
        assert_eq!(
            publish(&host, "alpha", "news", &format!("sleep:30 e{i}"))
                .await
                .status(),
            200
        );
        if i == 3 {
            let next = with_custom_section(&wasm_bytes("testbed"), "beta v2");
            assert_eq!(host.deploy("beta", next).await.status(), 200);
        }
    }
    let events = recorded(&host, 10).await;
    assert_eq!(
        payloads(&events),
        (0..10)
            .map(|i| format!("sleep:30 e{i}"))
            .collect::<Vec<_>>()
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_is_lost_when_the_host_is_killed_mid_stream() {
    let dir = support::temp_dir();
    let config = support::binary_config(&dir, STANDARD_SERVICES);
    let http = reqwest::Client::new();
    let host = BinaryHost::spawn(&config, &dir.join("1.log"));
    let published: Vec<String> = (0..30).map(|i| format!("sleep:40 k{i}")).collect();
    for payload in &published {
        let answer = http
            .post(format!("{}/alpha/publish/news", host.url))
            .body(payload.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "publish should be acknowledged");
    }
    // Some delivered, most not yet: kill now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    host.kill();

    let host = BinaryHost::spawn(&config, &dir.join("2.log"));
    let events = support::eventually(WAIT, "all 30 events after the restart", || async {
        let list: Value = http
            .get(format!("{}/beta/events", host.url))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let list = list.as_array()?.clone();
        (list.len() >= 30).then_some(list)
    })
    .await;
    host.kill();
    assert_eq!(
        payloads(&events),
        published,
        "every acknowledged event, once, in order"
    );
}
