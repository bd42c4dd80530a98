//! Deploy, rollback, live addition and removal of services: the only code
//! that changes what the host serves. The admin API, the file watcher and
//! start-up ([`Deployer::restore`]) all come through here.
//!
//! Every change follows the same order: compile and check the component
//! off the lock; then, holding one lock, check the client's expected
//! version and the routes, store the component by hash, write the
//! deployment record durably, and only then swap it in. A failed change
//! changes nothing, and an acknowledged one survives a `kill -9`.

mod converge;
mod restore;
mod status;

pub use restore::PendingLoads;
pub use status::{ServiceStatus, VersionStatus};

use crate::artifacts::ArtifactStore;
use crate::config::{ServiceSpec, is_valid_service_name};
use crate::control::{ChangeLock, Control, Origin, ServiceRecord, VersionError, VersionRecord};
use crate::events::{EventLog, now_ms};
use crate::kvstore::StoreBackend;
use crate::loader::{
    ComponentBytes, ComponentLoader, KeptCandidate, LoadError, LoadedService, Pieces, short,
};
use crate::registry::{ServiceContext, ServiceEnv, ServiceRegistry, ServiceSlot};
use crate::router::RouteError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

/// A service as `gateway.toml` describes it.
#[derive(Debug, Clone)]
pub struct Seed {
    /// Its component file, resolved.
    pub path: PathBuf,
    /// Its routes, grants and config.
    pub spec: ServiceSpec,
}

/// Deploys, rolls back, adds and removes services.
pub struct Deployer {
    loader: ComponentLoader,
    control: Control,
    artifacts: Arc<ArtifactStore>,
    registry: Arc<ServiceRegistry>,
    log: Arc<dyn EventLog>,
    stores: StoreBackend,
    seeds: BTreeMap<String, Seed>,
    keep_versions: usize,
    env: ServiceEnv,
    /// Serializes every change of records and registry.
    lock: tokio::sync::Mutex<()>,
    /// Fleet versions that failed to load here, by service, so each is
    /// reported once.
    converge_failures: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl Deployer {
    /// Its component loader.
    pub fn loader(&self) -> &ComponentLoader {
        &self.loader
    }
}

/// What the deployer is built from.
pub struct DeployerParts {
    /// Compiles components.
    pub loader: ComponentLoader,
    /// The deployment records.
    pub control: Control,
    /// The deployed components.
    pub artifacts: Arc<ArtifactStore>,
    /// Where services are swapped in.
    pub registry: Arc<ServiceRegistry>,
    /// The event log, to forget a purged service.
    pub log: Arc<dyn EventLog>,
    /// Where service stores are opened.
    pub stores: StoreBackend,
    /// The services of `gateway.toml`.
    pub seeds: BTreeMap<String, Seed>,
    /// `[runtime] keep_versions`.
    pub keep_versions: usize,
    /// What service contexts share with the host.
    pub env: ServiceEnv,
}

/// A deploy, as the admin API receives it.
#[derive(Debug, Clone, Default)]
pub struct DeployRequest {
    /// The service.
    pub service: String,
    /// The component.
    pub component: ComponentBytes,
    /// Where it came from, for messages and the record.
    pub source: String,
    /// Routes and grants, to add a service or change a live-added one.
    pub spec: Option<ServiceSpec>,
    /// The version the client expects to be current (a hash or prefix, or
    /// `none` for a service that does not exist yet).
    pub expected: Option<String>,
    /// It is the content of the `gateway.toml` file (start-up or watcher).
    pub from_file: bool,
}

/// What a deploy or rollback did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployOutcome {
    /// The service.
    pub service: String,
    /// The version now serving.
    pub version: String,
    /// The version it replaced, if any.
    pub previous: Option<String>,
    /// False when that version was already current.
    pub changed: bool,
    /// True when the service did not exist before.
    pub created: bool,
    /// Its routes that share paths with another service's, when the deploy
    /// set its routes: a client sees the more specific one.
    #[serde(default)]
    pub overlaps: Vec<crate::router::RouteOverlap>,
}

/// What a removal did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveOutcome {
    /// The service.
    pub service: String,
    /// Whether its data was deleted too.
    pub purged: bool,
}

/// Why a change was refused; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The component was refused.
    #[error("cannot deploy {origin} to service `{service}`: {reason}")]
    Load {
        /// The service.
        service: String,
        /// Where the bytes came from.
        origin: String,
        /// What was wrong.
        reason: LoadError,
    },
    /// No such service.
    #[error("there is no service `{0}`; `bazaar services` lists them")]
    UnknownService(String),
    /// A new service needs routes or subscriptions.
    #[error(
        "service `{0}` does not exist yet; to add it, give it routes, e.g. `bazaar deploy {0} FILE --route /api/{0}/{{*rest}}`"
    )]
    NeedsSpec(String),
    /// The spec is invalid.
    #[error("cannot deploy service `{service}`: {message}")]
    InvalidSpec {
        /// The service.
        service: String,
        /// What is wrong.
        message: String,
    },
    /// Its routes clash with another service's.
    #[error("cannot deploy service `{service}`: {source}")]
    RouteConflict {
        /// The service.
        service: String,
        /// Which routes clash.
        source: RouteError,
    },
    /// The spec of a `gateway.toml` service comes from the file.
    #[error(
        "the routes and grants of service `{0}` come from its section in gateway.toml; change them there, and deploy without --route or --spec"
    )]
    SpecFromConfig(String),
    /// The client expected another current version.
    #[error(
        "service `{service}` is at version {current}, not {expected}; nothing was changed (`bazaar services` shows what is current)"
    )]
    NotExpected {
        /// The service.
        service: String,
        /// What the client expected.
        expected: String,
        /// What is current.
        current: String,
    },
    /// No such version to roll back to.
    #[error(transparent)]
    Version(#[from] VersionError),
    /// The records or artifacts could not be written.
    #[error("cannot change service `{service}`: {message}")]
    Storage {
        /// The service.
        service: String,
        /// What failed.
        message: String,
    },
}

impl Deployer {
    /// A deployer over `parts`.
    pub fn new(parts: DeployerParts) -> Self {
        Self {
            loader: parts.loader,
            control: parts.control,
            artifacts: parts.artifacts,
            registry: parts.registry,
            log: parts.log,
            stores: parts.stores,
            seeds: parts.seeds,
            keep_versions: parts.keep_versions,
            env: parts.env,
            lock: tokio::sync::Mutex::new(()),
            converge_failures: std::sync::Mutex::default(),
        }
    }

    /// The services of `gateway.toml`.
    pub fn seeds(&self) -> &BTreeMap<String, Seed> {
        &self.seeds
    }

    /// The deployment record of `service`.
    pub async fn record(&self, service: &str) -> Option<ServiceRecord> {
        self.control.get(service).await.ok().flatten()
    }

    /// Every deployment record.
    pub async fn records(&self) -> anyhow::Result<Vec<ServiceRecord>> {
        self.control.all().await
    }

    /// The deployment records, where they live.
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// Takes the locks every change holds: this host's, then (on a fleet)
    /// the fleet's.
    async fn change_lock(
        &self,
        service: &str,
    ) -> Result<(tokio::sync::MutexGuard<'_, ()>, ChangeLock), DeployError> {
        let local = self.lock.lock().await;
        let fleet = self
            .control
            .lock()
            .await
            .map_err(|e| DeployError::Storage {
                service: service.to_owned(),
                message: format!("{e:#}"),
            })?;
        Ok((local, fleet))
    }

    /// Compiles, checks, records and swaps in a component.
    pub async fn deploy(&self, request: DeployRequest) -> Result<DeployOutcome, DeployError> {
        let service = request.service.clone();
        let result = self.deploy_checked(request).await;
        crate::metrics::deploy(&service, result.is_ok());
        if let Ok(outcome) = &result
            && outcome.changed
        {
            crate::metrics::version_changed(
                &service,
                &outcome.version,
                outcome.previous.as_deref(),
            );
        }
        result
    }

    async fn deploy_checked(&self, request: DeployRequest) -> Result<DeployOutcome, DeployError> {
        let name = request.service.clone();
        if !is_valid_service_name(&name) {
            return Err(DeployError::InvalidSpec {
                service: name.clone(),
                message: format!(
                    "`{name}` is not a valid service name: use 1-64 characters of a-z, 0-9, `-` or `_`"
                ),
            });
        }
        if let Some(spec) = &request.spec {
            spec.validate(&name)
                .map_err(|message| DeployError::InvalidSpec {
                    service: name.clone(),
                    message,
                })?;
        }
        let version = request.component.hash().to_owned();
        let bytes = request.component.bytes().clone();
        let matched_kept = request.component.matched_kept();
        let load_error = |reason| DeployError::Load {
            service: name.clone(),
            origin: request.source.clone(),
            reason,
        };
        // The spec the deploy will most likely run with, for the trial's
        // limits and the engine; the lock below settles it.
        let likely = request
            .spec
            .clone()
            .or_else(|| self.registry.get(&name).map(|s| s.context.spec.clone()))
            .or_else(|| self.seeds.get(&name).map(|s| s.spec.clone()))
            .unwrap_or_default();
        let loaded = self
            .loader
            .load(
                bytes.clone(),
                version.clone(),
                request.source.clone(),
                &likely,
            )
            .await
            .map_err(load_error)?;

        let _serial = self.change_lock(&name).await?;
        let snapshot = self.registry.load();
        let existing = snapshot.get(&name).cloned();
        let mut record = self
            .stored_record(&name)
            .await?
            .unwrap_or_else(|| ServiceRecord::new(&name, Origin::Live, None));
        if existing.is_none() {
            record.current = None;
        }
        check_expected(&record, request.expected.as_deref())?;
        let (spec, origin) = self.spec_for(&name, existing.as_deref(), &record, request.spec)?;
        loaded.check_fits(&spec).map_err(load_error)?;

        let unchanged_spec = existing
            .as_ref()
            .is_some_and(|slot| slot.context.spec == spec);
        let previous = record.current.clone();
        let changed = previous.as_deref() != Some(version.as_str()) || !unchanged_spec;
        if request.from_file {
            record.seed = Some(version.clone());
        }
        let next_snapshot = if unchanged_spec {
            None
        } else {
            let slot = Arc::new(ServiceSlot::new(
                self.context(&name, spec.clone()).await?,
                None,
            ));
            Some((
                snapshot
                    .with(Arc::clone(&slot))
                    .map_err(|source| DeployError::RouteConflict {
                        service: name.clone(),
                        source,
                    })?,
                slot,
            ))
        };

        record.origin = origin;
        record.spec = (origin == Origin::Live).then(|| spec.clone());
        record.removed = false;
        if previous.as_deref() != Some(version.as_str()) {
            record.deploy(
                VersionRecord {
                    version: version.clone(),
                    source: request.source.clone(),
                    deployed_at_ms: now_ms(),
                    size: bytes.len() as u64,
                    previous: None,
                },
                self.keep_versions,
            );
        }
        if request.component.kept_file_differs() {
            tracing::warn!(
                service = %name,
                version = short(&version),
                "the kept copy of this version was damaged; the upload replaces it"
            );
            self.artifacts
                .replace(&version, bytes.clone())
                .await
                .map_err(|e| DeployError::Storage {
                    service: name.clone(),
                    message: format!("{e:#}"),
                })?;
        }
        self.persist(&name, Some((version.clone(), bytes)), &record)
            .await?;

        let loaded = Arc::new(loaded);
        let mut overlaps = Vec::new();
        match next_snapshot {
            Some((snapshot, slot)) => {
                overlaps = snapshot.overlaps(&name);
                for overlap in &overlaps {
                    tracing::warn!(service = %name, "{overlap}");
                }
                slot.swap(loaded);
                self.registry.replace(snapshot);
            }
            None => {
                if let Some(slot) = &existing {
                    slot.swap(loaded);
                }
            }
        }
        if changed {
            tracing::info!(
                service = %name,
                version = short(&version),
                previous = previous.as_deref().map(short),
                created = existing.is_none(),
                matched_kept,
                "deployed"
            );
        }
        self.collect_garbage().await;
        Ok(DeployOutcome {
            service: name,
            version,
            previous: previous.filter(|_| changed),
            changed,
            created: existing.is_none(),
            overlaps,
        })
    }

    /// Activates an earlier (or later) kept version of `service`: `to`, or
    /// the version the current one replaced.
    pub async fn rollback(
        &self,
        service: &str,
        to: Option<&str>,
        expected: Option<&str>,
    ) -> Result<DeployOutcome, DeployError> {
        let _serial = self.change_lock(service).await?;
        let slot = self
            .registry
            .get(service)
            .ok_or_else(|| DeployError::UnknownService(service.to_owned()))?;
        let mut record = self
            .stored_record(service)
            .await?
            .ok_or_else(|| DeployError::UnknownService(service.to_owned()))?;
        check_expected(&record, expected)?;
        let target = record.rollback_target(to)?;
        let previous = record.current.clone();
        if previous.as_deref() == Some(target.as_str()) {
            return Ok(DeployOutcome {
                service: service.to_owned(),
                version: target,
                previous: None,
                changed: false,
                created: false,
                overlaps: Vec::new(),
            });
        }
        let kept = record.versions.iter().find(|v| v.version == target);
        let loaded = self
            .load_kept(service, &target, kept, &slot.context.spec)
            .await?;
        loaded
            .check_fits(&slot.context.spec)
            .map_err(|reason| DeployError::Load {
                service: service.to_owned(),
                origin: format!("version {}", short(&target)),
                reason,
            })?;
        record.current = Some(target.clone());
        self.persist(service, None, &record).await?;
        slot.swap(Arc::new(loaded));
        tracing::info!(
            service,
            version = short(&target),
            previous = previous.as_deref().map(short),
            "rolled back"
        );
        Ok(DeployOutcome {
            service: service.to_owned(),
            version: target,
            previous,
            changed: true,
            created: false,
            overlaps: Vec::new(),
        })
    }

    /// Takes `service` out of the registry; with `purge`, deletes its data.
    pub async fn remove(&self, service: &str, purge: bool) -> Result<RemoveOutcome, DeployError> {
        let _serial = self.change_lock(service).await?;
        let snapshot = self.registry.load();
        if snapshot.get(service).is_none() {
            return Err(DeployError::UnknownService(service.to_owned()));
        }
        let origin = if self.seeds.contains_key(service) {
            Origin::GatewayToml
        } else {
            Origin::Live
        };
        let mut record = self
            .stored_record(service)
            .await?
            .unwrap_or_else(|| ServiceRecord::new(service, origin, None));
        record.removed = true;
        if purge {
            record.current = None;
            record.versions.clear();
        }
        self.persist(service, None, &record).await?;
        self.registry.replace(snapshot.without(service));
        if purge {
            let storage = |e: anyhow::Error| DeployError::Storage {
                service: service.to_owned(),
                message: format!("{e:#}"),
            };
            self.log.forget(service.to_owned()).await.map_err(storage)?;
            self.stores.purge(service).await.map_err(storage)?;
        }
        tracing::info!(service, purge, "removed");
        self.collect_garbage().await;
        Ok(RemoveOutcome {
            service: service.to_owned(),
            purged: purge,
        })
    }

    /// The spec and origin a deploy to `name` runs with.
    fn spec_for(
        &self,
        name: &str,
        existing: Option<&ServiceSlot>,
        record: &ServiceRecord,
        given: Option<ServiceSpec>,
    ) -> Result<(ServiceSpec, Origin), DeployError> {
        let seeded = self.seeds.get(name);
        match (existing, given, seeded) {
            (_, Some(_), Some(_)) => Err(DeployError::SpecFromConfig(name.to_owned())),
            (Some(_), Some(_), None) if record.origin == Origin::GatewayToml => {
                Err(DeployError::SpecFromConfig(name.to_owned()))
            }
            (_, Some(spec), None) => Ok((spec, Origin::Live)),
            (Some(slot), None, _) => Ok((slot.context.spec.clone(), record.origin)),
            (None, None, Some(seed)) => Ok((seed.spec.clone(), Origin::GatewayToml)),
            (None, None, None) => Err(DeployError::NeedsSpec(name.to_owned())),
        }
    }

    /// The context of service `name` with `spec`, opening its store.
    async fn context(
        &self,
        name: &str,
        spec: ServiceSpec,
    ) -> Result<Arc<ServiceContext>, DeployError> {
        let storage = |e: anyhow::Error| DeployError::Storage {
            service: name.to_owned(),
            message: format!("{e:#}"),
        };
        // A service being replaced shares its open store.
        let store = match self.registry.get(name) {
            Some(slot) => Arc::clone(&slot.context.store),
            None => self.stores.open(name).await.map_err(storage)?,
        };
        let context = ServiceContext::new(name, spec, store, &self.env).map_err(storage)?;
        Ok(Arc::new(context))
    }

    /// The kept versions of `service` an upload of `size` bytes may be a
    /// copy of: those of that size, each with the path of its stored file
    /// (see [`crate::loader::ComponentHasher::start_matching`]). None when
    /// the service's record cannot be read; the upload is then hashed.
    pub async fn kept_candidates(&self, service: &str, size: usize) -> Vec<KeptCandidate> {
        let Ok(Some(record)) = self.control.get(service).await else {
            return Vec::new();
        };
        record
            .versions
            .iter()
            .filter(|v| usize::try_from(v.size).is_ok_and(|s| s == size))
            .map(|v| KeptCandidate {
                hash: v.version.clone(),
                path: self.artifacts.path(&v.version),
            })
            .collect()
    }

    async fn stored_record(&self, service: &str) -> Result<Option<ServiceRecord>, DeployError> {
        self.control
            .get(service)
            .await
            .map_err(|e| DeployError::Storage {
                service: service.to_owned(),
                message: format!("{e:#}"),
            })
    }

    /// Loads kept version `version` of `service` (`kept`, its record, when
    /// there is one) to run as `spec`: from the code cache alone when its
    /// compiled code is there, its artifact then checked in the
    /// background; else compiled from its artifact.
    async fn load_kept(
        &self,
        service: &str,
        version: &str,
        kept: Option<&VersionRecord>,
        spec: &ServiceSpec,
    ) -> Result<LoadedService, DeployError> {
        let source = kept.map_or_else(String::new, |v| v.source.clone());
        let load_error = |reason| DeployError::Load {
            service: service.to_owned(),
            origin: format!("version {}", short(version)),
            reason,
        };
        let size = kept.and_then(|v| usize::try_from(v.size).ok());
        if let Some(size) = size
            && let Some(loaded) = self
                .loader
                .load_cached(version.to_owned(), source.clone(), size, spec)
                .await
        {
            self.check_artifact_later(service, version);
            return loaded.map_err(load_error);
        }
        let bytes = self
            .artifacts
            .load(version)
            .await
            .map_err(|e| DeployError::Storage {
                service: service.to_owned(),
                message: format!("{e:#}"),
            })?;
        self.loader
            .load(bytes.into(), version.to_owned(), source, spec)
            .await
            .map_err(load_error)
    }

    /// Reads and checks the artifact of `version` off the deploy's path
    /// (fetching it from the fleet if it is not here), and says so if it
    /// is missing or damaged: the code serving it came from the cache, but
    /// the next compile, or another host, needs the component itself.
    fn check_artifact_later(&self, service: &str, version: &str) {
        let (artifacts, service, version) = (
            Arc::clone(&self.artifacts),
            service.to_owned(),
            version.to_owned(),
        );
        tokio::spawn(async move {
            if let Err(e) = artifacts.load(&version).await {
                tracing::error!(
                    service,
                    version = short(&version),
                    "the kept component serves from the code cache, but {e:#}"
                );
            }
        });
    }

    /// Stores the component (if any) and writes `record`, durably.
    async fn persist(
        &self,
        service: &str,
        component: Option<(String, Pieces)>,
        record: &ServiceRecord,
    ) -> Result<(), DeployError> {
        let result = async {
            if let Some((hash, bytes)) = component {
                self.artifacts.save(&hash, bytes).await?;
            }
            self.control.put(vec![record.clone()]).await
        }
        .await;
        result.map_err(|e| DeployError::Storage {
            service: service.to_owned(),
            message: format!("{e:#}"),
        })
    }

    /// Deletes components no record refers to any more.
    async fn collect_garbage(&self) {
        let result = async {
            let keep: HashSet<String> = self
                .control
                .all()
                .await?
                .into_iter()
                .flat_map(|r| r.versions.into_iter().map(|v| v.version))
                .collect();
            self.artifacts.collect(keep).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = format!("{e:#}"), "cannot delete unused components");
        }
    }
}

fn check_expected(record: &ServiceRecord, expected: Option<&str>) -> Result<(), DeployError> {
    match expected {
        Some(expected) if !record.is_current(expected) => Err(DeployError::NotExpected {
            service: record.name.clone(),
            expected: expected.to_owned(),
            current: record.current_short().to_owned(),
        }),
        _ => Ok(()),
    }
}
