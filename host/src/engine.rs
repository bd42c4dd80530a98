//! The engines and linkers a host builds at start-up: one for services
//! served by a fresh instance per request, one for services that keep warm
//! instances (see [`Instancing`]).
//!
//! Everything per-request work can avoid is done here once: the pooling
//! allocator reserves instance slots up front, epoch interruption lets the
//! runtime bound guest CPU time without a per-call check. Compiled code is
//! cached on disk by content hash ([`crate::codecache`]) so a restart or a
//! redeploy of a known component skips Cranelift.

use crate::config::{RuntimeSection, ServiceSpec};
use crate::state::RequestState;
use anyhow::Context as _;
use std::time::Duration;
use wasmtime::component::Linker;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances: how often a running guest yields to other
/// tasks and has its CPU time checked (the time itself is measured by the
/// runtime, not counted in ticks).
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// What one component may hold in the instance pool; the loader refuses a
/// component that needs more, naming the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    /// Core instances in one component.
    pub core_instances: u32,
    /// Linear memories in one component.
    pub memories: u32,
    /// Tables in one component.
    pub tables: u32,
    /// Size one linear memory may reach, in bytes (`[runtime] max_memory_mib`).
    pub memory_bytes: usize,
    /// Elements one table may hold.
    pub table_elements: usize,
}

impl PoolLimits {
    /// The limits of a pool built from `runtime`.
    pub fn of(runtime: &RuntimeSection) -> Self {
        Self {
            // Toolchains such as componentize-py and jco emit components made
            // of many core modules; leave room for them.
            core_instances: 64,
            memories: 8,
            tables: 32,
            memory_bytes: runtime.max_memory_mib << 20,
            table_elements: TABLE_ELEMENTS,
        }
    }
}

/// Slots of each kind one engine's instance pool holds in all; an instance
/// takes one instance slot and stack, and as many of the others as its
/// component has core instances, memories and tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSlots {
    /// Component instances (`[runtime] max_instances`).
    pub instances: u32,
    /// Core instances, four per instance slot.
    pub core_instances: u32,
    /// Linear memories.
    pub memories: u32,
    /// Tables.
    pub tables: u32,
    /// Fiber stacks, one per instance slot.
    pub stacks: u32,
}

impl PoolSlots {
    /// The slots of a pool built from `runtime`.
    pub fn of(runtime: &RuntimeSection) -> Self {
        let instances = runtime.max_instances;
        Self {
            instances,
            core_instances: instances.saturating_mul(CORE_INSTANCES_PER_INSTANCE),
            memories: instances.saturating_mul(MEMORIES_PER_INSTANCE),
            tables: instances.saturating_mul(TABLES_PER_INSTANCE),
            stacks: instances,
        }
    }
}

/// How a service's instances live, which decides the engine its code is
/// compiled for. The two differ in how an instance's linear memory gets the
/// component's initial contents; either engine serves any service
/// correctly, so a service whose `instance_reuse` changes keeps working
/// until it is loaded again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instancing {
    /// A fresh instance per request: memory starts as a copy-on-write
    /// mapping of the component's image, so a new instance costs only the
    /// pages it writes.
    Fresh,
    /// Warm instances (`instance_reuse` above 1): memory starts as a
    /// private copy of the image, made once per instance. Copy-on-write
    /// would instead fault on each image page the instance first writes,
    /// again after every turnover of its pool slot; a page the guest read
    /// before writing it is mapped already, so the fault must also flush it
    /// from every core's TLB, an interrupt to each. A Python service
    /// spent a fifth of its CPU time there.
    Warm,
}

impl Instancing {
    /// How `spec`'s instances live.
    pub fn of(spec: &ServiceSpec) -> Self {
        match spec.instance_reuse {
            Some(uses) if uses > 1 => Self::Warm,
            _ => Self::Fresh,
        }
    }
}

/// Builds the engine for `instancing`: pooling allocator sized by
/// `runtime` and epoch interruption (compiled code is cached by
/// [`crate::codecache`]).
pub fn build_engine(runtime: &RuntimeSection, instancing: Instancing) -> anyhow::Result<Engine> {
    let limits = PoolLimits::of(runtime);
    let mut pool = PoolingAllocationConfig::new();
    let slots = PoolSlots::of(runtime);
    pool.total_component_instances(slots.instances)
        .total_core_instances(slots.core_instances)
        .total_memories(slots.memories)
        .total_tables(slots.tables)
        .total_stacks(slots.stacks)
        .max_core_instances_per_component(limits.core_instances)
        .max_memories_per_component(limits.memories)
        .max_tables_per_component(limits.tables)
        .table_elements(limits.table_elements)
        .max_component_instance_size(4 << 20)
        .max_core_instance_size(4 << 20)
        .max_memory_size(limits.memory_bytes)
        // A slot freed unbatched is reset at once and is the next one its
        // component gets, image still mapped: no mprotect, no mmap, no
        // faults on the next request (see `decommit_batch_size`).
        .decommit_batch_size(runtime.decommit_batch_size.max(1))
        // Zeroing a small, hot prefix of each memory in place is cheaper
        // than unmapping and faulting it in again on the next request.
        .linear_memory_keep_resident(memory_keep_resident(
            runtime,
            instancing,
            PoolingAllocationConfig::is_pagemap_scan_available(),
        ))
        // Likewise for tables: one unmapped comes back as the zero page, and
        // the first write through lazy initialisation is a copy-on-write
        // fault that sends a TLB-flush interrupt to every core.
        .table_keep_resident(runtime.table_keep_resident_kib << 10)
        .pagemap_scan(if runtime.pagemap_scan {
            Enabled::Auto
        } else {
            Enabled::No
        });

    let mut config = Config::new();
    config
        .epoch_interruption(true)
        // wasmtime's defaults on 64-bit hosts, set here so that
        // `pool_reservation` says what the pool really reserves.
        .memory_reservation(MEMORY_RESERVATION)
        .memory_guard_size(MEMORY_GUARD)
        .async_stack_size(ASYNC_STACK_SIZE)
        .memory_init_cow(instancing == Instancing::Fresh)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .with_context(|| engine_refused(runtime, instancing, Headroom::read()))
}

/// Address space reserved for each linear memory slot: a whole 32-bit
/// memory ([`crate::config::MAX_MEMORY_MIB`]), so compiled code needs no
/// bounds checks.
const MEMORY_RESERVATION: u64 = (crate::config::MAX_MEMORY_MIB as u64) << 20;
/// The inaccessible gap after each memory slot.
const MEMORY_GUARD: u64 = 32 << 20;
/// Core instance slots per instance slot (a Rust component has 3, a
/// componentize-py one 14: idle warm instances give theirs up when another
/// instance needs them, see `runtime::make_room`).
const CORE_INSTANCES_PER_INSTANCE: u32 = 4;
/// Linear memory slots per instance slot.
const MEMORIES_PER_INSTANCE: u32 = 2;
/// Table slots per instance slot.
const TABLES_PER_INSTANCE: u32 = 4;
/// Elements one table may hold (wasmtime's default).
const TABLE_ELEMENTS: usize = 20_000;
/// Bytes a table slot takes per element.
const TABLE_ELEMENT_BYTES: u64 = 8;
/// Stack of the fiber a guest runs on (wasmtime's default, set here so
/// that [`INSTANCE_COMMITMENT`] holds).
const ASYNC_STACK_SIZE: usize = 2 << 20;
/// The page size the commitment figures assume (x86-64's; on hosts with
/// larger pages they are a little low).
const PAGE: u64 = 4 << 10;
/// Address space one instance's memory slots reserve.
const INSTANCE_RESERVATION: u64 =
    MEMORIES_PER_INSTANCE as u64 * (MEMORY_RESERVATION + MEMORY_GUARD);
/// Memory one instance slot commits when its pool is built, before any
/// instance exists: a fiber stack with its guard page and its table slots,
/// all mapped read-write up front. None of it is resident until used, but
/// under strict overcommit all of it counts against the system's limit.
const INSTANCE_COMMITMENT: u64 = ASYNC_STACK_SIZE as u64
    + PAGE
    + TABLES_PER_INSTANCE as u64
        * (TABLE_ELEMENTS as u64 * TABLE_ELEMENT_BYTES).next_multiple_of(PAGE);
/// Address space the rest of the host maps (code, stacks, heap), as
/// headroom when telling how many instances fit under a limit.
const HOST_ADDRESS_SPACE: u64 = 4 << 30;
/// Memory the rest of the host commits (threads' stacks, heap), likewise;
/// ~40 MiB measured at start-up, more under load.
const HOST_COMMITMENT: u64 = 256 << 20;

/// Address space one engine's instance pool reserves when it is built,
/// before any instance exists.
fn pool_reservation(runtime: &RuntimeSection) -> u64 {
    u64::from(runtime.max_instances) * INSTANCE_RESERVATION
}

/// Memory one engine's instance pool commits when it is built.
fn pool_commitment(runtime: &RuntimeSection) -> u64 {
    u64::from(runtime.max_instances) * INSTANCE_COMMITMENT
}

/// What this process may still map and the system may still commit, read
/// when an engine cannot be built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Headroom {
    /// Bytes this process may map in all (`ulimit -v`), if capped.
    address_space: Option<u64>,
    /// Bytes the system may still commit, under strict overcommit
    /// (`vm.overcommit_memory = 2`) only: `CommitLimit` less `Committed_AS`.
    commit: Option<u64>,
}

impl Headroom {
    /// This process's and this system's, from `/proc` (none elsewhere).
    fn read() -> Self {
        let read = |path| std::fs::read_to_string(path).unwrap_or_default();
        Self {
            address_space: address_space_limit(&read("/proc/self/limits")),
            commit: commit_headroom(
                &read("/proc/sys/vm/overcommit_memory"),
                &read("/proc/meminfo"),
            ),
        }
    }
}

/// What to say when the engine for `instancing` cannot be built, most
/// often because its pool's address space cannot be reserved (`ulimit -v`,
/// valgrind) or its memory cannot be committed (strict overcommit).
fn engine_refused(runtime: &RuntimeSection, instancing: Instancing, room: Headroom) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    let mut text = format!(
        "cannot create the Wasm engine{}, whose instance pool reserves {} GiB of address space \
         and commits {} MiB of memory up front ([runtime] max_instances = {}, {:.1} GiB and \
         {:.1} MiB each)",
        match instancing {
            Instancing::Fresh => "",
            Instancing::Warm => " for warm instances",
        },
        pool_reservation(runtime).div_ceil(GIB),
        pool_commitment(runtime).div_ceil(MIB),
        runtime.max_instances,
        INSTANCE_RESERVATION as f64 / GIB as f64,
        INSTANCE_COMMITMENT as f64 / MIB as f64,
    );
    // Room for both pools, in case services keep warm instances.
    if let Some(limit) = room.address_space {
        let fits = limit.saturating_sub(HOST_ADDRESS_SPACE) / (2 * INSTANCE_RESERVATION);
        let cap = format!(
            "this process may map only {} GiB (`ulimit -v`)",
            limit / GIB
        );
        text.push_str(&what_fits(fits, &cap, "raise the limit"));
    }
    if let Some(left) = room.commit {
        // The warm pool is built after the fresh one, whose commitment is
        // already counted and would shrink with `max_instances` too.
        let other = match instancing {
            Instancing::Fresh => 0,
            Instancing::Warm => pool_commitment(runtime),
        };
        let fits = (left + other).saturating_sub(HOST_COMMITMENT) / (2 * INSTANCE_COMMITMENT);
        let cap = format!(
            "strict overcommit (vm.overcommit_memory = 2) lets this system commit only {} MiB \
             more",
            left / MIB
        );
        text.push_str(&what_fits(
            fits,
            &cap,
            "raise vm.overcommit_ratio or add swap",
        ));
    }
    if room == Headroom::default() {
        text.push_str(
            "; where address space is limited (`ulimit -v`, some sandboxes and profilers) or \
             memory is overcommitted strictly, lower [runtime] max_instances",
        );
    }
    text
}

/// The advice for a limit, `cap`, under which `fits` instances fit in
/// both pools; `raise` says how to lift the limit instead.
fn what_fits(fits: u64, cap: &str, raise: &str) -> String {
    match fits {
        0 => format!("; {cap}, too little for even one instance: {raise}"),
        fits => format!("; {cap}: set [runtime] max_instances = {fits} or lower, or {raise}"),
    }
}

/// The soft address-space limit (`ulimit -v`) in `limits`, the text of
/// `/proc/self/limits`, if there is one.
fn address_space_limit(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max address space"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Bytes the system may still commit, given the texts of
/// `/proc/sys/vm/overcommit_memory` and `/proc/meminfo`, if it
/// overcommits strictly (mode 2); without strict overcommit, or a figure
/// missing, `None`.
fn commit_headroom(mode: &str, meminfo: &str) -> Option<u64> {
    if mode.trim() != "2" {
        return None;
    }
    let kib = |field: &str| -> Option<u64> {
        let line = meminfo.lines().find_map(|line| line.strip_prefix(field))?;
        line.trim_start_matches(':')
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let (limit, committed) = (kib("CommitLimit")?, kib("Committed_AS")?);
    Some(limit.saturating_sub(committed) << 10)
}

/// Bytes of each linear memory `instancing`'s pool keeps resident when a
/// slot is reused. Warm instances keep much more where `PAGEMAP_SCAN`
/// resets only what the last instance dirtied: a replacement then copies
/// its image into mapped pages (measured with a Python service: 5.7 ->
/// 1.7 ms to make one, ~4 us less CPU per request at 1000 uses each).
fn memory_keep_resident(
    runtime: &RuntimeSection,
    instancing: Instancing,
    pagemap_available: bool,
) -> usize {
    if instancing == Instancing::Warm && runtime.pagemap_scan && pagemap_available {
        runtime.warm_memory_keep_resident_mib << 20
    } else {
        runtime.memory_keep_resident_kib << 10
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_warm_engine_copies_memory_images_in() {
        let runtime = RuntimeSection {
            max_instances: 2,
            ..RuntimeSection::default()
        };
        let fresh = build_engine(&runtime, Instancing::Fresh).expect("fresh engine");
        let warm = build_engine(&runtime, Instancing::Warm).expect("warm engine");
        assert!(fresh.get_memory_init_cow());
        assert!(!warm.get_memory_init_cow());
    }

    #[test]
    fn warm_pools_keep_more_memory_resident_only_where_pagemap_scan_resets_them() {
        let runtime = RuntimeSection::default();
        let small = runtime.memory_keep_resident_kib << 10;
        let large = runtime.warm_memory_keep_resident_mib << 20;
        assert!(large > small);
        assert_eq!(
            memory_keep_resident(&runtime, Instancing::Warm, true),
            large
        );
        assert_eq!(
            memory_keep_resident(&runtime, Instancing::Fresh, true),
            small
        );
        assert_eq!(
            memory_keep_resident(&runtime, Instancing::Warm, false),
            small
        );
        let off = RuntimeSection {
            pagemap_scan: false,
            ..RuntimeSection::default()
        };
        assert_eq!(memory_keep_resident(&off, Instancing::Warm, true), small);
    }

    #[test]
    fn a_refused_pool_says_what_it_reserves_and_what_fits() {
        let runtime = RuntimeSection::default();
        // 512 instances, two slots of 4 GiB and a 32 MiB guard each.
        assert_eq!(
            pool_reservation(&runtime),
            512 * 2 * ((4 << 30) + (32 << 20))
        );
        let refused = |room| engine_refused(&runtime, Instancing::Fresh, room);

        let unlimited = refused(Headroom::default());
        assert!(
            unlimited.contains("4128 GiB") && unlimited.contains("8.1 GiB"),
            "{unlimited}"
        );
        assert!(
            unlimited.contains("lower [runtime] max_instances"),
            "{unlimited}"
        );
        // 100 GiB, less 4 for the rest of the host, over two pools of
        // ~8.06 GiB an instance: 5 instances fit.
        let capped = refused(Headroom {
            address_space: Some(100 << 30),
            commit: None,
        });
        assert!(capped.contains("may map only 100 GiB"), "{capped}");
        assert!(capped.contains("max_instances = 5 or lower"), "{capped}");
        assert!(!capped.contains("overcommit"), "{capped}");
        let tiny = refused(Headroom {
            address_space: Some(8 << 30),
            commit: None,
        });
        assert!(tiny.contains("too little for even one instance"), "{tiny}");
    }

    #[test]
    fn a_refused_pool_says_what_it_commits_under_strict_overcommit() {
        let runtime = RuntimeSection::default();
        // What the pool maps read-write up front with 512 instances: 1026
        // MiB of fiber stacks (2 MiB and a guard page each; the size
        // wasmtime's own error names) and 320 MiB of table slots (four of
        // 20,000 8-byte elements each). Measured: Committed_AS grew by
        // 1384 MiB for a host with one pool, 2731 MiB with both.
        assert_eq!(pool_commitment(&runtime), (1026 << 20) + (320 << 20));
        let (fresh, warm) = (
            |room| engine_refused(&runtime, Instancing::Fresh, room),
            |room| engine_refused(&runtime, Instancing::Warm, room),
        );
        let strict = |left: u64| Headroom {
            address_space: None,
            commit: Some(left),
        };

        let text = fresh(strict(500 << 20));
        assert!(text.contains("commits 1346 MiB"), "{text}");
        assert!(text.contains("commit only 500 MiB more"), "{text}");
        // Less 256 MiB for the rest of the host, over both pools at ~2.63
        // MiB an instance each: 46 instances fit.
        assert!(text.contains("max_instances = 46 or lower"), "{text}");
        assert!(!text.contains("ulimit"), "{text}");
        // Built second, the warm pool counts the fresh one's commitment
        // as room: (500 + 1346 - 256) / (2 x 2.63) = 302.
        let text = warm(strict(500 << 20));
        assert!(text.contains("engine for warm instances"), "{text}");
        assert!(text.contains("max_instances = 302 or lower"), "{text}");
        let text = fresh(strict(260 << 20));
        assert!(text.contains("too little for even one instance"), "{text}");

        let both = fresh(Headroom {
            address_space: Some(100 << 30),
            commit: Some(500 << 20),
        });
        assert!(
            both.contains("max_instances = 5 or lower")
                && both.contains("max_instances = 46 or lower"),
            "{both}"
        );
    }

    #[test]
    fn headroom_is_read_from_procs_texts() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max address space         214748364800         unlimited            bytes\n";
        assert_eq!(address_space_limit(limits), Some(200 << 30));
        let unlimited = limits.replace("214748364800", "unlimited");
        assert_eq!(address_space_limit(&unlimited), None);

        let meminfo = "MemTotal:       24683772 kB\nCommitLimit:     1974700 kB\n\
                       Committed_AS:    1402940 kB\n";
        assert_eq!(
            commit_headroom("2\n", meminfo),
            Some((1_974_700 - 1_402_940) << 10)
        );
        assert_eq!(commit_headroom("0\n", meminfo), None);
        assert_eq!(commit_headroom("1\n", meminfo), None);
        assert_eq!(commit_headroom("2\n", "MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn only_a_reuse_above_one_is_warm() {
        let spec = |instance_reuse| ServiceSpec {
            instance_reuse,
            ..ServiceSpec::default()
        };
        assert_eq!(Instancing::of(&spec(None)), Instancing::Fresh);
        assert_eq!(Instancing::of(&spec(Some(1))), Instancing::Fresh);
        assert_eq!(Instancing::of(&spec(Some(2))), Instancing::Warm);
    }
}
