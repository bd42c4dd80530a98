//! Bazaar runs an online retailer's microservices as sandboxed WebAssembly
//! components behind one HTTP gateway.
//!
//! A service is a component exporting `wasi:http/incoming-handler` (and,
//! to receive events, `bazaar:platform/event-handler`). Each request runs
//! in a fresh instance; each service gets its own durable key-value store,
//! config and grants; services call each other in-process and exchange
//! durable events; each can be deployed, rolled back, added or removed on
//! its own while the rest keep serving, and every such change survives a
//! restart.
//!
//! # Layout
//!
//! - [`config`]: `gateway.toml`, parsed and checked; a service's [`config::ServiceSpec`].
//! - [`engine`]: the one wasmtime `Engine` and `Linker` (pooling, epochs).
//! - [`codecache`]: compiled components on disk by content hash.
//! - [`loader`]: component bytes → a checked, pre-instantiated [`loader::LoadedService`].
//! - [`artifacts`]: every deployed component, by content hash.
//! - [`control`]: the deployment records (current version, history, live services).
//! - [`registry`]: the services, their routes and current versions, swapped atomically.
//! - [`deploy`]: deploy, rollback, live add and remove, and start-up restore.
//! - [`watch`]: redeploys a service when its component file's content changes.
//! - [`router`]: path → service, most specific pattern first.
//! - [`listener`]: accepts connections with timeouts, limits and a cap.
//! - [`gateway`]: the public front door: request id, access log, routing,
//!   authentication, rate limits, CORS, errors.
//! - [`policy`]: a service's route policies (access, rate limit, timeout, CORS).
//! - [`auth`]: the tokens the host signs and verifies, and API keys.
//! - [`secrets`]: secrets kept in private files.
//! - [`context`]: what travels with a request: id, deadline, call chain, trace.
//! - [`runtime`]: one request or event in one fresh instance, under limits.
//! - [`calls`]: service-to-service calls at `http://NAME.internal`, in-process.
//! - [`state`]: per-request store data.
//! - [`capability`]: wasi:keyvalue, bazaar:platform (kv, transaction, events),
//!   wasi:config, wasi:logging, guest stdout/stderr and outbound HTTP.
//! - [`kvstore`]: each service's store (a redb file, or a PostgreSQL schema
//!   on a fleet), with its event outbox.
//! - [`events`]: the event log (redb, or NATS JetStream on a fleet), the
//!   outbox relay and delivery to subscribers.
//! - [`fleet`]: hosts sharing PostgreSQL and JetStream, converging to the
//!   same deployments.
//! - [`metrics`]: Prometheus metrics, and recent figures for the dashboard.
//! - [`telemetry`]: log lines (text or JSON) and span export over OTLP.
//! - [`admin`]: the admin API (deploy, rollback, remove, list, events, health,
//!   metrics, dashboard).
//! - [`host`]: assembles and starts all of the above.
//! - [`cli`]: the `bazaar` command line.
//!
//! # Example
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! let config = bazaar::config::GatewayConfig::load("gateway.toml".as_ref())?;
//! let host = bazaar::host::start(config).await?;
//! println!("serving on http://{}", host.gateway_addr);
//! host.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod admin;
pub mod artifacts;
pub mod auth;
pub mod calls;
pub mod capability;
pub mod cli;
pub mod codecache;
pub mod config;
pub mod context;
pub mod control;
pub mod deploy;
pub mod engine;
pub mod events;
pub mod fleet;
pub mod gateway;
pub mod group_commit;
pub mod host;
pub mod kvstore;
pub mod listener;
pub mod loader;
pub mod metrics;
pub mod policy;
pub mod registry;
pub mod router;
pub mod runtime;
pub mod secrets;
pub mod state;
pub mod telemetry;
pub mod watch;
