//! Bazaar runs an online retailer's microservices as sandboxed WebAssembly
//! components behind one HTTP gateway.
//!
//! A service is a component exporting `wasi:http/incoming-handler`. Each
//! request runs in a fresh instance; each service gets its own durable
//! key-value store and config; each can be redeployed or rolled back on its
//! own while the rest keep serving.
//!
//! # Layout
//!
//! - [`config`]: `gateway.toml`, parsed and checked.
//! - [`engine`]: the one wasmtime `Engine` and `Linker` (pooling, epochs, code cache).
//! - [`loader`]: component bytes → a checked, pre-instantiated [`loader::LoadedService`].
//! - [`registry`]: services and the version each serves, swapped atomically.
//! - [`deploy`]: deploy and rollback, the only way a version changes.
//! - [`watch`]: redeploys a service when its component file changes.
//! - [`router`]: path → service, most specific pattern first.
//! - [`gateway`]: the public listener: request id, access log, routing, errors.
//! - [`runtime`]: one request in one fresh instance, under CPU and memory limits.
//! - [`state`]: per-request store data and a service's grants.
//! - [`capability`]: wasi:keyvalue, wasi:config, wasi:logging and outbound HTTP.
//! - [`kvstore`]: each service's redb file.
//! - [`admin`]: the admin API (deploy, rollback, list, health).
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
pub mod capability;
pub mod cli;
pub mod config;
pub mod deploy;
pub mod engine;
pub mod gateway;
pub mod host;
pub mod kvstore;
pub mod loader;
pub mod registry;
pub mod router;
pub mod runtime;
pub mod state;
pub mod watch;
