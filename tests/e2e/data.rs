use crate::support::{self, BinaryHost, STANDARD_SERVICES, TestHost};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_cannot_read_each_others_keys() {
    let host = TestHost::start().await;
    let put = host
        .http
        .put(host.url("/alpha/kv/default/secret"))
        .body("alpha only")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    assert_eq!(
        host.get("/alpha/kv/default/secret")
            .await
            .text()
            .await
            .unwrap(),
        "alpha only"
    );
    assert_eq!(
        host.get("/beta/kv/default/secret").await.status(),
        404,
        "beta must not see alpha's key in the same-named bucket"
    );
    // Naming another service's bucket does not reach its data either.
    let registered = host
        .send_json(
            reqwest::Method::POST,
            "/api/users",
            &serde_json::json!({ "username": "dana", "email": "dana@example.com", "password": "correct horse" }),
        )
        .await;
    assert_eq!(registered.status(), 201);
    assert_eq!(
        host.get("/beta/kv/users/email:dana@example.com")
            .await
            .status(),
        404,
        "beta must not see the users service's keys"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_are_atomic_per_service() {
    let host = TestHost::start().await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let http = host.http.clone();
        let url = host.url("/alpha/counter/hits");
        tasks.push(tokio::spawn(async move {
            http.post(url).send().await.unwrap().status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    let value = host
        .get("/alpha/kv/counters/hits")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(value, "20", "20 concurrent increments should count to 20");
    let beta: serde_json::Value = host
        .http
        .post(host.url("/beta/counter/hits"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(beta["value"], 1, "beta's counter is its own");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_reads_only_its_own_config() {
    let host = TestHost::start().await;
    assert_eq!(
        host.get("/alpha/config/greeting")
            .await
            .text()
            .await
            .unwrap(),
        "hello from alpha"
    );
    assert_eq!(
        host.get("/alpha/config/shared_name")
            .await
            .text()
            .await
            .unwrap(),
        "alpha's value"
    );
    assert_eq!(
        host.get("/beta/config/shared_name")
            .await
            .text()
            .await
            .unwrap(),
        "beta's value"
    );
    assert_eq!(host.get("/beta/config/greeting").await.status(), 404);
    let all: serde_json::Value = host.get("/beta/config").await.json().await.unwrap();
    assert_eq!(all, serde_json::json!({ "shared_name": "beta's value" }));
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_host_restart() {
    let host = TestHost::start().await;
    let created: serde_json::Value = host
        .send_json(
            reqwest::Method::POST,
            "/api/products",
            &serde_json::json!({ "name": "Lamp", "price_cents": 4000, "currency": "USD" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let data_dir = host.stop().await;

    let host = TestHost::start_in(data_dir, STANDARD_SERVICES, "").await;
    let fetched = host.get(&format!("/api/products/{id}")).await;
    assert_eq!(
        fetched.status(),
        200,
        "the product should still be there after a restart"
    );
    host.stop().await;
}

/// Every write acknowledged before a SIGKILL is there after the restart.
/// The kill comes the moment the last acknowledgement arrives, with no other
/// request in between, so acknowledging before the commit would show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_and_guest_logs_name_service_version_and_request() {
    let dir = support::temp_dir();
    let config = support::binary_config(&dir, STANDARD_SERVICES);
    let http = reqwest::Client::new();

    let host = BinaryHost::spawn(&config, &dir.join("first.log"));
    let logged = http
        .post(format!("{}/alpha/log", host.url))
        .header("x-request-id", "guest-log-request-7")
        .body("a line from the guest\nwith a forged second line")
        .send()
        .await
        .unwrap();
    assert_eq!(logged.status(), 204);
    let version = logged.headers()["x-bazaar-version"]
        .to_str()
        .unwrap()
        .to_owned();
    // Eight concurrent writers (below the pool's 64 instances), 100 writes.
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..8 {
        let (http, url) = (http.clone(), host.url.clone());
        writers.spawn(async move {
            for i in (w..100).step_by(8) {
                let put = http
                    .put(format!("{url}/alpha/kv/orders/o-{i}"))
                    .body(format!("paid-{i}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(put.status(), 204, "write {i} should be acknowledged");
            }
        });
    }
    while let Some(writer) = writers.join_next().await {
        writer.unwrap();
    }
    let log = host.log_text();
    host.kill();

    let line = log
        .lines()
        .find(|l| l.contains("a line from the guest"))
        .unwrap_or_else(|| panic!("the guest's log line should reach the host log:\n{log}"));
    let fields = line
        .split("a line from the guest")
        .nth(1)
        .unwrap_or_default();
    assert!(
        fields.contains("service=alpha") && fields.contains(&format!("version={}", &version[..12])),
        "the guest's line should carry its service and version: {line}"
    );
    assert!(
        line.contains("guest-log-request-7"),
        "the guest's line should carry the request id: {line}"
    );
    assert!(
        !log.lines()
            .any(|l| l.starts_with("with a forged second line")),
        "a newline in a guest message must not start a new log line:\n{log}"
    );

    let host = BinaryHost::spawn(&config, &dir.join("second.log"));
    for i in 0..100 {
        let value = http
            .get(format!("{}/alpha/kv/orders/o-{i}", host.url))
            .send()
            .await
            .unwrap();
        let status = value.status();
        let body = value.text().await.unwrap();
        assert_eq!(
            (status.as_u16(), body.as_str()),
            (200, format!("paid-{i}").as_str()),
            "acknowledged write {i} should survive kill -9"
        );
    }
    host.kill();
}
