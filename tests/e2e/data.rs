use crate::support::{self, STANDARD_SERVICES, TestHost};
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

#[tokio::test]
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

#[tokio::test]
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

#[tokio::test]
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

#[tokio::test]
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

/// Starts the `bazaar` binary on `config` and returns it with its gateway URL.
fn spawn_host(config: &std::path::Path, stderr: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bazaar"))
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .expect("the bazaar binary should start");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| {
                panic!(
                    "host exited early: {}",
                    std::fs::read_to_string(stderr).unwrap_or_default()
                )
            })
            .unwrap();
        if let Some(url) = line.strip_prefix("bazaar: gateway listening on ") {
            break url.to_owned();
        }
    };
    (child, url)
}

#[tokio::test]
async fn acknowledged_write_survives_kill_9_and_logs_name_the_service() {
    let dir = support::temp_dir();
    let config = dir.join("gateway.toml");
    let services = STANDARD_SERVICES.replace(
        "component = \"",
        &format!("component = \"{}/", support::components_dir().display()),
    );
    std::fs::write(
        &config,
        support::gateway_toml(&dir.join("data"), &services, ""),
    )
    .unwrap();
    let http = reqwest::Client::new();

    let (mut child, url) = spawn_host(&config, &dir.join("first.log"));
    let put = http
        .put(format!("{url}/alpha/kv/orders/o-1"))
        .body("paid")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    let logged = http
        .post(format!("{url}/alpha/log"))
        .body("a line from the guest")
        .send()
        .await
        .unwrap();
    let version = logged.headers()["x-bazaar-version"]
        .to_str()
        .unwrap()
        .to_owned();
    child.kill().unwrap(); // SIGKILL: no shutdown, no flush
    child.wait().unwrap();

    let log = std::fs::read_to_string(dir.join("first.log")).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("a line from the guest"))
        .unwrap_or_else(|| panic!("the guest's log line should reach the host log:\n{log}"));
    assert!(
        line.contains("alpha"),
        "the log line should name the service: {line}"
    );
    assert!(
        line.contains(&version[..12]),
        "the log line should name the version: {line}"
    );

    let (mut child, url) = spawn_host(&config, &dir.join("second.log"));
    let value = http
        .get(format!("{url}/alpha/kv/orders/o-1"))
        .send()
        .await
        .unwrap();
    let status = value.status();
    let body = value.text().await.unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (200, "paid"),
        "the acknowledged write should survive kill -9"
    );
}
