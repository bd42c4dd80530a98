use crate::support::{
    self, TOKEN, TestHost, hash, version_header, wasm_bytes, with_custom_section,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_under_load_keeps_other_services_up() {
    let host = Arc::new(TestHost::start().await);
    let original = wasm_bytes("products");
    let original_version = hash(&original);
    assert_eq!(
        host.version_of("products").await.as_deref(),
        Some(original_version.as_str())
    );

    // A bounded load loop on `alpha` for the whole deploy sequence.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (host, stop, ok, failed) = (host.clone(), stop.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            for _ in 0..100_000 {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                let response = host.http.get(host.url("/alpha/path/load")).send().await;
                match response {
                    Ok(r) if r.status() == 200 && r.headers().contains_key("x-bazaar-version") => {
                        ok.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }

    for round in 0..3 {
        let next = with_custom_section(&original, &format!("round {round}"));
        let next_version = hash(&next);
        let deployed = host.deploy("products", next).await;
        assert_eq!(
            deployed.status(),
            200,
            "round {round}: deploy should succeed"
        );
        let answer = host.get("/api/products").await;
        assert_eq!(answer.status(), 200);
        assert_eq!(
            version_header(&answer),
            next_version,
            "round {round}: products should answer from the new version right after the deploy"
        );
        let rolled = host.rollback("products").await;
        assert_eq!(
            rolled.status(),
            200,
            "round {round}: rollback should succeed"
        );
        let answer = host.get("/api/products").await;
        assert_eq!(
            version_header(&answer),
            original_version,
            "round {round}: rollback restores"
        );
    }

    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 0, "the load loop should have run");
    assert_eq!(
        failed, 0,
        "no alpha request may fail during products deploys ({ok} succeeded)"
    );
    match Arc::try_unwrap(host) {
        Ok(host) => {
            host.stop().await;
        }
        Err(_) => panic!("workers should have released the host"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deploys_are_refused_and_change_nothing() {
    let host = TestHost::start().await;
    let before = host.version_of("products").await;
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let cases = [
        (
            "garbage",
            b"this is not wasm at all".to_vec(),
            "not a WebAssembly file",
        ),
        (
            "truncated",
            wasm_bytes("products")[..1000].to_vec(),
            "not a valid component",
        ),
        ("core module", core_module, "core WebAssembly module"),
        (
            "wrong world",
            wasm_bytes("cli-tool"),
            "does not export `wasi:http/incoming-handler`",
        ),
        (
            "unsatisfied import",
            wasm_bytes("missing_import"),
            "bazaar-test:oracle",
        ),
    ];
    for (what, bytes, expected) in cases {
        let response = host.deploy("products", bytes).await;
        assert_eq!(response.status(), 422, "{what} should be refused");
        let body: serde_json::Value = response.json().await.unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains("products"),
            "{what}: the error should name the service: {error}"
        );
        assert!(
            error.contains(expected),
            "{what}: expected `{expected}` in: {error}"
        );
        assert_eq!(
            host.version_of("products").await,
            before,
            "{what} must not change the version"
        );
        assert_eq!(
            host.get("/api/products").await.status(),
            200,
            "{what}: products keeps serving"
        );
    }
    assert_eq!(
        host.rollback("products").await.status(),
        409,
        "failed deploys leave no history"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_wasi_http_component_deploys_and_answers() {
    let host = TestHost::start().await;
    let deployed = host.deploy("products", wasm_bytes("hello")).await;
    assert_eq!(deployed.status(), 200);
    let answer = host.get("/api/products/anything").await;
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    assert!(
        text.starts_with("hello from a stock component"),
        "got {text}"
    );
    assert!(text.contains("/api/products/anything"));
    host.stop().await;
}

/// `scripts/test` builds `components/py-hello` with componentize-py and
/// names the result in `BAZAAR_PY_COMPONENT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_component_from_componentize_py_deploys_and_answers() {
    let Ok(path) = std::env::var("BAZAAR_PY_COMPONENT") else {
        eprintln!(
            "skipped: BAZAAR_PY_COMPONENT is not set (scripts/test sets it when Python is available)"
        );
        return;
    };
    let host = TestHost::start().await;
    let bytes = std::fs::read(&path).unwrap();
    let deployed = host.deploy("products", bytes.clone()).await;
    let status = deployed.status();
    assert_eq!(
        status,
        200,
        "deploy failed: {}",
        deployed.text().await.unwrap()
    );
    let answer = host.get("/api/products/from-python").await;
    assert_eq!(answer.status(), 200);
    assert_eq!(version_header(&answer), hash(&bytes));
    assert_eq!(
        answer.text().await.unwrap(),
        "hello from python /api/products/from-python"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_requires_the_token_and_routes_for_a_new_service() {
    let host = TestHost::start().await;
    let anonymous = host
        .http
        .get(host.admin_url("/services"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = host
        .http
        .put(host.admin_url("/services/products"))
        .bearer_auth("not-the-token")
        .body(wasm_bytes("hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_ne!(
        host.version_of("products").await,
        Some(hash(&wasm_bytes("hello")))
    );
    let unknown = host.deploy("payments", wasm_bytes("hello")).await;
    assert_eq!(
        unknown.status(),
        422,
        "a new service without routes cannot be added"
    );
    assert!(unknown.text().await.unwrap().contains("--route"));
    assert!(
        host.status_of("payments").await.is_none(),
        "nothing was added"
    );
    let health = host.admin_json("/healthz").await;
    assert_eq!(health["status"], "ok");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_fails_to_load_does_not_stop_the_others() {
    let services = format!(
        "{}\n[services.broken]\ncomponent = \"cli-tool.wasm\"\nroutes = [\"/broken/{{*rest}}\"]\n",
        support::STANDARD_SERVICES
    );
    let host = TestHost::start_with(&services, "").await;
    assert_eq!(host.get("/broken/x").await.status(), 503);
    assert_eq!(host.get("/api/products").await.status(), 200);
    let fixed = host.deploy("broken", wasm_bytes("hello")).await;
    assert_eq!(
        fixed.status(),
        200,
        "a failed service can be fixed by a deploy"
    );
    assert_eq!(host.get("/broken/x").await.status(), 200);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewriting_a_watched_component_file_redeploys_that_service_alone() {
    let dir = support::temp_dir();
    let watched = dir.join("products.wasm");
    std::fs::copy(support::wasm("products"), &watched).unwrap();
    let services = support::STANDARD_SERVICES.replace(
        "component = \"products.wasm\"",
        &format!("component = \"{}\"", watched.display()),
    );
    let host = TestHost::start_with(&services, "watch = true").await;
    let users_before = host.version_of("users").await;

    let next = with_custom_section(&wasm_bytes("products"), "watched");
    std::fs::write(&watched, &next).unwrap();
    let expected = hash(&next);
    let deadline = Instant::now() + Duration::from_secs(30);
    while host.version_of("products").await.as_deref() != Some(expected.as_str()) {
        assert!(
            Instant::now() < deadline,
            "the watcher should redeploy products within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(version_header(&host.get("/api/products").await), expected);
    assert_eq!(
        host.version_of("users").await,
        users_before,
        "users must not be redeployed"
    );

    // A broken rewrite is refused; the last good version keeps serving.
    std::fs::write(&watched, b"garbage").unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        host.version_of("products").await.as_deref(),
        Some(expected.as_str())
    );
    assert_eq!(host.get("/api/products").await.status(), 200);
    host.stop().await;
}

/// Sends `body` to `PUT /services/{service}` in 4 KiB chunks (no length
/// declared up front); the raw answer.
fn put_chunked(addr: std::net::SocketAddr, service: &str, body: &[u8]) -> String {
    let head =
        format!("PUT /services/{service} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n");
    support::send_chunked(addr, &head, body, 4096)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_hashed_as_they_arrive_and_capped() {
    let host = TestHost::start_edited(
        support::temp_dir(),
        support::STANDARD_SERVICES,
        "",
        |text| text.replace("[admin]\n", "[admin]\nmax_component_bytes = 300000\n"),
    )
    .await;
    let before = host.version_of("products").await;
    // Over the cap, with its length declared: refused before it is read.
    let big = with_custom_section(&wasm_bytes("testbed"), "too big");
    assert!(big.len() > 300_000);
    let refused = host.deploy("products", big.clone()).await;
    assert_eq!(refused.status(), 413);
    let addr = host.running.admin_addr;
    // Over the cap, chunked: refused once the count passes it.
    let answer = tokio::task::spawn_blocking(move || put_chunked(addr, "products", &big))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(host.version_of("products").await, before, "nothing changed");

    // Under the cap, chunked: the version is the hash of every byte.
    let next = with_custom_section(&wasm_bytes("products"), "chunked upload");
    let expected = hash(&next);
    let answer = tokio::task::spawn_blocking(move || put_chunked(addr, "products", &next))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(&expected), "{answer}");
    assert_eq!(host.version_of("products").await, Some(expected.clone()));
    let served = host.get("/api/products").await;
    assert_eq!(version_header(&served), expected);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_reads_in_larger_pieces_than_the_gateway() {
    let host = TestHost::start().await;
    let filler = "v".repeat(64 << 10);
    // The gateway's read buffer (and head cap) is [gateway] max_header_bytes.
    let status = host
        .http
        .get(host.url("/api/products"))
        .header("x-filler", &filler)
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert!(matches!(status, Ok(431) | Err(_)), "gateway: {status:?}");
    // The admin API reads 256 KiB at a time, so a 64 KiB head fits...
    let listed = host
        .http
        .get(host.admin_url("/services"))
        .bearer_auth(support::TOKEN)
        .header("x-filler", &filler)
        .send()
        .await
        .expect("the admin API answers");
    assert_eq!(listed.status(), 200);
    // ...and a larger one is still refused (hyper checks its buffer while a
    // head is incomplete, so a head may run one read past it).
    let status = host
        .http
        .get(host.admin_url("/services"))
        .bearer_auth(support::TOKEN)
        .header("x-filler", "v".repeat(600 << 10))
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert!(matches!(status, Ok(431) | Err(_)), "admin: {status:?}");
    assert_eq!(
        host.get("/api/products").await.status(),
        200,
        "still serving"
    );
    host.stop().await;
}

/// A rollback to a version whose compiled code is cached swaps from the
/// cache alone: it neither reads nor hashes the kept component again. So a
/// kept component damaged on disk still rolls back (its code is the one
/// compiled from it when it was whole), and the damage is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_to_cached_code_does_not_read_the_kept_component() {
    let host = TestHost::start().await;
    let original = wasm_bytes("products");
    let original_version = hash(&original);
    let next = with_custom_section(&original, "rolled back from the code cache");
    assert_eq!(host.deploy("products", next).await.status(), 200);

    let kept = host
        .data_dir
        .join("artifacts")
        .join(format!("{original_version}.wasm"));
    let mut damaged = std::fs::read(&kept).expect("the original is kept");
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    std::fs::write(&kept, damaged).unwrap();

    let rolled = host.rollback("products").await;
    assert_eq!(rolled.status(), 200, "{}", rolled.text().await.unwrap());
    let answer = host.get("/api/products").await;
    assert_eq!(version_header(&answer), original_version);
    support::eventually(Duration::from_secs(10), "the damage reported", || async {
        support::logs()
            .lines()
            .any(|l| {
                l.contains("serves from the code cache")
                    && l.contains(&original_version[..12])
                    && l.contains("damaged")
            })
            .then_some(())
    })
    .await;
    host.stop().await;
}

/// The "deployed" line logged for `version` of `service`, once there is one.
async fn deployed_line(service: &str, version: &str) -> String {
    support::eventually(Duration::from_secs(10), "the deploy logged", || async {
        support::logs().lines().find_map(|l| {
            (l.contains("deployed")
                && l.contains(&format!("service={service}"))
                && l.contains(&format!("version=\"{}\"", &version[..12])))
            .then(|| l.to_owned())
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_of_a_kept_version_is_matched_with_its_stored_file() {
    let host = TestHost::start().await;
    let spec = serde_json::json!({ "routes": ["/reupload/{*rest}"] }).to_string();
    let testbed = wasm_bytes("testbed");
    // The same size, different only near their ends.
    let a = with_custom_section(&testbed, "variant-a");
    let b = with_custom_section(&testbed, "variant-b");
    assert_eq!(a.len(), b.len());
    let deploy = |bytes: &Vec<u8>| {
        let (host, bytes, spec) = (&host, bytes.clone(), spec.clone());
        async move {
            let answer = host
                .deploy_with("reupload", bytes.clone(), &[("spec", &spec)])
                .await;
            let status = answer.status();
            let outcome: serde_json::Value = answer.json().await.expect("JSON");
            assert_eq!(status, 200, "{outcome}");
            let version = outcome["version"].as_str().expect("a version").to_owned();
            assert_eq!(version, hash(&bytes), "named by its content's hash");
            let served = host.get("/reupload/path/x").await;
            assert_eq!(version_header(&served), version);
            version
        }
    };

    let version_a = deploy(&a).await;
    assert!(
        deployed_line("reupload", &version_a)
            .await
            .contains("matched_kept=false")
    );
    // As large as kept `a`, so compared with it, and found different.
    let version_b = deploy(&b).await;
    assert!(
        deployed_line("reupload", &version_b)
            .await
            .contains("matched_kept=false")
    );
    // `a` again: equal to its stored file, named by it without a hash.
    let logged = support::logs().len();
    assert_eq!(deploy(&a).await, version_a);
    support::eventually(Duration::from_secs(10), "the match logged", || async {
        support::logs()[logged..]
            .lines()
            .any(|l| l.contains("deployed") && l.contains("matched_kept=true"))
            .then_some(())
    })
    .await;

    // A kept file damaged on disk differs from an upload of what it should
    // hold: that upload is hashed, and stored in its place.
    let kept_b = host
        .data_dir
        .join("artifacts")
        .join(format!("{version_b}.wasm"));
    let mut damaged = b.clone();
    damaged[b.len() / 2] ^= 0xff;
    std::fs::write(&kept_b, &damaged).expect("damage the kept file");
    let logged = support::logs().len();
    assert_eq!(deploy(&b).await, version_b);
    assert_eq!(
        std::fs::read(&kept_b).expect("kept"),
        b,
        "the kept file repaired"
    );
    assert!(
        support::logs()[logged..]
            .lines()
            .any(|l| l.contains(&version_b[..12]) && l.contains("was damaged")),
        "the damage reported"
    );
    host.stop().await;
}
