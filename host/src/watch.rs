//! Redeploys a service when its component file (as named in `gateway.toml`)
//! changes on disk.
//!
//! Polling the few files a host serves is simpler and more portable than
//! filesystem notifications, and a half-written file is caught by waiting
//! until its size and mtime hold still for one poll.

use crate::host::HostShared;
use std::collections::HashMap;
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

fn stamp(path: &std::path::Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok()?,
        len: meta.len(),
    })
}

/// Watches every service's component file until `shutdown` fires.
pub async fn run(shared: Arc<HostShared>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    // Last stamp deployed (or seen at start), and a stamp waiting to settle.
    let mut settled: HashMap<String, Option<Stamp>> = shared
        .registry
        .services()
        .map(|s| (s.name.clone(), stamp(&s.component_path)))
        .collect();
    let mut pending: HashMap<String, Stamp> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
        for slot in shared.registry.services() {
            let Some(now) = stamp(&slot.component_path) else {
                continue;
            };
            if settled.get(&slot.name) == Some(&Some(now)) {
                pending.remove(&slot.name);
                continue;
            }
            if pending.get(&slot.name) != Some(&now) {
                pending.insert(slot.name.clone(), now);
                continue;
            }
            pending.remove(&slot.name);
            settled.insert(slot.name.clone(), Some(now));
            let source = slot.component_path.display().to_string();
            match tokio::fs::read(&slot.component_path).await {
                Ok(bytes) => match shared.deployer.deploy(slot, bytes, source).await {
                    Ok(outcome) if outcome.changed => {
                        tracing::info!(service = %slot.name, "redeployed after its file changed");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!("{e}; the previous version keeps serving"),
                },
                Err(e) => tracing::error!(service = %slot.name, "cannot read {source}: {e}"),
            }
        }
    }
}
