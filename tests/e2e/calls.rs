//! Service-to-service calls at `http://NAME.internal`, in-process.

use crate::support::{self, TestHost, hash, wasm_bytes};
use serde_json::Value;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_call_runs_the_callee_with_the_request_id_and_trace() {
    let host = TestHost::start().await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let answer = host
        .http
        .get(host.url("/alpha/call/beta/beta/headers"))
        .header("x-request-id", "call-request-1")
        .header("traceparent", parent)
        .header("x-bazaar-caller", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["x-callee-version"],
        hash(&wasm_bytes("testbed")).as_str()
    );
    let seen: Value = answer.json().await.unwrap();
    assert_eq!(seen["x-request-id"], "call-request-1", "{seen}");
    assert_eq!(
        seen["x-bazaar-caller"], "alpha",
        "the host names the caller: {seen}"
    );
    let trace = seen["traceparent"].as_str().unwrap();
    assert!(
        trace.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && trace != parent,
        "the callee continues the trace in a new span: {trace}"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ungranted_call_is_denied_and_logged_with_both_services() {
    let host = TestHost::start().await;
    let denied = host.get("/alpha/call/products/api/products").await;
    assert_eq!(denied.status(), 502);
    let body: Value = denied.json().await.unwrap();
    assert_eq!(body["error"], "HTTP-request-denied", "{body}");
    let logs = support::logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("service call denied")
                && l.contains("`alpha` may not call `products`")),
        "a log line should name both services"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_and_a_chain_too_deep_fail_fast() {
    let services = format!(
        "{}\n[services.gamma]\ncomponent = \"testbed.wasm\"\nroutes = [\"/gamma/{{*rest}}\"]\n",
        support::STANDARD_SERVICES.replace("calls = [\"alpha\"]", "calls = [\"alpha\", \"gamma\"]")
    );
    let host = TestHost::start_with(&services, "").await;
    let started = Instant::now();
    let cycle = host
        .get("/alpha/call/beta/beta/call/alpha/alpha/path/x")
        .await;
    let body = cycle.text().await.unwrap();
    assert!(
        body.contains("loop-detected"),
        "alpha → beta → alpha: {body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a cycle fails fast"
    );
    host.stop().await;

    let host = TestHost::start_edited(support::temp_dir(), &services, "", |text| {
        text.replace("[runtime]", "[runtime]\nmax_call_depth = 2")
    })
    .await;
    let deep = host
        .get("/alpha/call/beta/beta/call/gamma/gamma/path/x")
        .await;
    let body = deep.text().await.unwrap();
    assert!(
        body.contains("max_call_depth = 2"),
        "alpha → beta → gamma: {body}"
    );
    let fine = host.get("/alpha/call/beta/beta/path/x").await;
    assert_eq!(fine.status(), 200);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_that_traps_or_spins_gives_the_caller_an_error_response() {
    let host = TestHost::start().await;
    let trapped = host.get("/alpha/call/beta/beta/trap").await;
    assert_eq!(trapped.status(), 500, "the callee's trap is its 500");
    let started = Instant::now();
    let spun = host.get("/alpha/call/beta/beta/loop").await;
    assert_eq!(spun.status(), 504, "the callee's CPU limit is its 504");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(
        host.get("/alpha/call/beta/beta/path/ok").await.status(),
        200
    );
    host.stop().await;
}
