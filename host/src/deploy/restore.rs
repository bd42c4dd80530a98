//! Start-up: bring back exactly what was serving before the host stopped.
//!
//! For each service of `gateway.toml`, the recorded current version is
//! loaded from its artifact, unless the content of the component file
//! differs from the one last deployed from it (then the file is a new
//! deploy). Services added live come back from their records; services
//! removed live stay removed. All components compile in parallel.

use super::{Deployer, Seed};
use crate::control::{Origin, ServiceRecord, VersionRecord};
use crate::events::now_ms;
use crate::loader::{LoadedService, content_hash, short};
use crate::registry::{RegistrySnapshot, ServiceContext, ServiceSlot};
use anyhow::Context as _;
use futures_util::{StreamExt as _, TryStreamExt as _};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Service stores opened concurrently at start-up.
const STORES_OPENED_AT_ONCE: usize = 64;

/// Where a service's version comes from at start-up.
enum Source {
    /// The component file, as a new deploy.
    File { bytes: bytes::Bytes, hash: String },
    /// The recorded current version.
    Kept,
    /// Nothing loadable; the message says why.
    Missing(String),
}

/// Services installed at start-up that still have to be loaded.
pub struct PendingLoads {
    pending: Vec<(Plan, Arc<ServiceSlot>)>,
}

struct Plan {
    name: String,
    spec: crate::config::ServiceSpec,
    record: ServiceRecord,
    source: Source,
}

impl Deployer {
    /// Installs every service in the registry, not yet serving (its routes
    /// answer 503 "starting"), and returns what is left to load with
    /// [`Deployer::load_pending`]. A route conflict or a store that cannot
    /// be opened stops the start (an embedded store not yet created is
    /// created by its first write, whose error its guest then gets); a
    /// service that later fails to load answers 503 and the others serve.
    pub async fn restore(&self) -> anyhow::Result<PendingLoads> {
        let _serial = self.lock.lock().await;
        let records: BTreeMap<String, ServiceRecord> = self
            .control
            .all()
            .await?
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        let mut plans = Vec::new();
        let mut files = SeedFiles::default();
        for (name, seed) in &self.seeds {
            let record = records
                .get(name)
                .cloned()
                .unwrap_or_else(|| ServiceRecord::new(name, Origin::GatewayToml, None));
            if record.removed {
                tracing::info!(service = %name, "not starting `{name}`: it was removed with `bazaar remove`; `bazaar deploy {name} FILE` brings it back");
                continue;
            }
            plans.push(plan_seed(name, seed, record, &mut files));
        }
        for record in records.values() {
            if record.origin != Origin::Live
                || record.removed
                || self.seeds.contains_key(&record.name)
            {
                continue;
            }
            let Some(spec) = record.spec.clone() else {
                tracing::error!(service = %record.name, "the record of live service `{}` has no spec; deploy it again", record.name);
                continue;
            };
            plans.push(Plan {
                name: record.name.clone(),
                spec,
                record: record.clone(),
                source: Source::Kept,
            });
        }

        // Opening a store reads (and may sync) its file, or its database
        // on a fleet: many at once.
        let stores: Vec<_> = futures_util::stream::iter(&plans)
            .map(|plan| self.stores.open(&plan.name))
            .buffered(STORES_OPENED_AT_ONCE)
            .try_collect()
            .await?;
        let mut pending = Vec::new();
        let mut slots = Vec::new();
        for (plan, store) in plans.into_iter().zip(stores) {
            let context = ServiceContext::new(&plan.name, plan.spec.clone(), store, &self.env)?;
            let slot = Arc::new(ServiceSlot::new(Arc::new(context), None));
            slot.set_starting(true);
            slots.push(Arc::clone(&slot));
            pending.push((plan, slot));
        }
        let snapshot = RegistrySnapshot::new(slots)
            .context("two services claim the same route; change one of them in gateway.toml or remove the live one")?;
        self.registry.replace(snapshot);
        Ok(PendingLoads { pending })
    }

    /// Compiles every service start-up left to load, all at once; each
    /// serves as soon as its own component is ready and recorded. The
    /// services ready at the same time are recorded together, in one
    /// transaction under one hold of the lock: a thousand services starting
    /// at once wait for a few syncs, not a thousand in turn.
    pub async fn load_pending(self: &Arc<Self>, loads: PendingLoads) {
        let (ready, mut arrived) = tokio::sync::mpsc::unbounded_channel();
        let mut running = tokio::task::JoinSet::new();
        for (plan, slot) in loads.pending {
            let (deployer, ready) = (Arc::clone(self), ready.clone());
            running.spawn(async move {
                let loaded = deployer.load_component(&plan).await;
                // The receiver lives until every sender is gone.
                let _ = ready.send((plan, slot, loaded));
            });
        }
        drop(ready);
        while let Some(first) = arrived.recv().await {
            let mut batch = vec![first];
            while let Ok(next) = arrived.try_recv() {
                batch.push(next);
            }
            self.install(batch).await;
        }
        while running.join_next().await.is_some() {}
    }

    async fn load_component(&self, plan: &Plan) -> Result<LoadedService, String> {
        match self.start_load(plan) {
            Some(task) => task
                .await
                .unwrap_or_else(|e| Err(format!("the compiler task failed: {e}"))),
            None => Err(match &plan.source {
                Source::Missing(why) => why.clone(),
                _ => "nothing to load".into(),
            }),
        }
    }

    /// Records and swaps in services whose components are loaded (or
    /// failed to load), under one hold of the lock.
    async fn install(&self, batch: Vec<(Plan, Arc<ServiceSlot>, Result<LoadedService, String>)>) {
        let Some((first, ..)) = batch.first() else {
            return;
        };
        let _serial = match self.change_lock(&first.name).await {
            Ok(lock) => lock,
            Err(e) => {
                for (plan, slot, _) in &batch {
                    tracing::error!(service = %plan.name, "{e}");
                    slot.set_error(Some(e.to_string()));
                    slot.set_starting(false);
                }
                return;
            }
        };
        let mut changed = Vec::new();
        let mut settled = Vec::new();
        for (mut plan, slot, loaded) in batch {
            // A deploy, rollback or removal that landed meanwhile wins.
            let still_ours = self
                .registry
                .get(&plan.name)
                .is_some_and(|s| Arc::ptr_eq(&s, &slot));
            if !still_ours || slot.current().is_some() {
                slot.set_starting(false);
                continue;
            }
            // On a fleet another host may have changed the record since it
            // was read; build on the newest.
            if let Ok(Some(mut fresh)) = self.control.get(&plan.name).await {
                fresh.origin = plan.record.origin;
                fresh.spec = plan.record.spec.clone();
                plan.record = fresh;
            }
            let loaded = self.settle(&mut plan, loaded, &mut changed).await;
            settled.push((plan.name, slot, loaded));
        }
        if !changed.is_empty()
            && let Err(e) = self.control.put(changed).await
        {
            let services: Vec<&str> = settled.iter().map(|(name, ..)| name.as_str()).collect();
            tracing::error!(services = ?services, error = format!("{e:#}"), "cannot record the start-up deploys");
        }
        for (name, slot, loaded) in settled {
            match loaded {
                Ok(loaded) => {
                    crate::metrics::version_changed(&name, &loaded.version, None);
                    slot.swap(Arc::new(loaded));
                }
                Err(error) => {
                    tracing::error!(service = %name, "{error}");
                    slot.set_error(Some(error));
                }
            }
            slot.set_starting(false);
        }
    }

    /// Starts compiling what `plan` serves, on the blocking pool.
    fn start_load(
        &self,
        plan: &Plan,
    ) -> Option<tokio::task::JoinHandle<Result<LoadedService, String>>> {
        let loader = self.loader.clone();
        let name = plan.name.clone();
        let spec = plan.spec.clone();
        match &plan.source {
            Source::File { bytes, hash } => {
                let (bytes, hash) = (bytes.clone(), hash.clone());
                let source = self
                    .seeds
                    .get(&name)
                    .map_or_else(String::new, |s| s.path.display().to_string());
                Some(tokio::spawn(async move {
                    loader
                        .load(bytes.into(), hash, source.clone(), &spec)
                        .await
                        .map_err(|e| format!("cannot deploy {source} to service `{name}`: {e}"))
                }))
            }
            Source::Kept => {
                let current = plan.record.current_record()?.clone();
                let artifacts = Arc::clone(&self.artifacts);
                Some(tokio::spawn(async move {
                    let bytes = artifacts
                        .load(&current.version)
                        .await
                        .map_err(|e| format!("service `{name}`: {e:#}"))?;
                    loader
                        .load(bytes.into(), current.version.clone(), current.source, &spec)
                        .await
                        .map_err(|e| {
                            format!(
                                "service `{name}`: version {} no longer loads: {e}",
                                short(&current.version)
                            )
                        })
                }))
            }
            Source::Missing(_) => None,
        }
    }

    /// Records a file deploy that loaded, or falls back to the recorded
    /// version when the file did not; checks the component fits the spec.
    async fn settle(
        &self,
        plan: &mut Plan,
        loaded: Result<LoadedService, String>,
        changed: &mut Vec<ServiceRecord>,
    ) -> Result<LoadedService, String> {
        let loaded = match (&plan.source, loaded) {
            (Source::File { bytes, hash }, Ok(loaded)) => {
                self.artifacts
                    .save(hash, bytes.clone().into())
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                let record = &mut plan.record;
                record.seed = Some(hash.clone());
                if record.current.as_deref() != Some(hash.as_str()) {
                    record.deploy(
                        VersionRecord {
                            version: hash.clone(),
                            source: loaded.source.clone(),
                            deployed_at_ms: now_ms(),
                            size: loaded.size as u64,
                            previous: None,
                        },
                        self.keep_versions,
                    );
                    tracing::info!(service = %plan.name, version = short(hash), "deployed the component file");
                }
                changed.push(record.clone());
                Ok(loaded)
            }
            (Source::File { .. }, Err(error)) if plan.record.current.is_some() => {
                tracing::error!(service = %plan.name, "{error}; the recorded version keeps serving");
                plan.source = Source::Kept;
                match self.start_load(plan) {
                    Some(task) => task.await.map_err(|e| e.to_string())?,
                    None => Err(error),
                }
            }
            (_, result) => result,
        }?;
        loaded
            .check_fits(&plan.spec)
            .map_err(|e| format!("service `{}`: {e}", plan.name))?;
        Ok(loaded)
    }
}

/// Component files read at start-up, by path: each read and hashed once
/// however many services name it.
#[derive(Default)]
struct SeedFiles(HashMap<PathBuf, Result<(bytes::Bytes, String), String>>);

impl SeedFiles {
    /// The content of `path` and its hash, or why it cannot be read.
    fn read(&mut self, path: &Path) -> Result<(bytes::Bytes, String), String> {
        self.0
            .entry(path.to_owned())
            .or_insert_with(|| {
                let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
                let hash = content_hash(&bytes);
                Ok((bytes.into(), hash))
            })
            .clone()
    }
}

fn plan_seed(name: &str, seed: &Seed, mut record: ServiceRecord, files: &mut SeedFiles) -> Plan {
    record.origin = Origin::GatewayToml;
    record.spec = None;
    let source = match files.read(&seed.path) {
        Ok((bytes, hash)) => {
            if record.seed.as_deref() != Some(hash.as_str()) || record.current.is_none() {
                Source::File { bytes, hash }
            } else {
                Source::Kept
            }
        }
        Err(e) if record.current.is_some() => {
            tracing::warn!(service = %name, "cannot read {}: {e}; serving the recorded version", seed.path.display());
            Source::Kept
        }
        Err(e) => Source::Missing(format!(
            "service `{name}`: cannot read {}: {e}; build the component or fix `component` in gateway.toml",
            seed.path.display()
        )),
    };
    Plan {
        name: name.to_owned(),
        spec: seed.spec.clone(),
        record,
        source,
    }
}
