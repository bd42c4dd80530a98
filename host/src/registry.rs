//! The services a host runs, their routes, and the version each is serving.
//!
//! Two levels of hot state, each behind its own `ArcSwap`:
//! - the set of services and the route table, one [`RegistrySnapshot`],
//!   replaced whole when a service is added or removed;
//! - each service's current version, inside its [`ServiceSlot`], swapped on
//!   deploy and rollback without touching the snapshot.
//!
//! A request `load()`s each once and keeps its `Arc`s to the end, so a swap
//! never waits for, or disturbs, a request in flight.

use crate::capability::outbound::OutboundRule;
use crate::config::{ServiceLimits, ServiceSpec};
use crate::kvstore::ServiceStore;
use crate::loader::LoadedService;
use crate::router::{RouteError, RouteTable};
use arc_swap::{ArcSwap, ArcSwapOption};
use http::HeaderValue;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// The limits a service runs under: its own `[limits]`, else the host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests and event deliveries at once.
    pub max_concurrency: u32,
    /// All memories of one instance together, in bytes.
    pub memory_bytes: usize,
    /// CPU time per request.
    pub cpu_time: Duration,
    /// Wall-clock time per request.
    pub timeout: Duration,
}

impl Limits {
    /// `own` where set, else these.
    pub fn with(&self, own: &ServiceLimits) -> Self {
        Self {
            max_concurrency: own.max_concurrency.unwrap_or(self.max_concurrency),
            memory_bytes: own.memory_mib.map_or(self.memory_bytes, |m| m << 20),
            cpu_time: own.cpu_time_ms.map_or(self.cpu_time, Duration::from_millis),
            timeout: own.timeout_ms.map_or(self.timeout, Duration::from_millis),
        }
    }
}

/// What every service context shares with the host.
#[derive(Clone)]
pub struct ServiceEnv {
    /// Rung by stores whose outbox grew.
    pub outbox_bell: Arc<Notify>,
    /// The host's default limits.
    pub defaults: Limits,
    /// Signs tokens for services granted `issues_tokens`.
    pub tokens: Arc<crate::auth::TokenAuthority>,
}

/// What one service is granted, shared by all its versions and requests.
pub struct ServiceContext {
    /// The service's name.
    pub name: Arc<str>,
    /// The name as a response header value, built once.
    pub name_header: HeaderValue,
    /// Routes, grants and config.
    pub spec: ServiceSpec,
    /// Its durable store.
    pub store: Arc<ServiceStore>,
    /// Its `wasi:config` values.
    pub config: BTreeMap<String, String>,
    /// Outside hosts it may call.
    pub outbound: Arc<[OutboundRule]>,
    /// Rings the event relay after the store's outbox grew.
    pub outbox_ready: Arc<Notify>,
    /// The limits it runs under.
    pub limits: Limits,
    /// Permits for requests and deliveries running at once.
    pub concurrency: Arc<Semaphore>,
    /// Its routes' access, rate limits, timeouts and CORS.
    pub policy: crate::policy::RoutePolicy,
    /// Signs its tokens, when it is granted `issues_tokens`.
    pub tokens: Option<Arc<crate::auth::TokenAuthority>>,
    /// Its idle warm instances, when it opted in with `instance_reuse`.
    pub warm: Option<crate::runtime::WarmPool>,
    /// Its per-request metrics.
    pub metrics: crate::metrics::ServiceMetrics,
}

impl ServiceContext {
    /// The context of `name` with `spec`, over its opened `store`.
    pub fn new(
        name: &str,
        spec: ServiceSpec,
        store: Arc<ServiceStore>,
        env: &ServiceEnv,
    ) -> anyhow::Result<Self> {
        let outbound = spec
            .allowed_outbound_hosts
            .iter()
            .map(|entry| OutboundRule::parse(entry))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("service `{name}`: allowed_outbound_hosts: {e}"))?;
        let limits = env.defaults.with(&spec.limits);
        let policy = crate::policy::RoutePolicy::compile(&spec)
            .map_err(|e| anyhow::anyhow!("service `{name}`: {e}"))?;
        let warm = spec
            .instance_reuse
            .map(|uses| crate::runtime::WarmPool::new(uses, limits.max_concurrency as usize));
        let name: Arc<str> = name.into();
        Ok(Self {
            metrics: crate::metrics::ServiceMetrics::new(&name),
            name_header: HeaderValue::from_str(&name)?,
            config: spec.config_strings(),
            tokens: spec.issues_tokens.then(|| Arc::clone(&env.tokens)),
            spec,
            store,
            outbound: outbound.into(),
            outbox_ready: Arc::clone(&env.outbox_bell),
            concurrency: Arc::new(Semaphore::new(limits.max_concurrency as usize)),
            warm,
            limits,
            policy,
            name,
        })
    }

    /// Whether it may call `service`.
    pub fn may_call(&self, service: &str) -> bool {
        self.spec.calls.iter().any(|c| c == service)
    }

    /// Whether it may publish to `topic`.
    pub fn may_publish(&self, topic: &str) -> bool {
        self.spec.publishes.iter().any(|t| t == topic)
    }
}

/// One service: its context and its swappable current version.
pub struct ServiceSlot {
    /// What it is granted.
    pub context: Arc<ServiceContext>,
    current: ArcSwapOption<LoadedService>,
    /// Why it has no version, or why its last deploy from a file failed.
    error: Mutex<Option<String>>,
    /// Woken whenever the current version changes.
    changed: Notify,
    /// Its first version is still being loaded at start-up.
    starting: std::sync::atomic::AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded value is replaced whole, so a panic elsewhere cannot
    // leave it half-written.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ServiceSlot {
    /// A slot serving `version`, if any.
    pub fn new(context: Arc<ServiceContext>, version: Option<Arc<LoadedService>>) -> Self {
        if let (Some(warm), Some(version)) = (&context.warm, &version) {
            warm.retire_all_but(&version.version);
        }
        Self {
            context,
            current: ArcSwapOption::new(version),
            error: Mutex::new(None),
            changed: Notify::new(),
            starting: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether its first version is still loading at start-up.
    pub fn is_starting(&self) -> bool {
        self.starting.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Marks it as loading at start-up, or done.
    pub fn set_starting(&self, starting: bool) {
        self.starting
            .store(starting, std::sync::atomic::Ordering::Release);
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.context.name
    }

    /// The version serving new requests, if any.
    pub fn current(&self) -> Option<Arc<LoadedService>> {
        self.current.load_full()
    }

    /// Makes `next` current in one atomic step and clears any error.
    pub fn swap(&self, next: Arc<LoadedService>) {
        // The old version's warm instances retire now; those busy with a
        // request are dropped when it ends.
        if let Some(warm) = &self.context.warm {
            warm.retire_all_but(&next.version);
        }
        let previous = self.current.swap(Some(next));
        *lock(&self.error) = None;
        self.changed.notify_waiters();
        // Freeing a version unmaps its code and resets the pool slots that
        // hold its memory image: milliseconds for a large component, and
        // none of them needed before the deploy answers.
        if let (Some(previous), Ok(runtime)) = (previous, tokio::runtime::Handle::try_current()) {
            runtime.spawn_blocking(move || drop(previous));
        }
    }

    /// Records why the service has no version, or why a deploy from its
    /// file failed while an older version keeps serving.
    pub fn set_error(&self, error: Option<String>) {
        *lock(&self.error) = error;
    }

    /// The recorded error.
    pub fn error(&self) -> Option<String> {
        lock(&self.error).clone()
    }

    /// Resolves at the next version change; create it before checking
    /// [`Self::current`] so a change in between is not missed.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }
}

/// The services and routes at one moment.
#[derive(Default)]
pub struct RegistrySnapshot {
    services: BTreeMap<String, Arc<ServiceSlot>>,
    routes: RouteTable,
}

impl RegistrySnapshot {
    /// A snapshot of `slots`, with a route table built from their routes.
    pub fn new(slots: Vec<Arc<ServiceSlot>>) -> Result<Self, RouteError> {
        let services: BTreeMap<String, Arc<ServiceSlot>> = slots
            .into_iter()
            .map(|s| (s.name().to_owned(), s))
            .collect();
        let routes = RouteTable::build(
            services
                .values()
                .flat_map(|s| s.context.spec.routes.iter().map(|r| (s.name(), r.as_str()))),
        )?;
        Ok(Self { services, routes })
    }

    /// This snapshot with `slot` added, or replacing the slot of the same name.
    pub fn with(&self, slot: Arc<ServiceSlot>) -> Result<Self, RouteError> {
        let mut slots: Vec<Arc<ServiceSlot>> = self
            .services
            .values()
            .filter(|s| s.name() != slot.name())
            .cloned()
            .collect();
        slots.push(slot);
        Self::new(slots)
    }

    /// This snapshot without service `name`.
    pub fn without(&self, name: &str) -> Self {
        let slots = self
            .services
            .values()
            .filter(|s| s.name() != name)
            .cloned()
            .collect();
        // Removing routes cannot create a conflict.
        Self::new(slots).unwrap_or_default()
    }

    /// The service owning `path`, and the pattern that matched.
    pub fn route(&self, path: &str) -> Option<(&Arc<ServiceSlot>, &str)> {
        let matched = self.routes.route(path)?;
        Some((self.services.get(matched.service)?, matched.pattern))
    }

    /// The routes of `service` that share paths with another service's.
    pub fn overlaps(&self, service: &str) -> Vec<crate::router::RouteOverlap> {
        self.routes.overlaps(service)
    }

    /// The service called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<ServiceSlot>> {
        self.services.get(name)
    }

    /// Every service, by name.
    pub fn services(&self) -> impl Iterator<Item = &Arc<ServiceSlot>> {
        self.services.values()
    }
}

/// The current [`RegistrySnapshot`], swapped atomically.
pub struct ServiceRegistry {
    snapshot: ArcSwap<RegistrySnapshot>,
    /// Counts snapshot changes, for consumers that follow them.
    generation: tokio::sync::watch::Sender<u64>,
}

impl Default for ServiceRegistry {
    fn default() -> Self {
        Self {
            snapshot: ArcSwap::from_pointee(RegistrySnapshot::default()),
            generation: tokio::sync::watch::channel(0).0,
        }
    }
}

impl ServiceRegistry {
    /// The services and routes now.
    pub fn load(&self) -> Arc<RegistrySnapshot> {
        self.snapshot.load_full()
    }

    /// The service called `name`, now.
    pub fn get(&self, name: &str) -> Option<Arc<ServiceSlot>> {
        self.snapshot.load().get(name).cloned()
    }

    /// Replaces the snapshot. Callers serialize changes among themselves.
    /// A service context that is in no slot of `next` (its service was
    /// removed, or replaced by one with another spec) keeps no warm
    /// instances from now on: requests still running on it end without
    /// giving theirs back.
    pub fn replace(&self, next: RegistrySnapshot) {
        let next = Arc::new(next);
        let previous = self.snapshot.swap(Arc::clone(&next));
        self.generation.send_modify(|g| *g += 1);
        for slot in previous.services() {
            let gone = next
                .get(slot.name())
                .is_none_or(|s| !Arc::ptr_eq(&s.context, &slot.context));
            if let (true, Some(warm)) = (gone, &slot.context.warm) {
                warm.close();
            }
        }
    }

    /// A receiver that changes whenever the set of services does.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }
}
