//! Keeps a host in step with its fleet: it watches the revision of the
//! shared deployment records, converges when it moves (and every few
//! seconds anyway), and reports what it serves, which `bazaar services`
//! on any host shows.

use super::control::{FleetControl, HostReport};
use crate::control::ServiceRecord;
use crate::deploy::Deployer;
use crate::events::now_ms;
use crate::registry::ServiceRegistry;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Converge this often even when the revision did not move.
const FULL_CHECK: Duration = Duration::from_secs(5);
/// Report this often.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// A host that has not reported for this long is shown as gone.
const GONE_AFTER_MS: u64 = 10_000;

/// What the follower needs.
pub struct Follower {
    /// Applies records.
    pub deployer: Arc<Deployer>,
    /// The records.
    pub control: Arc<FleetControl>,
    /// What this host serves.
    pub registry: Arc<ServiceRegistry>,
    /// Where this host's gateway listens.
    pub gateway: String,
    /// Where this host's admin API listens.
    pub admin: String,
    /// How often to look at the revision.
    pub poll: Duration,
}

impl Follower {
    /// Follows the fleet until `shutdown` fires.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut applied: Option<i64> = None;
        let mut last_full = tokio::time::Instant::now();
        let mut last_report: Option<tokio::time::Instant> = None;
        let mut healthy = true;
        loop {
            let result = async {
                let revision = self.control.revision().await?;
                if applied != Some(revision) || last_full.elapsed() >= FULL_CHECK {
                    self.deployer.converge().await?;
                    applied = Some(revision);
                    last_full = tokio::time::Instant::now();
                    last_report = None;
                }
                if last_report.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
                    self.report(applied.unwrap_or(0)).await?;
                    last_report = Some(tokio::time::Instant::now());
                }
                anyhow::Ok(())
            }
            .await;
            match result {
                Ok(()) if !healthy => {
                    tracing::info!("following the fleet again");
                    healthy = true;
                }
                Err(e) if healthy => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "cannot follow the fleet's deployments; retrying"
                    );
                    healthy = false;
                }
                _ => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn report(&self, revision: i64) -> anyhow::Result<()> {
        let versions = self
            .registry
            .load()
            .services()
            .filter_map(|slot| {
                slot.current()
                    .map(|v| (slot.name().to_owned(), v.version.to_string()))
            })
            .collect();
        self.control
            .report(&HostReport {
                host: self.control.host().to_owned(),
                gateway: self.gateway.clone(),
                admin: self.admin.clone(),
                revision,
                versions,
                seen_at_ms: now_ms(),
            })
            .await
    }
}

/// One host as `GET /fleet` shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct HostView {
    /// Its name.
    pub host: String,
    /// Where its gateway listens.
    pub gateway: String,
    /// Where its admin API listens.
    pub admin: String,
    /// Milliseconds since it last reported.
    pub seen_ms_ago: u64,
    /// It reported recently.
    pub alive: bool,
    /// It serves every service at the fleet's version.
    pub converged: bool,
    /// Where it differs: service → the version it serves (`-` for none).
    pub behind: BTreeMap<String, String>,
}

/// `GET /fleet`: this host's name and every host's convergence.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct FleetView {
    /// The host that answered.
    pub host: String,
    /// Service → the version the fleet's records make current.
    pub versions: BTreeMap<String, String>,
    /// Every host that ever reported, by name.
    pub hosts: Vec<HostView>,
}

/// The fleet's convergence, from its records and host reports.
pub fn view(host: &str, records: &[ServiceRecord], reports: Vec<HostReport>) -> FleetView {
    let versions: BTreeMap<String, String> = records
        .iter()
        .filter(|r| !r.removed)
        .filter_map(|r| r.current.clone().map(|c| (r.name.clone(), c)))
        .collect();
    let now = now_ms();
    let hosts = reports
        .into_iter()
        .map(|report| {
            let behind: BTreeMap<String, String> = versions
                .iter()
                .filter(|(name, version)| report.versions.get(*name) != Some(version))
                .map(|(name, _)| {
                    let serving = report
                        .versions
                        .get(name)
                        .map_or("-".to_owned(), |v| v.clone());
                    (name.clone(), serving)
                })
                .collect();
            let seen_ms_ago = now.saturating_sub(report.seen_at_ms);
            HostView {
                host: report.host,
                gateway: report.gateway,
                admin: report.admin,
                seen_ms_ago,
                alive: seen_ms_ago < GONE_AFTER_MS,
                converged: behind.is_empty(),
                behind,
            }
        })
        .collect();
    FleetView {
        host: host.to_owned(),
        versions,
        hosts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{Origin, VersionRecord};

    fn record(name: &str, current: &str) -> ServiceRecord {
        let mut record = ServiceRecord::new(name, Origin::GatewayToml, None);
        record.deploy(
            VersionRecord {
                version: current.into(),
                source: String::new(),
                deployed_at_ms: 0,
                size: 0,
                previous: None,
            },
            3,
        );
        record
    }

    fn report(host: &str, versions: &[(&str, &str)]) -> HostReport {
        HostReport {
            host: host.into(),
            gateway: String::new(),
            admin: String::new(),
            revision: 1,
            versions: versions
                .iter()
                .map(|(s, v)| ((*s).to_owned(), (*v).to_owned()))
                .collect(),
            seen_at_ms: now_ms(),
        }
    }

    #[test]
    fn a_host_serving_an_older_version_is_behind() {
        let records = [record("users", "v2"), record("orders", "o1")];
        let view = view(
            "a",
            &records,
            vec![
                report("a", &[("users", "v2"), ("orders", "o1")]),
                report("b", &[("users", "v1"), ("orders", "o1")]),
                report("c", &[("users", "v2")]),
            ],
        );
        assert!(view.hosts[0].converged);
        assert!(!view.hosts[1].converged);
        assert_eq!(
            view.hosts[1].behind.get("users").map(String::as_str),
            Some("v1")
        );
        assert_eq!(
            view.hosts[2].behind.get("orders").map(String::as_str),
            Some("-")
        );
        assert!(view.hosts.iter().all(|h| h.alive));
    }
}
