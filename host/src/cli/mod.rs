//! The `bazaar` command line: `serve` runs a host; the other commands talk
//! to a running host's admin API.

mod client;
mod new;
mod print;

pub use client::{AdminArgs, AdminClient};

use crate::config::{ConfigValue, GatewayConfig, ServiceSpec};
use crate::deploy::{DeployOutcome, RemoveOutcome, ServiceStatus};
use crate::events::{DeadLetter, SubscriptionStats};
use crate::fleet::follow::FleetView;
use crate::host;
use crate::loader::short;
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use reqwest::Method;
use std::path::{Path, PathBuf};

/// Runs an online retailer's microservices as sandboxed Wasm components.
#[derive(Debug, Parser)]
#[command(name = "bazaar", version)]
pub struct Cli {
    /// The gateway file.
    #[arg(long, short, global = true, default_value = "gateway.toml")]
    pub config: PathBuf,
    /// Log lines as `text` or `json` (default: `[telemetry] log_format`, else text).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<crate::telemetry::LogFormat>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// A `bazaar` subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start every service in the gateway file (and those added live).
    Serve {
        /// Redeploy a service when its component file changes.
        #[arg(long)]
        watch: bool,
    },
    /// Deploy a component to a service on a running host, adding the
    /// service when it is new (give it --route or --subscribes then).
    Deploy {
        /// The service.
        service: String,
        /// The component to deploy.
        file: PathBuf,
        /// Routes and grants of a service added live.
        #[command(flatten)]
        spec: SpecArgs,
        /// Refuse (409) unless this version is current; `none` for a new service.
        #[arg(long)]
        expect: Option<String>,
        /// How to reach the admin API.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Activate an earlier version of a service (or, with --to, any kept one).
    Rollback {
        /// The service.
        service: String,
        /// The version to activate: its hash, or the first 7 or more
        /// characters of it, from `bazaar services`.
        #[arg(long)]
        to: Option<String>,
        /// Refuse (409) unless this version is current; by default the
        /// version current when the command starts, so a retry is harmless.
        #[arg(long)]
        expect: Option<String>,
        /// How to reach the admin API.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Take a service out of a running host.
    Remove {
        /// The service.
        service: String,
        /// Delete its data (key-value store, events) too.
        #[arg(long)]
        purge: bool,
        /// How to reach the admin API.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List services with their version, origin, routes and state.
    Services {
        /// How to reach the admin API.
        #[command(flatten)]
        admin: AdminArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// On a fleet: every host, and whether it serves the fleet's versions.
    Fleet {
        /// How to reach the admin API.
        #[command(flatten)]
        admin: AdminArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List event subscriptions with their backlog and dead letters.
    Events {
        /// How to reach the admin API.
        #[command(flatten)]
        admin: AdminArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List dead letters.
    DeadLetters {
        /// Only this subscriber's.
        #[arg(long)]
        subscriber: Option<String>,
        /// How to reach the admin API.
        #[command(flatten)]
        admin: AdminArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Scaffold a new service (Rust, or Python with --lang python).
    New(new::NewArgs),
    /// Have the host sign a token, e.g. an admin's: `bazaar token --role admin`.
    Token {
        /// Whom it names (its `sub`).
        #[arg(long, default_value = "operator")]
        subject: String,
        /// A role it carries (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Lifetime in seconds; default `[auth] token_ttl_s`.
        #[arg(long)]
        ttl: Option<u64>,
        /// How to reach the admin API.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Deliver a subscriber's dead letters again.
    Replay {
        /// The subscriber.
        subscriber: String,
        /// Only this topic's.
        #[arg(long)]
        topic: Option<String>,
        /// How to reach the admin API.
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Routes, grants and config given with a deploy.
#[derive(Debug, Default, clap::Args)]
pub struct SpecArgs {
    /// A route pattern the service owns (repeatable).
    #[arg(long = "route")]
    pub routes: Vec<String>,
    /// A service it may call (repeatable).
    #[arg(long = "calls")]
    pub calls: Vec<String>,
    /// A topic it may publish to (repeatable).
    #[arg(long = "publishes")]
    pub publishes: Vec<String>,
    /// A topic it receives (repeatable).
    #[arg(long = "subscribes")]
    pub subscribes: Vec<String>,
    /// An outside host it may call, `scheme://host[:port]` (repeatable).
    #[arg(long = "outbound")]
    pub outbound: Vec<String>,
    /// A config value, `KEY=VALUE` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Who may call its routes: `public` (the default), `authenticated`
    /// (any valid token or API key) or `role:NAME`.
    #[arg(long = "access", value_name = "ACCESS")]
    pub access: Option<String>,
    /// A TOML file with the same keys as a `[services.NAME]` section
    /// (`routes`, `calls`, `publishes`, `subscribes`,
    /// `allowed_outbound_hosts`, `access`, `[[rules]]`, `instance_reuse`,
    /// `[limits]`, `[config]`); flags add to it. A deploy given a spec
    /// (file or flags) replaces the service's whole spec; one given none
    /// keeps it.
    #[arg(long = "spec")]
    pub spec_file: Option<PathBuf>,
}

impl SpecArgs {
    /// The spec, when any part of one was given.
    pub fn spec(&self) -> anyhow::Result<Option<ServiceSpec>> {
        let mut spec = match &self.spec_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("{} is not a valid service spec", path.display()))?
            }
            None => ServiceSpec::default(),
        };
        let flags = [
            &self.routes,
            &self.calls,
            &self.publishes,
            &self.subscribes,
            &self.outbound,
            &self.set,
        ];
        if self.spec_file.is_none() && self.access.is_none() && flags.iter().all(|f| f.is_empty()) {
            return Ok(None);
        }
        if let Some(access) = &self.access {
            spec.access = Some(access.clone());
        }
        spec.routes.extend(self.routes.iter().cloned());
        spec.calls.extend(self.calls.iter().cloned());
        spec.publishes.extend(self.publishes.iter().cloned());
        spec.subscribes.extend(self.subscribes.iter().cloned());
        spec.allowed_outbound_hosts
            .extend(self.outbound.iter().cloned());
        for pair in &self.set {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("--set takes KEY=VALUE, not `{pair}`"))?;
            spec.config
                .insert(key.to_owned(), ConfigValue::String(value.to_owned()));
        }
        Ok(Some(spec))
    }
}

/// Runs the command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config;
    match cli.command {
        Command::Serve { watch } => serve(&config, watch).await,
        Command::New(args) => new::run(&args, &config),
        Command::Token {
            subject,
            roles,
            ttl,
            admin,
        } => {
            let client = AdminClient::new(&config, admin)?;
            let body = serde_json::json!({ "subject": subject, "roles": roles, "ttl_s": ttl });
            let request = client.request(Method::POST, "/auth/tokens").json(&body);
            let answer: serde_json::Value = client.exchange(request).await?;
            // Only the token on stdout, so `TOKEN=$(bazaar token ...)` works.
            println!("{}", answer["token"].as_str().unwrap_or_default());
            Ok(())
        }
        Command::Deploy {
            service,
            file,
            spec,
            expect,
            admin,
        } => deploy(&config, admin, &service, &file, &spec, expect).await,
        Command::Rollback {
            service,
            to,
            expect,
            admin,
        } => rollback(&config, admin, &service, to, expect).await,
        Command::Remove {
            service,
            purge,
            admin,
        } => {
            let client = AdminClient::new(&config, admin)?;
            let request = client
                .request(Method::DELETE, &format!("/services/{service}"))
                .query(&[("purge", purge)]);
            let outcome: RemoveOutcome = client.exchange(request).await?;
            let data = if outcome.purged { "deleted" } else { "kept" };
            println!("removed `{service}`; its data is {data}");
            Ok(())
        }
        Command::Services { admin, json } => {
            let client = AdminClient::new(&config, admin)?;
            let services: Vec<ServiceStatus> = client
                .exchange(client.request(Method::GET, "/services"))
                .await?;
            show(json, &services, print::services)?;
            if !json {
                // On a fleet, which hosts serve these versions.
                if let Some(fleet) = client
                    .exchange_optional::<FleetView>(client.request(Method::GET, "/fleet"))
                    .await?
                {
                    println!();
                    print::fleet(&fleet);
                }
            }
            Ok(())
        }
        Command::Fleet { admin, json } => {
            let client = AdminClient::new(&config, admin)?;
            let fleet: FleetView = client
                .exchange(client.request(Method::GET, "/fleet"))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&fleet)?);
            } else {
                print::fleet(&fleet);
            }
            Ok(())
        }
        Command::Events { admin, json } => {
            let client = AdminClient::new(&config, admin)?;
            let stats: Vec<SubscriptionStats> = client
                .exchange(client.request(Method::GET, "/events"))
                .await?;
            show(json, &stats, print::subscriptions)
        }
        Command::DeadLetters {
            subscriber,
            admin,
            json,
        } => {
            let client = AdminClient::new(&config, admin)?;
            let mut request = client.request(Method::GET, "/events/dead-letters");
            if let Some(subscriber) = &subscriber {
                request = request.query(&[("subscriber", subscriber)]);
            }
            let letters: Vec<DeadLetter> = client.exchange(request).await?;
            show(json, &letters, print::dead_letters)
        }
        Command::Replay {
            subscriber,
            topic,
            admin,
        } => {
            let client = AdminClient::new(&config, admin)?;
            let body = serde_json::json!({ "subscriber": subscriber, "topic": topic });
            let request = client
                .request(Method::POST, "/events/dead-letters/replay")
                .json(&body);
            let answer: serde_json::Value = client.exchange(request).await?;
            println!(
                "queued {} dead letter(s) of `{subscriber}` for delivery",
                answer["replayed"]
            );
            Ok(())
        }
    }
}

fn show<T: serde::Serialize>(json: bool, items: &[T], table: fn(&[T])) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(items)?);
    } else {
        table(items);
    }
    Ok(())
}

async fn deploy(
    config: &Path,
    admin: AdminArgs,
    service: &str,
    file: &Path,
    spec: &SpecArgs,
    expect: Option<String>,
) -> anyhow::Result<()> {
    let client = AdminClient::new(config, admin)?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut query = Vec::new();
    if let Some(spec) = spec.spec()? {
        query.push(("spec", serde_json::to_string(&spec)?));
    }
    if let Some(expect) = expect {
        query.push(("expected_version", expect));
    }
    let request = client
        .request(Method::PUT, &format!("/services/{service}"))
        .query(&query)
        // Absolute, as the host records the files gateway.toml names.
        .header(
            crate::admin::SOURCE_HEADER,
            std::path::absolute(file)
                .unwrap_or_else(|_| file.to_owned())
                .display()
                .to_string(),
        )
        .body(bytes);
    let outcome: DeployOutcome = client.exchange(request).await?;
    for overlap in &outcome.overlaps {
        eprintln!("warning: {overlap}");
    }
    if outcome.created {
        println!(
            "added service `{service}` from {}: version {}",
            file.display(),
            short(&outcome.version)
        );
    } else if outcome.changed && outcome.previous.as_deref() == Some(outcome.version.as_str()) {
        println!(
            "updated the spec of `{service}`: routes, grants, limits and config as given (version {} unchanged)",
            short(&outcome.version)
        );
    } else if outcome.changed {
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

async fn rollback(
    config: &Path,
    admin: AdminArgs,
    service: &str,
    to: Option<String>,
    expect: Option<String>,
) -> anyhow::Result<()> {
    let client = AdminClient::new(config, admin)?;
    let expected = match expect {
        Some(expect) => expect,
        None => {
            let status: ServiceStatus = client
                .exchange(client.request(Method::GET, &format!("/services/{service}")))
                .await?;
            status.version.unwrap_or_else(|| "none".into())
        }
    };
    let body = serde_json::json!({ "to": to, "expected_version": expected });
    let request = client
        .request(Method::POST, &format!("/services/{service}/rollback"))
        .json(&body);
    let outcome: DeployOutcome = client.exchange(request).await?;
    if outcome.changed {
        println!(
            "`{service}` now runs version {} (was {})",
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
    tokio::select! {
        () = running.ready() => println!("bazaar: {}", startup_outcome(&running)),
        () = wait_for_signal() => {
            running.shutdown().await;
            return Ok(());
        }
    }
    wait_for_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

/// The start-up line after every service loaded, or failed to: which
/// failed, so a user who sees only stdout knows to look at the log.
fn startup_outcome(running: &host::RunningHost) -> String {
    let snapshot = running.registry.load();
    let total = snapshot.services().count();
    let failed: Vec<&str> = snapshot
        .services()
        .filter(|slot| slot.current().is_none())
        .map(|slot| slot.name())
        .collect();
    if failed.is_empty() {
        return "every service is loaded".to_owned();
    }
    format!(
        "start-up finished, but {} of {total} services did not load: {} (the log says why; they answer 503 until a deploy or a fixed file replaces them)",
        failed.len(),
        failed.join(", ")
    )
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
