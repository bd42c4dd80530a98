//! What `bazaar services` shows: the registry's view joined with the
//! deployment records.

use super::Deployer;
use crate::control::Origin;
use serde::{Deserialize, Serialize};

/// One service, as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Service name.
    pub name: String,
    /// `running`, `starting` while its first version loads, or `failed`.
    pub state: String,
    /// Current version (content hash), if any.
    pub version: Option<String>,
    /// Where the current version came from.
    pub source: Option<String>,
    /// `gateway.toml`, or `live` when added with `bazaar deploy`.
    pub origin: String,
    /// Route patterns.
    pub routes: Vec<String>,
    /// Services it may call.
    pub calls: Vec<String>,
    /// Topics it may publish to.
    pub publishes: Vec<String>,
    /// Topics it receives.
    pub subscribes: Vec<String>,
    /// Kept versions, newest deploy first.
    pub versions: Vec<VersionStatus>,
    /// Why it has no version, or why its last deploy from its file failed.
    pub error: Option<String>,
    /// Who may call its routes unless a rule says otherwise: `public`,
    /// `authenticated` or `role:NAME`.
    #[serde(default)]
    pub access: String,
    /// Requests and events one warm instance serves, when it keeps them.
    #[serde(default)]
    pub instance_reuse: Option<u32>,
    /// The limits it runs under (its own, else the host's).
    #[serde(default)]
    pub limits: LimitsStatus,
}

/// The limits a service runs under, as `[limits]` spells them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LimitsStatus {
    /// Requests and event deliveries at once.
    pub max_concurrency: u32,
    /// All memories of one instance together, in MiB.
    pub memory_mib: usize,
    /// CPU time per request or event, in milliseconds.
    pub cpu_time_ms: u128,
    /// Wall-clock time per request or event, in milliseconds.
    pub timeout_ms: u128,
}

/// One kept version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionStatus {
    /// Content hash.
    pub version: String,
    /// Where it came from.
    pub source: String,
    /// When it was deployed, in milliseconds since the Unix epoch.
    pub deployed_at_ms: u64,
    /// Whether it is the one serving.
    pub current: bool,
}

impl Deployer {
    /// Every service the host runs, by name.
    pub async fn status(&self) -> Vec<ServiceStatus> {
        let records: std::collections::HashMap<String, crate::control::ServiceRecord> = self
            .records()
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "cannot read the deployment records"
                );
                Vec::new()
            })
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        self.registry
            .load()
            .services()
            .map(|slot| {
                let record = records.get(slot.name());
                let current = slot.current();
                let spec = &slot.context.spec;
                let versions = record
                    .as_ref()
                    .map(|r| {
                        r.versions
                            .iter()
                            .rev()
                            .map(|v| VersionStatus {
                                version: v.version.clone(),
                                source: v.source.clone(),
                                deployed_at_ms: v.deployed_at_ms,
                                current: current.as_ref().is_some_and(|c| *c.version == v.version),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let origin = match record.map(|r| r.origin) {
                    Some(Origin::Live) => "live",
                    _ => "gateway.toml",
                };
                ServiceStatus {
                    name: slot.name().to_owned(),
                    state: match (&current, slot.is_starting()) {
                        (Some(_), _) => "running",
                        (None, true) => "starting",
                        (None, false) => "failed",
                    }
                    .into(),
                    version: current.as_ref().map(|c| c.version.to_string()),
                    source: current.as_ref().map(|c| c.source.clone()),
                    origin: origin.into(),
                    routes: spec.routes.clone(),
                    calls: spec.calls.clone(),
                    publishes: spec.publishes.clone(),
                    subscribes: spec.subscribes.clone(),
                    versions,
                    error: slot.error(),
                    access: spec.access.clone().unwrap_or_else(|| "public".into()),
                    instance_reuse: spec.instance_reuse,
                    limits: LimitsStatus {
                        max_concurrency: slot.context.limits.max_concurrency,
                        memory_mib: slot.context.limits.memory_bytes >> 20,
                        cpu_time_ms: slot.context.limits.cpu_time.as_millis(),
                        timeout_ms: slot.context.limits.timeout.as_millis(),
                    },
                }
            })
            .collect()
    }
}
