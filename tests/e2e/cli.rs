use crate::support::{self, TOKEN, TestHost, hash, wasm};
use serde_json::Value;
use std::process::Command;

/// Runs the CLI without blocking the runtime the in-process host serves on.
async fn bazaar(host: &TestHost, args: &[&str]) -> (bool, String) {
    let admin = format!("http://{}", host.running.admin_addr);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_bazaar"))
        .args(args)
        .args(["--admin-url", &admin, "--token", TOKEN])
        .output()
        .await
        .expect("the bazaar binary should run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_rollback_and_services_commands() {
    let host = TestHost::start().await;
    let hello = wasm("hello");
    let (ok, out) = bazaar(&host, &["deploy", "products", hello.to_str().unwrap()]).await;
    assert!(ok, "deploy should succeed: {out}");
    let hello_version = hash(&std::fs::read(&hello).unwrap());
    assert!(
        out.contains(&hello_version[..12]),
        "deploy should print the new version: {out}"
    );

    let (ok, out) = bazaar(&host, &["services"]).await;
    assert!(ok, "{out}");
    let products = out
        .lines()
        .find(|l| l.starts_with("products"))
        .unwrap_or_default();
    assert!(
        products.contains("running") && products.contains(&hello_version[..12]),
        "{out}"
    );
    assert!(
        products.contains("/api/products"),
        "routes should be listed: {out}"
    );

    let (ok, out) = bazaar(&host, &["rollback", "products"]).await;
    assert!(ok, "{out}");
    let original = hash(&support::wasm_bytes("products"));
    assert!(out.contains(&original[..12]), "{out}");

    let broken = support::temp_dir().join("broken.wasm");
    std::fs::write(&broken, b"nope").unwrap();
    let (ok, out) = bazaar(&host, &["deploy", "products", broken.to_str().unwrap()]).await;
    assert!(!ok, "a broken deploy should fail");
    assert!(
        out.contains("broken.wasm")
            && out.contains("products")
            && out.contains("not a WebAssembly file"),
        "the error should name the file, the service and the problem: {out}"
    );

    // A refused token: the message says where the CLI took it from.
    let admin = format!("http://{}", host.running.admin_addr);
    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_bazaar"))
        .args(["services", "--admin-url", &admin])
        .args(["--token", "not-the-admin-token-0123456789abcdef"])
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("HTTP 401") && err.contains("the token came from --token"),
        "{err}"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_is_added_listed_rolled_and_removed_from_the_command_line() {
    let host = TestHost::start().await;
    let testbed = wasm("testbed");
    let file = testbed.to_str().unwrap();
    let (ok, out) = bazaar(
        &host,
        &[
            "deploy",
            "reviews",
            file,
            "--route",
            "/reviews/{*rest}",
            "--calls",
            "alpha",
            "--set",
            "greeting=hi",
        ],
    )
    .await;
    assert!(ok, "adding a service should succeed: {out}");
    assert!(out.contains("added service `reviews`"), "{out}");
    let answer = host.get("/reviews/config/greeting").await;
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.text().await.unwrap(),
        "hi",
        "config given with --set reaches the service"
    );

    // A service added with --access needs what it says.
    let (ok, out) = bazaar(
        &host,
        &[
            "deploy",
            "members",
            file,
            "--route",
            "/members/{*rest}",
            "--access",
            "authenticated",
        ],
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(host.get("/members/path/x").await.status(), 401);
    // A route that takes paths from another service is allowed, with a
    // warning naming both.
    let (ok, out) = bazaar(
        &host,
        &["deploy", "taker", file, "--route", "/alpha/special/{*rest}"],
    )
    .await;
    assert!(ok, "{out}");
    assert!(
        out.contains(
            "warning: route `/alpha/special/{*rest}` overlaps `/alpha/{*rest}` of service `alpha`: `taker` answers"
        ),
        "{out}"
    );
    assert_eq!(
        host.get("/alpha/special/path/x").await.headers()["x-bazaar-service"],
        "taker",
        "the more specific route answers"
    );
    // What it was deployed with shows, config values aside.
    let spec_file = support::temp_dir().join("warmish.toml");
    std::fs::write(
        &spec_file,
        "routes = [\"/warmish/{*rest}\"]\ninstance_reuse = 5\n[limits]\nmemory_mib = 48\n",
    )
    .unwrap();
    let with_spec = [
        "deploy",
        "warmish",
        file,
        "--spec",
        spec_file.to_str().unwrap(),
    ];
    let (ok, out) = bazaar(&host, &with_spec).await;
    assert!(ok, "{out}");
    let shown = host.admin_json("/services/warmish").await;
    assert_eq!(
        (
            &shown["access"],
            &shown["instance_reuse"],
            &shown["limits"]["memory_mib"]
        ),
        (&"public".into(), &5.into(), &48.into()),
        "{shown}"
    );
    assert_eq!(
        host.admin_json("/services/members").await["access"],
        "authenticated"
    );
    let (ok, out) = bazaar(
        &host,
        &["deploy", "warmish", file, "--route", "/warmish/{*rest}"],
    )
    .await;
    assert!(ok && out.contains("updated the spec of `warmish`"), "{out}");
    assert_eq!(
        host.admin_json("/services/warmish").await["instance_reuse"],
        Value::Null,
        "the spec given replaced the whole spec"
    );
    let (ok, out) = bazaar(&host, &with_spec).await;
    assert!(ok, "{out}");
    let (ok, out) = bazaar(&host, &["services"]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("access: authenticated;")
            && out.contains("48 MiB")
            && out.contains("warm instances for 5 requests each"),
        "{out}"
    );

    // A file named relative to where the CLI runs is recorded absolute.
    let admin = format!("http://{}", host.running.admin_addr);
    let relative = tokio::process::Command::new(env!("CARGO_BIN_EXE_bazaar"))
        .current_dir(testbed.parent().unwrap())
        .args([
            "deploy",
            "nearby",
            "testbed.wasm",
            "--route",
            "/nearby/{*rest}",
        ])
        .args(["--admin-url", &admin, "--token", TOKEN])
        .output()
        .await
        .unwrap();
    assert!(relative.status.success(), "{relative:?}");
    let listed = host.admin_json("/services/nearby").await;
    let canonical = std::fs::canonicalize(&testbed).unwrap();
    assert_eq!(listed["source"], canonical.to_str().unwrap(), "{listed}");

    let (ok, out) = bazaar(
        &host,
        &["deploy", "intruder", file, "--route", "/reviews/{*all}"],
    )
    .await;
    assert!(!ok, "a conflicting route is refused: {out}");
    assert!(
        out.contains("`reviews`") && out.contains("/reviews/{*all}"),
        "{out}"
    );

    let (ok, out) = bazaar(&host, &["services"]).await;
    assert!(ok, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("reviews"))
        .unwrap_or_default();
    assert!(
        line.contains("live") && line.contains("/reviews/{*rest}"),
        "{out}"
    );

    let next = support::temp_dir().join("reviews-v2.wasm");
    std::fs::write(
        &next,
        support::with_custom_section(&support::wasm_bytes("testbed"), "v2"),
    )
    .unwrap();
    let (ok, out) = bazaar(&host, &["deploy", "reviews", next.to_str().unwrap()]).await;
    assert!(ok, "{out}");
    let first = hash(&support::wasm_bytes("testbed"));
    let (ok, out) = bazaar(&host, &["rollback", "reviews"]).await;
    assert!(ok && out.contains(&first[..12]), "{out}");
    let (ok, out) = bazaar(
        &host,
        &[
            "rollback",
            "reviews",
            "--expect",
            &first[..12],
            "--to",
            &hash(&std::fs::read(&next).unwrap())[..12],
        ],
    )
    .await;
    assert!(ok, "rolling forward with --to: {out}");

    let (ok, out) = bazaar(&host, &["events"]).await;
    assert!(
        ok && out.contains("SUBSCRIBER") && out.contains("news"),
        "{out}"
    );

    let (ok, out) = bazaar(&host, &["remove", "reviews"]).await;
    assert!(ok && out.contains("kept"), "{out}");
    assert_eq!(host.get("/reviews/config/greeting").await.status(), 404);
    let (ok, out) = bazaar(&host, &["rollback", "reviews"]).await;
    assert!(!ok && out.contains("no service `reviews`"), "{out}");
    host.stop().await;
}

#[test]
fn serve_reports_a_bad_config_key_with_its_line() {
    let dir = support::temp_dir();
    let config = dir.join("gateway.toml");
    std::fs::write(&config, "[gateway]\nlisten = \"127.0.0.1:0\"\nlisen = 3\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_bazaar"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("lisen") && err.contains("line 3"),
        "got: {err}"
    );

    let missing = Command::new(env!("CARGO_BIN_EXE_bazaar"))
        .args(["serve", "--config"])
        .arg(dir.join("absent.toml"))
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("pass an existing file with --config"),
        "got: {err}"
    );
    assert_eq!(
        err.matches("No such file or directory").count(),
        1,
        "the OS error is said once: {err}"
    );
}

/// Under an address-space cap (`ulimit -v`) too small for its instance
/// pool, `serve` says what the pool reserves and how many instances fit;
/// given that many, the same host under the same cap builds both of its
/// pools (a service keeps warm instances) and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_says_how_many_instances_fit_under_an_address_space_cap() {
    let dir = support::temp_dir();
    let config = support::binary_config(
        &dir,
        "[services.alpha]\ncomponent = \"testbed.wasm\"\nroutes = [\"/alpha/{*rest}\"]\ninstance_reuse = 1000\n",
    );
    // The tests' pool: 64 instances, two 4 GiB memory slots (and guards)
    // each, 516 GiB.
    let cap = 200u64 << 30;
    let refused = Command::new("prlimit")
        .arg(format!("--as={cap}"))
        .arg(env!("CARGO_BIN_EXE_bazaar"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("prlimit (util-linux) should run");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("reserves 516 GiB") && err.contains("may map only 200 GiB"),
        "{err}"
    );
    let fits: u32 = err
        .split("set [runtime] max_instances = ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no instance count to set: {err}"));
    assert!((1..64).contains(&fits), "{err}");

    let text = std::fs::read_to_string(&config).expect("config");
    let text = text.replace("max_instances = 64", &format!("max_instances = {fits}"));
    std::fs::write(&config, text).expect("config");
    let host = support::BinaryHost::spawn_in_address_space(&config, &dir.join("host.log"), cap);
    let client = reqwest::Client::new();
    for _ in 0..2 {
        let answer = client
            .get(format!("{}/alpha/memory-counter", host.url))
            .send()
            .await
            .expect("the host answers");
        assert_eq!(answer.status(), 200);
    }
    let log = host.log_text();
    assert!(
        !log.contains("cannot build the engine for warm instances"),
        "both pools fit: {log}"
    );
}
