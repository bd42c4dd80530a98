//! Warm instances: opt-in reuse of an instance for one request after
//! another, never for one that failed, never beyond its count, never
//! across versions.

use crate::support::{
    STANDARD_SERVICES, TestHost, version_header, wasm_bytes, with_custom_section,
};
use serde_json::Value;

/// `alpha` keeps warm instances for `uses` requests each.
async fn start(uses: u32) -> TestHost {
    let services = STANDARD_SERVICES.replace(
        "routes = [\"/alpha/{*rest}\"]",
        &format!("routes = [\"/alpha/{{*rest}}\"]\ninstance_reuse = {uses}"),
    );
    TestHost::start_with(&services, "").await
}

async fn counter(host: &TestHost, service: &str) -> u64 {
    counter_answer(host, service).await["value"]
        .as_u64()
        .unwrap()
}

/// The testbed's `memory-counter` answer, once the request has ended.
async fn counter_answer(host: &TestHost, service: &str) -> Value {
    let answer: Value = host
        .get(&format!("/{service}/memory-counter"))
        .await
        .json()
        .await
        .unwrap();
    settle(host, service).await;
    answer
}

/// Waits until `service` has no request running, so the instance that
/// served the last one is back in the pool (a client may see the end of a
/// response a moment before its instance is put back).
async fn settle(host: &TestHost, service: &str) {
    let slot = host
        .running
        .registry
        .get(service)
        .expect("the service exists");
    let all = slot.context.limits.max_concurrency as usize;
    crate::support::eventually(
        std::time::Duration::from_secs(10),
        "the request to end",
        || async { (slot.context.concurrency.available_permits() == all).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_instance_serves_request_after_request_up_to_its_count() {
    let host = start(3).await;
    let seen: Vec<u64> = futures_sequence(&host, "alpha", 7).await;
    assert_eq!(
        seen,
        [1, 2, 3, 1, 2, 3, 1],
        "one instance for three requests, then a new one"
    );
    let fresh: Vec<u64> = futures_sequence(&host, "beta", 3).await;
    assert_eq!(
        fresh,
        [1, 1, 1],
        "without instance_reuse every request is fresh"
    );
    host.stop().await;
}

/// An SDK service builds its routes once per instance: a warm instance's
/// later requests reuse them (and a fresh instance builds them once too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_instance_builds_its_routes_once() {
    let host = start(3).await;
    for (service, served) in [("alpha", 1), ("alpha", 2), ("alpha", 3), ("beta", 1)] {
        let answer = counter_answer(&host, service).await;
        assert_eq!(answer["value"], served, "{service}: {answer}");
        assert_eq!(answer["routes_built"], 1, "{service}: {answer}");
    }
    host.stop().await;
}

async fn futures_sequence(host: &TestHost, service: &str, n: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    for _ in 0..n {
        seen.push(counter(host, service).await);
    }
    seen
}

/// A warm instance of a component slow to instantiate (a Python one,
/// whose memory image is copied in) that served its share is dropped, and
/// the one taking its place made, off the request's path: the next request
/// finds it idle. `scripts/test` builds the component and names it in
/// `BAZAAR_PY_COMPONENT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_instance_that_served_its_share_is_replaced_before_the_next_request() {
    let Ok(path) = std::env::var("BAZAAR_PY_COMPONENT") else {
        eprintln!("skipped: BAZAAR_PY_COMPONENT is not set (scripts/test builds it)");
        return;
    };
    let services = format!(
        "[services.py]\ncomponent = \"{path}\"\nroutes = [\"/py/{{*rest}}\"]\ninstance_reuse = 2\n"
    );
    let host = TestHost::start_with(&services, "").await;
    let slot = host.running.registry.get("py").expect("the service exists");
    let pool = slot.context.warm.as_ref().expect("py keeps warm instances");
    for _ in 0..2 {
        let answer = host.get("/py/hi").await;
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.text().await.unwrap(), "hello from python /py/hi");
        settle(&host, "py").await;
    }
    crate::support::eventually(
        std::time::Duration::from_secs(20),
        "an instance made ahead",
        || async { (pool.idle() == 1).then_some(()) },
    )
    .await;
    // Read to its end: a client that leaves early stops a guest still
    // writing, and that instance is dropped, not kept.
    let again = host.get("/py/again").await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.text().await.unwrap(), "hello from python /py/again");
    settle(&host, "py").await;
    assert_eq!(
        pool.idle(),
        1,
        "the instance made ahead served, and went back"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_trapped_or_timed_out_is_never_reused() {
    let host = start(1000).await;
    assert_eq!(futures_sequence(&host, "alpha", 2).await, [1, 2]);
    assert_eq!(host.get("/alpha/trap").await.status(), 500);
    settle(&host, "alpha").await;
    assert_eq!(
        counter(&host, "alpha").await,
        1,
        "the trapped instance was dropped"
    );
    assert_eq!(counter(&host, "alpha").await, 2);
    assert_eq!(host.get("/alpha/loop").await.status(), 504);
    settle(&host, "alpha").await;
    assert_eq!(
        counter(&host, "alpha").await,
        1,
        "the spinning instance was dropped"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_guest_cannot_be_given_leaves_the_warm_instance_as_it_was() {
    // Three uses each: had the refused request counted, the instance
    // would have served its share before the third.
    let host = start(3).await;
    assert_eq!(futures_sequence(&host, "alpha", 2).await, [1, 2]);
    // HTTP/1.0 without a Host header: hyper takes it, but a wasi:http
    // request needs an authority.
    let addr = host.running.gateway_addr;
    let answer = tokio::task::spawn_blocking(move || {
        crate::support::send_raw(addr, b"GET /alpha/memory-counter HTTP/1.0\r\n\r\n")
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.0 400"), "{answer}");
    assert!(answer.contains("missing authority"), "{answer}");
    settle(&host, "alpha").await;
    assert_eq!(
        counter(&host, "alpha").await,
        3,
        "the idle instance was kept, its use not counted"
    );
    host.stop().await;
}

/// `beta`, which takes alpha's `news`, keeps warm instances for `uses`
/// requests and events each.
async fn start_subscriber(uses: u32) -> TestHost {
    let services = STANDARD_SERVICES.replace(
        "routes = [\"/beta/{*rest}\"]",
        &format!("routes = [\"/beta/{{*rest}}\"]\ninstance_reuse = {uses}"),
    );
    TestHost::start_with(&services, "").await
}

/// Publishes `payload` on alpha's `news`, then waits until beta has
/// handled (or failed) it: its position reaches `position`, or its event
/// has `failures` failed attempts.
async fn publish_news(host: &TestHost, payload: &str, position: u64, failures: u64) {
    let published = host
        .http
        .post(host.url("/alpha/publish/news"))
        .body(payload.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 200);
    crate::support::eventually(
        std::time::Duration::from_secs(20),
        "beta to take the event",
        || async {
            let stats = host.admin_json("/events").await;
            let beta = stats
                .as_array()?
                .iter()
                .find(|s| s["subscriber"] == "beta")?
                .clone();
            let handled = beta["delivered_through"].as_u64()? >= position
                || beta["attempts"].as_u64()? >= failures;
            handled.then_some(())
        },
    )
    .await;
    settle(host, "beta").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_taken_by_a_warm_instance_and_counts_among_its_uses() {
    let host = start_subscriber(3).await;
    assert_eq!(counter(&host, "beta").await, 1);
    publish_news(&host, "first", 1, u64::MAX).await;
    assert_eq!(
        counter(&host, "beta").await,
        3,
        "the event was handled by the warm instance (its second use)"
    );
    // That instance served its three; the next event gets a new one,
    // which then serves requests.
    publish_news(&host, "second", 2, u64::MAX).await;
    assert_eq!(
        counter(&host, "beta").await,
        2,
        "the instance made for the event serves the next request"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_trapped_on_an_event_is_never_reused() {
    let host = start_subscriber(1000).await;
    assert_eq!(futures_sequence(&host, "beta", 2).await, [1, 2]);
    // The handler counts the delivery, then traps; it is retried, and
    // traps again, while the requests below run.
    publish_news(&host, "trap", u64::MAX, 1).await;
    assert_eq!(
        counter(&host, "beta").await,
        1,
        "the instance that trapped was dropped"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_of_a_warm_instance_has_the_whole_cpu_budget() {
    // 300 ms of CPU per request; five requests of ~120 ms on one instance.
    let services = STANDARD_SERVICES.replace(
        "[services.alpha.config]",
        "instance_reuse = 1000\n[services.alpha.limits]\ncpu_time_ms = 300\n[services.alpha.config]",
    );
    let host = TestHost::start_with(&services, "").await;
    assert_eq!(futures_sequence(&host, "alpha", 1).await, [1]);
    for _ in 0..5 {
        let burned = host.get("/alpha/burn/120").await;
        assert_eq!(
            burned.status(),
            200,
            "a warm instance's earlier requests do not use up this one's budget: {}",
            burned.text().await.unwrap_or_default()
        );
        settle(&host, "alpha").await;
    }
    assert_eq!(
        counter(&host, "alpha").await,
        2,
        "the same instance served them all"
    );
    assert_eq!(
        host.get("/alpha/loop").await.status(),
        504,
        "the budget holds"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_retires_the_old_versions_warm_instances() {
    let host = start(1000).await;
    assert_eq!(futures_sequence(&host, "alpha", 3).await, [1, 2, 3]);
    let next = with_custom_section(&wasm_bytes("testbed"), "warm v2");
    assert_eq!(host.deploy("alpha", next.clone()).await.status(), 200);
    let answer = host.get("/alpha/memory-counter").await;
    settle(&host, "alpha").await;
    assert_eq!(version_header(&answer), crate::support::hash(&next));
    assert_eq!(
        answer.json::<Value>().await.unwrap()["value"],
        1,
        "a new version starts fresh"
    );
    assert_eq!(counter(&host, "alpha").await, 2);
    assert_eq!(host.rollback("alpha").await.status(), 200);
    assert_eq!(
        counter(&host, "alpha").await,
        1,
        "the old version's instances were retired"
    );
    host.stop().await;
}

/// The same component serving a service that keeps warm instances and one
/// that does not is compiled twice, once for each engine: the warm one
/// copies a component's memory image into each instance instead of mapping
/// it copy-on-write (see `Instancing`). Both serve, from their own code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_and_fresh_services_compile_for_engines_of_their_own() {
    let cache = crate::support::temp_dir();
    let services = r#"
[services.alpha]
component = "testbed.wasm"
routes = ["/alpha/{*rest}"]
instance_reuse = 3

[services.beta]
component = "testbed.wasm"
routes = ["/beta/{*rest}"]
"#;
    let own_cache = |text: String| {
        text.lines()
            .map(|line| match line.starts_with("cache_dir = ") {
                true => format!("cache_dir = \"{}\"", cache.display()),
                false => line.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let host = TestHost::start_edited(crate::support::temp_dir(), services, "", own_cache).await;
    assert_eq!(futures_sequence(&host, "alpha", 4).await, [1, 2, 3, 1]);
    assert_eq!(futures_sequence(&host, "beta", 2).await, [1, 1]);

    let version = crate::support::hash(&wasm_bytes("testbed"));
    let mut compiled: Vec<String> = std::fs::read_dir(&cache)
        .expect("the cache directory")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&version))
        .collect();
    compiled.sort();
    assert_eq!(
        compiled.len(),
        2,
        "one compiled file per engine, named by the engine's fingerprint: {compiled:?}"
    );
    host.stop().await;
}

/// A host with address space for one pool of instance slots but not two
/// (as under a container's `ulimit -v`) cannot build the engine for warm
/// instances: its warm services compile for the fresh-instance engine,
/// the log says why, and they keep their instances all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_room_for_a_second_pool_warm_services_use_the_fresh_engine() {
    let dir = crate::support::temp_dir();
    let config = crate::support::binary_config(
        &dir,
        "[services.alpha]\ncomponent = \"testbed.wasm\"\nroutes = [\"/alpha/{*rest}\"]\ninstance_reuse = 1000\n",
    );
    // The tests' pool (64 instances, two 4 GiB memory reservations each)
    // takes ~520 GiB of address space; the cap leaves room for one.
    let cap = 780u64 << 30;
    let host =
        crate::support::BinaryHost::spawn_in_address_space(&config, &dir.join("host.log"), cap);
    let client = reqwest::Client::new();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let answer = client
            .get(format!("{}/alpha/memory-counter", host.url))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let answer: Value = answer.json().await.unwrap();
        seen.push(answer["value"].as_u64().unwrap());
        // The instance goes back a moment after its response ends.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen, [1, 2, 3], "one warm instance served them all");
    assert!(
        host.log_text()
            .contains("cannot build the engine for warm instances"),
        "{}",
        host.log_text()
    );
}

/// A line a request left without its newline is logged with that request,
/// not carried by the warm instance into the next request's first line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_output_line_is_logged_with_the_request_that_wrote_it() {
    let host = start(1000).await;
    for (id, query) in [
        ("partial-req-1", "line=unended-5531&partial=1"),
        ("partial-req-2", "line=ended-5532"),
    ] {
        let printed = host
            .http
            .get(host.url(&format!("/alpha/print?{query}")))
            .header("x-request-id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(printed.status(), 204);
        settle(&host, "alpha").await;
    }
    let logs = crate::support::logs();
    let unended: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("unended-5531"))
        .collect();
    assert_eq!(unended.len(), 1, "{unended:?}");
    assert!(
        unended[0].contains("partial-req-1") && !unended[0].contains("ended-5532"),
        "{unended:?}"
    );
    host.stop().await;
}

/// `hello`'s `/served` answer: how many requests its instance was handed.
async fn served(host: &TestHost, path: &str) -> String {
    let answer = host.get(path).await;
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    settle(host, "warm").await;
    text
}

/// An instance whose guest returned without setting its response is not
/// trusted with another request: its client got a 500, and the next
/// request gets a new instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_returned_without_answering_is_not_reused() {
    let services = "[services.warm]\ncomponent = \"hello.wasm\"\nroutes = [\"/warm/{*rest}\"]\ninstance_reuse = 100\n";
    let host = TestHost::start_with(services, "").await;
    assert_eq!(served(&host, "/warm/served").await, "served 1\n");
    assert_eq!(
        served(&host, "/warm/served").await,
        "served 2\n",
        "one instance serves both"
    );
    let unanswered = host.get("/warm/no-answer").await;
    assert_eq!(unanswered.status(), 500);
    settle(&host, "warm").await;
    assert_eq!(
        served(&host, "/warm/served").await,
        "served 1\n",
        "the instance that did not answer was dropped"
    );
    host.stop().await;
}

/// A guest that went over a memory limit, even one that carried on and
/// answered, is not reused: its service's cap (`memory_mib`), or the most
/// one memory may hold (`[runtime] max_memory_mib`, the pool slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_refused_memory_is_not_reused() {
    let services = "[services.alpha]\ncomponent = \"testbed.wasm\"\nroutes = [\"/alpha/{*rest}\"]\ninstance_reuse = 1000\n";
    let capped = format!("{services}[services.alpha.limits]\nmemory_mib = 32\n");
    for (services, runtime) in [(capped.as_str(), ""), (services, "\nmax_memory_mib = 32")] {
        let host = TestHost::start_edited(crate::support::temp_dir(), services, "", |text| {
            text.replace(
                "max_instances = 64",
                &format!("max_instances = 64{runtime}"),
            )
        })
        .await;
        assert_eq!(counter(&host, "alpha").await, 1);
        assert_eq!(counter(&host, "alpha").await, 2, "one instance serves both");
        // Allocates 4 MiB at a time until refused, then answers.
        let grown = host.get("/alpha/grow/4").await;
        assert_eq!(grown.status(), 200);
        let grown: Value = grown.json().await.unwrap();
        assert!(grown["memory_mib"].as_u64().unwrap() <= 32, "{grown}");
        settle(&host, "alpha").await;
        assert_eq!(
            counter(&host, "alpha").await,
            1,
            "the instance refused a growth was dropped ({services}{runtime})"
        );
        host.stop().await;
    }
}

/// A service redeployed with another spec gets a new context; the old
/// one's idle instances are dropped with it, and so are those of a
/// service removed: each holds a pool slot and its memory, and the
/// context it belongs to, for as long as it is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_spec_or_a_removal_drops_the_idle_instances_of_the_old_service() {
    let host = TestHost::start().await;
    let spec = |uses: u32| {
        serde_json::json!({ "routes": ["/live/{*rest}"], "instance_reuse": uses }).to_string()
    };
    let deploy = |uses: u32| {
        let spec = spec(uses);
        let host = &host;
        async move {
            let deployed = host
                .deploy_with("live", wasm_bytes("testbed"), &[("spec", &spec)])
                .await;
            assert_eq!(deployed.status(), 200, "{}", deployed.text().await.unwrap());
        }
    };
    let idle_context = || async {
        assert_eq!(counter(&host, "live").await, 1);
        let context = std::sync::Arc::clone(&host.running.registry.get("live").unwrap().context);
        assert_eq!(
            context.warm.as_ref().unwrap().idle(),
            1,
            "its instance is idle"
        );
        context
    };
    deploy(100).await;
    let first = idle_context().await;
    deploy(50).await;
    assert_eq!(
        first.warm.as_ref().unwrap().idle(),
        0,
        "the replaced service keeps no instance"
    );
    let second = idle_context().await;
    assert!(!std::sync::Arc::ptr_eq(&first, &second));
    let removed = host
        .http
        .delete(host.admin_url("/services/live"))
        .bearer_auth(crate::support::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 200);
    assert_eq!(
        second.warm.as_ref().unwrap().idle(),
        0,
        "a removed service keeps no instance"
    );
    // Nothing else holds the old contexts once their instances are gone.
    let (first, second) = {
        let weak = (
            std::sync::Arc::downgrade(&first),
            std::sync::Arc::downgrade(&second),
        );
        drop((first, second));
        weak
    };
    crate::support::eventually(
        std::time::Duration::from_secs(10),
        "the old contexts to be freed",
        || async { (first.upgrade().is_none() && second.upgrade().is_none()).then_some(()) },
    )
    .await;
    host.stop().await;
}

/// A deploy of the bytes already serving loads the version again, and
/// the instances made from the version loaded before are retired: an
/// instance works only with the compiled component it was made from (one
/// made for an event, whose HTTP handler it had never looked up, failed
/// its next request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_of_the_same_bytes_retires_the_instances_made_before() {
    let services = STANDARD_SERVICES.replace(
        "routes = [\"/beta/{*rest}\"]",
        "routes = [\"/beta/{*rest}\"]\ninstance_reuse = 1000",
    );
    let host = TestHost::start_with(&services, "").await;
    let beta = host.running.registry.get("beta").unwrap();
    let pool = beta.context.warm.as_ref().unwrap();
    let published = host
        .http
        .post(host.url("/alpha/publish/news"))
        .body("made for an event")
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 200);
    crate::support::eventually(
        std::time::Duration::from_secs(15),
        "the event's instance back in beta's pool",
        || async { (pool.idle() == 1).then_some(()) },
    )
    .await;
    let before = host.version_of("beta").await;
    let again = host.deploy("beta", wasm_bytes("testbed")).await;
    assert_eq!(again.status(), 200, "{}", again.text().await.unwrap());
    assert_eq!(host.version_of("beta").await, before);
    assert_eq!(
        pool.idle(),
        0,
        "the instance of the earlier load is retired"
    );
    let answer = host.get("/beta/memory-counter").await;
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    host.stop().await;
}

/// When every slot of the pool is taken, some by idle warm instances, a
/// new instance takes the slot of the idle one held longest by the
/// service keeping the most, instead of the request being refused as
/// busy for as long as those instances idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_gives_a_new_instance_the_slot_of_an_idle_one() {
    let services = "
[services.hog]
component = \"testbed.wasm\"
routes = [\"/hog/{*rest}\"]
instance_reuse = 100

[services.other]
component = \"testbed.wasm\"
routes = [\"/other/{*rest}\"]
instance_reuse = 100
";
    let host = TestHost::start_edited(crate::support::temp_dir(), services, "", |text| {
        text.replace("max_instances = 64", "max_instances = 4")
    })
    .await;
    // Four requests at once take the pool's four slots; their instances
    // then idle in hog's pool.
    let slow: Vec<_> = (0..4).map(|_| host.get("/hog/sleep/300")).collect();
    for answer in futures_util::future::join_all(slow).await {
        assert_eq!(answer.status(), 200);
    }
    settle(&host, "hog").await;
    let hog = host.running.registry.get("hog").unwrap();
    assert_eq!(hog.context.warm.as_ref().unwrap().idle(), 4);
    assert_eq!(
        counter(&host, "other").await,
        1,
        "other gets an instance while hog's idle ones hold every slot"
    );
    assert_eq!(
        hog.context.warm.as_ref().unwrap().idle(),
        3,
        "one of hog's gave up its slot"
    );
    // Operators see it (the recorder is the process's: no other test has a
    // service named hog).
    let metrics = host.admin_get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("bazaar_warm_evictions_total{service=\"hog\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("bazaar_warm_instances_idle{service=\"hog\"} 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("bazaar_pool_slots{pool=\"warm\",kind=\"instances\"}"),
        "{metrics}"
    );
    assert_eq!(host.get("/hog/memory-counter").await.status(), 200);
    settle(&host, "hog").await;
    // Every slot is taken again, by idle instances of both: a deploy's
    // trial instantiation takes one of theirs instead of failing.
    let deployed = host
        .deploy("other", with_custom_section(&wasm_bytes("testbed"), "next"))
        .await;
    assert_eq!(deployed.status(), 200, "{}", deployed.text().await.unwrap());
    assert_eq!(counter(&host, "other").await, 1, "the new version serves");
    host.stop().await;
}

/// A pool can run out of another kind of slot before its instances: a
/// componentize-py instance is 14 core instances, and the pool holds four
/// per instance slot. One idle Python instance then leaves too few for
/// another warm service's instance (the two share the warm engine's pool),
/// with three instance slots free; it gives its core instances up as it
/// would an instance slot, and the other way round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_instance_gives_up_core_instances_another_service_needs() {
    let Ok(path) = std::env::var("BAZAAR_PY_COMPONENT") else {
        eprintln!("skipped: BAZAAR_PY_COMPONENT is not set (scripts/test builds it)");
        return;
    };
    let services = format!(
        "
[services.py]
component = \"{path}\"
routes = [\"/py/{{*rest}}\"]
instance_reuse = 100

[services.other]
component = \"testbed.wasm\"
routes = [\"/other/{{*rest}}\"]
instance_reuse = 100
"
    );
    let host = TestHost::start_edited(crate::support::temp_dir(), &services, "", |text| {
        text.replace("max_instances = 64", "max_instances = 4")
    })
    .await;
    let answer = host.get("/py/hi").await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "hello from python /py/hi");
    settle(&host, "py").await;
    let py = host.running.registry.get("py").unwrap();
    let pool = py.context.warm.as_ref().unwrap();
    assert_eq!(pool.idle(), 1);
    let other = host.get("/other/memory-counter").await;
    assert_eq!(
        other.status(),
        200,
        "other gets an instance while py's idle one holds most core instances: {}",
        other.text().await.unwrap()
    );
    settle(&host, "other").await;
    assert_eq!(pool.idle(), 0, "py's idle instance gave its slots up");
    let other = host.running.registry.get("other").unwrap();
    assert_eq!(other.context.warm.as_ref().unwrap().idle(), 1);
    // Other's idle instance now leaves 13 core instances: py's new one
    // takes its.
    let again = host.get("/py/again").await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.text().await.unwrap(), "hello from python /py/again");
    assert_eq!(other.context.warm.as_ref().unwrap().idle(), 0);
    host.stop().await;
}

/// An instance idle for longer than `[runtime] warm_idle_timeout_s` is
/// dropped, its slot and memory freed; the next request makes a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_idle_past_the_timeout_is_dropped() {
    let services = "[services.alpha]\ncomponent = \"testbed.wasm\"\nroutes = [\"/alpha/{*rest}\"]\ninstance_reuse = 1000\n";
    let host = TestHost::start_edited(crate::support::temp_dir(), services, "", |text| {
        text.replace(
            "max_instances = 64",
            "max_instances = 64\nwarm_idle_timeout_s = 1",
        )
    })
    .await;
    assert_eq!(counter(&host, "alpha").await, 1);
    assert_eq!(counter(&host, "alpha").await, 2, "kept while in use");
    let alpha = host.running.registry.get("alpha").unwrap();
    let pool = alpha.context.warm.as_ref().unwrap();
    assert_eq!(pool.idle(), 1);
    crate::support::eventually(
        std::time::Duration::from_secs(10),
        "the idle instance to be dropped",
        || async { (pool.idle() == 0).then_some(()) },
    )
    .await;
    assert_eq!(counter(&host, "alpha").await, 1, "a new instance serves");
    host.stop().await;
}
