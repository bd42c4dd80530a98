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
                }
            })
            .collect()
    }
}
