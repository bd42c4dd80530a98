//! Turns component bytes into a [`LoadedService`]: checked, compiled and
//! pre-instantiated, ready for a fresh instance per request.
//!
//! The checks run in the order a user fixes them: is it Wasm, is it a
//! component, can every import be satisfied, does it export a handler.
//! Compilation runs on the blocking pool, never on a request's thread.

use crate::capability::EventHandlerPre;
use crate::config::ServiceSpec;
use crate::state::RequestState;
use http::HeaderValue;
use sha2::{Digest as _, Sha256};
use std::sync::Arc;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

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
    /// Pre-instantiated HTTP handler, when the component exports one.
    pub http: Option<ProxyPre<RequestState>>,
    /// Pre-instantiated event handler, when the component exports one.
    pub events: Option<EventHandlerPre<RequestState>>,
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
}

/// Checks and compiles components against one engine and linker; cheap to clone.
#[derive(Clone)]
pub struct ComponentLoader {
    engine: Engine,
    linker: Arc<Linker<RequestState>>,
}

impl ComponentLoader {
    /// A loader for `engine`, checking imports against `linker`.
    pub fn new(engine: Engine, linker: Linker<RequestState>) -> Self {
        Self {
            engine,
            linker: Arc::new(linker),
        }
    }

    /// Checks and compiles `bytes`, whose [`content_hash`] is `version`,
    /// off the async threads.
    pub async fn load(
        &self,
        bytes: Arc<[u8]>,
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
    linker: &Linker<RequestState>,
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
    let exports = |prefix: &str| {
        component
            .component_type()
            .exports(engine)
            .any(|(name, _)| name.starts_with(prefix))
    };
    let http = if exports(HTTP_EXPORT) {
        Some(
            ProxyPre::new(instance_pre.clone())
                .map_err(|e| LoadError::Invalid(format!("{e:#}")))?,
        )
    } else {
        None
    };
    let events = if exports(EVENT_EXPORT) {
        Some(EventHandlerPre::new(instance_pre).map_err(|e| LoadError::Invalid(format!("{e:#}")))?)
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
        size: bytes.len(),
        http,
        events,
    })
}
