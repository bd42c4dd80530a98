//! Assembles a running host from a [`GatewayConfig`]: engine, registry,
//! runtime, event log, deployer; then restores the services and starts the
//! listeners and background tasks. Each consumer gets only the state it needs.

use crate::admin::{self, AdminState};
use crate::artifacts::ArtifactStore;
use crate::auth::{ApiKeys, TokenAuthority};
use crate::config::GatewayConfig;
use crate::control::ControlDb;
use crate::deploy::{Deployer, DeployerParts, Seed};
use crate::engine;
use crate::events::EventLog;
use crate::events::delivery::{Delivery, RetryPolicy};
use crate::events::embedded::EmbeddedLog;
use crate::events::relay::Relay;
use crate::gateway::GatewayState;
use crate::listener::{self, ConnectionLimits};
use crate::loader::ComponentLoader;
use crate::registry::{Limits, ServiceEnv, ServiceRegistry};
use crate::runtime::{Runtime, Sandbox, TrialRun};
use crate::watch::Watcher;
use anyhow::Context as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// A host that is serving; [`RunningHost::shutdown`] stops it.
pub struct RunningHost {
    /// Where the gateway listens.
    pub gateway_addr: SocketAddr,
    /// Where the admin API listens.
    pub admin_addr: SocketAddr,
    /// The admin bearer token.
    pub admin_token: String,
    /// The services, for in-process inspection.
    pub registry: Arc<ServiceRegistry>,
    /// Deploys, for in-process use.
    pub deployer: Arc<Deployer>,
    /// Becomes true once every service loaded (or failed to) at start-up.
    ready: watch::Receiver<bool>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningHost {
    /// Waits until every service has loaded, or failed to, at start-up;
    /// until then their routes answer 503.
    pub async fn ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|done| *done).await.map(|_| ());
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the
    /// listeners and background tasks to stop.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Restores every service and starts serving on the configured listeners.
pub async fn start(config: GatewayConfig) -> anyhow::Result<RunningHost> {
    let data_dir = config.data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let admin_token = admin::token::resolve(&config, &data_dir)?;
    let tokens = Arc::new(TokenAuthority::load(&config.auth, &data_dir)?);
    let api_keys = Arc::new(ApiKeys::load(&config.auth)?);
    if !config.admin.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %config.admin.listen,
            "the admin API listens beyond loopback without TLS: its bearer token travels in clear text; keep it on 127.0.0.1 or put TLS in front"
        );
    }
    let engine = engine::build_engine(&config.runtime, &config.cache_dir())?;
    engine::start_epoch_ticker(&engine)?;
    let linker = engine::build_linker(&engine)?;

    let registry = Arc::new(ServiceRegistry::default());
    let runtime_config = &config.runtime;
    let sandbox = Sandbox::new(engine.clone(), runtime_config);
    let runtime = Runtime::new(
        sandbox.clone(),
        Arc::clone(&registry),
        runtime_config.max_call_depth,
    );
    let request_timeout = Duration::from_millis(config.gateway.request_timeout_ms);
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(&data_dir)?);
    let outbox_bell = Arc::new(Notify::new());
    let delivery = Delivery::new(
        Arc::clone(&registry),
        Arc::clone(&runtime),
        Arc::clone(&log),
        RetryPolicy::new(&config.events),
    );
    let seeds = config
        .services
        .iter()
        .map(|(name, service)| {
            let seed = Seed {
                path: config.resolve(&service.component),
                spec: service.spec(),
            };
            (name.clone(), seed)
        })
        .collect();
    let env = ServiceEnv {
        outbox_bell: Arc::clone(&outbox_bell),
        defaults: Limits {
            max_concurrency: runtime_config.max_concurrency,
            memory_bytes: runtime_config.max_memory_mib << 20,
            cpu_time: Duration::from_millis(runtime_config.cpu_time_limit_ms),
            timeout: request_timeout,
        },
        tokens: Arc::clone(&tokens),
    };
    let trial = TrialRun::open(sandbox, &data_dir, &env)?;
    let deployer = Arc::new(Deployer::new(DeployerParts {
        loader: ComponentLoader::new(engine, linker, trial),
        control: ControlDb::open(&data_dir)?,
        artifacts: ArtifactStore::open(&data_dir)?,
        registry: Arc::clone(&registry),
        log: Arc::clone(&log),
        data_dir: data_dir.clone(),
        seeds,
        keep_versions: runtime_config.keep_versions,
        env,
    }));
    let pending = deployer.restore().await?;
    // Subscriptions exist before the relay moves anything left in an
    // outbox, so no event meets a topic without its subscribers.
    delivery.sync().await;

    let gateway = bind(config.gateway.listen, "gateway").await?;
    let admin_listener = bind(config.admin.listen, "admin API").await?;
    let gateway_addr = gateway.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let (shutdown, signal) = watch::channel(false);

    let stats = Arc::new(crate::metrics::Stats::default());
    // Installs the process's metrics recorder before the first request.
    let _ = crate::metrics::handle();
    let gateway_state = Arc::new(GatewayState {
        registry: Arc::clone(&registry),
        runtime,
        tokens: Arc::clone(&tokens),
        api_keys,
        max_body_bytes: config.gateway.max_body_bytes,
        max_uri_bytes: config.gateway.max_uri_bytes,
        stats: Arc::clone(&stats),
    });
    let admin_state = Arc::new(AdminState {
        deployer: Arc::clone(&deployer),
        registry: Arc::clone(&registry),
        log: Arc::clone(&log),
        delivery: Arc::clone(&delivery),
        token: admin_token.clone(),
        tokens,
        stats,
        max_component_bytes: config.admin.max_component_bytes,
    });
    let relay = Relay::new(
        Arc::clone(&registry),
        log,
        Arc::clone(&delivery),
        outbox_bell,
    );
    let gateway_config = &config.gateway;
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_millis(gateway_config.header_read_timeout_ms),
        max_connections: gateway_config.max_connections,
        max_headers: gateway_config.max_headers,
        max_header_bytes: gateway_config.max_header_bytes,
    };
    let mut tasks = vec![
        listener::serve(
            gateway,
            crate::gateway::app(gateway_state),
            limits,
            signal.clone(),
        ),
        listener::serve(
            admin_listener,
            admin::app(admin_state),
            limits,
            signal.clone(),
        ),
        tokio::spawn(delivery.run(signal.clone())),
        tokio::spawn(relay.run(signal.clone())),
        tokio::spawn(prune_rate_limits(Arc::clone(&registry), signal.clone())),
    ];
    // The listeners are open; now every service compiles, in parallel,
    // and serves as soon as its own component is ready.
    let (ready_tx, ready) = watch::channel(false);
    let loader = Arc::clone(&deployer);
    let watch_files = config
        .gateway
        .watch
        .then(|| Watcher::new(Arc::clone(&registry), Arc::clone(&deployer)));
    tasks.push(tokio::spawn(async move {
        loader.load_pending(pending).await;
        let _ = ready_tx.send(true);
        // Watching starts from what start-up deployed.
        if let Some(watcher) = watch_files {
            watcher.run(signal).await;
        }
    }));
    Ok(RunningHost {
        gateway_addr,
        admin_addr,
        admin_token,
        registry,
        deployer,
        ready,
        shutdown,
        tasks,
    })
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for the {what} on {addr}; is the port in use?"))
}

/// Drops the rate-limit state of clients idle long enough to be back to a
/// full bucket, so the tables do not grow with every client ever seen.
async fn prune_rate_limits(registry: Arc<ServiceRegistry>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = shutdown.changed() => return,
        }
        for slot in registry.load().services() {
            slot.context.policy.prune();
        }
    }
}
