//! Turns component bytes into a [`LoadedService`]: checked, compiled and
//! pre-instantiated, ready for a fresh instance per request.
//!
//! The checks run in the order a user fixes them: is it Wasm, is it a
//! component, can every import be satisfied, does it export the HTTP handler.
//! Compilation runs on the blocking pool, never on a request's thread.

use crate::state::HostState;
use sha2::{Digest as _, Sha256};
use std::sync::Arc;
use std::time::SystemTime;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// The export every service must have.
const HANDLER_EXPORT: &str = "wasi:http/incoming-handler@0.2";

/// One compiled, checked version of a service.
pub struct LoadedService {
    /// Content hash (SHA-256, hex) of the component: the version's identity.
    pub version: Arc<str>,
    /// Pre-instantiated component; each request instantiates from this.
    pub pre: ProxyPre<HostState>,
    /// Where the bytes came from (a path, or the admin API).
    pub source: String,
    /// Size of the component in bytes.
    pub size: usize,
    /// When this version was loaded.
    pub loaded_at: SystemTime,
}

impl LoadedService {
    /// The first 12 hex digits of the version, for humans.
    pub fn short_version(&self) -> &str {
        short(&self.version)
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
    /// It does not export the HTTP handler.
    #[error(
        "it does not export `wasi:http/incoming-handler`; a service must target the wasi:http proxy world (or bazaar:platform/service)"
    )]
    WrongWorld,
    /// An import the host cannot provide.
    #[error(
        "it needs an import Bazaar does not provide ({0}); services may import WASI 0.2, wasi:keyvalue, wasi:config and wasi:logging"
    )]
    UnsatisfiedImport(String),
}

/// Checks and compiles components against one engine and linker.
pub struct ComponentLoader {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
}

impl ComponentLoader {
    /// A loader for `engine`, checking imports against `linker`.
    pub fn new(engine: Engine, linker: Linker<HostState>) -> Self {
        Self {
            engine,
            linker: Arc::new(linker),
        }
    }

    /// The engine requests run on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Checks and compiles `bytes`, whose [`content_hash`] is `version`,
    /// off the async threads.
    pub async fn load(
        &self,
        bytes: Vec<u8>,
        version: String,
        source: String,
    ) -> Result<LoadedService, LoadError> {
        let engine = self.engine.clone();
        let linker = Arc::clone(&self.linker);
        tokio::task::spawn_blocking(move || {
            load_blocking(&engine, &linker, &bytes, version.into(), source)
        })
        .await
        .map_err(|join| LoadError::Invalid(format!("the compiler task failed: {join}")))?
    }
}

/// The content hash of a component.
pub fn content_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn load_blocking(
    engine: &Engine,
    linker: &Linker<HostState>,
    bytes: &[u8],
    version: Arc<str>,
    source: String,
) -> Result<LoadedService, LoadError> {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0, 1, 0]) => {}
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => return Err(LoadError::CoreModule),
        Some([0, b'a', b's', b'm', ..]) => {
            return Err(LoadError::Invalid("unknown Wasm binary version".into()));
        }
        _ => return Err(LoadError::NotWasm),
    }
    let component =
        Component::new(engine, bytes).map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
    let instance_pre = linker
        .instantiate_pre(&component)
        .map_err(|e| LoadError::UnsatisfiedImport(format!("{e:#}")))?;
    let exports_handler = component
        .component_type()
        .exports(engine)
        .any(|(name, _)| name.starts_with(HANDLER_EXPORT));
    if !exports_handler {
        return Err(LoadError::WrongWorld);
    }
    let pre = ProxyPre::new(instance_pre).map_err(|_| LoadError::WrongWorld)?;
    Ok(LoadedService {
        version,
        pre,
        source,
        size: bytes.len(),
        loaded_at: SystemTime::now(),
    })
}
