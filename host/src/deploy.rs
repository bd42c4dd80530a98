//! Deploy and rollback of one service: the only code that changes what a
//! service is serving. The admin API, the file watcher and start-up all come
//! through here.
//!
//! A deploy compiles and checks the new version first and swaps it in only
//! when every check has passed, so a failed deploy changes nothing.

use crate::loader::{ComponentLoader, LoadError, content_hash, short};
use crate::registry::ServiceSlot;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Deploys and rolls back services.
pub struct Deployer {
    loader: ComponentLoader,
    /// Previous versions kept per service.
    keep_versions: usize,
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
    /// False when the component was already the current version.
    pub changed: bool,
}

/// Why a deploy was refused.
#[derive(Debug, thiserror::Error)]
#[error("cannot deploy {origin} to service `{service}`: {reason}")]
pub struct DeployError {
    /// The service.
    pub service: String,
    /// Where the bytes came from.
    pub origin: String,
    /// What was wrong.
    pub reason: LoadError,
}

/// Why a rollback was refused.
#[derive(Debug, thiserror::Error)]
#[error("service `{0}` has no previous version to roll back to; deploy a component first")]
pub struct RollbackError(pub String);

impl Deployer {
    /// A deployer using `loader`, keeping `keep_versions` old versions.
    pub fn new(loader: ComponentLoader, keep_versions: usize) -> Self {
        Self {
            loader,
            keep_versions,
        }
    }

    /// The loader (and so the engine) versions are compiled with.
    pub fn loader(&self) -> &ComponentLoader {
        &self.loader
    }

    /// Compiles, checks and swaps in `bytes` as the new version of `slot`.
    pub async fn deploy(
        &self,
        slot: &ServiceSlot,
        bytes: Vec<u8>,
        source: String,
    ) -> Result<DeployOutcome, DeployError> {
        let _serial = slot.deploy_lock.lock().await;
        let version = content_hash(&bytes);
        if let Some(current) = slot.current()
            && *current.version == version
        {
            return Ok(DeployOutcome {
                service: slot.name.clone(),
                version: current.version.to_string(),
                previous: None,
                changed: false,
            });
        }
        let loaded = self
            .loader
            .load(bytes, version, source.clone())
            .await
            .map_err(|reason| DeployError {
                service: slot.name.clone(),
                origin: source,
                reason,
            })?;
        let version = loaded.version.to_string();
        let previous = slot.swap(Arc::new(loaded), self.keep_versions);
        tracing::info!(
            service = %slot.name,
            version = short(&version),
            previous = previous.as_ref().map(|p| p.short_version()),
            "deployed"
        );
        Ok(DeployOutcome {
            service: slot.name.clone(),
            version,
            previous: previous.map(|p| p.version.to_string()),
            changed: true,
        })
    }

    /// Makes the previous version of `slot` current again.
    pub async fn roll_back(&self, slot: &ServiceSlot) -> Result<DeployOutcome, RollbackError> {
        let _serial = slot.deploy_lock.lock().await;
        let replaced = slot.current().map(|c| c.version.to_string());
        let restored = slot
            .roll_back()
            .ok_or_else(|| RollbackError(slot.name.clone()))?;
        tracing::info!(service = %slot.name, version = restored.short_version(), "rolled back");
        Ok(DeployOutcome {
            service: slot.name.clone(),
            version: restored.version.to_string(),
            previous: replaced,
            changed: true,
        })
    }
}
