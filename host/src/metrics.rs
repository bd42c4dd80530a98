//! Prometheus metrics, through the `metrics` facade and
//! `metrics-exporter-prometheus`, served at `GET /metrics` on the admin
//! listener.
//!
//! Labels stay bounded: `service`, `topic`, `status` class, `reason`, `op`,
//! `outcome` and the gateway's `thread` take few values. The version a
//! service serves is one gauge, `bazaar_service_version_info`, set to 1 for
//! the current version and removed for the version it replaced, so hashes
//! never pile up.
//!
//! Alongside, [`Stats`] keeps a small window of recent requests per service
//! for the dashboard's live request rate, error rate and p95.

mod stats;

pub use stats::{ServiceStats, Stats};

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Latency buckets, in seconds: 250 µs to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0,
];

/// How often histogram samples are folded into their buckets when nothing
/// scrapes `/metrics` in between.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// The process's recorder; installed once, on first use, with a thread that
/// keeps its histograms from growing (see [`UPKEEP_EVERY`]).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .map(PrometheusBuilder::build_recorder);
        match recorder {
            Ok(recorder) => {
                let handle = recorder.handle();
                // Another recorder set first (in tests) only means this one
                // renders what it sees; nothing else depends on it.
                if metrics::set_global_recorder(recorder).is_ok() {
                    keep_up(handle.clone());
                }
                handle
            }
            Err(e) => {
                tracing::error!("cannot set up metrics: {e}");
                PrometheusBuilder::new().build_recorder().handle()
            }
        }
    })
}

/// Folds the recorder's histogram samples into buckets every
/// [`UPKEEP_EVERY`]. The recorder keeps each sample until then (a scrape
/// does it too): without this, a host nobody scrapes grows by about 16
/// bytes a sample (its value and its share of a block), three samples a
/// request, for as long as it runs.
fn keep_up(handle: PrometheusHandle) {
    let started = std::thread::Builder::new()
        .name("bazaar-metrics".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(e) = started {
        tracing::error!("cannot start the metrics upkeep thread: {e}");
    }
}

/// The text exposition, with the process's resident memory refreshed.
pub fn render() -> String {
    if let Some(bytes) = resident_memory() {
        gauge!("bazaar_resident_memory_bytes").set(bytes as f64);
    }
    handle().render()
}

fn resident_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Sets the gauges of `engine`'s instance pool, named `pool`, whose slots
/// are `slots`: `bazaar_pool_slots_in_use` and `bazaar_pool_slots` by
/// `kind`. A pool short of any kind of slot refuses new instances until an
/// idle warm one gives its slots up (`bazaar_warm_evictions_total`).
pub fn instance_pool(
    pool: &'static str,
    slots: crate::engine::PoolSlots,
    engine: &wasmtime::Engine,
) {
    let Some(used) = engine.pooling_allocator_metrics() else {
        return;
    };
    let kinds: [(&'static str, u64, u32); 5] = [
        ("instances", used.component_instances(), slots.instances),
        (
            "core_instances",
            used.core_instances(),
            slots.core_instances,
        ),
        ("memories", used.memories() as u64, slots.memories),
        ("tables", used.tables() as u64, slots.tables),
        ("stacks", used.stacks() as u64, slots.stacks),
    ];
    for (kind, in_use, all) in kinds {
        gauge!("bazaar_pool_slots_in_use", "pool" => pool, "kind" => kind).set(in_use as f64);
        gauge!("bazaar_pool_slots", "pool" => pool, "kind" => kind).set(f64::from(all));
    }
}

/// Sets `bazaar_warm_instances_idle` for `service`.
pub fn warm_idle(service: &Arc<str>, idle: usize) {
    gauge!("bazaar_warm_instances_idle", "service" => Arc::clone(service)).set(idle as f64);
}

/// An idle warm instance of `service` was dropped to free its pool slots
/// for another instance.
pub fn warm_evicted(service: &Arc<str>) {
    counter!("bazaar_warm_evictions_total", "service" => Arc::clone(service)).increment(1);
}

/// One service's per-request metrics. Each handle is looked up on its
/// first use and kept: a lookup hashes every label, and a request records
/// five. (Taken on first use, not up front, so a service shows only the
/// series it has, and a context built for a trial run shows none.)
pub struct ServiceMetrics {
    name: Arc<str>,
    /// `bazaar_requests_total` by status class, 1xx to 5xx.
    requests: [OnceLock<Counter>; 5],
    duration: OnceLock<Histogram>,
    in_flight: OnceLock<Gauge>,
    instantiation: OnceLock<Histogram>,
    cpu: OnceLock<Histogram>,
    /// Its window of recent requests in the host's [`Stats`].
    recent: OnceLock<Arc<ServiceStats>>,
}

impl ServiceMetrics {
    /// The metrics of `service`.
    pub fn new(service: &Arc<str>) -> Self {
        Self {
            name: Arc::clone(service),
            requests: Default::default(),
            duration: OnceLock::new(),
            in_flight: OnceLock::new(),
            instantiation: OnceLock::new(),
            cpu: OnceLock::new(),
            recent: OnceLock::new(),
        }
    }

    /// A request of this service answered with `status` after `elapsed`,
    /// counted here and in the dashboard's window in `stats` (the host's).
    pub fn request_served(&self, status: u16, elapsed: Duration, stats: &Stats) {
        self.recent
            .get_or_init(|| stats.service(&self.name))
            .record(status, elapsed);
        let class = status_class(status);
        self.requests[class]
            .get_or_init(|| {
                handle();
                counter!("bazaar_requests_total", "service" => Arc::clone(&self.name), "status" => STATUS_CLASSES[class])
            })
            .increment(1);
        self.histogram(&self.duration, "bazaar_request_duration_seconds")
            .record(elapsed.as_secs_f64());
    }

    /// The CPU time one request took.
    pub fn cpu_time(&self, spent: Duration) {
        self.histogram(&self.cpu, "bazaar_cpu_seconds")
            .record(spent.as_secs_f64());
    }

    /// An instance of the service made in `took`.
    pub fn instantiated(&self, took: Duration) {
        self.histogram(&self.instantiation, "bazaar_instantiation_seconds")
            .record(took.as_secs_f64());
    }

    fn histogram<'a>(&self, cell: &'a OnceLock<Histogram>, name: &'static str) -> &'a Histogram {
        cell.get_or_init(|| {
            // A handle taken before the recorder is installed goes nowhere.
            handle();
            histogram!(name, "service" => Arc::clone(&self.name))
        })
    }

    fn in_flight(&self) -> &Gauge {
        self.in_flight.get_or_init(|| {
            handle();
            gauge!("bazaar_instances_in_flight", "service" => Arc::clone(&self.name))
        })
    }
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn status_class(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// A request no service took (no route, or refused before routing).
pub fn unrouted_request(status: u16, elapsed: Duration) {
    let class = STATUS_CLASSES[status_class(status)];
    counter!("bazaar_requests_total", "service" => "-", "status" => class).increment(1);
    histogram!("bazaar_request_duration_seconds", "service" => "-").record(elapsed.as_secs_f64());
}

/// A request the gateway refused itself, by `reason`.
pub fn rejected(reason: &'static str) {
    counter!("bazaar_rejected_requests_total", "reason" => reason).increment(1);
}

/// Counts an instance of a service running while it lives.
pub struct InFlight(Gauge);

impl InFlight {
    /// One more instance of the service of `metrics` running.
    pub fn start(metrics: &ServiceMetrics) -> Self {
        let gauge = metrics.in_flight();
        gauge.increment(1.0);
        Self(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// A deploy of `service` that succeeded or failed.
pub fn deploy(service: &str, ok: bool) {
    let outcome = if ok { "ok" } else { "failed" };
    counter!("bazaar_deploys_total", "service" => service.to_owned(), "outcome" => outcome)
        .increment(1);
}

/// A rollback of `service`.
pub fn rollback(service: &str) {
    counter!("bazaar_rollbacks_total", "service" => service.to_owned()).increment(1);
}

/// `service` now serves `version`, in place of `previous`.
pub fn version_changed(service: &str, version: &str, previous: Option<&str>) {
    if let Some(previous) = previous.filter(|p| *p != version) {
        gauge!("bazaar_service_version_info", "service" => service.to_owned(), "version" => crate::loader::short(previous).to_owned()).set(0.0);
    }
    gauge!("bazaar_service_version_info", "service" => service.to_owned(), "version" => crate::loader::short(version).to_owned()).set(1.0);
}

/// A key-value operation of `service`.
pub fn kv_operation(service: &Arc<str>, op: &'static str, elapsed: Duration) {
    counter!("bazaar_kv_operations_total", "service" => Arc::clone(service), "op" => op)
        .increment(1);
    histogram!("bazaar_kv_duration_seconds", "service" => Arc::clone(service), "op" => op)
        .record(elapsed.as_secs_f64());
}

/// Events `service` published to `topic`.
pub fn published(service: &Arc<str>, topic: &str, count: u64) {
    counter!("bazaar_events_published_total", "service" => Arc::clone(service), "topic" => topic.to_owned())
        .increment(count);
}

/// A delivery to `subscriber` of `topic` that ended with `outcome`.
pub fn delivery(subscriber: &str, topic: &str, outcome: Delivery) {
    let name = match outcome {
        Delivery::Delivered => "bazaar_events_delivered_total",
        Delivery::Retried => "bazaar_events_retried_total",
        Delivery::DeadLettered => "bazaar_events_dead_lettered_total",
    };
    counter!(name, "subscriber" => subscriber.to_owned(), "topic" => topic.to_owned()).increment(1);
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, Copy)]
pub enum Delivery {
    /// The subscriber handled it.
    Delivered,
    /// It failed and will be tried again.
    Retried,
    /// It failed for the last time.
    DeadLettered,
}

/// The backlog of `subscriber` on `topic`.
pub fn backlog(subscriber: &str, topic: &str, events: u64) {
    gauge!("bazaar_event_backlog", "subscriber" => subscriber.to_owned(), "topic" => topic.to_owned())
        .set(events as f64);
}

/// Counts an open client connection while it lives.
pub struct OpenConnection;

impl OpenConnection {
    /// One more open connection.
    pub fn open() -> Self {
        gauge!("bazaar_open_connections").increment(1.0);
        Self
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        gauge!("bazaar_open_connections").decrement(1.0);
    }
}

/// `bazaar_gateway_thread_connections{thread}`: the connections one of the
/// gateway's threads serves (`[gateway] threads`), to see how they spread.
pub fn gateway_thread_connections(thread: usize) -> metrics::Gauge {
    gauge!("bazaar_gateway_thread_connections", "thread" => thread.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RuntimeSection;
    use crate::engine::{Instancing, PoolSlots, build_engine};

    /// The value of the one sample of `name` with these labels.
    fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
        let prefix = format!("{name}{{{labels}}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|value| value.parse().ok())
    }

    #[test]
    fn the_pool_gauges_show_the_slots_in_use_and_in_all() {
        let runtime = RuntimeSection {
            max_instances: 3,
            ..RuntimeSection::default()
        };
        let engine = build_engine(&runtime, Instancing::Fresh).expect("engine");
        // The smallest component: no core instances, memories or tables.
        let component = wasmtime::component::Component::new(&engine, b"\0asm\x0d\x00\x01\x00")
            .expect("an empty component");
        let linker = wasmtime::component::Linker::<()>::new(&engine);
        let mut store = wasmtime::Store::new(&engine, ());
        let _instance = linker
            .instantiate(&mut store, &component)
            .expect("instantiated");
        // Only this test sets the fresh pool's gauges in this process; the
        // recorder is installed first, as a host does at start-up.
        let handle = handle();
        instance_pool("fresh", PoolSlots::of(&runtime), &engine);
        let text = handle.render();
        let gauge = |name, kind| {
            sample(&text, name, &format!("pool=\"fresh\",kind=\"{kind}\""))
                .unwrap_or_else(|| panic!("{name} {kind} in:\n{text}"))
        };
        assert_eq!(gauge("bazaar_pool_slots_in_use", "instances"), 1.0);
        assert_eq!(gauge("bazaar_pool_slots_in_use", "core_instances"), 0.0);
        assert_eq!(gauge("bazaar_pool_slots", "instances"), 3.0);
        assert_eq!(gauge("bazaar_pool_slots", "core_instances"), 12.0);
        assert_eq!(gauge("bazaar_pool_slots", "memories"), 6.0);
        assert_eq!(gauge("bazaar_pool_slots", "tables"), 12.0);
        assert_eq!(gauge("bazaar_pool_slots", "stacks"), 3.0);
    }
}
