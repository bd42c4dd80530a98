//! Assembles a running host from a [`GatewayConfig`]: engine, stores,
//! services, and the gateway and admin listeners.

use crate::config::GatewayConfig;
use crate::deploy::Deployer;
use crate::engine;
use crate::kvstore::ServiceStore;
use crate::loader::ComponentLoader;
use crate::registry::{ServiceRegistry, ServiceSlot};
use crate::runtime::{RequestLimits, Runtime};
use crate::state::ServiceGrants;
use anyhow::Context as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Environment variable that supplies the admin token.
pub const ADMIN_TOKEN_ENV: &str = "BAZAAR_ADMIN_TOKEN";

/// State shared by the gateway, the admin API and the watcher.
pub struct HostShared {
    /// Services and routes.
    pub registry: ServiceRegistry,
    /// Runs requests.
    pub runtime: Runtime,
    /// Changes versions.
    pub deployer: Deployer,
    /// Bearer token of the admin API.
    pub admin_token: String,
    /// `[gateway] max_body_bytes`.
    pub max_body_bytes: usize,
    /// `[admin] max_component_bytes`.
    pub max_component_bytes: usize,
}

/// A host that is serving; drop or [`RunningHost::shutdown`] to stop it.
pub struct RunningHost {
    /// Where the gateway listens.
    pub gateway_addr: SocketAddr,
    /// Where the admin API listens.
    pub admin_addr: SocketAddr,
    /// The admin bearer token.
    pub admin_token: String,
    /// State, for in-process inspection.
    pub shared: Arc<HostShared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningHost {
    /// Stops accepting, lets in-flight requests finish, and waits for the
    /// listeners to close.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Loads every service in `config` and starts serving on its listeners.
pub async fn start(config: GatewayConfig) -> anyhow::Result<RunningHost> {
    let data_dir = config.data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let engine = engine::build_engine(&config.runtime, &config.cache_dir())?;
    engine::start_epoch_ticker(&engine)?;
    let linker = engine::build_linker(&engine)?;

    let mut slots = Vec::new();
    for (name, service) in &config.services {
        let store = ServiceStore::open(&data_dir, name)?;
        let grants = ServiceGrants {
            name: name.as_str().into(),
            store: Arc::new(store),
            config: service
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect(),
            outbound_hosts: service.allowed_outbound_hosts.clone().into(),
        };
        slots.push(ServiceSlot::new(
            name.clone(),
            service.routes.clone(),
            config.resolve(&service.component),
            Arc::new(grants),
        ));
    }
    let registry = ServiceRegistry::new(slots).context("gateway.toml has conflicting routes")?;

    let runtime_config = &config.runtime;
    let runtime = Runtime::new(
        engine.clone(),
        RequestLimits {
            cpu_ticks: (runtime_config.cpu_time_limit_ms / engine::EPOCH_TICK.as_millis() as u64)
                .max(1),
            memory_bytes: runtime_config.max_memory_mib << 20,
            timeout: Duration::from_millis(config.gateway.request_timeout_ms),
        },
    );
    let deployer = Deployer::new(
        ComponentLoader::new(engine, linker),
        runtime_config.keep_versions,
    );
    let shared = Arc::new(HostShared {
        registry,
        runtime,
        deployer,
        admin_token: admin_token(&config, &data_dir)?,
        max_body_bytes: config.gateway.max_body_bytes,
        max_component_bytes: config.admin.max_component_bytes,
    });
    load_all(&shared).await;

    let gateway = bind(config.gateway.listen, "gateway").await?;
    let admin = bind(config.admin.listen, "admin API").await?;
    let gateway_addr = gateway.local_addr()?;
    let admin_addr = admin.local_addr()?;
    let (shutdown, signal) = watch::channel(false);

    let mut tasks = vec![
        serve(
            gateway,
            crate::gateway::app(Arc::clone(&shared)),
            signal.clone(),
        ),
        serve(
            admin,
            crate::admin::app(Arc::clone(&shared)),
            signal.clone(),
        ),
    ];
    if config.gateway.watch {
        tasks.push(tokio::spawn(crate::watch::run(Arc::clone(&shared), signal)));
    }
    Ok(RunningHost {
        gateway_addr,
        admin_addr,
        admin_token: shared.admin_token.clone(),
        shared,
        shutdown,
        tasks,
    })
}

/// Loads each service's component file. A service that fails is marked
/// failed (its routes answer 503) and the others still start.
async fn load_all(shared: &HostShared) {
    for slot in shared.registry.services() {
        let path = &slot.component_path;
        let source = path.display().to_string();
        let result = match tokio::fs::read(path).await {
            Ok(bytes) => shared
                .deployer
                .deploy(slot, bytes, source.clone())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!(
                "service `{}`: cannot read {source}: {e}; build the component or fix `component` in gateway.toml",
                slot.name
            )),
        };
        if let Err(message) = result {
            tracing::error!("{message}");
            slot.mark_failed(message);
        }
    }
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for the {what} on {addr}; is the port in use?"))
}

fn serve(
    listener: TcpListener,
    app: axum::Router,
    mut signal: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let stop = async move {
            let _ = signal.wait_for(|stop| *stop).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!("listener failed: {e}");
        }
    })
}

/// The file a generated admin token is kept in.
pub fn admin_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

/// The admin token: from the environment, else `gateway.toml`, else the
/// token file in the data directory, generating that file on first use.
fn admin_token(config: &GatewayConfig, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(token) = configured_admin_token(config)? {
        return Ok(token);
    }
    let path = admin_token_path(data_dir);
    let token = uuid::Uuid::new_v4().simple().to_string();
    write_private(&path, &token)
        .with_context(|| format!("cannot write the admin token to {}", path.display()))?;
    tracing::info!("generated an admin token in {}", path.display());
    Ok(token)
}

/// The admin token if one is set or was generated before, without generating one.
pub fn configured_admin_token(config: &GatewayConfig) -> anyhow::Result<Option<String>> {
    if let Ok(token) = std::env::var(ADMIN_TOKEN_ENV)
        && !token.trim().is_empty()
    {
        return Ok(Some(token.trim().to_owned()));
    }
    if let Some(token) = &config.admin.token {
        return Ok(Some(token.clone()));
    }
    let path = admin_token_path(&config.data_dir());
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => Ok(Some(token.trim().to_owned())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}
