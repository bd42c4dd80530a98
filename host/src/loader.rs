//! Turns component bytes into a [`LoadedService`]: checked, compiled and
//! pre-instantiated, ready for a fresh instance per request.
//!
//! The checks run in the order a user fixes them: is it Wasm, is it a
//! component, can every import be satisfied, does it fit the instance pool,
//! does it start (one trial instantiation under the host's default limits,
//! see [`TrialRun`]), does it export a handler. Compilation runs on the
//! blocking pool, never on a request's thread.

use crate::capability::EventHandlerIndices;
use crate::codecache::CodeCache;
use crate::config::{RuntimeSection, ServiceLimits, ServiceSpec};
use crate::engine::{self, Instancing, PoolLimits};
use crate::runtime::{TrialFailure, TrialRun};
use crate::state::RequestState;
use bytes::Bytes;
use http::HeaderValue;
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use wasmtime::Engine;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyIndices;

mod upload;

pub use upload::{ComponentHasher, KeptCandidate};

/// The HTTP handler export.
const HTTP_EXPORT: &str = "wasi:http/incoming-handler@0.2";
/// The event handler export.
const EVENT_EXPORT: &str = "bazaar:platform/event-handler@0.1";

/// One compiled, checked version of a service.
pub struct LoadedService {
    /// Content hash (SHA-256, hex) of the component: the version's identity.
    pub version: Arc<str>,
    /// The version as a response header value, built once.
    pub version_header: HeaderValue,
    /// Where the bytes came from (a path, or the admin API).
    pub source: String,
    /// Size of the component in bytes.
    pub size: usize,
    /// The component, linked and checked, ready to instantiate.
    pub pre: InstancePre<RequestState>,
    /// Where an instance's HTTP handler is, when the component exports one.
    pub http: Option<ProxyIndices>,
    /// Where an instance's event handler is, when the component exports one.
    pub events: Option<EventHandlerIndices>,
}

impl LoadedService {
    /// The first 12 hex digits of the version, for humans.
    pub fn short_version(&self) -> &str {
        short(&self.version)
    }

    /// Checks that this component can do what `spec` asks of it.
    pub fn check_fits(&self, spec: &ServiceSpec) -> Result<(), LoadError> {
        if !spec.routes.is_empty() && self.http.is_none() {
            return Err(LoadError::NoHttpHandler);
        }
        if !spec.subscribes.is_empty() && self.events.is_none() {
            return Err(LoadError::NoEventHandler);
        }
        Ok(())
    }
}

/// The first 12 characters of a version hash.
pub fn short(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
}

/// Why bytes could not become a service.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes do not start with the Wasm magic number.
    #[error(
        "it is not a WebAssembly file (no `\\0asm` header); deploy the .wasm the build produced"
    )]
    NotWasm,
    /// A core module, not a component.
    #[error(
        "it is a core WebAssembly module, not a component; build it for the wasm32-wasip2 target (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule,
    /// Wasmtime rejected it.
    #[error("it is not a valid component: {0}")]
    Invalid(String),
    /// It exports neither handler.
    #[error(
        "it does not export `wasi:http/incoming-handler`; a service must target the wasi:http proxy world (or bazaar:platform/service)"
    )]
    WrongWorld,
    /// It has routes but no HTTP handler.
    #[error(
        "the service has routes but the component does not export `wasi:http/incoming-handler`; build it for the wasi:http proxy world or drop its routes"
    )]
    NoHttpHandler,
    /// It subscribes to topics but has no event handler.
    #[error(
        "the service subscribes to topics but the component does not export `bazaar:platform/event-handler`; build it for bazaar:platform/service or drop `subscribes`"
    )]
    NoEventHandler,
    /// An import the host cannot provide.
    #[error(
        "it needs an import Bazaar does not provide ({0}); services may import WASI 0.2, wasi:keyvalue, wasi:config, wasi:logging and bazaar:platform"
    )]
    UnsatisfiedImport(String),
    /// It needs more than the instance pool, or the memory budgets, give
    /// one instance.
    #[error("it cannot run under this host's limits: {0}")]
    ExceedsLimits(String),
    /// Its trial instantiation failed.
    #[error("it cannot start: {0}")]
    StartFailed(String),
}

impl From<TrialFailure> for LoadError {
    fn from(failure: TrialFailure) -> Self {
        match failure {
            TrialFailure::Memory(refusal) => Self::ExceedsLimits(refusal.to_string()),
            TrialFailure::CpuTime(limit) => Self::StartFailed(format!(
                "instantiating it used up the CPU time limit of {} ms (`[runtime] cpu_time_limit_ms`); a start function must not loop",
                limit.as_millis()
            )),
            TrialFailure::Timeout(limit) => Self::StartFailed(format!(
                "instantiating it took longer than {} ms (`[gateway] request_timeout_ms`)",
                limit.as_millis()
            )),
            TrialFailure::NoSlot => Self::StartFailed(
                "every instance slot of the host stayed busy (`[runtime] max_instances`); retry the deploy".into(),
            ),
            TrialFailure::Failed(error) => Self::StartFailed(format!(
                "instantiating it failed, so every request would: {error}"
            )),
        }
    }
}

/// The engine a kind of service is compiled for, the linker its imports
/// are checked against and the code cache its compiled code is kept in;
/// cheap to clone.
#[derive(Clone)]
pub struct Compiler {
    engine: Engine,
    linker: Arc<Linker<RequestState>>,
    code: CodeCache,
}

impl Compiler {
    /// The compiler for services instantiated as `instancing` says, under
    /// `runtime`'s pool, caching compiled code in `cache_dir`; its engine's
    /// epoch ticks from now on.
    pub fn build(
        runtime: &RuntimeSection,
        instancing: Instancing,
        cache_dir: &Path,
    ) -> anyhow::Result<Self> {
        let engine = engine::build_engine(runtime, instancing)?;
        engine::start_epoch_ticker(&engine)?;
        let code = CodeCache::new(&engine, cache_dir, crate::codecache::DEFAULT_LIMIT)?;
        let linker = engine::build_linker(&engine)?;
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            code,
        })
    }
}

/// Checks and compiles components, each for the engine of its kind of
/// service ([`Instancing`]); cheap to clone.
#[derive(Clone)]
pub struct ComponentLoader {
    fresh: Compiler,
    /// Built the first time a service keeps warm instances: a second pool
    /// of instance slots (address space, and a little memory) that a host
    /// without such services never reserves.
    warm: Arc<OnceLock<Compiler>>,
    /// What the warm one is built from.
    warm_settings: Arc<(RuntimeSection, PathBuf)>,
    /// Instantiates each new component once before it may serve.
    trial: Arc<TrialRun>,
}

impl ComponentLoader {
    /// A loader compiling with `fresh` for services served by a fresh
    /// instance per request, and with a compiler for warm instances built
    /// from `runtime` and `cache_dir` when one is first needed;
    /// instantiating each component once with `trial`.
    pub fn new(
        fresh: Compiler,
        runtime: &RuntimeSection,
        cache_dir: &Path,
        trial: TrialRun,
    ) -> Self {
        Self {
            fresh,
            warm: Arc::default(),
            warm_settings: Arc::new((runtime.clone(), cache_dir.to_owned())),
            trial: Arc::new(trial),
        }
    }

    /// Brings the instance pools' gauges up to date (`/metrics`): slots of
    /// each kind in use and in all, for the fresh-instance engine's pool
    /// and, once built, the warm one's.
    pub fn record_pool_metrics(&self) {
        let slots = crate::engine::PoolSlots::of(&self.warm_settings.0);
        crate::metrics::instance_pool("fresh", slots, &self.fresh.engine);
        if let Some(warm) = self.warm.get()
            && !Engine::same(&warm.engine, &self.fresh.engine)
        {
            crate::metrics::instance_pool("warm", slots, &warm.engine);
        }
    }

    /// The compiler for `spec`'s kind of service. The warm one is built
    /// off the async threads the first time; if it cannot be built, the
    /// fresh one serves instead (warm instances work with it, they only
    /// fault their memory in page by page), and the log says why.
    async fn compiler(&self, spec: &ServiceSpec) -> Compiler {
        if Instancing::of(spec) == Instancing::Fresh {
            return self.fresh.clone();
        }
        if let Some(warm) = self.warm.get() {
            return warm.clone();
        }
        let (warm, settings, fresh) = (
            Arc::clone(&self.warm),
            Arc::clone(&self.warm_settings),
            self.fresh.clone(),
        );
        let built = tokio::task::spawn_blocking(move || {
            warm.get_or_init(|| {
                let (runtime, cache_dir) = &*settings;
                Compiler::build(runtime, Instancing::Warm, cache_dir).unwrap_or_else(|e| {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "cannot build the engine for warm instances; services with `instance_reuse` compile for the fresh-instance engine"
                    );
                    fresh
                })
            })
            .clone()
        })
        .await;
        built.unwrap_or_else(|_| self.fresh.clone())
    }

    /// Checks and compiles `bytes`, whose [`content_hash`] is `version`,
    /// off the async threads, for the kind of service `spec` describes,
    /// and instantiates it once under `spec`'s limits (unset ones are the
    /// host's).
    pub async fn load(
        &self,
        bytes: Pieces,
        version: String,
        source: String,
        spec: &ServiceSpec,
    ) -> Result<LoadedService, LoadError> {
        let Compiler {
            engine,
            linker,
            code,
        } = self.compiler(spec).await;
        let pool = self.trial.pool();
        let size = bytes.len();
        let hash = version.clone();
        let (component, instance_pre) = tokio::task::spawn_blocking(move || {
            compile(&engine, &linker, &code, &hash, &bytes, pool)
        })
        .await
        .map_err(|join| LoadError::Invalid(format!("the compiler task failed: {join}")))??;
        self.try_and_prepare(component, instance_pre, version, source, size, &spec.limits)
            .await
    }

    /// Like [`Self::load`] for a version loaded before, of `size` bytes,
    /// without its bytes: `None` unless its compiled code is in the cache.
    /// A rollback or a fleet's switch to a kept version then neither reads
    /// nor hashes the component again.
    pub async fn load_cached(
        &self,
        version: String,
        source: String,
        size: usize,
        spec: &ServiceSpec,
    ) -> Option<Result<LoadedService, LoadError>> {
        let Compiler {
            engine,
            linker,
            code,
        } = self.compiler(spec).await;
        let hash = version.clone();
        let found = tokio::task::spawn_blocking(move || {
            let component = code.load(&engine, &hash)?;
            Some(resolve_imports(&linker, component))
        })
        .await;
        let (component, instance_pre) = match found {
            Ok(Some(Ok(found))) => found,
            Ok(Some(Err(e))) => return Some(Err(e)),
            Ok(None) => return None,
            Err(join) => {
                return Some(Err(LoadError::Invalid(format!(
                    "the loader task failed: {join}"
                ))));
            }
        };
        Some(
            self.try_and_prepare(component, instance_pre, version, source, size, &spec.limits)
                .await,
        )
    }

    /// Instantiates a compiled component once under `limits`, then
    /// pre-instantiates its handlers.
    async fn try_and_prepare(
        &self,
        component: Component,
        instance_pre: InstancePre<RequestState>,
        version: String,
        source: String,
        size: usize,
        limits: &ServiceLimits,
    ) -> Result<LoadedService, LoadError> {
        let version: Arc<str> = version.into();
        self.trial
            .instantiate(&instance_pre, &version, limits)
            .await?;
        prepare(&component, instance_pre, version, source, size)
    }
}

/// The content hash of a component.
pub fn content_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A component's bytes as the pieces they arrived in: an upload is kept as
/// received, never copied into one buffer unless it must be compiled (a
/// cached component is only mapped from the code cache). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Pieces {
    pieces: Arc<[Bytes]>,
    len: usize,
}

impl Pieces {
    fn from_pieces(pieces: Vec<Bytes>) -> Self {
        let len = pieces.iter().map(Bytes::len).sum();
        Self {
            pieces: pieces.into(),
            len,
        }
    }

    /// How many bytes in all.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> &[Bytes] {
        &self.pieces
    }

    /// The first `n` bytes (fewer when there are fewer).
    pub fn head(&self, n: usize) -> Vec<u8> {
        let mut head = Vec::with_capacity(n);
        for piece in self.pieces.iter() {
            let take = piece.len().min(n - head.len());
            head.extend_from_slice(&piece[..take]);
            if head.len() == n {
                break;
            }
        }
        head
    }

    /// All the bytes in one buffer: the piece itself when there is one,
    /// else a copy.
    pub fn contiguous(&self) -> Bytes {
        match &*self.pieces {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => Bytes::from(many.concat()),
        }
    }
}

impl From<Bytes> for Pieces {
    fn from(bytes: Bytes) -> Self {
        Self::from_pieces(vec![bytes])
    }
}

impl From<Vec<u8>> for Pieces {
    fn from(bytes: Vec<u8>) -> Self {
        Bytes::from(bytes).into()
    }
}

/// A component's bytes and their [`content_hash`], which always match:
/// the only ways to build one compute the hash from the bytes, or find the
/// bytes equal to those of a kept component stored under that hash (see
/// [`ComponentHasher::start_matching`]).
#[derive(Debug, Clone)]
pub struct ComponentBytes {
    bytes: Pieces,
    hash: String,
    /// Found equal to the kept component stored under `hash`, not hashed.
    matched_kept: bool,
    /// Hashed, and found different from the kept file stored under the
    /// same hash: that file is damaged.
    kept_file_differs: bool,
}

impl ComponentBytes {
    /// `bytes`, hashed.
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        let hash = content_hash(&bytes);
        Self {
            bytes: bytes.into(),
            hash,
            matched_kept: false,
            kept_file_differs: false,
        }
    }

    /// Whether the hash is that of a kept component these bytes were found
    /// equal to, byte for byte, rather than computed: trusted as far as
    /// that component's stored file is, which is worth checking later.
    pub fn matched_kept(&self) -> bool {
        self.matched_kept
    }

    /// Whether the kept file stored under this hash was compared with
    /// these bytes and found different: it is damaged, and these bytes,
    /// hashed, are what it should hold.
    pub fn kept_file_differs(&self) -> bool {
        self.kept_file_differs
    }

    /// The bytes (cheap to clone).
    pub fn bytes(&self) -> &Pieces {
        &self.bytes
    }

    /// Their content hash: the version they deploy as.
    pub fn hash(&self) -> &str {
        &self.hash
    }
}

impl Default for ComponentBytes {
    fn default() -> Self {
        Self::new(Bytes::new())
    }
}

/// Checks the header, compiles (which checks the component against the
/// instance pool) and resolves the imports.
fn compile(
    engine: &Engine,
    linker: &Linker<RequestState>,
    code: &CodeCache,
    hash: &str,
    bytes: &Pieces,
    pool: PoolLimits,
) -> Result<(Component, InstancePre<RequestState>), LoadError> {
    match bytes.head(8).get(..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0, 1, 0]) => {}
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => return Err(LoadError::CoreModule),
        Some([0, b'a', b's', b'm', ..]) => {
            return Err(LoadError::Invalid("unknown Wasm binary version".into()));
        }
        _ => return Err(LoadError::NotWasm),
    }
    let component = code
        .load_or_compile(engine, hash, || bytes.contiguous())
        .map_err(|e| compile_error(e, pool))?;
    resolve_imports(linker, component)
}

/// `component` with its imports resolved against `linker`.
fn resolve_imports(
    linker: &Linker<RequestState>,
    component: Component,
) -> Result<(Component, InstancePre<RequestState>), LoadError> {
    let instance_pre = linker
        .instantiate_pre(&component)
        .map_err(|e| LoadError::UnsatisfiedImport(format!("{e:#}")))?;
    Ok((component, instance_pre))
}

/// A compile error, told apart when it is the instance pool refusing the
/// component: wasmtime checks a component against the pool as it compiles
/// it (memories, tables, core instances, their sizes) and says so only in
/// words, so the limits are named here.
fn compile_error(error: wasmtime::Error, pool: PoolLimits) -> LoadError {
    let detail = format!("{error:#}");
    if !detail.contains("pooling allocator") {
        return LoadError::Invalid(detail);
    }
    LoadError::ExceedsLimits(format!(
        "{detail}; one instance may have {} core instances, {} linear memories of up to {} MiB each (`[runtime] max_memory_mib`) and {} tables of up to {} elements",
        pool.core_instances,
        pool.memories,
        pool.memory_bytes >> 20,
        pool.tables,
        pool.table_elements
    ))
}

/// The handlers it exports, pre-instantiated.
fn prepare(
    component: &Component,
    instance_pre: InstancePre<RequestState>,
    version: Arc<str>,
    source: String,
    size: usize,
) -> Result<LoadedService, LoadError> {
    let exports = |prefix: &str| {
        component
            .component_type()
            .exports(component.engine())
            .any(|(name, _)| name.starts_with(prefix))
    };
    let http = if exports(HTTP_EXPORT) {
        Some(ProxyIndices::new(&instance_pre).map_err(|e| LoadError::Invalid(format!("{e:#}")))?)
    } else {
        None
    };
    let events = if exports(EVENT_EXPORT) {
        Some(
            EventHandlerIndices::new(&instance_pre)
                .map_err(|e| LoadError::Invalid(format!("{e:#}")))?,
        )
    } else {
        None
    };
    if http.is_none() && events.is_none() {
        return Err(LoadError::WrongWorld);
    }
    let version_header = HeaderValue::from_str(&version)
        .map_err(|e| LoadError::Invalid(format!("bad version: {e}")))?;
    Ok(LoadedService {
        version,
        version_header,
        source,
        size,
        pre: instance_pre,
        http,
        events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_spans_pieces() {
        let pieces = Pieces::from_pieces(vec![
            Bytes::from_static(b"\0a"),
            Bytes::new(),
            Bytes::from_static(b"sm\x0d\0"),
            Bytes::from_static(b"\x01\0rest"),
        ]);
        assert_eq!(pieces.head(8), b"\0asm\x0d\0\x01\0");
        assert_eq!(pieces.head(100).len(), pieces.len());
        assert_eq!(Pieces::default().head(8), b"");
    }
}
