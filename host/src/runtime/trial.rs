//! A trial instantiation of every new component, before it may serve.
//!
//! A component can compile, satisfy every import and still never
//! instantiate: a start function that traps or loops, memories that start
//! above the cap, more core instances than the pool holds. The loader
//! instantiates each new version once, in a throwaway store of a scratch
//! service running under the service's limits, so such a deploy is
//! refused before the swap instead of failing every request after it.

use super::limiter::MemoryRefusal;
use super::meter::Metered;
use super::sandbox::{CpuLimitExceeded, Sandbox};
use crate::calls::ServiceCalls;
use crate::config::{ServiceLimits, ServiceSpec};
use crate::context::RequestContext;
use crate::engine::PoolLimits;
use crate::kvstore::{EmbeddedStore, ServiceStore};
use crate::registry::{ServiceContext, ServiceEnv, ServiceRegistry};
use crate::state::RequestState;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;
use wasmtime::component::InstancePre;

/// The scratch service's name; its store lives in `<data dir>/trial/`.
const TRIAL_SERVICE: &str = "deploy-trial";

/// How long a trial waits for a free pool slot when the host is at its
/// instance limit.
const SLOT_WAIT: Duration = Duration::from_secs(2);

/// Why a trial instantiation failed.
#[derive(Debug)]
pub enum TrialFailure {
    /// A memory budget refused the component's memories.
    Memory(MemoryRefusal),
    /// It ran out of CPU time while starting.
    CpuTime(Duration),
    /// It did not finish starting within the time limit.
    Timeout(Duration),
    /// Every pool slot stayed busy.
    NoSlot,
    /// Instantiation failed: a trap in a start function, or a pool limit.
    Failed(String),
}

/// Instantiates new components once, in a scratch service, and drops them.
pub struct TrialRun {
    sandbox: Sandbox,
    store: Arc<ServiceStore>,
    env: ServiceEnv,
    /// Calls from a start function reach no service.
    calls: Arc<ServiceCalls>,
    /// The host's services, whose idle warm instances may give up their
    /// pool slots to a trial when every slot is taken.
    services: Arc<ServiceRegistry>,
}

impl TrialRun {
    /// A trial runner with a scratch store under `data_dir`, running with
    /// `env`'s default limits, beside the host's `services`.
    pub fn open(
        sandbox: Sandbox,
        data_dir: &Path,
        env: &ServiceEnv,
        services: Arc<ServiceRegistry>,
    ) -> anyhow::Result<Self> {
        // Always a local scratch file: a trial writes nothing anyone keeps.
        let store =
            ServiceStore::Embedded(EmbeddedStore::open(&data_dir.join("trial"), TRIAL_SERVICE)?);
        let calls = ServiceCalls::new(Arc::new(ServiceRegistry::default()), Weak::new(), 1);
        Ok(Self {
            sandbox,
            store: Arc::new(store),
            env: env.clone(),
            calls: Arc::new(calls),
            services,
        })
    }

    /// What one component may hold in the pool.
    pub fn pool(&self) -> PoolLimits {
        self.sandbox.pool()
    }

    /// Instantiates `pre` (version `version`) once under `limits` and
    /// drops the instance.
    pub async fn instantiate(
        &self,
        pre: &InstancePre<RequestState>,
        version: &Arc<str>,
        limits: &ServiceLimits,
    ) -> Result<(), TrialFailure> {
        let spec = ServiceSpec {
            limits: limits.clone(),
            ..ServiceSpec::default()
        };
        let service = ServiceContext::new(TRIAL_SERVICE, spec, Arc::clone(&self.store), &self.env)
            .map(Arc::new)
            .map_err(|e| TrialFailure::Failed(format!("{e:#}")))?;
        let limits = service.limits;
        let started = tokio::time::Instant::now();
        loop {
            let ctx = RequestContext::internal(
                format!("trial-{}", crate::loader::short(version)),
                tokio::time::Instant::now() + limits.timeout,
            );
            let (mut store, meter) =
                self.sandbox
                    .store(pre.engine(), &service, version, &ctx, &self.calls);
            let run = Metered::new(pre.instantiate_async(&mut store), meter);
            let error = match tokio::time::timeout_at(ctx.deadline, run).await {
                Ok(Ok(_instance)) => return Ok(()),
                Ok(Err(error)) => error,
                Err(_) => return Err(TrialFailure::Timeout(limits.timeout)),
            };
            // A budget of the host's refused it; a growth past a memory's
            // own maximum (or a table's) is the component's, and what
            // it led to says more.
            if let Some(refusal @ (MemoryRefusal::Instance { .. } | MemoryRefusal::Host { .. })) =
                store.data().limiter.refusal()
            {
                return Err(TrialFailure::Memory(refusal));
            }
            if error.chain().any(|e| e.is::<CpuLimitExceeded>()) {
                return Err(TrialFailure::CpuTime(limits.cpu_time));
            }
            if error
                .chain()
                .any(|e| e.is::<wasmtime::PoolConcurrencyLimitError>())
            {
                if started.elapsed() < SLOT_WAIT {
                    drop(store);
                    // Idle warm instances hold slots for as long as they
                    // idle: one gives its slot up, else wait for a busy one.
                    if !super::make_room(&self.services, pre.engine()) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
                return Err(TrialFailure::NoSlot);
            }
            // A trap's message is what a user can act on; its backtrace
            // goes to the log.
            tracing::debug!(error = format!("{error:?}"), "trial instantiation failed");
            return Err(TrialFailure::Failed(
                match error.downcast_ref::<wasmtime::Trap>() {
                    Some(trap) => format!("a start function trapped: {trap}"),
                    None => format!("{error:#}"),
                },
            ));
        }
    }
}
