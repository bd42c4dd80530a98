//! Gateway policies: tokens, roles, API keys, rate limits, CORS, per-route
//! timeouts, and connection and request hygiene.

use crate::support::{self, TOKEN, TestHost};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

const SIGNING_KEY: &str = "policy-test-signing-key-0123456789abcdef";
const WAREHOUSE_KEY: &str = "warehouse-key-0123456789abcdef0123456789";

/// Testbed services, one per policy.
fn services(key_file: &std::path::Path) -> String {
    format!(
        r#"
[services.open]
component = "testbed.wasm"
routes = ["/open/{{*rest}}"]

[services.members]
component = "testbed.wasm"
routes = ["/members/{{*rest}}"]
access = "authenticated"

[services.admins]
component = "testbed.wasm"
routes = ["/admins/{{*rest}}"]
access = "role:admin"

[services.machines]
component = "testbed.wasm"
routes = ["/machines/{{*rest}}"]
[[services.machines.rules]]
access = "role:stock-writer"
api_keys = ["warehouse"]

[services.limited]
component = "testbed.wasm"
routes = ["/limited/{{*rest}}"]
[[services.limited.rules]]
rate_limit = "3/min"

[services.browser]
component = "testbed.wasm"
routes = ["/browser/{{*rest}}"]
[[services.browser.rules]]
methods = ["GET", "PUT"]
cors_origins = ["https://shop.example"]

[services.slow]
component = "testbed.wasm"
routes = ["/slow/{{*rest}}"]
[[services.slow.rules]]
timeout_ms = 300

[auth]
signing_key_file = "{key}"
[auth.api_keys.warehouse]
key = "{WAREHOUSE_KEY}"
roles = ["stock-writer"]
"#,
        key = key_file.display()
    )
}

async fn start() -> TestHost {
    let dir = support::temp_dir();
    let key_file = dir.join("jwt.key");
    write_private(&key_file, SIGNING_KEY);
    TestHost::start_edited(
        dir.join("data"),
        &services(&key_file),
        "max_uri_bytes = 2048\nmax_headers = 50\nheader_read_timeout_ms = 500",
        |t| t,
    )
    .await
}

fn write_private(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

fn token(sub: &str, roles: &[&str], iss: &str, exp_offset: i64, key: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims =
        json!({ "sub": sub, "roles": roles, "iss": iss, "iat": now, "exp": now + exp_offset });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

fn valid(sub: &str, roles: &[&str]) -> String {
    token(sub, roles, "bazaar", 600, SIGNING_KEY)
}

async fn get(
    host: &TestHost,
    path: &str,
    bearer: Option<&str>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut request = host.http.get(host.url(path));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (
        status,
        response.json().await.unwrap_or(Value::Null),
        headers,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_verified_before_any_guest_runs() {
    let host = start().await;
    let (status, body, headers) = get(&host, "/members/headers", None).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["request_id"].is_string() && body["error"].is_string(),
        "{body}"
    );
    assert_eq!(headers["www-authenticate"], "Bearer");

    let expired = token("u1", &[], "bazaar", -3600, SIGNING_KEY);
    let (status, body, _) = get(&host, "/members/headers", Some(&expired)).await;
    assert_eq!(status, 401);
    assert!(
        body["error"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    let mut tampered = valid("u1", &[]);
    let payload = tampered.split('.').nth(1).unwrap().to_owned();
    let forged_payload = payload.replacen('e', "f", 1);
    tampered = tampered.replacen(&payload, &forged_payload, 1);
    assert_eq!(
        get(&host, "/members/headers", Some(&tampered)).await.0,
        401,
        "tampered"
    );
    let foreign = token(
        "u1",
        &[],
        "bazaar",
        600,
        "another-key-0123456789abcdef0123456789",
    );
    assert_eq!(
        get(&host, "/members/headers", Some(&foreign)).await.0,
        401,
        "another key"
    );
    let wrong_issuer = token("u1", &[], "elsewhere", 600, SIGNING_KEY);
    assert_eq!(
        get(&host, "/members/headers", Some(&wrong_issuer)).await.0,
        401,
        "another issuer"
    );

    // A valid token: the guest sees the verified identity, never a forged one.
    let response = host
        .http
        .get(host.url("/members/headers"))
        .bearer_auth(valid("u1", &["customer"]))
        .header("x-bazaar-user", "admin")
        .header("x-bazaar-roles", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(
        (
            seen["x-bazaar-user"].as_str(),
            seen["x-bazaar-roles"].as_str()
        ),
        (Some("u1"), Some("customer")),
        "{seen}"
    );
    let anonymous: Value = host
        .http
        .get(host.url("/open/headers"))
        .header("x-bazaar-user", "admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        anonymous.get("x-bazaar-user").is_none(),
        "a forged identity header is dropped: {anonymous}"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_api_keys_decide_who_may_call() {
    let host = start().await;
    assert_eq!(
        get(&host, "/admins/headers", Some(&valid("u1", &["customer"])))
            .await
            .0,
        403
    );
    assert_eq!(
        get(&host, "/admins/headers", Some(&valid("ops", &["admin"])))
            .await
            .0,
        200
    );
    // An operator token from the admin API.
    let issued: Value = host
        .http
        .post(host.admin_url("/auth/tokens"))
        .bearer_auth(TOKEN)
        .json(&json!({ "subject": "ops", "roles": ["admin"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        get(&host, "/admins/headers", issued["token"].as_str())
            .await
            .0,
        200
    );

    let with_key = |key: &str| {
        host.http
            .get(host.url("/machines/headers"))
            .header("x-api-key", key.to_owned())
            .send()
    };
    let response = with_key(WAREHOUSE_KEY).await.unwrap();
    assert_eq!(response.status(), 200);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["x-bazaar-user"], "api-key:warehouse");
    assert_eq!(
        with_key("not-the-key-0123456789abcdef0123456789")
            .await
            .unwrap()
            .status(),
        401
    );
    let elsewhere = host
        .http
        .get(host.url("/members/headers"))
        .header("x-api-key", WAREHOUSE_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        elsewhere.status(),
        401,
        "a key is accepted only where a rule names it"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_rate_limit_gets_429_per_client() {
    let host = start().await;
    let alice = valid("alice", &[]);
    for _ in 0..3 {
        assert_eq!(get(&host, "/limited/path/x", Some(&alice)).await.0, 200);
    }
    let (status, body, headers) = get(&host, "/limited/path/x", Some(&alice)).await;
    assert_eq!(status, 429, "{body}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After in seconds: {retry}");
    assert!(body["request_id"].is_string());
    assert_eq!(
        get(&host, "/limited/path/x", Some(&valid("bob", &[])))
            .await
            .0,
        200,
        "another client has its own bucket"
    );
    // Anonymous clients are counted by address.
    for _ in 0..3 {
        get(&host, "/limited/path/y", None).await;
    }
    assert_eq!(get(&host, "/limited/path/y", None).await.0, 429);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflights_are_answered_by_the_gateway() {
    let host = start().await;
    let preflight = |origin: &str, method: &str| {
        host.http
            .request(reqwest::Method::OPTIONS, host.url("/browser/path/x"))
            .header("origin", origin.to_owned())
            .header("access-control-request-method", method.to_owned())
            .send()
    };
    let allowed = preflight("https://shop.example", "PUT").await.unwrap();
    assert_eq!(allowed.status(), 204);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    assert_eq!(allowed.headers()["access-control-allow-methods"], "PUT");
    assert!(
        allowed.headers().get("x-bazaar-version").is_none(),
        "no guest ran"
    );
    assert_eq!(
        preflight("https://evil.example", "PUT")
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        preflight("https://shop.example", "DELETE")
            .await
            .unwrap()
            .status(),
        403,
        "a method the rule does not cover"
    );
    let actual = host
        .http
        .get(host.url("/browser/path/x"))
        .header("origin", "https://shop.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        actual.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_hygiene_long_uris_big_bodies_timeouts_and_liveness() {
    let host = start().await;
    let long = format!("/open/path/{}", "x".repeat(3000));
    let (status, body, _) = get(&host, &long, None).await;
    assert_eq!(status, 414, "{body}");
    assert!(body["request_id"].is_string());

    let started = Instant::now();
    let (status, body, _) = get(&host, "/slow/sleep/3000", None).await;
    assert_eq!(status, 504, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("did not respond in time"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the route's timeout applies"
    );

    let (status, body, _) = get(&host, "/.well-known/bazaar/health", None).await;
    assert_eq!((status, &body["status"]), (200, &json!("ok")));

    // A chunked body over the limit is a 413 like a declared one.
    let limited = TestHost::start_with(support::STANDARD_SERVICES, "max_body_bytes = 1024").await;
    let addr = limited.running.gateway_addr;
    let answer = tokio::task::spawn_blocking(move || {
        // Sixteen chunks of 256 bytes.
        support::send_chunked(
            addr,
            "POST /alpha/echo HTTP/1.1\r\nHost: x\r\n",
            &[b'x'; 4096],
            256,
        )
    })
    .await
    .unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "a chunked body over the limit is a 413: {answer}"
    );
    limited.stop().await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_too_many_headers_are_cut_off() {
    let host = start().await;
    let addr = host.running.gateway_addr;
    let slow = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .write_all(b"GET /open/path/x HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let started = Instant::now();
        let mut buf = Vec::new();
        let _ = stream.read_to_end(&mut buf);
        (
            started.elapsed(),
            String::from_utf8_lossy(&buf).into_owned(),
        )
    });
    let (elapsed, answer) = slow.await.unwrap();
    assert!(
        elapsed < Duration::from_secs(3),
        "a client that never finishes its headers is cut off: {elapsed:?}"
    );
    assert!(!answer.contains("200 OK"), "{answer}");

    let mut request = host.http.get(host.url("/open/path/x"));
    for i in 0..80 {
        request = request.header(format!("x-filler-{i}"), "v");
    }
    let status = request.send().await.map(|r| r.status().as_u16());
    assert!(
        matches!(status, Ok(431) | Err(_)),
        "too many headers are refused: {status:?}"
    );
    assert_eq!(
        get(&host, "/open/path/ok", None).await.0,
        200,
        "the gateway still serves"
    );
    host.stop().await;
}

/// Runs `bazaar serve` on `config` expecting it to refuse to start.
fn refused_start(config: &std::path::Path) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_bazaar"))
        .args(["serve", "--config"])
        .arg(config)
        .env_remove("BAZAAR_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success(), "the host should refuse to start");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_blank_short_or_exposed_admin_token_stops_start_up() {
    for (token, expected) in [
        ("", "empty"),
        ("   ", "empty"),
        ("short", "only 5 characters"),
    ] {
        let dir = support::temp_dir();
        let config = dir.join("gateway.toml");
        std::fs::write(
            &config,
            format!("[gateway]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{token}\"\n[data]\ndir = \"{}\"\n", dir.display()),
        )
        .unwrap();
        let err = refused_start(&config);
        assert!(
            err.contains(expected) && err.contains("at least 32"),
            "{token:?}: {err}"
        );
    }
    let dir = support::temp_dir();
    let config = dir.join("gateway.toml");
    std::fs::write(&config, format!("[gateway]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[data]\ndir = \"{}\"\n", dir.display())).unwrap();
    let token = dir.join("admin.token");
    std::fs::write(&token, "x".repeat(64)).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = refused_start(&config);
    assert!(
        err.contains("chmod 600"),
        "a token file others can read is refused: {err}"
    );
}

/// The admin API takes JSON as curl's `-d` sends it (a form content type),
/// and answers bad bodies and unknown paths in JSON, like its other errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_reads_json_without_its_content_type_and_errs_in_json() {
    let host = TestHost::start().await;
    let post = |path: &str, body: &str| {
        host.http
            .post(host.admin_url(path))
            .bearer_auth(TOKEN)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .send()
    };
    let issued = post("/auth/tokens", r#"{"subject":"ops","roles":["admin"]}"#)
        .await
        .unwrap();
    assert_eq!(issued.status(), 200);
    let issued: Value = issued.json().await.unwrap();
    assert!(
        issued["token"].as_str().is_some_and(|t| t.len() > 20),
        "{issued}"
    );
    let replayed = post("/events/dead-letters/replay", r#"{"subscriber":"beta"}"#)
        .await
        .unwrap();
    assert_eq!(replayed.status(), 200);

    let wrong = post("/auth/tokens", r#"{"subject":1}"#).await.unwrap();
    assert_eq!(wrong.status(), 400);
    let wrong: Value = wrong.json().await.unwrap();
    assert!(
        wrong["error"]
            .as_str()
            .unwrap()
            .contains("invalid request body"),
        "{wrong}"
    );
    let nowhere = host.admin_get("/nowhere").await;
    assert_eq!(nowhere.status(), 404);
    let nowhere: Value = nowhere.json().await.unwrap();
    assert!(
        nowhere["error"].as_str().unwrap().contains("GET /nowhere"),
        "{nowhere}"
    );
    host.stop().await;
}
