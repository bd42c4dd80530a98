//! A fleet: `bazaar` processes sharing a real PostgreSQL and a real NATS
//! JetStream server, all on loopback. The retailer spread across hosts,
//! deploys reaching every host, `kill -9` of a host mid-stream, and
//! restarts of each server, with every acknowledged write and event
//! accounted for.

mod servers;

use crate::retailer::RETAILER;
use crate::support::{self, BinaryHost, STANDARD_SERVICES, components_dir, wasm_bytes};
use reqwest::Method;
use serde_json::{Value, json};
use servers::{Nats, Postgres};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
const GOOD_CARD: &str = "4242424242424242";

/// Two servers and a directory per host.
struct Fleet {
    pg: Postgres,
    nats: Nats,
    dir: PathBuf,
    services: String,
    http: reqwest::Client,
}

/// One `bazaar serve` process of the fleet.
struct Host {
    process: BinaryHost,
    /// The admin token it found in its data directory.
    token: String,
}

impl Host {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.process.url)
    }

    fn admin(&self, path: &str) -> String {
        format!("{}{path}", self.process.admin_url)
    }
}

impl Fleet {
    fn new(services: &str) -> Self {
        Self {
            pg: Postgres::start(),
            nats: Nats::start(),
            dir: support::temp_dir(),
            services: services.replace(
                "component = \"",
                &format!("component = \"{}/", components_dir().display()),
            ),
            http: reqwest::Client::new(),
        }
    }

    /// The gateway file of host `name`: the test services, no admin token
    /// and no signing key (the fleet makes and shares them), and the
    /// fleet's servers.
    fn config(&self, name: &str) -> PathBuf {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let text = support::gateway_toml(&dir.join("data"), &self.services, "")
            .replace(&format!("token = \"{}\"\n", support::TOKEN), "");
        let text = format!(
            "{text}\n[backend]\nkind = \"fleet\"\npostgres_url = \"{}\"\nnats_url = \"{}\"\nhost_name = \"{name}\"\nevent_ack_wait_ms = 2000\npoll_ms = 100\nconnect_timeout_ms = 3000\n",
            self.pg.url(),
            self.nats.url()
        );
        let path = dir.join("gateway.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Starts host `name` and waits until it serves.
    async fn start(&self, name: &str) -> Host {
        let config = self.config(name);
        let log = self.dir.join(format!("{name}.log"));
        let process = tokio::task::spawn_blocking(move || BinaryHost::spawn(&config, &log))
            .await
            .unwrap();
        let token = std::fs::read_to_string(self.dir.join(name).join("data/admin.token"))
            .unwrap()
            .trim()
            .to_owned();
        Host { process, token }
    }

    async fn call(
        &self,
        method: Method,
        url: String,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, url)
            .timeout(Duration::from_secs(20));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.json().await.unwrap_or(Value::Null))
            }
            Err(e) => (0, Value::String(e.to_string())),
        }
    }

    /// A GET answered with text.
    async fn text(&self, url: String) -> (u16, String) {
        match self
            .http
            .get(url)
            .timeout(Duration::from_secs(20))
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            }
            Err(e) => (0, e.to_string()),
        }
    }

    /// `sum` of a counter over every host's `/metrics`, for `labels`.
    async fn counter(&self, hosts: &[&Host], name: &str, labels: &str) -> u64 {
        let mut sum = 0;
        for host in hosts {
            let text = self
                .http
                .get(host.admin("/metrics"))
                .bearer_auth(&host.token)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            sum += text
                .lines()
                .filter(|l| l.starts_with(name) && l.contains(labels))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .map(|v| v as u64)
                .sum::<u64>();
        }
        sum
    }

    /// `GET /fleet` on `host`.
    async fn view(&self, host: &Host) -> Value {
        let (status, view) = self
            .call(Method::GET, host.admin("/fleet"), Some(&host.token), None)
            .await;
        assert_eq!(status, 200, "{view}");
        view
    }
}

fn converged(view: &Value, names: &[&str]) -> bool {
    names.iter().all(|name| {
        view["hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|h| h["host"] == *name && h["alive"] == true && h["converged"] == true)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn three_hosts_serve_one_retailer() {
    let fleet = Fleet::new(RETAILER);
    let a = fleet.start("a").await;
    let b = fleet.start("b").await;
    let c = fleet.start("c").await;
    assert_eq!(a.token, b.token, "one admin token for the fleet");
    assert_eq!(b.token, c.token, "one admin token for the fleet");

    // Registered through A, logged in through B.
    let (status, user) = fleet
        .call(
            Method::POST,
            a.url("/api/users"),
            None,
            Some(json!({ "username": "fleet", "email": "fleet@example.com", "password": "correct horse" })),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    let user_id = user["id"].as_str().unwrap().to_owned();
    let (status, login) = fleet
        .call(
            Method::POST,
            b.url("/api/users/login"),
            None,
            Some(json!({ "email": "fleet@example.com", "password": "correct horse" })),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let customer = login["token"].as_str().unwrap().to_owned();

    // A token signed through A's admin API opens B's and C's gateways.
    let (status, issued) = fleet
        .call(
            Method::POST,
            a.admin("/auth/tokens"),
            Some(&a.token),
            Some(json!({ "subject": "ops", "roles": ["admin"] })),
        )
        .await;
    assert_eq!(status, 200, "{issued}");
    let admin = issued["token"].as_str().unwrap().to_owned();
    let (status, product) = fleet
        .call(
            Method::POST,
            b.url("/api/products"),
            Some(&admin),
            Some(json!({ "name": "Mug", "price_cents": 1299, "currency": "USD" })),
        )
        .await;
    assert_eq!(status, 201, "{product}");
    let product_id = product["id"].as_str().unwrap().to_owned();
    let (status, stocked) = fleet
        .call(
            Method::PUT,
            c.url(&format!("/api/inventory/{product_id}")),
            Some(&admin),
            Some(json!({ "quantity": 5 })),
        )
        .await;
    assert_eq!(status, 200, "{stocked}");
    // Every host's gateway enforces the same policy.
    for host in [&a, &b, &c] {
        let (status, _) = fleet
            .call(
                Method::POST,
                host.url("/api/products"),
                Some(&customer),
                Some(json!({ "name": "Nope", "price_cents": 1, "currency": "USD" })),
            )
            .await;
        assert_eq!(status, 403, "a customer may not add products on any host");
    }

    // An order placed through C...
    let (status, placed) = fleet
        .call(
            Method::POST,
            c.url("/api/orders"),
            Some(&customer),
            Some(json!({ "user_id": user_id, "items": [{ "product_id": product_id, "quantity": 2 }], "card": GOOD_CARD })),
        )
        .await;
    assert_eq!(status, 201, "{placed}");
    let order_id = placed["id"].as_str().unwrap().to_owned();

    // ...makes exactly one confirmation, seen from every host.
    let path = format!("/api/notifications?user={user_id}");
    let confirmations = |list: &Value| -> usize {
        list["notifications"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["kind"] == "order-confirmation")
            .count()
    };
    support::eventually(WAIT, "the order confirmation", || async {
        let (_, list) = fleet
            .call(Method::GET, a.url(&path), Some(&customer), None)
            .await;
        (confirmations(&list) >= 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for host in [&a, &b, &c] {
        let (status, list) = fleet
            .call(Method::GET, host.url(&path), Some(&customer), None)
            .await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(confirmations(&list), 1, "{list}");
        assert!(list.to_string().contains(&order_id));
    }
    let delivered = fleet
        .counter(
            &[&a, &b, &c],
            "bazaar_events_delivered_total",
            "subscriber=\"notifications\",topic=\"order-placed\"",
        )
        .await;
    assert_eq!(
        delivered, 1,
        "one host of the fleet handled the event, once"
    );

    // Stock went down once, whichever host is asked.
    for host in [&a, &b, &c] {
        let (_, stock) = fleet
            .call(
                Method::GET,
                host.url(&format!("/api/inventory/{product_id}")),
                None,
                None,
            )
            .await;
        assert_eq!(stock["available"], 3, "{stock}");
    }

    // Every host knows every host, all converged.
    let view = fleet.view(&b).await;
    assert!(converged(&view, &["a", "b", "c"]), "{view}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_on_one_host_reaches_every_host() {
    let fleet = Fleet::new(STANDARD_SERVICES);
    let a = fleet.start("a").await;
    let b = fleet.start("b").await;
    let original = support::hash(&wasm_bytes("testbed"));
    let version_on = |host: &Host| {
        let url = host.url("/alpha/echo");
        let http = fleet.http.clone();
        async move {
            http.post(url)
                .body("x")
                .send()
                .await
                .ok()
                .map(|r| support::version_header(&r))
        }
    };
    assert_eq!(version_on(&b).await.as_deref(), Some(original.as_str()));

    // Deploy through A; B serves it without a restart.
    let next = support::with_custom_section(&wasm_bytes("testbed"), "fleet-v2");
    let next_hash = support::hash(&next);
    let deployed = fleet
        .http
        .put(a.admin("/services/alpha"))
        .bearer_auth(&a.token)
        .body(next)
        .send()
        .await
        .unwrap();
    assert_eq!(deployed.status(), 200, "{}", deployed.text().await.unwrap());
    let started = Instant::now();
    support::eventually(WAIT, "B to serve the new version", || async {
        (version_on(&b).await.as_deref() == Some(next_hash.as_str())).then_some(())
    })
    .await;
    let took = started.elapsed();
    eprintln!("deploy on A served from B after {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "B took {took:?} to converge"
    );

    // `bazaar services` on B shows the same versions, and who converged.
    let cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_bazaar"))
        .args(["services", "--admin-url", &b.process.admin_url, "--config"])
        .arg(fleet.dir.join("b/gateway.toml"))
        .output()
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(printed.contains(&next_hash[..12]), "{printed}");
    assert!(printed.contains("FLEET"), "{printed}");
    support::eventually(WAIT, "both hosts to report", || async {
        converged(&fleet.view(&a).await, &["a", "b"]).then_some(())
    })
    .await;

    // Roll back through B; A follows.
    let (status, rolled) = fleet
        .call(
            Method::POST,
            b.admin("/services/alpha/rollback"),
            Some(&b.token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{rolled}");
    support::eventually(WAIT, "A to roll back", || async {
        (version_on(&a).await.as_deref() == Some(original.as_str())).then_some(())
    })
    .await;

    // A service added live through A serves from B; removed, it is gone there.
    let spec = json!({ "routes": ["/gamma/{*rest}"] }).to_string();
    let added = fleet
        .http
        .put(a.admin("/services/gamma"))
        .query(&[("spec", spec.as_str())])
        .bearer_auth(&a.token)
        .body(wasm_bytes("testbed"))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200, "{}", added.text().await.unwrap());
    support::eventually(WAIT, "gamma on B", || async {
        let (status, _) = fleet
            .call(Method::GET, b.url("/gamma/config"), None, None)
            .await;
        (status == 200).then_some(())
    })
    .await;

    // A host that joins later starts with the fleet's versions.
    let redeploy = support::with_custom_section(&wasm_bytes("testbed"), "fleet-v3");
    let v3 = support::hash(&redeploy);
    let deployed = fleet
        .http
        .put(b.admin("/services/alpha"))
        .bearer_auth(&b.token)
        .body(redeploy)
        .send()
        .await
        .unwrap();
    assert_eq!(deployed.status(), 200);
    let late = fleet.start("late").await;
    assert_eq!(version_on(&late).await.as_deref(), Some(v3.as_str()));
    let (status, _) = fleet
        .call(Method::GET, late.url("/gamma/config"), None, None)
        .await;
    assert_eq!(status, 200, "the late host serves the live-added service");

    let removed = fleet
        .http
        .delete(a.admin("/services/gamma"))
        .bearer_auth(&a.token)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 200);
    for host in [&b, &late] {
        support::eventually(WAIT, "gamma to be gone", || async {
            let (status, _) = fleet
                .call(Method::GET, host.url("/gamma/config"), None, None)
                .await;
            (status == 404).then_some(())
        })
        .await;
    }
    support::eventually(WAIT, "three converged hosts", || async {
        converged(&fleet.view(&late).await, &["a", "b", "late"]).then_some(())
    })
    .await;
}

/// Publishes `count` events through `hosts` in turn; returns the ids of
/// those the hosts acknowledged.
async fn publish(fleet: &Fleet, hosts: &[&Host], count: usize, payload: &str) -> Vec<String> {
    let urls = hosts.iter().map(|h| h.url("")).collect();
    publish_to(fleet.http.clone(), urls, count, payload.to_owned()).await
}

/// [`publish`], owning what it needs, to run as a task.
async fn publish_to(
    http: reqwest::Client,
    urls: Vec<String>,
    count: usize,
    payload: String,
) -> Vec<String> {
    let mut acked = Vec::new();
    for i in 0..count {
        let response = http
            .post(format!("{}/alpha/publish/news", urls[i % urls.len()]))
            .body(payload.clone())
            .timeout(Duration::from_secs(20))
            .send()
            .await;
        match response {
            Ok(response) if response.status() == 200 => {
                let body: Value = response.json().await.unwrap();
                acked.push(body["id"].as_str().unwrap().to_owned());
            }
            // Said, so that a refusal in a failed run can be told apart.
            Ok(response) => eprintln!(
                "publish refused: {} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            ),
            Err(e) => eprintln!("publish failed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    acked
}

/// Ids of the events beta recorded (each once), read through `host`.
async fn recorded(fleet: &Fleet, host: &Host) -> BTreeSet<String> {
    let (status, body) = fleet
        .call(Method::GET, host.url("/beta/events"), None, None)
        .await;
    if status != 200 {
        return BTreeSet::new();
    }
    body.as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_a_host_mid_stream_loses_no_event() {
    let fleet = Fleet::new(STANDARD_SERVICES);
    let a = fleet.start("a").await;
    let b = fleet.start("b").await;
    let c = fleet.start("c").await;

    // Slow handlers, so hosts are mid-event when A dies.
    let mut acked = publish(&fleet, &[&a, &b, &c], 30, "sleep:100").await;
    assert_eq!(acked.len(), 30, "every publish was acknowledged");
    support::eventually(WAIT, "deliveries to be under way", || async {
        (!recorded(&fleet, &b).await.is_empty()).then_some(())
    })
    .await;
    a.process.kill();
    acked.extend(publish(&fleet, &[&b, &c], 10, "after").await);
    assert_eq!(acked.len(), 40);

    let wanted: BTreeSet<String> = acked.into_iter().collect();
    let got = support::eventually(Duration::from_secs(60), "every event recorded", || async {
        let got = recorded(&fleet, &c).await;
        wanted.is_subset(&got).then_some(got)
    })
    .await;
    assert_eq!(got, wanted, "nothing lost, nothing invented");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_restarts_lose_no_acknowledged_write_or_event() {
    let mut fleet = Fleet::new(STANDARD_SERVICES);
    let a = fleet.start("a").await;
    let b = fleet.start("b").await;
    let hosts = [&a, &b];

    let mut written: BTreeMap<String, String> = BTreeMap::new();
    let mut events = Vec::new();
    let mut failed_writes = 0;
    for round in 0..3 {
        // A round of writes and publishes, a restart in the middle of it.
        let writer = {
            let http = fleet.http.clone();
            let urls: Vec<String> = hosts.iter().map(|h| h.url("")).collect();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut failed = 0;
                let deadline = Instant::now() + Duration::from_secs(20);
                for i in 0..150 {
                    if Instant::now() > deadline {
                        break;
                    }
                    let key = format!("r{round}-k{i}");
                    let value = format!("v{i}-{}", uuid_like(i));
                    let url = format!("{}/alpha/kv/restart/{key}", urls[i % urls.len()]);
                    match http
                        .put(url)
                        .body(value.clone())
                        .timeout(Duration::from_secs(15))
                        .send()
                        .await
                    {
                        Ok(r) if r.status().is_success() => acked.push((key, value)),
                        _ => failed += 1,
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (acked, failed)
            })
        };
        let urls = hosts.iter().map(|h| h.url("")).collect();
        let publisher = tokio::spawn(publish_to(
            fleet.http.clone(),
            urls,
            20,
            "restart".to_owned(),
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let down = Duration::from_millis(700);
        tokio::task::block_in_place(|| match round {
            0 => fleet.pg.restart(down),
            1 => fleet.nats.restart(down),
            _ => {}
        });
        events.extend(publisher.await.unwrap());
        let (acked, failed) = writer.await.unwrap();
        failed_writes += failed;
        written.extend(acked);
    }
    eprintln!(
        "{} writes acknowledged, {failed_writes} refused during restarts; {} events acknowledged",
        written.len(),
        events.len()
    );
    // Writes and publishes during a restart wait for the server and
    // succeed. The one exception is a transaction whose COMMIT the
    // restart cut off: it may have landed, so it is reported to the
    // client, not retried (a retry could apply it twice). That takes a
    // COMMIT in flight at the instant of the shutdown; without the
    // waiting, dozens fail.
    let refused = failed_writes + (60 - events.len());
    assert!(
        refused <= 2,
        "writes and publishes during a restart wait for the server instead of failing: {failed_writes} writes and {} publishes refused",
        60 - events.len()
    );

    // Every acknowledged write is there, through either host.
    for (i, (key, value)) in written.iter().enumerate() {
        let host = hosts[i % 2];
        let (status, body) = fleet
            .text(host.url(&format!("/alpha/kv/restart/{key}")))
            .await;
        assert_eq!((status, body.as_str()), (200, value.as_str()), "{key}");
    }
    // Every acknowledged event is handled.
    let wanted: BTreeSet<String> = events.into_iter().collect();
    support::eventually(Duration::from_secs(60), "every event recorded", || async {
        wanted.is_subset(&recorded(&fleet, &a).await).then_some(())
    })
    .await;
}

/// A value that differs per write.
fn uuid_like(i: usize) -> String {
    format!("{:x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_are_shared_and_replayed_by_the_fleet() {
    let fleet = Fleet::new(STANDARD_SERVICES);
    let a = fleet.start("a").await;
    let b = fleet.start("b").await;
    // beta fails every delivery until told otherwise.
    let told = fleet
        .http
        .put(a.url("/beta/kv/control/fail"))
        .body("1")
        .send()
        .await
        .unwrap();
    assert!(told.status().is_success());
    let ids = publish(&fleet, &[&a], 1, "doomed").await;
    assert_eq!(ids.len(), 1);

    // After its last attempt, on whichever host, it is a dead letter
    // that every host lists.
    for host in [&a, &b] {
        let letters = support::eventually(WAIT, "the dead letter", || async {
            let (status, list) = fleet
                .call(
                    Method::GET,
                    host.admin("/events/dead-letters"),
                    Some(&host.token),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{list}");
            let list = list.as_array()?.clone();
            (!list.is_empty()).then_some(list)
        })
        .await;
        assert_eq!(letters.len(), 1, "{letters:?}");
        assert_eq!(letters[0]["event"]["id"], ids[0].as_str());
        assert_eq!(letters[0]["attempts"], 4, "max_attempts of the test config");
    }
    let (_, stats) = fleet
        .call(Method::GET, b.admin("/events"), Some(&b.token), None)
        .await;
    let beta = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["subscriber"] == "beta")
        .cloned()
        .unwrap();
    assert_eq!(
        (beta["dead_letters"].as_u64(), beta["backlog"].as_u64()),
        (Some(1), Some(0)),
        "{beta}"
    );

    // Fixed, and replayed through B: handled once, and the list is empty.
    fleet
        .http
        .delete(a.url("/beta/kv/control/fail"))
        .send()
        .await
        .unwrap();
    let (status, replayed) = fleet
        .call(
            Method::POST,
            b.admin("/events/dead-letters/replay"),
            Some(&b.token),
            Some(json!({ "subscriber": "beta" })),
        )
        .await;
    assert_eq!(
        (status, replayed["replayed"].as_u64()),
        (200, Some(1)),
        "{replayed}"
    );
    support::eventually(WAIT, "the replayed event", || async {
        recorded(&fleet, &a).await.contains(&ids[0]).then_some(())
    })
    .await;
    let (_, left) = fleet
        .call(
            Method::GET,
            a.admin("/events/dead-letters"),
            Some(&a.token),
            None,
        )
        .await;
    assert_eq!(left.as_array().map(Vec::len), Some(0), "{left}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_backend_stops_start_up_with_a_clear_error() {
    let dir = support::temp_dir();
    let closed = servers::free_port();
    let nats = Nats::start();
    let pg = Postgres::start();
    for (label, pg_url, nats_url, expected) in [
        (
            "postgres",
            format!("postgres://bazaar@127.0.0.1:{closed}/postgres"),
            nats.url(),
            "cannot reach PostgreSQL at",
        ),
        (
            "nats",
            pg.url(),
            format!("nats://127.0.0.1:{closed}"),
            "cannot reach NATS at",
        ),
    ] {
        let config = dir.join(format!("{label}.toml"));
        let text = support::gateway_toml(&dir.join(label), "", "");
        std::fs::write(
            &config,
            format!("{text}\n[backend]\nkind = \"fleet\"\npostgres_url = \"{pg_url}\"\nnats_url = \"{nats_url}\"\nconnect_timeout_ms = 1000\n"),
        )
        .unwrap();
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_bazaar"))
            .args(["serve", "--config"])
            .arg(&config)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{label}: {stderr}");
        assert!(stderr.contains(expected), "{label}: {stderr}");
        assert!(stderr.contains(&closed.to_string()), "{label}: {stderr}");
    }
}
