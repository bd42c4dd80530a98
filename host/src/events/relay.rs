//! Moves events from each service's outbox to the [`EventLog`].
//!
//! It wakes when a commit rings the outbox bell, and once a second anyway,
//! so an event left in an outbox by a crash is relayed after the restart
//! (and, on a fleet, events committed through other hosts are relayed even
//! if their host died). An outbox entry is trimmed only after the log has
//! it, and the log skips entries it already took, so each event is
//! appended exactly once.

use super::delivery::Delivery;
use super::{EventLog, StoredEvent};
use crate::kvstore::ServiceStore;
use crate::registry::ServiceRegistry;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Outbox entries moved per log transaction.
const BATCH: usize = 256;
/// How often outboxes are checked without a bell.
const SWEEP: Duration = Duration::from_secs(1);

/// The relay.
pub struct Relay {
    registry: Arc<ServiceRegistry>,
    log: Arc<dyn EventLog>,
    delivery: Arc<Delivery>,
    /// Rung after every commit that added to an outbox.
    bell: Arc<Notify>,
}

impl Relay {
    /// A relay from the stores of `registry`'s services into `log`.
    pub fn new(
        registry: Arc<ServiceRegistry>,
        log: Arc<dyn EventLog>,
        delivery: Arc<Delivery>,
        bell: Arc<Notify>,
    ) -> Self {
        Self {
            registry,
            log,
            delivery,
            bell,
        }
    }

    /// Relays until `shutdown` fires.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            self.drain().await;
            tokio::select! {
                _ = self.bell.notified() => {}
                _ = tokio::time::sleep(SWEEP) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Relays everything waiting in every outbox now.
    pub async fn drain(&self) {
        for slot in self.registry.load().services() {
            let name = slot.name().to_owned();
            if let Err(e) = self.drain_one(&name, &slot.context.store).await {
                tracing::error!(service = %name, error = format!("{e:#}"), "cannot relay events; will retry");
            }
        }
    }

    async fn drain_one(&self, name: &str, store: &Arc<ServiceStore>) -> anyhow::Result<()> {
        while let Some(page) = store.outbox_take(BATCH).await? {
            let entries = page
                .entries
                .iter()
                .map(|(seq, bytes)| Ok((*seq, StoredEvent::decode(bytes)?)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let grown = self.log.append(name.to_owned(), entries).await?;
            store.outbox_done(page).await?;
            for topic in grown {
                self.delivery.wake_topic(&topic);
            }
        }
        Ok(())
    }
}
