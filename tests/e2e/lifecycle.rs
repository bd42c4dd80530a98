//! Deploys that last: versions kept across restarts and `kill -9`,
//! services added and removed live, rollback and roll forward, and the
//! expected-version guard.

use crate::support::{
    self, BinaryHost, STANDARD_SERVICES, TOKEN, TestHost, hash, version_header, wasm_bytes,
    with_custom_section,
};
use serde_json::json;

/// A live service: the testbed under `/extra`.
fn extra_spec() -> String {
    json!({ "routes": ["/extra/{*rest}"] }).to_string()
}

fn admin(http: &reqwest::Client, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
    http.request(method, url).bearer_auth(TOKEN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_and_a_rollback_survive_kill_9() {
    let dir = support::temp_dir();
    let config = support::binary_config(&dir, STANDARD_SERVICES);
    let http = reqwest::Client::new();
    let original = hash(&wasm_bytes("products"));
    let hello = hash(&wasm_bytes("hello"));

    let host = BinaryHost::spawn(&config, &dir.join("1.log"));
    let deployed = admin(
        &http,
        reqwest::Method::PUT,
        format!("{}/services/products", host.admin_url),
    )
    .body(wasm_bytes("hello"))
    .send()
    .await
    .unwrap();
    assert_eq!(deployed.status(), 200);
    host.kill();

    let host = BinaryHost::spawn(&config, &dir.join("2.log"));
    let answer = http
        .get(format!("{}/api/products/x", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        version_header(&answer),
        hello,
        "the deployed version should serve after kill -9, not the file in gateway.toml"
    );
    let rolled = admin(
        &http,
        reqwest::Method::POST,
        format!("{}/services/products/rollback", host.admin_url),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(rolled.status(), 200);
    host.kill();

    let host = BinaryHost::spawn(&config, &dir.join("3.log"));
    let answer = http
        .get(format!("{}/api/products", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        version_header(&answer),
        original,
        "the rollback should still hold after kill -9"
    );
    host.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_added_live_serves_survives_a_restart_and_can_be_removed() {
    let host = TestHost::start().await;
    let users_before = host.version_of("users").await;
    let spec = extra_spec();
    let added = host
        .deploy_with(
            "extra",
            wasm_bytes("testbed"),
            &[("spec", &spec), ("expected_version", "none")],
        )
        .await;
    assert_eq!(added.status(), 200, "{}", added.text().await.unwrap());
    let answer = host.get("/extra/path/here").await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-bazaar-service"], "extra");
    assert_eq!(answer.text().await.unwrap(), "here");
    assert_eq!(
        host.version_of("users").await,
        users_before,
        "others are untouched"
    );
    let put = host
        .http
        .put(host.url("/extra/kv/notes/a"))
        .body("kept")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    let status = host.status_of("extra").await.expect("listed");
    assert_eq!(status["origin"], "live");
    let data_dir = host.stop().await;

    let host = TestHost::start_in(data_dir, STANDARD_SERVICES, "").await;
    let answer = host.get("/extra/kv/notes/a").await;
    assert_eq!(
        answer.status(),
        200,
        "a live-added service comes back after a restart"
    );
    assert_eq!(answer.text().await.unwrap(), "kept");
    let removed = host
        .http
        .delete(host.admin_url("/services/extra"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 200);
    assert_eq!(host.get("/extra/path/x").await.status(), 404);
    assert!(host.status_of("extra").await.is_none());
    let data_dir = host.stop().await;

    let host = TestHost::start_in(data_dir, STANDARD_SERVICES, "").await;
    assert_eq!(
        host.get("/extra/path/x").await.status(),
        404,
        "a removal survives a restart"
    );
    // Added again, it finds its data; removed with --purge, the data goes.
    let again = host
        .deploy_with("extra", wasm_bytes("testbed"), &[("spec", &spec)])
        .await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        host.get("/extra/kv/notes/a").await.text().await.unwrap(),
        "kept"
    );
    let purged = host
        .http
        .delete(host.admin_url("/services/extra?purge=true"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(purged.status(), 200);
    let again = host
        .deploy_with("extra", wasm_bytes("testbed"), &[("spec", &spec)])
        .await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        host.get("/extra/kv/notes/a").await.status(),
        404,
        "purged data is gone"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_conflict_is_refused_naming_both_services_and_patterns() {
    let host = TestHost::start().await;
    let spec = json!({ "routes": ["/intruder", "/alpha/{*tail}"] }).to_string();
    let refused = host
        .deploy_with("intruder", wasm_bytes("testbed"), &[("spec", &spec)])
        .await;
    assert_eq!(refused.status(), 409);
    let error = refused.json::<serde_json::Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    for part in ["`intruder`", "`alpha`", "/alpha/{*tail}", "/alpha/{*rest}"] {
        assert!(error.contains(part), "expected {part} in: {error}");
    }
    assert!(
        host.status_of("intruder").await.is_none(),
        "nothing was added"
    );
    assert_eq!(host.get("/intruder").await.status(), 404);
    assert_eq!(host.get("/alpha/path/ok").await.status(), 200);
    // The routes of a gateway.toml service come from the file.
    let spec = json!({ "routes": ["/elsewhere"] }).to_string();
    let refused = host
        .deploy_with("alpha", wasm_bytes("testbed"), &[("spec", &spec)])
        .await;
    assert_eq!(refused.status(), 409);
    assert!(refused.text().await.unwrap().contains("gateway.toml"));
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_rolls_forward_again_and_expected_versions_make_retries_harmless() {
    let host = TestHost::start().await;
    let a = hash(&wasm_bytes("products"));
    let b_bytes = with_custom_section(&wasm_bytes("products"), "b");
    let c_bytes = with_custom_section(&wasm_bytes("products"), "c");
    let (b, c) = (hash(&b_bytes), hash(&c_bytes));
    assert_eq!(host.deploy("products", b_bytes).await.status(), 200);
    let stale = host
        .deploy_with("products", c_bytes.clone(), &[("expected_version", &a)])
        .await;
    assert_eq!(
        stale.status(),
        409,
        "a deploy expecting an old version is refused"
    );
    assert_eq!(host.version_of("products").await, Some(b.clone()));
    let deployed = host
        .deploy_with("products", c_bytes, &[("expected_version", &b[..12])])
        .await;
    assert_eq!(deployed.status(), 200);

    let back = json!({ "expected_version": c });
    assert_eq!(host.rollback_with("products", &back).await.status(), 200);
    assert_eq!(host.version_of("products").await, Some(b.clone()));
    let retried = host.rollback_with("products", &back).await;
    assert_eq!(
        retried.status(),
        409,
        "a retried rollback must not roll back twice"
    );
    assert_eq!(host.version_of("products").await, Some(b.clone()));
    assert_eq!(host.rollback("products").await.status(), 200);
    assert_eq!(host.version_of("products").await, Some(a.clone()));
    assert_eq!(
        host.rollback("products").await.status(),
        409,
        "nothing before the first"
    );

    let forward = host
        .rollback_with("products", &json!({ "to": &c[..10] }))
        .await;
    assert_eq!(
        forward.status(),
        200,
        "rolling forward to a kept version works"
    );
    assert_eq!(version_header(&host.get("/api/products").await), c);
    let versions = host.status_of("products").await.unwrap()["versions"].clone();
    let kept: Vec<&str> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    for v in [&a, &b, &c] {
        assert!(kept.contains(&v.as_str()), "{v} should be kept: {kept:?}");
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_follows_content_and_never_undoes_a_deploy_or_rollback() {
    let dir = support::temp_dir();
    let watched = dir.join("products.wasm");
    std::fs::copy(support::wasm("products"), &watched).unwrap();
    let services = STANDARD_SERVICES.replace(
        "component = \"products.wasm\"",
        &format!("component = \"{}\"", watched.display()),
    );
    let host = TestHost::start_with(&services, "watch = true").await;

    // An explicit deploy, then the same file content written again.
    assert_eq!(
        host.deploy("products", wasm_bytes("hello")).await.status(),
        200
    );
    std::fs::write(&watched, wasm_bytes("products")).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        host.version_of("products").await,
        Some(hash(&wasm_bytes("hello"))),
        "rewriting the same content must not undo a deploy"
    );

    // New content is a deploy.
    let next = with_custom_section(&wasm_bytes("products"), "watched");
    std::fs::write(&watched, &next).unwrap();
    let expected = hash(&next);
    support::eventually(
        std::time::Duration::from_secs(30),
        "the watcher's deploy",
        || async {
            (host.version_of("products").await.as_deref() == Some(expected.as_str())).then_some(())
        },
    )
    .await;
    assert_eq!(host.rollback("products").await.status(), 200);
    std::fs::write(&watched, &next).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        host.version_of("products").await,
        Some(hash(&wasm_bytes("hello"))),
        "rewriting the same content must not undo a rollback"
    );

    // A broken build is refused, shown, and the last good version serves.
    std::fs::write(&watched, b"garbage").unwrap();
    let error = support::eventually(
        std::time::Duration::from_secs(30),
        "the watcher's error",
        || async {
            host.status_of("products")
                .await
                .and_then(|s| s["error"].as_str().map(str::to_owned))
        },
    )
    .await;
    assert!(
        error.contains("not a WebAssembly file") && error.contains("products.wasm"),
        "the error should name the file and the problem: {error}"
    );
    assert_eq!(host.get("/api/products").await.status(), 200);
    host.stop().await;
}

/// The listeners open at once; a service whose component is still
/// compiling answers 503 "starting" with Retry-After while the others
/// already serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_does_not_wait_for_the_slowest_service() {
    let Ok(python) = std::env::var("BAZAAR_PY_COMPONENT") else {
        eprintln!("skipped: BAZAAR_PY_COMPONENT is not set (scripts/test builds it)");
        return;
    };
    let dir = support::temp_dir();
    let services = format!(
        "{STANDARD_SERVICES}\n[services.slowpy]\ncomponent = \"PYTHON.wasm\"\nroutes = [\"/slowpy/{{*rest}}\"]\n"
    );
    let config = support::binary_config(&dir, &services);
    // A cold code cache of its own, so the 18 MB component really compiles.
    let text = std::fs::read_to_string(&config).unwrap();
    let shared = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bazaar-code-cache");
    let text = text.replace(
        &format!("cache_dir = \"{}\"", shared.display()),
        &format!("cache_dir = \"{}\"", dir.join("cold-cache").display()),
    );
    assert!(
        text.contains("cold-cache"),
        "the test should use its own cache"
    );
    let placeholder = support::components_dir().join("PYTHON.wasm");
    let text = text.replace(&placeholder.display().to_string(), &python);
    std::fs::write(&config, text).unwrap();
    let host = BinaryHost::spawn_listening(&config, &dir.join("start.log"));
    let http = reqwest::Client::new();
    support::eventually(
        std::time::Duration::from_secs(120),
        "alpha serving",
        || async {
            let answer = http
                .get(format!("{}/alpha/path/up", host.url))
                .send()
                .await
                .ok()?;
            (answer.status() == 200).then_some(())
        },
    )
    .await;
    let slow = http
        .get(format!("{}/slowpy/x", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(slow.status(), 503, "the big component is still compiling");
    assert_eq!(slow.headers()["retry-after"], "1");
    let body: serde_json::Value = slow.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("starting"),
        "{body}"
    );
    support::eventually(
        std::time::Duration::from_secs(300),
        "the big component serving",
        || async {
            let answer = http
                .get(format!("{}/slowpy/x", host.url))
                .send()
                .await
                .ok()?;
            (answer.status() == 200).then_some(())
        },
    )
    .await;
    host.kill();
}

/// A service whose file cannot be loaded at start-up is named on the
/// start-up line (a user watching stdout would otherwise read "every
/// service is loaded" above six 503s); the others serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_up_line_names_the_services_that_did_not_load() {
    let dir = support::temp_dir();
    let config = support::binary_config(
        &dir,
        "[services.alpha]\ncomponent = \"testbed.wasm\"\nroutes = [\"/alpha/{*rest}\"]\n\
         [services.ghost]\ncomponent = \"not-built-yet.wasm\"\nroutes = [\"/ghost\"]\n",
    );
    let host = BinaryHost::spawn(&config, &dir.join("start.log"));
    assert!(
        host.started
            .starts_with("bazaar: start-up finished, but 1 of 2 services did not load: ghost ("),
        "{}",
        host.started
    );
    let http = reqwest::Client::new();
    let alpha = http
        .get(format!("{}/alpha/path/up", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(alpha.status(), 200);
    let ghost = http
        .get(format!("{}/ghost", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ghost.status(), 503);

    // With every file in place the line says so.
    std::fs::create_dir_all(dir.join("all")).unwrap();
    let config = support::binary_config(
        &dir.join("all"),
        "[services.alpha]\ncomponent = \"testbed.wasm\"\nroutes = [\"/alpha/{*rest}\"]\n",
    );
    let all = BinaryHost::spawn(&config, &dir.join("all.log"));
    assert_eq!(all.started, "bazaar: every service is loaded");
    host.kill();
    all.kill();
}
