//! The services a host runs and the version each is serving.
//!
//! The set of services and their routes is fixed by `gateway.toml`; what
//! changes at run time is each service's current version. That lives behind
//! an `ArcSwap`: a request `load()`s it once and keeps its `Arc` to the end,
//! so a swap never waits for, or disturbs, a request in flight.

use crate::loader::LoadedService;
use crate::router::{RouteError, RouteTable};
use crate::state::ServiceGrants;
use arc_swap::ArcSwapOption;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// One service: its fixed description and its swappable current version.
pub struct ServiceSlot {
    /// The service's name.
    pub name: String,
    /// Route patterns it owns.
    pub routes: Vec<String>,
    /// The component file named in `gateway.toml`.
    pub component_path: PathBuf,
    /// Store, config and outbound grants, shared by all its versions.
    pub grants: Arc<ServiceGrants>,
    current: ArcSwapOption<LoadedService>,
    /// Versions replaced by deploys, newest last, for rollback.
    history: Mutex<Vec<Arc<LoadedService>>>,
    /// Why the service has no version, when its first load failed.
    load_error: Mutex<Option<String>>,
    /// Serializes deploys and rollbacks of this service (never held by requests).
    pub(crate) deploy_lock: tokio::sync::Mutex<()>,
}

/// What `bazaar services` shows for one service.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ServiceStatus {
    /// Service name.
    pub name: String,
    /// `running`, or `failed` when no version could be loaded.
    pub state: String,
    /// Current version (content hash), if any.
    pub version: Option<String>,
    /// Where the current version came from.
    pub source: Option<String>,
    /// Route patterns.
    pub routes: Vec<String>,
    /// Versions available for rollback, newest first.
    pub previous_versions: Vec<String>,
    /// The load error, when failed.
    pub error: Option<String>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values stay consistent at every await-free step, so a
    // panic elsewhere cannot leave them half-written.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ServiceSlot {
    /// A slot with no version yet.
    pub fn new(
        name: String,
        routes: Vec<String>,
        component_path: PathBuf,
        grants: Arc<ServiceGrants>,
    ) -> Self {
        Self {
            name,
            routes,
            component_path,
            grants,
            current: ArcSwapOption::empty(),
            history: Mutex::new(Vec::new()),
            load_error: Mutex::new(None),
            deploy_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The version serving new requests, if any.
    pub fn current(&self) -> Option<Arc<LoadedService>> {
        self.current.load_full()
    }

    /// Makes `next` current in one atomic step, keeping the replaced version
    /// (up to `keep` of them) for rollback.
    pub fn swap(&self, next: Arc<LoadedService>, keep: usize) -> Option<Arc<LoadedService>> {
        let previous = self.current.swap(Some(next));
        if let Some(previous) = &previous {
            let mut history = lock(&self.history);
            history.push(Arc::clone(previous));
            let excess = history.len().saturating_sub(keep);
            history.drain(..excess);
        }
        *lock(&self.load_error) = None;
        previous
    }

    /// Returns to the newest previous version; `None` if there is none.
    pub fn roll_back(&self) -> Option<Arc<LoadedService>> {
        let previous = lock(&self.history).pop()?;
        self.current.store(Some(Arc::clone(&previous)));
        Some(previous)
    }

    /// Records why the service could not be loaded at start-up.
    pub fn mark_failed(&self, error: String) {
        *lock(&self.load_error) = Some(error);
    }

    /// A snapshot for listing.
    pub fn status(&self) -> ServiceStatus {
        let current = self.current();
        let previous_versions = lock(&self.history)
            .iter()
            .rev()
            .map(|v| v.version.to_string())
            .collect();
        ServiceStatus {
            name: self.name.clone(),
            state: if current.is_some() {
                "running"
            } else {
                "failed"
            }
            .into(),
            version: current.as_ref().map(|c| c.version.to_string()),
            source: current.as_ref().map(|c| c.source.clone()),
            routes: self.routes.clone(),
            previous_versions,
            error: lock(&self.load_error).clone(),
        }
    }
}

/// All services and the routes to them.
pub struct ServiceRegistry {
    services: BTreeMap<String, Arc<ServiceSlot>>,
    routes: RouteTable,
}

impl ServiceRegistry {
    /// A registry of `slots`, with a route table built from their routes.
    pub fn new(slots: Vec<ServiceSlot>) -> Result<Self, RouteError> {
        let routes = RouteTable::build(
            slots
                .iter()
                .flat_map(|s| s.routes.iter().map(|r| (s.name.as_str(), r.as_str()))),
        )?;
        let services = slots
            .into_iter()
            .map(|s| (s.name.clone(), Arc::new(s)))
            .collect();
        Ok(Self { services, routes })
    }

    /// The service owning `path`.
    pub fn route(&self, path: &str) -> Option<&Arc<ServiceSlot>> {
        let matched = self.routes.route(path)?;
        self.services.get(matched.service)
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
