//! Assembles a running host from a [`GatewayConfig`]: engine, registry,
//! runtime, event log, deployer; then restores the services and starts the
//! listeners and background tasks. Each consumer gets only the state it needs.

use crate::admin::{self, AdminState};
use crate::artifacts::ArtifactStore;
use crate::auth::{ApiKeys, TokenAuthority};
use crate::config::BackendKind;
use crate::config::GatewayConfig;
use crate::control::{Control, ControlDb};
use crate::deploy::{Deployer, DeployerParts, Seed};
use crate::engine::Instancing;
use crate::events::EventLog;
use crate::events::delivery::{Delivery, RetryPolicy};
use crate::events::embedded::EmbeddedLog;
use crate::events::jetstream::JetStreamLog;
use crate::events::relay::Relay;
use crate::fleet::Fleet;
use crate::fleet::follow::Follower;
use crate::gateway::GatewayState;
use crate::kvstore::StoreBackend;
use crate::listener::{self, ConnectionLimits};
use crate::loader::{Compiler, ComponentLoader};
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
    let fleet = match config.backend.kind {
        BackendKind::Embedded => None,
        BackendKind::Fleet => Some(Fleet::connect(&config).await?),
    };
    let (admin_token, tokens) = match &fleet {
        None => (
            admin::token::resolve(&config, &data_dir)?,
            TokenAuthority::load(&config.auth, &data_dir)?,
        ),
        Some(fleet) => {
            let key = match TokenAuthority::configured_key(&config.auth)? {
                Some(key) => key,
                None => fleet
                    .control
                    .secret("jwt-key", &crate::secrets::generate())
                    .await
                    .context("cannot read the fleet's token signing key")?,
            };
            (
                admin::token::resolve_fleet(&config, &data_dir, &fleet.control).await?,
                TokenAuthority::with_key(&key, &config.auth)?,
            )
        }
    };
    let tokens = Arc::new(tokens);
    let api_keys = Arc::new(ApiKeys::load(&config.auth)?);
    if !config.admin.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %config.admin.listen,
            "the admin API listens beyond loopback without TLS: its bearer token travels in clear text; keep it on 127.0.0.1 or put TLS in front"
        );
    }
    let fresh = Compiler::build(&config.runtime, Instancing::Fresh, &config.cache_dir())?;

    let registry = Arc::new(ServiceRegistry::default());
    let runtime_config = &config.runtime;
    let warm_idle_timeout = runtime_config.warm_idle_timeout_s;
    let sandbox = Sandbox::new(runtime_config);
    let runtime = Runtime::new(
        sandbox.clone(),
        Arc::clone(&registry),
        runtime_config.max_call_depth,
    );
    let request_timeout = Duration::from_millis(config.gateway.request_timeout_ms);
    let log: Arc<dyn EventLog> = match &fleet {
        None => Arc::new(EmbeddedLog::open(&data_dir)?),
        Some(fleet) => Arc::new(
            JetStreamLog::open(
                fleet.jetstream.clone(),
                Duration::from_millis(fleet.settings.event_ack_wait_ms),
            )
            .await?,
        ),
    };
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
    let trial = TrialRun::open(sandbox, &data_dir, &env, Arc::clone(&registry))?;
    let artifacts = ArtifactStore::open(&data_dir)?;
    let (control, artifacts, stores) = match &fleet {
        None => (
            Control::Embedded(Arc::new(ControlDb::open(&data_dir)?)),
            artifacts,
            StoreBackend::Embedded {
                data_dir: data_dir.clone(),
            },
        ),
        Some(fleet) => (
            Control::Fleet(Arc::clone(&fleet.control)),
            artifacts.with_fleet(Arc::clone(&fleet.control)),
            StoreBackend::Postgres(fleet.pg.clone()),
        ),
    };
    let deployer = Arc::new(Deployer::new(DeployerParts {
        loader: ComponentLoader::new(fresh, &config.runtime, &config.cache_dir(), trial),
        control,
        artifacts: Arc::new(artifacts),
        registry: Arc::clone(&registry),
        log: Arc::clone(&log),
        stores,
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
        fleet: fleet.as_ref().map(|f| Arc::clone(&f.control)),
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
            crate::gateway::Gateway::new(gateway_state),
            limits,
            signal.clone(),
            listener::ConnectionThreads {
                count: gateway_config.threads,
                batch_scheduling: gateway_config.batch_scheduling,
            },
        )
        .context("cannot start the gateway's connection threads")?,
        listener::serve(
            admin_listener,
            admin::app(admin_state),
            ConnectionLimits {
                max_header_bytes: limits.max_header_bytes.max(ADMIN_READ_BUFFER),
                max_connections: limits.max_connections.min(ADMIN_MAX_CONNECTIONS),
                ..limits
            },
            signal.clone(),
            listener::ConnectionThreads::SHARED,
        )
        .context("cannot start the admin listener")?,
        tokio::spawn(delivery.run(signal.clone())),
        tokio::spawn(relay.run(signal.clone())),
        tokio::spawn(prune_rate_limits(Arc::clone(&registry), signal.clone())),
        tokio::spawn(prune_idle_instances(
            Arc::clone(&registry),
            warm_idle_timeout,
            signal.clone(),
        )),
    ];
    // The listeners are open; now every service compiles, in parallel,
    // and serves as soon as its own component is ready.
    let (ready_tx, ready) = watch::channel(false);
    let loader = Arc::clone(&deployer);
    let watch_files = config
        .gateway
        .watch
        .then(|| Watcher::new(Arc::clone(&registry), Arc::clone(&deployer)));
    let follower = fleet.as_ref().map(|fleet| Follower {
        deployer: Arc::clone(&deployer),
        control: Arc::clone(&fleet.control),
        registry: Arc::clone(&registry),
        gateway: gateway_addr.to_string(),
        admin: admin_addr.to_string(),
        poll: Duration::from_millis(fleet.settings.poll_ms),
    });
    let follow_signal = signal.clone();
    tasks.push(tokio::spawn(async move {
        loader.load_pending(pending).await;
        let _ = ready_tx.send(true);
        // Following the fleet starts from what start-up loaded.
        if let Some(follower) = follower {
            tokio::spawn(follower.run(follow_signal));
        }
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

/// How much the admin API reads from a connection at once. hyper's read
/// buffer is also the cap on a request head, and the gateway's 16 KiB made
/// an 18 MB upload 1,150 reads and task wake-ups, each liable to wait
/// behind guests on a busy host (a cached 18 MB deploy under load: 40-54
/// ms median before, 30-35 after). A request head here may take about this
/// much too (hyper checks the buffer while a head is incomplete, so one
/// read may run past it).
const ADMIN_READ_BUFFER: usize = 256 << 10;

/// Connections the admin API holds open at once (operators, tools and
/// dashboards), so its larger buffers stay bounded: 64 MiB at most.
const ADMIN_MAX_CONNECTIONS: usize = 256;

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for the {what} on {addr}; is the port in use?"))
}

/// Drops, once a second, the warm instances idle for more than
/// `timeout_s` seconds (none when it is 0), freeing their pool slots and
/// memory: a burst leaves up to `max_concurrency` instances per service.
async fn prune_idle_instances(
    registry: Arc<ServiceRegistry>,
    timeout_s: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    if timeout_s == 0 {
        return;
    }
    let clock = &crate::runtime::IDLE_CLOCK;
    clock.update();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
        let Some(cutoff) = clock.update().checked_sub(timeout_s) else {
            continue;
        };
        for slot in registry.load().services() {
            if let Some(pool) = &slot.context.warm {
                pool.drop_idle_before(cutoff);
            }
        }
    }
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
