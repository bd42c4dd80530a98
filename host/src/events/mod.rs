//! Durable events between services: publish, relay, log, deliver.
//!
//! 1. A service publishes (alone, or in a transaction with key-value
//!    writes). The event is committed to the outbox in the service's own
//!    store before `publish` returns, so it survives a `kill -9`.
//! 2. The [`relay`] moves outbox entries into the [`EventLog`], exactly
//!    once per entry: the log remembers the last outbox sequence number it
//!    took from each publisher.
//! 3. [`delivery`] runs one worker per subscription (subscriber, topic): it
//!    hands the next event to the subscriber's current version, advances the
//!    subscription's cursor when the subscriber says it handled it, and
//!    otherwise retries with exponential backoff until the event moves to
//!    the dead letters. One worker per subscription keeps publish order.
//!
//! The log is behind the [`EventLog`] trait. [`embedded::EmbeddedLog`] keeps
//! it in one redb file; [`jetstream::JetStreamLog`] keeps it in NATS
//! JetStream for a fleet of hosts (a durable consumer per subscription),
//! with the relay and the workers unchanged.

pub mod delivery;
pub mod embedded;
pub mod jetstream;
pub mod relay;

use serde::{Deserialize, Serialize};
use std::pin::Pin;

/// Largest payload of one event.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// An event as stored in an outbox and in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Unique id, the same on every redelivery.
    pub id: String,
    /// The topic.
    pub topic: String,
    /// The publishing service.
    pub source: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// When it was published, in milliseconds since the Unix epoch.
    pub published_at_ms: u64,
    /// The id of the request that published it.
    pub request_id: Option<String>,
    /// The trace context of the request that published it.
    pub traceparent: Option<String>,
}

impl StoredEvent {
    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        // Encoding a struct of strings and bytes into a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Reads the stored form.
    pub fn decode(bytes: &[u8]) -> anyhow::Result<Self> {
        postcard::from_bytes(bytes).map_err(|e| anyhow::anyhow!("damaged event record: {e}"))
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One subscription: a service receiving one topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Subscription {
    /// The subscribing service.
    pub subscriber: String,
    /// The topic.
    pub topic: String,
}

/// The next event a subscription has to handle.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Its position in the topic.
    pub seq: u64,
    /// The event.
    pub event: StoredEvent,
    /// Deliveries already tried.
    pub attempts: u32,
    /// Not to be tried before this time (ms since the epoch).
    pub not_before_ms: u64,
    /// A dead letter being replayed, rather than the next event of the topic.
    pub replayed: bool,
}

/// What `bazaar events` shows for one subscription.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriptionStats {
    /// The subscribing service.
    pub subscriber: String,
    /// The topic.
    pub topic: String,
    /// Events waiting for this subscriber, replays included.
    pub backlog: u64,
    /// Position in the topic handled so far.
    pub delivered_through: u64,
    /// Position of the newest event of the topic.
    pub published_through: u64,
    /// Failed attempts at the event it is on.
    pub attempts: u32,
    /// The last failure, while it is retrying.
    pub last_error: Option<String>,
    /// Events in its dead-letter list.
    pub dead_letters: u64,
}

/// One dead letter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The subscribing service.
    pub subscriber: String,
    /// The topic.
    pub topic: String,
    /// Its position in the topic.
    pub seq: u64,
    /// The event.
    pub event: StoredEvent,
    /// Deliveries tried.
    pub attempts: u32,
    /// The last failure.
    pub error: String,
    /// When it was given up on (ms since the epoch).
    pub dead_at_ms: u64,
}

/// A boxed future, so [`EventLog`] can be a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where events wait between publish and delivery: an ordered log per
/// topic, a cursor per subscription, and dead letters.
pub trait EventLog: Send + Sync + 'static {
    /// Appends `entries` (outbox sequence number, event) relayed from
    /// `publisher`, skipping any it already has, and returns the topics
    /// that grew.
    fn append(
        &self,
        publisher: String,
        entries: Vec<(u64, StoredEvent)>,
    ) -> BoxFuture<'_, anyhow::Result<Vec<String>>>;

    /// Creates the subscription if it is new; a new one starts after the
    /// newest event of its topic.
    fn subscribe(&self, sub: Subscription) -> BoxFuture<'_, anyhow::Result<()>>;

    /// The next event for `sub`: a replayed dead letter first, then the
    /// next event of the topic.
    fn next(&self, sub: Subscription) -> BoxFuture<'_, anyhow::Result<Option<Pending>>>;

    /// Whether `next` itself waits a while for an event when there is none
    /// (so a worker asks again at once instead of sleeping).
    fn long_polls(&self) -> bool {
        false
    }

    /// Marks `pending` handled.
    fn ack(&self, sub: Subscription, pending: Pending) -> BoxFuture<'_, anyhow::Result<()>>;

    /// Records a failed attempt at `pending`; the next try is not before
    /// `not_before_ms`.
    fn retry_later(
        &self,
        sub: Subscription,
        pending: Pending,
        error: String,
        not_before_ms: u64,
    ) -> BoxFuture<'_, anyhow::Result<()>>;

    /// Moves `pending` to the dead letters and goes on with the next event.
    fn dead_letter(
        &self,
        sub: Subscription,
        pending: Pending,
        error: String,
    ) -> BoxFuture<'_, anyhow::Result<()>>;

    /// Queues the dead letters of `subscriber` (of one topic, or all) for
    /// delivery again; returns how many.
    fn replay(
        &self,
        subscriber: String,
        topic: Option<String>,
    ) -> BoxFuture<'_, anyhow::Result<usize>>;

    /// Every subscription's position and backlog.
    fn stats(&self) -> BoxFuture<'_, anyhow::Result<Vec<SubscriptionStats>>>;

    /// Dead letters, of one subscriber or all.
    fn dead_letters(
        &self,
        subscriber: Option<String>,
    ) -> BoxFuture<'_, anyhow::Result<Vec<DeadLetter>>>;

    /// Forgets everything of `service`: its subscriptions, dead letters and
    /// replays, and what was relayed from its outbox (its data is purged).
    fn forget(&self, service: String) -> BoxFuture<'_, anyhow::Result<()>>;
}
