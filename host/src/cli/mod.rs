//! The `bazaar` command line: `serve` runs a host; `deploy`, `rollback` and
//! `services` talk to a running host's admin API.

use crate::config::GatewayConfig;
use crate::deploy::DeployOutcome;
use crate::host::{self, ADMIN_TOKEN_ENV};
use crate::loader::short;
use crate::registry::ServiceStatus;
use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

/// Runs an online retailer's microservices as sandboxed Wasm components.
#[derive(Debug, Parser)]
#[command(name = "bazaar", version)]
pub struct Cli {
    /// The gateway file.
    #[arg(long, short, global = true, default_value = "gateway.toml")]
    pub config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// A `bazaar` subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start every service in the gateway file.
    Serve {
        /// Redeploy a service when its component file changes.
        #[arg(long)]
        watch: bool,
    },
    /// Hot-swap one service on a running host.
    Deploy {
        /// The service, as named in the gateway file.
        service: String,
        /// The component to deploy.
        file: PathBuf,
        /// How to reach the admin API.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Return a service to its previous version.
    Rollback {
        /// The service.
        service: String,
        /// How to reach the admin API.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List services with their version, routes and state.
    Services {
        /// How to reach the admin API.
        #[command(flatten)]
        admin: AdminArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Where the admin API is and how to authenticate.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Admin API base URL; defaults to `[admin] listen` of the gateway file.
    #[arg(long)]
    pub admin_url: Option<String>,
    /// Admin token; defaults to $BAZAAR_ADMIN_TOKEN, the gateway file, or
    /// the token file in the data directory.
    #[arg(long)]
    pub token: Option<String>,
}

/// Runs the command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { watch } => serve(&cli.config, watch).await,
        Command::Deploy {
            service,
            file,
            admin,
        } => {
            let client = AdminClient::new(&cli.config, admin)?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let outcome: DeployOutcome = client
                .send_file(&format!("/services/{service}"), &file, bytes)
                .await?;
            if outcome.changed {
                println!(
                    "deployed {} to `{service}`: version {} (was {})",
                    file.display(),
                    short(&outcome.version),
                    outcome.previous.as_deref().map(short).unwrap_or("none")
                );
            } else {
                println!(
                    "`{service}` already runs version {}",
                    short(&outcome.version)
                );
            }
            Ok(())
        }
        Command::Rollback { service, admin } => {
            let client = AdminClient::new(&cli.config, admin)?;
            let outcome: DeployOutcome = client
                .send(
                    reqwest::Method::POST,
                    &format!("/services/{service}/rollback"),
                    Vec::new(),
                )
                .await?;
            println!(
                "rolled back `{service}` to version {}",
                short(&outcome.version)
            );
            Ok(())
        }
        Command::Services { admin, json } => {
            let client = AdminClient::new(&cli.config, admin)?;
            let services: Vec<ServiceStatus> = client
                .send(reqwest::Method::GET, "/services", Vec::new())
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&services)?);
            } else {
                print_services(&services);
            }
            Ok(())
        }
    }
}

async fn serve(config_path: &Path, watch: bool) -> anyhow::Result<()> {
    let mut config = GatewayConfig::load(config_path)?;
    config.gateway.watch |= watch;
    let running = host::start(config).await?;
    // Printed on stdout, one line each, so scripts can find the ports.
    println!(
        "bazaar: gateway listening on http://{}",
        running.gateway_addr
    );
    println!(
        "bazaar: admin API listening on http://{}",
        running.admin_addr
    );
    wait_for_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn print_services(services: &[ServiceStatus]) {
    println!("{:<16} {:<8} {:<14} ROUTES", "SERVICE", "STATE", "VERSION");
    for s in services {
        println!(
            "{:<16} {:<8} {:<14} {}",
            s.name,
            s.state,
            s.version.as_deref().map(short).unwrap_or("-"),
            s.routes.join(" ")
        );
        if let Some(error) = &s.error {
            println!("  error: {error}");
        }
    }
}

struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    fn new(config_path: &Path, args: AdminArgs) -> anyhow::Result<Self> {
        let config = if config_path.exists() || args.admin_url.is_none() || args.token.is_none() {
            Some(GatewayConfig::load(config_path)?)
        } else {
            None
        };
        let base = match (args.admin_url, &config) {
            (Some(url), _) => url.trim_end_matches('/').to_owned(),
            (None, Some(config)) => format!("http://{}", config.admin.listen),
            (None, None) => bail!("pass --admin-url or a gateway file with --config"),
        };
        let token = match (args.token, &config) {
            (Some(token), _) => token,
            (None, Some(config)) => host::configured_admin_token(config)?.with_context(|| {
                format!("no admin token: set {ADMIN_TOKEN_ENV}, pass --token, or start the host once so it writes one")
            })?,
            (None, None) => bail!("pass --token or set {ADMIN_TOKEN_ENV}"),
        };
        Ok(Self {
            base,
            token,
            http: reqwest::Client::new(),
        })
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<T> {
        let request = self.http.request(method, format!("{}{path}", self.base));
        self.exchange(request.body(body)).await
    }

    /// PUTs a component, naming its file so the host's errors can too.
    async fn send_file<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        file: &Path,
        bytes: Vec<u8>,
    ) -> anyhow::Result<T> {
        let request = self
            .http
            .put(format!("{}{path}", self.base))
            .header(crate::admin::SOURCE_HEADER, file.display().to_string())
            .body(bytes);
        self.exchange(request).await
    }

    async fn exchange<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| {
                format!(
                    "cannot reach the admin API at {}; is `bazaar serve` running?",
                    self.base
                )
            })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .context("cannot read the admin API's answer")?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or(text);
            bail!("{message} (HTTP {status})");
        }
        serde_json::from_str(&text)
            .with_context(|| format!("unexpected answer from the admin API: {text}"))
    }
}
