//! Warm instances, for services that opt in with `instance_reuse = N`:
//! an instance that answered a request or took an event well serves the
//! next one, up to N in all, instead of a fresh instance each time.
//!
//! An instance serves one request or event at a time: it is taken out of
//! the pool for it and put back when it (a response's body included)
//! ended well. One that trapped, timed out, went over a limit or lost its client
//! is dropped, never reused. A deploy or rollback retires the instances of
//! every other version. One of a component slow to instantiate that has
//! served its share is dropped, and the instance taking its place made,
//! off the request's path (see `Refill`): a request does not wait for the
//! one before it to be cleaned up, nor for its own instance to be made.

use crate::state::RequestState;
use std::sync::{Mutex, MutexGuard, PoisonError};
use wasmtime::Store;

/// An instance between requests or events.
pub(super) struct WarmInstance {
    /// The version it runs.
    pub version: std::sync::Arc<str>,
    /// Its store.
    pub store: Store<RequestState>,
    /// The instance.
    pub live: super::instance::Live,
    /// What else it carries from one run to the next.
    pub record: Record,
}

/// What an instance carries from one run to the next besides its store.
pub(super) struct Record {
    /// The CPU meter its store's epoch callback reads.
    pub meter: std::sync::Arc<super::meter::CpuMeter>,
    /// Requests and events it has served.
    pub uses: u32,
    /// How long making it took.
    pub made_in: std::time::Duration,
}

/// The idle warm instances of one service.
pub struct WarmPool {
    /// Requests one instance may serve.
    max_uses: u32,
    /// Idle instances kept; each holds a pool slot and its memory.
    max_idle: usize,
    idle: Mutex<Idle>,
}

#[derive(Default)]
struct Idle {
    /// The version whose instances may be kept.
    current: Option<std::sync::Arc<str>>,
    instances: Vec<WarmInstance>,
}

impl Idle {
    fn wants(&self, version: &str, max_idle: usize) -> bool {
        self.current.as_deref().is_none_or(|c| c == version) && self.instances.len() < max_idle
    }
}

impl WarmPool {
    /// A pool of instances serving up to `max_uses` requests each, keeping
    /// at most `max_idle` of them idle.
    pub fn new(max_uses: u32, max_idle: usize) -> Self {
        Self {
            max_uses,
            max_idle: max_idle.max(1),
            idle: Mutex::new(Idle::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Idle> {
        // The guarded list is only pushed to and popped from.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle instance of `version`, if there is one.
    pub(super) fn take(&self, version: &str) -> Option<WarmInstance> {
        let mut idle = self.lock();
        let at = idle
            .instances
            .iter()
            .rposition(|i| &*i.version == version)?;
        Some(idle.instances.swap_remove(at))
    }

    /// Keeps `instance`, which has just served a request, for another,
    /// unless its version retired or enough instances are idle. One that
    /// has served its share is handed back instead, to be replaced.
    pub(super) fn give_back(&self, mut instance: WarmInstance) -> Option<WarmInstance> {
        instance.record.uses += 1;
        if instance.record.uses >= self.max_uses {
            return Some(instance);
        }
        self.keep(instance);
        None
    }

    /// Keeps `instance` idle, unless its version retired or enough
    /// instances are idle (it is dropped then).
    pub(super) fn keep(&self, instance: WarmInstance) {
        let mut idle = self.lock();
        if !idle.wants(&instance.version, self.max_idle) {
            return;
        }
        idle.instances.push(instance);
    }

    /// Whether a new instance of `version` would be kept.
    pub(super) fn wants(&self, version: &str) -> bool {
        self.lock().wants(version, self.max_idle)
    }

    /// Drops the idle instances of every version but `version`, and keeps
    /// only `version`'s from now on.
    pub fn retire_all_but(&self, version: &std::sync::Arc<str>) {
        let retired: Vec<WarmInstance> = {
            let mut idle = self.lock();
            idle.current = Some(std::sync::Arc::clone(version));
            let (keep, retired) = std::mem::take(&mut idle.instances)
                .into_iter()
                .partition(|i| i.version == *version);
            idle.instances = keep;
            retired
        };
        // Dropped outside the lock: freeing instances returns pool slots.
        drop(retired);
    }

    /// Instances idle now.
    pub fn idle(&self) -> usize {
        self.lock().instances.len()
    }
}
