//! On a fleet: bring this host to what the shared records say, after a
//! deploy, rollback, addition or removal made through another host.
//!
//! Each record names the version every host should serve. A service whose
//! current version differs is loaded from the fleet's copy of its
//! component and swapped in; one added elsewhere is added here, with its
//! routes; one removed elsewhere is taken out here (its data, shared, is
//! purged only by the host that was asked to). A version that fails to
//! load here is reported once, and tried again when the record changes.

use super::Deployer;
use crate::config::ServiceSpec;
use crate::control::{Origin, ServiceRecord};
use crate::loader::short;
use crate::registry::{RegistrySnapshot, ServiceSlot};
use std::sync::Arc;

impl Deployer {
    /// Applies the fleet's records to this host; returns how many services
    /// changed.
    pub async fn converge(&self) -> anyhow::Result<usize> {
        let records = self.control.all().await?;
        let _serial = self.lock.lock().await;
        let mut snapshot =
            RegistrySnapshot::new(self.registry.load().services().cloned().collect())?;
        let mut changed = 0;
        for record in &records {
            let name = record.name.as_str();
            let Some(current) = record.current.clone().filter(|_| !record.removed) else {
                if snapshot.get(name).is_some() {
                    snapshot = snapshot.without(name);
                    tracing::info!(service = name, "removed on another host of the fleet");
                    changed += 1;
                }
                continue;
            };
            let Some(spec) = self.spec_of(record) else {
                self.note_failure(name, &current, || {
                    format!("service `{name}` comes from gateway.toml on the host that deployed it, but not here; give every host of the fleet the same gateway.toml")
                });
                continue;
            };
            let existing = snapshot.get(name).cloned();
            let serving = existing
                .as_ref()
                .and_then(|slot| slot.current())
                .map(|v| v.version.clone());
            let same_spec = existing.as_ref().is_some_and(|s| s.context.spec == spec);
            if same_spec && serving.as_deref() == Some(current.as_str()) {
                continue;
            }
            if existing.as_ref().is_some_and(|s| s.is_starting()) {
                // Start-up is still loading it; it will look again.
                continue;
            }
            if self.failed_before(name, &current) {
                continue;
            }
            let kept = record.current_record();
            let loaded = match self.load_kept(name, &current, kept, &spec).await {
                Ok(loaded) => loaded,
                Err(e) => {
                    self.note_failure(name, &current, || e.to_string());
                    continue;
                }
            };
            if let Err(e) = loaded.check_fits(&spec) {
                self.note_failure(name, &current, || format!("service `{name}`: {e}"));
                continue;
            }
            let loaded = Arc::new(loaded);
            match existing.filter(|_| same_spec) {
                Some(slot) => {
                    slot.swap(loaded);
                }
                None => {
                    let context = match self.context(name, spec).await {
                        Ok(context) => context,
                        Err(e) => {
                            self.note_failure(name, &current, || e.to_string());
                            continue;
                        }
                    };
                    let slot = Arc::new(ServiceSlot::new(context, Some(loaded)));
                    match snapshot.with(slot) {
                        Ok(next) => snapshot = next,
                        Err(e) => {
                            self.note_failure(name, &current, || {
                                format!("service `{name}` cannot be added here: {e}")
                            });
                            continue;
                        }
                    }
                }
            }
            crate::metrics::version_changed(name, &current, serving.as_deref());
            tracing::info!(
                service = name,
                version = short(&current),
                previous = serving.as_deref().map(short),
                "converged to the fleet's version"
            );
            changed += 1;
        }
        if changed > 0 {
            self.registry.replace(snapshot);
        }
        Ok(changed)
    }

    /// The spec a fleet record runs with here.
    fn spec_of(&self, record: &ServiceRecord) -> Option<ServiceSpec> {
        match record.origin {
            Origin::Live => record.spec.clone(),
            Origin::GatewayToml => self.seeds.get(&record.name).map(|s| s.spec.clone()),
        }
    }

    fn failed_before(&self, service: &str, version: &str) -> bool {
        self.converge_failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(service)
            .is_some_and(|v| v == version)
    }

    fn note_failure(&self, service: &str, version: &str, why: impl FnOnce() -> String) {
        let mut failures = self
            .converge_failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if failures.get(service).is_some_and(|v| v == version) {
            return;
        }
        failures.insert(service.to_owned(), version.to_owned());
        tracing::error!(
            service,
            version = short(version),
            "cannot serve the fleet's version here: {}",
            why()
        );
    }
}
