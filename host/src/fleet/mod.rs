//! A fleet of hosts: every host of one fleet shares a PostgreSQL database
//! and a NATS JetStream server, chosen with `[backend] kind = "fleet"`.
//!
//! - Service data and each service's outbox live in PostgreSQL, one schema
//!   per service ([`crate::kvstore::postgres`]).
//! - Events go through JetStream, a durable consumer per subscription
//!   ([`crate::events::jetstream`]).
//! - Deployment records, components, the shared secrets and every host's
//!   state live in the `bazaar_control` schema ([`control`]); each host
//!   follows the records and converges to them ([`follow`]).
//!
//! A host that cannot reach either server at start-up stops with an error
//! naming it; once running, lost connections are re-established with
//! backoff while requests that need them fail cleanly.

pub mod control;
pub mod follow;
pub mod pg;

use crate::config::{BackendSection, GatewayConfig};
use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;

pub use control::FleetControl;

/// The connections a fleet host shares between its parts.
pub struct Fleet {
    /// The PostgreSQL pool.
    pub pg: pg::Pg,
    /// JetStream, on a client that reconnects by itself.
    pub jetstream: async_nats::jetstream::Context,
    /// Deployment records, components, secrets, host states.
    pub control: Arc<FleetControl>,
    /// This host's name in the fleet.
    pub host: String,
    /// `[backend]`, as configured.
    pub settings: BackendSection,
}

impl Fleet {
    /// Connects to both servers of `[backend]`; fails, naming the server,
    /// when either cannot be reached.
    pub async fn connect(config: &GatewayConfig) -> anyhow::Result<Arc<Self>> {
        let settings = config.backend.clone();
        let timeout = Duration::from_millis(settings.connect_timeout_ms);
        let pg_url = settings
            .postgres_url()
            .context("[backend] postgres_url is not set")?;
        let nats_url = settings
            .nats_url()
            .context("[backend] nats_url is not set")?;
        let pg = pg::Pg::connect(&pg_url, settings.postgres_pool_size, timeout).await?;
        let jetstream = connect_nats(&nats_url, timeout).await?;
        let host = settings
            .host_name
            .clone()
            .unwrap_or_else(|| default_host_name(config));
        let control = Arc::new(FleetControl::open(pg.clone(), host.clone()).await?);
        tracing::info!(host = %host, postgres = %pg::redacted(&pg_url), nats = %nats_url, "joined the fleet");
        Ok(Arc::new(Self {
            pg,
            jetstream,
            control,
            host,
            settings,
        }))
    }
}

/// The machine's name and the gateway port, e.g. `web-1:8080`.
fn default_host_name(config: &GatewayConfig) -> String {
    let machine = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    format!("{machine}:{}", config.gateway.listen.port())
}

async fn connect_nats(
    url: &str,
    timeout: Duration,
) -> anyhow::Result<async_nats::jetstream::Context> {
    let client = async_nats::ConnectOptions::new()
        .name("bazaar")
        .connection_timeout(timeout)
        .request_timeout(Some(timeout))
        // After the first connection, reconnect forever, backing off.
        .max_reconnects(None)
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => {
                    tracing::warn!("lost the connection to NATS; reconnecting");
                }
                async_nats::Event::Connected => tracing::info!("connected to NATS"),
                other => tracing::debug!(event = %other, "NATS"),
            }
        })
        .connect(url)
        .await
        .with_context(|| {
            format!("cannot reach NATS at {url}; is nats-server running with JetStream (-js)? ([backend] nats_url)")
        })?;
    let jetstream = async_nats::jetstream::ContextBuilder::new()
        .timeout(timeout)
        .build(client);
    Ok(jetstream)
}
