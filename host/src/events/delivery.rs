//! Delivers events to subscribers: one worker per subscription.
//!
//! A worker takes the next event of its subscription, runs the subscriber's
//! current version on it (a fresh instance under the service's limits),
//! and acknowledges it only when the subscriber returns `ok`. A delivery
//! takes one of the subscriber's concurrency permits and has the
//! subscriber's own timeout; a subscriber at its concurrency limit is tried
//! again shortly, without spending an attempt. An error, a trap or a
//! timeout is a failed attempt: retried with exponential backoff, and
//! after `max_attempts` moved to the dead letters. While the service
//! has no version that handles events (failed, or being redeployed), the
//! worker waits, and the event goes to the next version.

use super::{EventLog, Pending, StoredEvent, Subscription, now_ms};
use crate::capability::GuestEvent;
use crate::config::EventsSection;
use crate::context::{RequestContext, TraceContext};
use crate::registry::{ServiceRegistry, ServiceSlot};
use crate::runtime::{Runtime, RuntimeError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

/// How long an idle worker sleeps before looking again without a wake-up.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// How long a worker waits before trying again a subscriber that was at
/// its concurrency limit.
const BUSY_RETRY: Duration = Duration::from_millis(100);

/// Retries of delivery. Each delivery runs under its subscriber's own
/// limits: its `timeout_ms` is the delivery's deadline.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Deliveries of one event before it is dead-lettered.
    pub max_attempts: u32,
    /// Wait before the first retry.
    pub initial: Duration,
    /// Longest wait between attempts.
    pub max: Duration,
}

impl RetryPolicy {
    /// The policy of `[events]`.
    pub fn new(events: &EventsSection) -> Self {
        Self {
            max_attempts: events.max_attempts,
            initial: Duration::from_millis(events.retry_initial_ms),
            max: Duration::from_millis(events.retry_max_ms),
        }
    }

    /// Wait after failed attempt number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

struct Worker {
    slot: Arc<ServiceSlot>,
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

/// The delivery engine: the workers and what wakes them.
pub struct Delivery {
    registry: Arc<ServiceRegistry>,
    runtime: Arc<Runtime>,
    log: Arc<dyn EventLog>,
    policy: RetryPolicy,
    workers: Mutex<HashMap<Subscription, Worker>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Delivery {
    /// An engine delivering from `log` to `registry`'s services.
    pub fn new(
        registry: Arc<ServiceRegistry>,
        runtime: Arc<Runtime>,
        log: Arc<dyn EventLog>,
        policy: RetryPolicy,
    ) -> Arc<Self> {
        Arc::new(Self {
            registry,
            runtime,
            log,
            policy,
            workers: Mutex::new(HashMap::new()),
        })
    }

    /// Follows the registry until `shutdown` fires, keeping one worker per
    /// subscription of the services it holds.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut changes = self.registry.subscribe();
        loop {
            self.sync().await;
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                _ = shutdown.changed() => break,
            }
        }
        for (_, worker) in lock(&self.workers).drain() {
            worker.task.abort();
        }
    }

    /// Starts workers for new subscriptions and stops those of services
    /// that were removed or replaced.
    pub async fn sync(self: &Arc<Self>) {
        let snapshot = self.registry.load();
        let mut wanted = Vec::new();
        for slot in snapshot.services() {
            for topic in &slot.context.spec.subscribes {
                let sub = Subscription {
                    subscriber: slot.name().to_owned(),
                    topic: topic.clone(),
                };
                wanted.push((sub, Arc::clone(slot)));
            }
        }
        lock(&self.workers).retain(|sub, worker| {
            let keep = wanted
                .iter()
                .any(|(s, slot)| s == sub && Arc::ptr_eq(slot, &worker.slot));
            if !keep {
                worker.task.abort();
            }
            keep
        });
        for (sub, slot) in wanted {
            if lock(&self.workers).contains_key(&sub) {
                continue;
            }
            if let Err(e) = self.log.subscribe(sub.clone()).await {
                tracing::error!(subscriber = %sub.subscriber, topic = %sub.topic, error = format!("{e:#}"), "cannot create subscription");
                continue;
            }
            let wake = Arc::new(Notify::new());
            let span = tracing::info_span!("subscription", subscriber = %sub.subscriber, topic = %sub.topic);
            let task = tokio::spawn(
                Arc::clone(self)
                    .work(sub.clone(), Arc::clone(&slot), Arc::clone(&wake))
                    .instrument(span),
            );
            lock(&self.workers).insert(sub, Worker { slot, wake, task });
        }
    }

    /// Wakes the workers of `topic`: it has new events.
    pub fn wake_topic(&self, topic: &str) {
        for (sub, worker) in lock(&self.workers).iter() {
            if sub.topic == topic {
                worker.wake.notify_one();
            }
        }
    }

    /// Wakes the workers of `subscriber`: it has replayed dead letters.
    pub fn wake_subscriber(&self, subscriber: &str) {
        for (sub, worker) in lock(&self.workers).iter() {
            if sub.subscriber == subscriber {
                worker.wake.notify_one();
            }
        }
    }

    async fn work(self: Arc<Self>, sub: Subscription, slot: Arc<ServiceSlot>, wake: Arc<Notify>) {
        loop {
            let changed = slot.changed();
            let Some(version) = slot.current().filter(|v| v.events.is_some()) else {
                changed.await;
                continue;
            };
            let pending = match self.log.next(sub.clone()).await {
                Ok(Some(pending)) => pending,
                Ok(None) if self.log.long_polls() => continue,
                Ok(None) => {
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(IDLE_CHECK) => {}
                    }
                    continue;
                }
                Err(e) => {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "cannot read the event log; retrying"
                    );
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let wait = pending.not_before_ms.saturating_sub(now_ms());
            if wait > 0 {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                }
                continue;
            }
            let attempt = pending.attempts.saturating_add(1);
            let result = match self.deliver(&slot, &version, &pending.event, attempt).await {
                Ok(outcome) => outcome,
                // At its concurrency limit the subscriber has not failed:
                // try the same event again soon without spending an attempt.
                Err(RuntimeError::Busy) => {
                    tokio::time::sleep(BUSY_RETRY).await;
                    continue;
                }
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = self.settle(&sub, pending, attempt, result).await {
                tracing::error!(
                    error = format!("{e:#}"),
                    "cannot record a delivery; it will be retried"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    async fn deliver(
        &self,
        slot: &ServiceSlot,
        version: &Arc<crate::loader::LoadedService>,
        event: &StoredEvent,
        attempt: u32,
    ) -> Result<Result<(), String>, RuntimeError> {
        let parent = event.traceparent.as_deref().and_then(TraceContext::parse);
        let id = event.request_id.clone().unwrap_or_else(|| event.id.clone());
        let deadline = tokio::time::Instant::now() + slot.context.limits.timeout;
        let trace = parent.map_or_else(TraceContext::new_root, |t| t.child());
        let ctx = RequestContext::new(id.into(), deadline, trace).enter(&slot.context.name);
        let guest = GuestEvent {
            id: event.id.clone(),
            topic: event.topic.clone(),
            source: event.source.clone(),
            payload: event.payload.clone(),
            published_at: event.published_at_ms,
            attempt,
        };
        let span = tracing::info_span!(
            "deliver",
            request_id = %ctx.id,
            event_id = %event.id,
            topic = %event.topic,
            attempt,
            version = version.short_version(),
            otel.name = %format_args!("deliver {} to {}", event.topic, slot.name()),
            otel.kind = "consumer",
        );
        // The delivery continues the trace of the request that published.
        let mut ctx = ctx;
        if let Some(parent) = &parent {
            crate::telemetry::continue_trace(&span, parent);
            if let Some(trace) = crate::telemetry::trace_of(&span) {
                ctx.trace = trace;
            }
        }
        self.runtime
            .handle_event(ctx, &slot.context, version, guest)
            .instrument(span)
            .await
    }

    async fn settle(
        &self,
        sub: &Subscription,
        pending: Pending,
        attempt: u32,
        result: Result<(), String>,
    ) -> anyhow::Result<()> {
        let id = pending.event.id.clone();
        match result {
            Ok(()) => {
                tracing::debug!(event_id = %id, attempt, "delivered");
                // Counted once acknowledged, so that a scrape that sees the
                // delivery also sees it gone from the backlog.
                self.log.ack(sub.clone(), pending).await?;
                crate::metrics::delivery(
                    &sub.subscriber,
                    &sub.topic,
                    crate::metrics::Delivery::Delivered,
                );
                Ok(())
            }
            Err(error) if attempt >= self.policy.max_attempts => {
                tracing::warn!(event_id = %id, attempt, %error, "event moved to the dead letters after its last attempt");
                self.log.dead_letter(sub.clone(), pending, error).await?;
                crate::metrics::delivery(
                    &sub.subscriber,
                    &sub.topic,
                    crate::metrics::Delivery::DeadLettered,
                );
                Ok(())
            }
            Err(error) => {
                let backoff = self.policy.backoff(attempt);
                crate::metrics::delivery(
                    &sub.subscriber,
                    &sub.topic,
                    crate::metrics::Delivery::Retried,
                );
                tracing::warn!(event_id = %id, attempt, %error, retry_in_ms = backoff.as_millis() as u64, "delivery failed; will retry");
                let not_before = now_ms().saturating_add(backoff.as_millis() as u64);
                self.log
                    .retry_later(sub.clone(), pending, error, not_before)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 8,
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        let waits: Vec<u128> = (1..=6).map(|a| policy.backoff(a).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy.backoff(60).as_millis(), 1000);
    }
}
