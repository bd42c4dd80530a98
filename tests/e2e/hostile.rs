//! A bad client or a bad service hurts only itself: each hostile request
//! is cut short by its own limit, with its own message, while a bounded
//! load on a healthy service keeps succeeding.
//!
//! Each test sets the limit it checks well apart from the others (a CPU
//! budget far below the timeout, a memory cap far below the pool's), so it
//! fails if that limit is removed rather than passing on another one.

use crate::support::{TestHost, eventually, temp_dir, version_header};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt as _;
use tokio::task::JoinHandle;

/// `alpha` misbehaves under `alpha_limits`; `beta` is the healthy service.
fn services(alpha_limits: &str) -> String {
    format!(
        r#"
[services.alpha]
component = "testbed.wasm"
routes = ["/alpha/{{*rest}}"]
[services.alpha.limits]
{alpha_limits}

[services.beta]
component = "testbed.wasm"
routes = ["/beta/{{*rest}}"]
"#
    )
}

/// A host running [`services`], with `runtime`'s `key = value` lines set
/// in `[runtime]`.
async fn start(alpha_limits: &str, runtime: &str) -> TestHost {
    let runtime = runtime.to_owned();
    TestHost::start_edited(temp_dir(), &services(alpha_limits), "", move |text| {
        let mut text = text;
        for line in runtime.lines() {
            let key = line.split('=').next().unwrap_or_default().trim();
            text = text
                .lines()
                .filter(|l| l.split('=').next().unwrap_or_default().trim() != key)
                .map(|l| format!("{l}\n"))
                .collect();
            text = text.replace("[runtime]\n", &format!("[runtime]\n{line}\n"));
        }
        text
    })
    .await
}

/// The `error` text of a gateway error response.
async fn error_text(response: reqwest::Response) -> String {
    let body: Value = response.json().await.expect("an error answers JSON");
    body["error"].as_str().unwrap_or_default().to_owned()
}

/// Requests to the healthy service, one every 25 ms, for at most 400
/// requests or 30 s, until finished.
struct HealthyLoad {
    stop: Arc<AtomicBool>,
    task: JoinHandle<(u32, Vec<String>)>,
}

impl HealthyLoad {
    fn start(host: &TestHost) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (http, url, flag) = (host.http.clone(), host.url("/beta/path/ok"), stop.clone());
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let (mut ok, mut failures) = (0, Vec::new());
            for _ in 0..400 {
                if flag.load(Ordering::Acquire) || started.elapsed() > Duration::from_secs(30) {
                    break;
                }
                let sent = Instant::now();
                match tokio::time::timeout(Duration::from_secs(3), http.get(&url).send()).await {
                    Ok(Ok(response)) if response.status() == 200 => ok += 1,
                    Ok(Ok(response)) => failures.push(format!("status {}", response.status())),
                    Ok(Err(error)) => failures.push(format!("error {error}")),
                    Err(_) => failures.push(format!("no answer after {:?}", sent.elapsed())),
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            (ok, failures)
        });
        Self { stop, task }
    }

    /// Stops the load and checks every request of it succeeded.
    async fn finish(self) {
        self.stop.store(true, Ordering::Release);
        let (ok, failures) = self.task.await.unwrap();
        assert!(
            failures.is_empty(),
            "the healthy service should answer every request while another misbehaves; {ok} succeeded, failures: {failures:?}"
        );
        assert!(ok > 0, "the healthy load should have run");
    }
}

/// How a body that was read to its end ended.
#[derive(Debug)]
struct Drained {
    /// The bytes that arrived.
    read: Vec<u8>,
    /// Whether it ended in an error rather than as a complete body.
    broken: bool,
}

/// Reads `response`'s body to its end or its first error; gives up after
/// `limit`.
async fn drain(mut response: reqwest::Response, limit: Duration) -> Drained {
    let deadline = Instant::now() + limit;
    let mut read = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, response.chunk()).await {
            Ok(Ok(Some(chunk))) => read.extend_from_slice(&chunk),
            Ok(Ok(None)) => {
                return Drained {
                    read,
                    broken: false,
                };
            }
            Ok(Err(_)) => return Drained { read, broken: true },
            Err(_) => panic!("the body was still streaming after {limit:?}"),
        }
    }
}

/// The misbehaving service itself still answers afterwards.
async fn assert_still_serving(host: &TestHost) {
    assert_eq!(host.get("/alpha/path/fine").await.status(), 200);
    assert_eq!(host.get("/beta/path/fine").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_hits_the_cpu_limit_long_before_the_timeout() {
    let host = start("cpu_time_ms = 300\ntimeout_ms = 20000", "").await;
    let load = HealthyLoad::start(&host);
    let started = Instant::now();
    let spin = host.get("/alpha/loop").await;
    let elapsed = started.elapsed();
    assert_eq!(spin.status(), 504);
    let error = error_text(spin).await;
    assert!(
        error.contains("exceeded its CPU time limit"),
        "expected the CPU-limit message, got {error:?}"
    );
    eprintln!("CPU limit of 300 ms hit after {elapsed:?} of wall time");
    assert!(
        elapsed < Duration::from_secs(3),
        "a 300 ms CPU budget should stop the loop long before the 20 s timeout, took {elapsed:?}"
    );
    load.finish().await;
    assert_still_serving(&host).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleep_past_the_timeout_is_a_timeout_not_a_cpu_limit() {
    let host = start("cpu_time_ms = 300\ntimeout_ms = 800", "").await;
    let started = Instant::now();
    let sleeper = host.get("/alpha/sleep/5000").await;
    let elapsed = started.elapsed();
    assert_eq!(sleeper.status(), 504);
    let error = error_text(sleeper).await;
    assert!(
        error.contains("did not respond in time"),
        "expected the timeout message, got {error:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(800) && elapsed < Duration::from_secs(3),
        "the 800 ms timeout should end a 5 s sleep, took {elapsed:?}"
    );
    assert_still_serving(&host).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_growth_stops_at_the_services_own_cap() {
    // The pool allows 256 MiB per memory; alpha's own cap is 32 MiB.
    let host = start("memory_mib = 32", "max_memory_mib = 256").await;
    let load = HealthyLoad::start(&host);
    let grown = host.get("/alpha/grow/1").await;
    assert_eq!(grown.status(), 200);
    let peak: Value = grown.json().await.unwrap();
    let memory = peak["memory_mib"].as_u64().unwrap();
    let allocated = peak["allocated_mib"].as_u64().unwrap();
    assert!(
        memory <= 32,
        "alpha's memory should stop at its 32 MiB cap, reached {memory} MiB"
    );
    assert!(
        allocated >= 16,
        "the guest should get most of its cap, got {allocated} MiB"
    );

    let bomb = host.get("/alpha/oom").await;
    assert!(
        bomb.status().is_server_error(),
        "a memory bomb should become a 5xx, got {}",
        bomb.status()
    );
    load.finish().await;
    assert_still_serving(&host).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_memory_budget_caps_all_instances_and_is_given_back() {
    // Alpha's own cap (256 MiB) is above the host's budget (48 MiB).
    let host = start("", "host_memory_mib = 48").await;
    let mut peaks = Vec::new();
    for _ in 0..2 {
        let grown = host.get("/alpha/grow/1").await;
        assert_eq!(grown.status(), 200);
        let peak: Value = grown.json().await.unwrap();
        peaks.push(peak["memory_mib"].as_u64().unwrap());
    }
    assert!(
        peaks.iter().all(|&p| p <= 48),
        "no instance may pass the 48 MiB host budget: {peaks:?}"
    );
    assert!(
        peaks[1] >= 32,
        "the first request's memory should be given back when it ends, so the second grows as far: {peaks:?}"
    );
    assert_still_serving(&host).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_and_a_panic_are_500s() {
    let host = start("", "").await;
    let load = HealthyLoad::start(&host);
    for path in ["/alpha/recurse", "/alpha/trap"] {
        let failed = host.get(path).await;
        assert_eq!(failed.status(), 500, "{path} should trap");
        let error = error_text(failed).await;
        assert!(
            !error.contains("panicked") && !error.contains("stack"),
            "trap details stay in the log: {error}"
        );
    }
    load.finish().await;
    assert_still_serving(&host).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_in_the_middle_of_a_body_never_looks_like_its_end() {
    let host = start("", "").await;
    let load = HealthyLoad::start(&host);
    for _ in 0..3 {
        // The head and a first line go out, then the guest traps.
        let response = host.get("/alpha/trap-mid-body/300").await;
        assert_eq!(response.status(), 200, "the head went out before the trap");
        let drained = drain(response, Duration::from_secs(8)).await;
        assert_eq!(drained.read, b"before the trap\n");
        assert!(
            drained.broken,
            "the client must see the body fail, not end: {drained:?}"
        );

        // It traps before anything went out: the failure, not a 200.
        let response = host.get("/alpha/trap-mid-body/0").await;
        if response.status() == 200 {
            // (unless its head happened to go out first)
            let drained = drain(response, Duration::from_secs(8)).await;
            assert!(drained.broken, "a body cut by a trap ended: {drained:?}");
        } else {
            assert_eq!(response.status(), 500);
            let error = error_text(response).await;
            assert!(
                !error.contains("panicked"),
                "trap details stay in the log: {error}"
            );
        }
    }
    load.finish().await;
    assert_still_serving(&host).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_and_slow_bodies_end_at_the_deadline() {
    // CPU time far above the timeout: only the deadline may end them.
    let host = start("timeout_ms = 1500\ncpu_time_ms = 60000", "").await;
    let load = HealthyLoad::start(&host);
    for path in ["/alpha/endless", "/alpha/slow-body"] {
        let started = Instant::now();
        let response = host.get(path).await;
        assert_eq!(response.status(), 200, "{path} sends its head at once");
        let drained = drain(response, Duration::from_secs(8)).await;
        let elapsed = started.elapsed();
        eprintln!(
            "{path}: body ended after {elapsed:?} and {} bytes",
            drained.read.len()
        );
        assert!(
            elapsed < Duration::from_millis(1500 + 1500),
            "{path}: the body should end by the 1.5 s deadline, took {elapsed:?}"
        );
        assert!(
            drained.broken,
            "{path}: a body cut off at the deadline must not end as if complete"
        );
    }
    load.finish().await;
    assert_still_serving(&host).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_header_and_a_resource_flood_are_refused() {
    let host = start("", "max_resources = 1000").await;
    let load = HealthyLoad::start(&host);
    // 100 KiB is under wasmtime's 128 KiB default, over the host's 64 KiB.
    let huge = host.get("/alpha/huge-header/100").await;
    assert!(
        huge.status().is_server_error(),
        "a 100 KiB response header should be refused, got {}",
        huge.status()
    );
    assert_eq!(host.get("/alpha/huge-header/4").await.status(), 200);

    let flood = host.get("/alpha/fields/5000").await;
    assert!(
        flood.status().is_server_error(),
        "5000 live resources are over max_resources = 1000, got {}",
        flood.status()
    );
    assert_eq!(host.get("/alpha/fields/100").await.status(), 200);
    load.finish().await;
    assert_still_serving(&host).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_a_services_concurrency_cap_get_503_while_others_answer() {
    let host = start("max_concurrency = 2", "").await;
    let sleepers: Vec<_> = (0..4)
        .map(|_| {
            let (http, url) = (host.http.clone(), host.url("/alpha/sleep/1500"));
            tokio::spawn(async move { http.get(url).send().await.unwrap() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    assert_eq!(host.get("/beta/path/ok").await.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "beta should answer while alpha is at its cap"
    );
    let (mut served, mut busy) = (0, 0);
    for sleeper in sleepers {
        let response = sleeper.await.unwrap();
        match response.status().as_u16() {
            200 => served += 1,
            503 => {
                assert_eq!(
                    response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()),
                    Some("1"),
                    "a busy answer says when to retry"
                );
                busy += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        (served, busy),
        (2, 2),
        "max_concurrency = 2 should serve two sleepers and refuse two"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_cannot_pin_instances_past_the_deadline_or_take_other_services_slots() {
    // Six instance slots in the whole host; alpha may use four.
    let host = start(
        "max_concurrency = 4\ntimeout_ms = 2500\ncpu_time_ms = 60000",
        "max_instances = 6",
    )
    .await;
    let started = Instant::now();
    // Clients that ask for an endless body and never read it.
    let mut readers = Vec::new();
    for _ in 0..6 {
        let mut stream = tokio::net::TcpStream::connect(host.running.gateway_addr)
            .await
            .unwrap();
        stream
            .write_all(b"GET /alpha/endless HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .unwrap();
        readers.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let pinned = host.get("/alpha/path/ok").await;
    assert_eq!(
        pinned.status(),
        503,
        "the slow readers should hold all of alpha's four permits"
    );
    for _ in 0..5 {
        let response = host.get("/beta/path/ok").await;
        assert_eq!(
            response.status(),
            200,
            "beta keeps its slots while alpha's readers stall"
        );
    }
    assert!(
        started.elapsed() < Duration::from_millis(2400),
        "the checks above must run before alpha's 2.5 s deadline"
    );
    // The deadline ends the stalled bodies; alpha serves again while the
    // readers are still connected.
    let version = eventually(Duration::from_secs(4), "alpha to serve again", || async {
        let response = host.get("/alpha/path/ok").await;
        (response.status() == 200).then(|| version_header(&response))
    })
    .await;
    assert!(!version.is_empty());
    eprintln!(
        "alpha served again {:?} after the readers stalled",
        started.elapsed()
    );
    drop(readers);
    host.stop().await;
}

/// Wasm binary helpers for components that fail at deploy.
mod craft {
    fn leb(mut n: u32, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn section(id: u8, payload: &[u8], out: &mut Vec<u8>) {
        out.push(id);
        leb(payload.len() as u32, out);
        out.extend_from_slice(payload);
    }

    /// A component that only instantiates one core module made of `sections`.
    fn component(sections: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        for (id, payload) in sections {
            section(*id, payload, &mut module);
        }
        let mut out = b"\0asm\x0d\0\x01\0".to_vec();
        section(1, &module, &mut out);
        // One core instance: instantiate module 0 with no arguments.
        section(2, &[1, 0, 0, 0], &mut out);
        out
    }

    /// A component whose memory starts at `pages` Wasm pages.
    pub fn memory_of(pages: u32) -> Vec<u8> {
        let mut memory = vec![1, 0];
        leb(pages, &mut memory);
        component(&[(5, memory)])
    }

    /// A component whose start function traps.
    pub fn trapping_start() -> Vec<u8> {
        component(&[
            (1, vec![1, 0x60, 0, 0]),        // type 0: [] -> []
            (3, vec![1, 0]),                 // function 0: type 0
            (8, vec![0]),                    // start: function 0
            (10, vec![1, 3, 0, 0x00, 0x0b]), // body: unreachable
        ])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_that_cannot_start_is_refused_and_the_old_version_keeps_serving() {
    let host = start("", "max_memory_mib = 256\nhost_memory_mib = 128").await;
    let before = host.version_of("alpha").await.unwrap();
    let cases = [
        // 320 MiB: over the pool's 256 MiB per memory, refused unopened.
        (craft::memory_of(5120), "max_memory_mib"),
        // 192 MiB: fits a pool slot, but not the host's 128 MiB budget.
        (craft::memory_of(3072), "host_memory_mib"),
        (craft::trapping_start(), "unreachable"),
    ];
    for (bytes, reason) in cases {
        let refused = host.deploy("alpha", bytes).await;
        assert_eq!(refused.status(), 422, "expected a refusal naming {reason}");
        let error = error_text(refused).await;
        assert!(
            error.contains(reason),
            "the refusal should name {reason}: {error}"
        );
        assert_eq!(host.version_of("alpha").await.unwrap(), before);
        let served = host.get("/alpha/path/ok").await;
        assert_eq!(served.status(), 200);
        assert_eq!(version_header(&served), before, "the old version serves on");
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_runs_under_its_subscribers_own_timeout() {
    // The gateway's timeout is 10 s; beta's own is 500 ms.
    let services = r#"
[services.alpha]
component = "testbed.wasm"
routes = ["/alpha/{*rest}"]
publishes = ["news"]

[services.beta]
component = "testbed.wasm"
routes = ["/beta/{*rest}"]
subscribes = ["news"]
[services.beta.limits]
timeout_ms = 500
"#;
    let host = TestHost::start_with(services, "").await;
    let publish = |payload: &'static str| {
        host.http
            .post(host.url("/alpha/publish/news"))
            .body(payload)
            .send()
    };
    assert_eq!(publish("sleep:1500 slow").await.unwrap().status(), 200);
    let dead = eventually(Duration::from_secs(15), "a dead letter", || async {
        let dead = host
            .admin_json("/events/dead-letters?subscriber=beta")
            .await;
        (dead.as_array()?.len() == 1).then_some(dead)
    })
    .await;
    assert_eq!(
        dead[0]["error"], "the service did not respond in time",
        "every attempt should end at beta's 500 ms timeout: {dead}"
    );
    assert_eq!(publish("sleep:10 quick").await.unwrap().status(), 200);
    let recorded = eventually(Duration::from_secs(15), "the quick event", || async {
        let list: Value = host.get("/beta/events").await.json().await.ok()?;
        (list.as_array()?.len() == 1).then_some(list)
    })
    .await;
    assert_eq!(recorded[0]["payload"], "sleep:10 quick");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_whose_memory_cap_its_component_cannot_start_under_is_refused() {
    let host = TestHost::start().await;
    // The testbed starts with more than 1 MiB of linear memory.
    let spec = serde_json::json!({ "routes": ["/tiny/{*rest}"], "limits": { "memory_mib": 1 } })
        .to_string();
    let refused = host
        .deploy_with(
            "tiny",
            crate::support::wasm_bytes("testbed"),
            &[("spec", &spec)],
        )
        .await;
    assert_eq!(refused.status(), 422);
    let error = refused.text().await.unwrap();
    assert!(
        error.contains("memory_mib"),
        "the refusal names the service's cap: {error}"
    );
    assert!(host.status_of("tiny").await.is_none(), "nothing was added");
    host.stop().await;
}

/// A guest that returns with its body neither finished nor dropped (its
/// handle leaked, its stream's too, before or after its head went out)
/// has that body ended with an error: never passed off as whole by a
/// fresh instance's store going away, never left hanging by a warm one's
/// staying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_a_guest_returned_without_finishing_ends_broken() {
    let services = r#"
[services.fresh]
component = "hello.wasm"
routes = ["/fresh/{*rest}"]

[services.warm]
component = "hello.wasm"
routes = ["/warm/{*rest}"]
instance_reuse = 100
"#;
    let host = TestHost::start_with(services, "").await;
    for (service, leak) in [
        ("fresh", "leak"),
        ("warm", "leak"),
        ("fresh", "leak-all"),
        ("warm", "leak-all"),
        ("fresh", "leak-late"),
        ("warm", "leak-late"),
    ] {
        assert_ends_in_error(&host, &format!("/{service}/{leak}")).await;
        let fine = host.get(&format!("/{service}/fine")).await;
        assert_eq!(fine.status(), 200);
        assert!(
            fine.text()
                .await
                .unwrap()
                .contains("hello from a stock component"),
            "{service} goes on answering"
        );
    }
    host.stop().await;
}

/// A body a warm instance leaked stays in its table as a spent body: a
/// `write` or `finish` its guest calls on it in a later request fails,
/// never passing for a body sent whole (the client of the first request
/// got an error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_instance_that_leaked_a_body_is_not_reused() {
    let services = r#"
[services.warm]
component = "hello.wasm"
routes = ["/warm/{*rest}"]
instance_reuse = 100
"#;
    let host = TestHost::start_with(services, "").await;
    assert_ends_in_error(&host, "/warm/leak").await;
    // One request at a time: were the instance that leaked kept, this
    // would be it, still holding the body (and its stream, whose writes
    // could reach the first client while it reads).
    let later = host.get("/warm/finish-leaked").await;
    assert_eq!(later.status(), 200);
    let text = later.text().await.unwrap();
    assert_eq!(
        text, "no leaked body\n",
        "the instance that leaked a body should have been dropped"
    );
    host.stop().await;
}

/// Asserts that the response to GET `path` ends in an error, at its head
/// or in its body: never a clean end, nor a wait.
async fn assert_ends_in_error(host: &TestHost, path: &str) {
    let leaked = tokio::time::timeout(Duration::from_secs(10), async {
        host.http.get(host.url(path)).send().await?.bytes().await
    })
    .await;
    assert!(
        matches!(leaked, Ok(Err(_))),
        "{path}: the response should end in an error, got {leaked:?}"
    );
}
