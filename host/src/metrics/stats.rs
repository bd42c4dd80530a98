//! A short window of recent requests per service, for the dashboard: the
//! request rate, the error rate and the 95th-percentile latency right now
//! (Prometheus' histograms hold totals since start).

use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How far back the window reaches.
const WINDOW: Duration = Duration::from_secs(60);
/// Most requests kept per service.
const KEPT: usize = 4096;

/// The recent requests of every service of one host.
#[derive(Default)]
pub struct Stats {
    services: Mutex<HashMap<Arc<str>, Arc<ServiceStats>>>,
}

/// One service's counters and window.
#[derive(Default)]
pub struct ServiceStats {
    total: AtomicU64,
    errors: AtomicU64,
    recent: Mutex<VecDeque<(Instant, Duration, bool)>>,
}

/// What the dashboard shows for one service.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceSnapshot {
    /// Requests since start.
    pub requests_total: u64,
    /// Of those, answered with a 5xx.
    pub errors_total: u64,
    /// Requests per second over the last 10 seconds.
    pub requests_per_second: f64,
    /// Share of 5xx answers in the window, 0 to 1.
    pub error_rate: f64,
    /// 95th-percentile latency in the window, in milliseconds.
    pub p95_ms: Option<f64>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Stats {
    /// The window of `service`, made on its first request. A service's
    /// metrics keep it (see [`crate::metrics::ServiceMetrics`]), so a
    /// request takes no host-wide lock.
    pub fn service(&self, service: &Arc<str>) -> Arc<ServiceStats> {
        let mut services = lock(&self.services);
        Arc::clone(services.entry(Arc::clone(service)).or_default())
    }

    /// Every service's figures now.
    pub fn snapshot(&self) -> BTreeMap<String, ServiceSnapshot> {
        let services: Vec<(Arc<str>, Arc<ServiceStats>)> = lock(&self.services)
            .iter()
            .map(|(k, v)| (Arc::clone(k), Arc::clone(v)))
            .collect();
        let now = Instant::now();
        services
            .into_iter()
            .map(|(name, stats)| (name.to_string(), stats.snapshot(now)))
            .collect()
    }
}

impl ServiceStats {
    /// Records a request answered with `status` in `elapsed`.
    pub fn record(&self, status: u16, elapsed: Duration) {
        let error = status >= 500;
        self.total.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let now = Instant::now();
        let mut recent = lock(&self.recent);
        recent.push_back((now, elapsed, error));
        while recent.len() > KEPT || recent.front().is_some_and(|(at, ..)| now - *at > WINDOW) {
            recent.pop_front();
        }
    }

    fn snapshot(&self, now: Instant) -> ServiceSnapshot {
        let recent = lock(&self.recent);
        let window: Vec<&(Instant, Duration, bool)> = recent
            .iter()
            .filter(|(at, ..)| now.duration_since(*at) <= WINDOW)
            .collect();
        let last_10s = window
            .iter()
            .filter(|(at, ..)| now.duration_since(*at) <= Duration::from_secs(10))
            .count();
        let errors = window.iter().filter(|(.., error)| *error).count();
        let mut latencies: Vec<Duration> = window.iter().map(|(_, took, _)| *took).collect();
        latencies.sort_unstable();
        let p95 = (!latencies.is_empty()).then(|| {
            let at = ((latencies.len() as f64) * 0.95).ceil() as usize;
            latencies[at.saturating_sub(1).min(latencies.len() - 1)].as_secs_f64() * 1000.0
        });
        ServiceSnapshot {
            requests_total: self.total.load(Ordering::Relaxed),
            errors_total: self.errors.load(Ordering::Relaxed),
            requests_per_second: last_10s as f64 / 10.0,
            error_rate: if window.is_empty() {
                0.0
            } else {
                errors as f64 / window.len() as f64
            },
            p95_ms: p95,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rates_and_the_95th_percentile() {
        let stats = Stats::default();
        let service: Arc<str> = "s".into();
        let window = stats.service(&service);
        for ms in 1..=100 {
            window.record(if ms <= 10 { 500 } else { 200 }, Duration::from_millis(ms));
        }
        let snapshot = &stats.snapshot()["s"];
        assert_eq!((snapshot.requests_total, snapshot.errors_total), (100, 10));
        assert!((snapshot.error_rate - 0.1).abs() < 1e-9);
        assert_eq!(snapshot.p95_ms, Some(95.0));
        assert!((snapshot.requests_per_second - 10.0).abs() < 1e-9);
    }
}
