//! The stores requests run in, each inside its service's limits.

use super::limiter::{HostMemory, SandboxLimiter};
use super::meter::CpuMeter;
use crate::calls::ServiceCalls;
use crate::config::RuntimeSection;
use crate::context::RequestContext;
use crate::engine::PoolLimits;
use crate::registry::ServiceContext;
use crate::state::RequestState;
use std::sync::Arc;
use wasmtime::{Engine, Store, UpdateDeadline};

/// Marks the trap raised when a request's CPU budget runs out.
#[derive(Debug, thiserror::Error)]
#[error("CPU time limit exceeded")]
pub(super) struct CpuLimitExceeded;

/// What every store of a host is built from: the pool's limits, the
/// host-wide memory budget and the cap on host-side resources. Cheap to
/// clone.
#[derive(Clone)]
pub struct Sandbox {
    pool: PoolLimits,
    memory: Arc<HostMemory>,
    /// Entries one request's resource table may hold (headers, streams,
    /// buckets...): host memory no `ResourceLimiter` sees.
    max_resources: usize,
}

impl Sandbox {
    /// Stores sized by `runtime` (the section the engines' pools were
    /// built from).
    pub fn new(runtime: &RuntimeSection) -> Self {
        let budget = host_memory_budget(runtime);
        // What the pool would let instances touch without the budget.
        let pool_mib = (runtime.max_instances as usize).saturating_mul(runtime.max_memory_mib);
        tracing::info!(
            host_memory_mib = budget >> 20,
            pool_memory_mib = pool_mib,
            "linear memory of all instances together is capped; growth past it fails in the guest"
        );
        Self {
            pool: PoolLimits::of(runtime),
            memory: HostMemory::new(budget),
            max_resources: runtime.max_resources,
        }
    }

    /// What one component may hold in the pool.
    pub fn pool(&self) -> PoolLimits {
        self.pool
    }

    /// A fresh store on `engine` (the one the version was compiled for)
    /// for one request to `service` at `version`, under the service's
    /// limits, and the meter its CPU time is charged to. Run the guest
    /// inside [`super::meter::Metered`] with that meter.
    pub(crate) fn store(
        &self,
        engine: &Engine,
        service: &Arc<ServiceContext>,
        version: &Arc<str>,
        ctx: &RequestContext,
        calls: &Arc<ServiceCalls>,
    ) -> (Store<RequestState>, Arc<CpuMeter>) {
        let limiter = SandboxLimiter::new(
            Arc::clone(&self.memory),
            service.limits.memory_bytes,
            self.pool,
        );
        let state = RequestState::new(
            Arc::clone(service),
            Arc::clone(version),
            ctx.clone(),
            limiter,
            Arc::clone(calls),
            self.max_resources,
        );
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limiter);
        let meter = Self::arm(&mut store, service);
        (store, meter)
    }

    /// Gives a new `store` its CPU budget: a meter, checked at every epoch
    /// tick.
    fn arm(store: &mut Store<RequestState>, service: &ServiceContext) -> Arc<CpuMeter> {
        let meter = CpuMeter::new();
        let budget = service.limits.cpu_time;
        let spent = Arc::clone(&meter);
        // Epochs only preempt: at every tick the guest yields, so one busy
        // guest cannot hold a thread, and its measured time is checked.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if spent.spent() > budget {
                return Err(CpuLimitExceeded.into());
            }
            Ok(UpdateDeadline::Yield(1))
        });
        meter
    }

    /// Gives the store of a warm instance, armed when it was made, a full
    /// CPU budget again for its next request.
    pub(crate) fn rearm(store: &mut Store<RequestState>, meter: &CpuMeter) {
        meter.reset();
        // The epoch moved on while it was idle; a deadline left in the past
        // would make it yield at once.
        store.set_epoch_deadline(1);
    }
}

/// `[runtime] host_memory_mib`, else half the machine's memory, else room
/// for every pool slot at its largest.
fn host_memory_budget(runtime: &RuntimeSection) -> usize {
    if let Some(mib) = runtime.host_memory_mib {
        return mib << 20;
    }
    match machine_memory() {
        Some(total) => total / 2,
        None => {
            tracing::warn!(
                "cannot read the machine's memory from /proc/meminfo; set [runtime] host_memory_mib"
            );
            (runtime.max_instances as usize)
                .saturating_mul(runtime.max_memory_mib)
                .saturating_mul(1 << 20)
        }
    }
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
fn machine_memory() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&text)
}

fn parse_mem_total(meminfo: &str) -> Option<usize> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: usize = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total_is_read_in_bytes() {
        let meminfo = "MemTotal:       24683656 kB\nMemFree:        19212680 kB\n";
        assert_eq!(parse_mem_total(meminfo), Some(24683656 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn the_configured_budget_wins() {
        let runtime = RuntimeSection {
            host_memory_mib: Some(300),
            ..RuntimeSection::default()
        };
        assert_eq!(host_memory_budget(&runtime), 300 << 20);
    }
}
