use crate::support::{self, TOKEN, TestHost, hash, wasm};
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
}
