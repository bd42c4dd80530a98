//! Redeploys a service when the content of its component file (as named in
//! `gateway.toml`) changes.
//!
//! Polling the few files a host serves is simpler and more portable than
//! filesystem notifications (it works on bind mounts and network
//! filesystems). A changed size or mtime only prompts a look: the file is
//! deployed when it has held still for one poll and its content hash
//! differs from the one last deployed from it, so rewriting the same bytes
//! never undoes an explicit deploy or rollback. Each deploy runs in its own
//! task, so a slow compile does not stop the polling of other files, and a
//! failure is shown by `bazaar services` until a good build lands.

use crate::deploy::{DeployRequest, Deployer};
use crate::loader::ComponentBytes;
use crate::registry::ServiceRegistry;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often component files are checked.
pub const POLL_INTERVAL: Duration = Duration::from_millis(300);

/// What a file looked like at one poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: SystemTime,
    len: u64,
}

async fn stamp(path: &Path) -> Option<Stamp> {
    let meta = tokio::fs::metadata(path).await.ok()?;
    Some(Stamp {
        modified: meta.modified().ok()?,
        len: meta.len(),
    })
}

/// What the watcher needs: the services and the way to deploy them.
pub struct Watcher {
    registry: Arc<ServiceRegistry>,
    deployer: Arc<Deployer>,
}

impl Watcher {
    /// A watcher of `deployer`'s `gateway.toml` services.
    pub fn new(registry: Arc<ServiceRegistry>, deployer: Arc<Deployer>) -> Self {
        Self { registry, deployer }
    }

    /// Watches until `shutdown` fires.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        // The stamp last looked at (None: look at the content once), and
        // the stamp waiting to hold still.
        let mut looked: HashMap<String, Stamp> = HashMap::new();
        let mut pending: HashMap<String, Stamp> = HashMap::new();
        let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
        loop {
            running.retain(|_, task| !task.is_finished());
            for (name, seed) in self.deployer.seeds() {
                if running.contains_key(name) || self.registry.get(name).is_none() {
                    continue;
                }
                let Some(now) = stamp(&seed.path).await else {
                    continue;
                };
                if looked.get(name) == Some(&now) {
                    pending.remove(name);
                    continue;
                }
                // The first look at a file settles at once; later changes
                // must hold still for one poll.
                if looked.contains_key(name) && pending.get(name) != Some(&now) {
                    pending.insert(name.clone(), now);
                    continue;
                }
                pending.remove(name);
                looked.insert(name.clone(), now);
                let task = tokio::spawn(redeploy(
                    Arc::clone(&self.registry),
                    Arc::clone(&self.deployer),
                    name.clone(),
                ));
                running.insert(name.clone(), task);
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
                _ = shutdown.changed() => break,
            }
        }
        for task in running.into_values() {
            task.abort();
        }
    }
}

/// Deploys `name`'s file if its content is new.
async fn redeploy(registry: Arc<ServiceRegistry>, deployer: Arc<Deployer>, name: String) {
    let Some(seed) = deployer.seeds().get(&name) else {
        return;
    };
    let source = seed.path.display().to_string();
    let bytes = match tokio::fs::read(&seed.path).await {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!(service = %name, "cannot read {source}: {e}");
            return;
        }
    };
    let component = ComponentBytes::new(bytes);
    let record = deployer.record(&name).await;
    if record.is_some_and(|r| r.seed.as_deref() == Some(component.hash())) {
        return;
    }
    let request = DeployRequest {
        service: name.clone(),
        component,
        source,
        from_file: true,
        ..DeployRequest::default()
    };
    match deployer.deploy(request).await {
        Ok(outcome) if outcome.changed => {
            tracing::info!(service = %name, "redeployed after its file changed");
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!("{e}; the previous version keeps serving");
            if let Some(slot) = registry.get(&name) {
                slot.set_error(Some(e.to_string()));
            }
        }
    }
}
