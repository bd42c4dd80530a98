//! The one `Engine` and `Linker` a host builds at start-up.
//!
//! Everything per-request work can avoid is done here once: the pooling
//! allocator reserves instance slots up front, epoch interruption lets the
//! runtime bound guest CPU time without a per-call check, and compiled code
//! is cached on disk by content hash so a restart or a redeploy of a known
//! component skips Cranelift.

use crate::config::RuntimeSection;
use crate::state::RequestState;
use anyhow::Context as _;
use std::path::Path;
use std::time::Duration;
use wasmtime::component::Linker;
use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
};

/// How often the epoch advances; the unit of guest CPU-time accounting.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Builds the engine: pooling allocator sized by `runtime`, epoch
/// interruption, and an on-disk code cache in `cache_dir`.
pub fn build_engine(runtime: &RuntimeSection, cache_dir: &Path) -> anyhow::Result<Engine> {
    let mut pool = PoolingAllocationConfig::new();
    let instances = runtime.max_instances;
    pool.total_component_instances(instances)
        // Toolchains such as componentize-py and jco emit components made of
        // many core modules; leave room for them.
        .total_core_instances(instances.saturating_mul(4))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(4))
        .total_stacks(instances)
        .max_core_instances_per_component(64)
        .max_memories_per_component(8)
        .max_tables_per_component(32)
        .max_component_instance_size(4 << 20)
        .max_core_instance_size(4 << 20)
        .max_memory_size(runtime.max_memory_mib << 20)
        // Decommitting slots in batches trades a little memory for far fewer
        // madvise calls and TLB shootdowns on the per-request path.
        .decommit_batch_size(16);

    std::fs::create_dir_all(cache_dir)
        .with_context(|| format!("cannot create cache directory {}", cache_dir.display()))?;
    let mut cache = CacheConfig::new();
    cache.with_directory(cache_dir);

    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .cache(Some(
            Cache::new(cache)
                .map_err(anyhow::Error::from)
                .context("cannot set up the compiled-code cache")?,
        ));
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("cannot create the Wasm engine")
}

/// Builds the linker every service is checked against: all of WASI 0.2,
/// `wasi:http`, and Bazaar's capabilities.
pub fn build_linker(engine: &Engine) -> anyhow::Result<Linker<RequestState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    crate::capability::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped.
pub fn start_epoch_ticker(engine: &Engine) -> anyhow::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("bazaar-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .context("cannot start the epoch thread")?;
    Ok(())
}
