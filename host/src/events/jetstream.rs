//! The fleet's event log: NATS JetStream.
//!
//! - Stream `BAZAAR_EVENTS` holds every event, subject
//!   `bazaar.events.<topic>`. The relay publishes each outbox entry with
//!   the event's id as `Nats-Msg-Id`, so an entry relayed twice (a host
//!   died between publishing and trimming its outbox) is stored once.
//! - Each subscription is a durable pull consumer on its topic, shared by
//!   every host, with at most one event in flight: an event is handled by
//!   one host at a time, in order, at least once. A host handling an event
//!   keeps telling JetStream it is working on it; if the host dies, the
//!   event goes to another host after `event_ack_wait_ms`. A failed
//!   attempt is `NAK`ed with the backoff as delay, and after the last one
//!   the event goes to the dead letters.
//! - Stream `BAZAAR_DEAD` keeps the dead letters, subject
//!   `bazaar.dead.<subscriber>.<topic>`; a replay moves them to stream
//!   `BAZAAR_REDO` (`bazaar.redo.<subscriber>.<topic>`), which a second
//!   consumer per subscription delivers before new events.
//!
//! Streams are file-backed. An acknowledged publish is on disk once the
//! server syncs it; see the README for the server settings that make that
//! immediate.

use super::{
    BoxFuture, DeadLetter, EventLog, Pending, StoredEvent, Subscription, SubscriptionStats, now_ms,
};
use anyhow::Context as _;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, StorageType};
use async_nats::jetstream::{AckKind, Context, Message};
use futures_util::StreamExt as _;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::task::JoinHandle;

const EVENTS: &str = "BAZAAR_EVENTS";
const DEAD: &str = "BAZAAR_DEAD";
const REDO: &str = "BAZAAR_REDO";

/// How long `next` waits for an event before saying there is none.
const LONG_POLL: Duration = Duration::from_secs(1);

/// How long events are kept after publishing, handled or not.
const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Window in which JetStream drops a second publish of the same event id.
const DEDUP_WINDOW: Duration = Duration::from_secs(3600);

/// The JetStream event log.
pub struct JetStreamLog {
    js: Context,
    events: stream::Stream,
    dead: stream::Stream,
    redo: stream::Stream,
    ack_wait: Duration,
    consumers: Mutex<HashMap<Subscription, Consumers>>,
    /// The event each subscription has in hand on this host.
    held: Mutex<HashMap<Subscription, Held>>,
    /// The last failure of each subscription's current event, on this host.
    failures: Mutex<HashMap<Subscription, (u32, String)>>,
}

#[derive(Clone)]
struct Consumers {
    main: PullConsumer,
    redo: PullConsumer,
}

struct Held {
    message: Arc<Message>,
    pending: Pending,
    keepalive: JoinHandle<()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn events_subject(topic: &str) -> String {
    format!("bazaar.events.{topic}")
}

fn dead_subject(sub: &Subscription) -> String {
    format!("bazaar.dead.{}.{}", sub.subscriber, sub.topic)
}

fn redo_subject(sub: &Subscription) -> String {
    format!("bazaar.redo.{}.{}", sub.subscriber, sub.topic)
}

fn short_hash(text: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// The start of every consumer name of `subscriber`: the hash tells
/// `orders` from `orders-archive`, whose names would share a prefix.
fn consumer_prefix(subscriber: &str, kind: &str) -> String {
    format!("{kind}-{}-{subscriber}-", short_hash(subscriber))
}

/// The durable consumer name of `sub`: readable, and unique through a
/// hash (a topic's dots are not allowed in names).
fn consumer_name(sub: &Subscription, kind: &str) -> String {
    format!(
        "{}{}-{}",
        consumer_prefix(&sub.subscriber, kind),
        sub.topic.replace('.', "_"),
        short_hash(&format!("{}\n{}", sub.subscriber, sub.topic))
    )
}

fn dead_filter(subscriber: Option<&str>) -> String {
    match subscriber {
        Some(subscriber) => format!("bazaar.dead.{subscriber}.>"),
        None => "bazaar.dead.>".to_owned(),
    }
}

impl JetStreamLog {
    /// Creates (or finds) the streams.
    pub async fn open(js: Context, ack_wait: Duration) -> anyhow::Result<Self> {
        let stream = |name: &str, subjects: &str, max_age: Duration| stream::Config {
            name: name.to_owned(),
            subjects: vec![subjects.to_owned()],
            storage: StorageType::File,
            max_age,
            duplicate_window: DEDUP_WINDOW.min(if max_age.is_zero() {
                DEDUP_WINDOW
            } else {
                max_age
            }),
            ..Default::default()
        };
        let create = async |config: stream::Config| {
            let name = config.name.clone();
            js.get_or_create_stream(config)
                .await
                .with_context(|| {
                    format!("cannot create JetStream stream {name}; is JetStream enabled on the NATS server (nats-server -js)?")
                })
        };
        let events = create(stream(EVENTS, "bazaar.events.>", RETENTION)).await?;
        let dead = create(stream(DEAD, "bazaar.dead.>", Duration::ZERO)).await?;
        let redo = create(stream(REDO, "bazaar.redo.>", RETENTION)).await?;
        Ok(Self {
            js,
            events,
            dead,
            redo,
            ack_wait,
            consumers: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        })
    }

    async fn consumers(&self, sub: &Subscription) -> anyhow::Result<Consumers> {
        if let Some(found) = lock(&self.consumers).get(sub) {
            return Ok(found.clone());
        }
        let config = |name: String, filter: String, deliver: DeliverPolicy| pull::Config {
            durable_name: Some(name),
            filter_subject: filter,
            deliver_policy: deliver,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_deliver: -1,
            max_ack_pending: 1,
            ..Default::default()
        };
        let main_name = consumer_name(sub, "sub");
        let main = self
            .events
            .get_or_create_consumer(
                &main_name,
                config(
                    main_name.clone(),
                    events_subject(&sub.topic),
                    DeliverPolicy::New,
                ),
            )
            .await
            .with_context(|| format!("cannot create JetStream consumer {main_name}"))?;
        let redo_name = consumer_name(sub, "redo");
        let redo = self
            .redo
            .get_or_create_consumer(
                &redo_name,
                config(redo_name.clone(), redo_subject(sub), DeliverPolicy::All),
            )
            .await
            .with_context(|| format!("cannot create JetStream consumer {redo_name}"))?;
        let found = Consumers { main, redo };
        lock(&self.consumers).insert(sub.clone(), found.clone());
        Ok(found)
    }

    /// Holds `message` for `sub` and keeps JetStream from giving it to
    /// another host while it is handled here.
    fn hold(&self, sub: &Subscription, message: Message, pending: Pending) -> Pending {
        let message = Arc::new(message);
        let pulse = Arc::clone(&message);
        let every = self.ack_wait / 3;
        let keepalive = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = pulse.ack_with(AckKind::Progress).await {
                    tracing::debug!(error = %e, "cannot extend an event's lease");
                }
            }
        });
        lock(&self.held).insert(
            sub.clone(),
            Held {
                message,
                pending: pending.clone(),
                keepalive,
            },
        );
        pending
    }

    /// Takes the held message of `sub`, checking it is `pending`.
    fn release(&self, sub: &Subscription, pending: &Pending) -> anyhow::Result<Held> {
        let held = lock(&self.held)
            .remove(sub)
            .context("no event is in hand for this subscription")?;
        anyhow::ensure!(
            held.pending.seq == pending.seq && held.pending.replayed == pending.replayed,
            "the event in hand is not the one settled"
        );
        Ok(held)
    }

    async fn fetch(consumer: &PullConsumer, wait: bool) -> anyhow::Result<Option<Message>> {
        let batch = if wait {
            consumer
                .batch()
                .max_messages(1)
                .expires(LONG_POLL)
                .messages()
                .await
        } else {
            consumer.fetch().max_messages(1).messages().await
        };
        let mut batch = batch.map_err(|e| anyhow::anyhow!("cannot fetch events: {e}"))?;
        match batch.next().await {
            Some(Ok(message)) => Ok(Some(message)),
            Some(Err(e)) => Err(anyhow::anyhow!("cannot fetch events: {e}")),
            None => Ok(None),
        }
    }

    /// Every message of `stream` under `filter`, with its stream sequence.
    async fn read_all(
        stream: &stream::Stream,
        filter: String,
    ) -> anyhow::Result<Vec<(u64, Message)>> {
        let consumer: PullConsumer = stream
            .create_consumer(pull::Config {
                filter_subject: filter,
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            })
            .await
            .context("cannot read the dead letters")?;
        let mut info = consumer.clone();
        let mut left = info.info().await?.num_pending as usize;
        let mut out = Vec::with_capacity(left);
        while left > 0 {
            let mut batch = consumer
                .batch()
                .max_messages(left.min(256))
                .expires(Duration::from_secs(2))
                .messages()
                .await
                .map_err(|e| anyhow::anyhow!("cannot read the dead letters: {e}"))?;
            let mut got = 0;
            while let Some(message) = batch.next().await {
                let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
                let seq = message
                    .info()
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .stream_sequence;
                out.push((seq, message));
                got += 1;
            }
            if got == 0 {
                break;
            }
            left = left.saturating_sub(got);
        }
        let _ = stream.delete_consumer(&consumer.cached_info().name).await;
        Ok(out)
    }

    async fn next_for(&self, sub: &Subscription) -> anyhow::Result<Option<Pending>> {
        if let Some(held) = lock(&self.held).get(sub) {
            return Ok(Some(held.pending.clone()));
        }
        let consumers = self.consumers(sub).await?;
        let evict = |e: anyhow::Error| {
            // The consumer may be gone (the service was purged through
            // another host); make it again next time.
            lock(&self.consumers).remove(sub);
            e
        };
        // A replayed dead letter goes first.
        if let Some(message) = Self::fetch(&consumers.redo, false).await.map_err(evict)? {
            let delivered = message.info().map_or(1, |i| i.delivered);
            match serde_json::from_slice::<DeadLetter>(&message.payload) {
                Ok(letter) => {
                    let pending = Pending {
                        seq: letter.seq,
                        event: letter.event,
                        attempts: u32::try_from(delivered.saturating_sub(1)).unwrap_or(0),
                        not_before_ms: 0,
                        replayed: true,
                    };
                    return Ok(Some(self.hold(sub, message, pending)));
                }
                Err(e) => {
                    tracing::error!(error = %e, "dropping a replayed dead letter that cannot be read");
                    let _ = message.ack_with(AckKind::Term).await;
                    return Ok(None);
                }
            }
        }
        let Some(message) = Self::fetch(&consumers.main, true).await.map_err(evict)? else {
            return Ok(None);
        };
        let (seq, delivered) = message
            .info()
            .map(|i| (i.stream_sequence, i.delivered))
            .map_err(|e| anyhow::anyhow!("an event without delivery info: {e}"))?;
        match StoredEvent::decode(&message.payload) {
            Ok(event) => {
                let pending = Pending {
                    seq,
                    event,
                    attempts: u32::try_from(delivered.saturating_sub(1)).unwrap_or(0),
                    not_before_ms: 0,
                    replayed: false,
                };
                Ok(Some(self.hold(sub, message, pending)))
            }
            Err(e) => {
                tracing::error!(
                    seq,
                    error = format!("{e:#}"),
                    "dropping an event that cannot be read"
                );
                let _ = message.ack_with(AckKind::Term).await;
                Ok(None)
            }
        }
    }
}

impl EventLog for JetStreamLog {
    fn append(
        &self,
        _publisher: String,
        entries: Vec<(u64, StoredEvent)>,
    ) -> BoxFuture<'_, anyhow::Result<Vec<String>>> {
        Box::pin(async move {
            let mut acks = Vec::with_capacity(entries.len());
            let mut topics = BTreeSet::new();
            for (_, event) in entries {
                let publish = PublishMessage::build()
                    .payload(event.encode().into())
                    .message_id(&event.id);
                let ack = self
                    .js
                    .send_publish(events_subject(&event.topic), publish)
                    .await
                    .with_context(|| format!("cannot publish event {} to JetStream", event.id))?;
                acks.push((event.id, ack));
                topics.insert(event.topic);
            }
            for (id, ack) in acks {
                ack.await
                    .with_context(|| format!("JetStream did not confirm event {id}"))?;
            }
            Ok(topics.into_iter().collect())
        })
    }

    fn subscribe(&self, sub: Subscription) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move { self.consumers(&sub).await.map(|_| ()) })
    }

    fn next(&self, sub: Subscription) -> BoxFuture<'_, anyhow::Result<Option<Pending>>> {
        Box::pin(async move { self.next_for(&sub).await })
    }

    fn long_polls(&self) -> bool {
        true
    }

    fn ack(&self, sub: Subscription, pending: Pending) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let held = self.release(&sub, &pending)?;
            lock(&self.failures).remove(&sub);
            held.message
                .double_ack()
                .await
                .map_err(|e| anyhow::anyhow!("JetStream did not take the acknowledgement: {e}"))
        })
    }

    fn retry_later(
        &self,
        sub: Subscription,
        pending: Pending,
        error: String,
        not_before_ms: u64,
    ) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let held = self.release(&sub, &pending)?;
            lock(&self.failures).insert(sub, (pending.attempts.saturating_add(1), error));
            let delay = Duration::from_millis(not_before_ms.saturating_sub(now_ms()));
            held.message
                .ack_with(AckKind::Nak(Some(delay)))
                .await
                .map_err(|e| anyhow::anyhow!("cannot schedule the retry: {e}"))
        })
    }

    fn dead_letter(
        &self,
        sub: Subscription,
        pending: Pending,
        error: String,
    ) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let held = self.release(&sub, &pending)?;
            let letter = DeadLetter {
                subscriber: sub.subscriber.clone(),
                topic: sub.topic.clone(),
                seq: pending.seq,
                event: pending.event.clone(),
                attempts: pending.attempts.saturating_add(1),
                error,
                dead_at_ms: now_ms(),
            };
            let body = serde_json::to_vec(&letter)?;
            let stored = async {
                self.js
                    .publish(dead_subject(&sub), body.into())
                    .await?
                    .await?;
                Ok::<_, async_nats::Error>(())
            }
            .await;
            if let Err(e) = stored {
                // Keep the event in hand: the worker settles it again.
                lock(&self.held).insert(sub, held);
                anyhow::bail!("cannot store the dead letter: {e}");
            }
            lock(&self.failures).remove(&sub);
            held.message
                .double_ack()
                .await
                .map_err(|e| anyhow::anyhow!("JetStream did not take the acknowledgement: {e}"))
        })
    }

    fn replay(
        &self,
        subscriber: String,
        topic: Option<String>,
    ) -> BoxFuture<'_, anyhow::Result<usize>> {
        Box::pin(async move {
            let filter = match &topic {
                Some(topic) => dead_subject(&Subscription {
                    subscriber: subscriber.clone(),
                    topic: topic.clone(),
                }),
                None => dead_filter(Some(&subscriber)),
            };
            let letters = Self::read_all(&self.dead, filter).await?;
            let mut moved = 0;
            for (seq, message) in letters {
                let Ok(letter) = serde_json::from_slice::<DeadLetter>(&message.payload) else {
                    continue;
                };
                let sub = Subscription {
                    subscriber: letter.subscriber.clone(),
                    topic: letter.topic.clone(),
                };
                let publish = PublishMessage::build()
                    .payload(message.payload.clone())
                    .message_id(format!("redo-{seq}"));
                self.js
                    .send_publish(redo_subject(&sub), publish)
                    .await
                    .context("cannot queue a replay")?
                    .await
                    .context("JetStream did not confirm a replay")?;
                self.dead
                    .delete_message(seq)
                    .await
                    .context("cannot remove a replayed dead letter")?;
                moved += 1;
            }
            Ok(moved)
        })
    }

    fn stats(&self) -> BoxFuture<'_, anyhow::Result<Vec<SubscriptionStats>>> {
        Box::pin(async move {
            let subs: Vec<(Subscription, Consumers)> = lock(&self.consumers)
                .iter()
                .map(|(s, c)| (s.clone(), c.clone()))
                .collect();
            let mut out = Vec::with_capacity(subs.len());
            for (sub, consumers) in subs {
                let main = consumers.main.get_info().await?;
                let redo = consumers.redo.get_info().await?;
                let mut dead = 0u64;
                let mut counts = self.dead.info_with_subjects(dead_subject(&sub)).await?;
                while let Some(entry) = counts.next().await {
                    dead += entry?.1 as u64;
                }
                let published_through = self
                    .events
                    .get_last_raw_message_by_subject(&events_subject(&sub.topic))
                    .await
                    .map_or(0, |m| m.sequence);
                let (attempts, last_error) = lock(&self.failures)
                    .get(&sub)
                    .map_or((0, None), |(a, e)| (*a, Some(e.clone())));
                out.push(SubscriptionStats {
                    backlog: main.num_pending
                        + main.num_ack_pending as u64
                        + redo.num_pending
                        + redo.num_ack_pending as u64,
                    delivered_through: main.ack_floor.stream_sequence,
                    published_through,
                    attempts,
                    last_error,
                    dead_letters: dead,
                    subscriber: sub.subscriber,
                    topic: sub.topic,
                });
            }
            out.sort_by(|a, b| (&a.subscriber, &a.topic).cmp(&(&b.subscriber, &b.topic)));
            Ok(out)
        })
    }

    fn dead_letters(
        &self,
        subscriber: Option<String>,
    ) -> BoxFuture<'_, anyhow::Result<Vec<DeadLetter>>> {
        Box::pin(async move {
            let letters = Self::read_all(&self.dead, dead_filter(subscriber.as_deref())).await?;
            Ok(letters
                .into_iter()
                .filter_map(|(_, m)| serde_json::from_slice(&m.payload).ok())
                .collect())
        })
    }

    fn forget(&self, service: String) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let subs: Vec<Subscription> = lock(&self.consumers)
                .keys()
                .filter(|s| s.subscriber == service)
                .cloned()
                .collect();
            for sub in &subs {
                lock(&self.consumers).remove(sub);
                lock(&self.held).remove(sub);
                lock(&self.failures).remove(sub);
            }
            // Consumers of the service made by any host, known here or not.
            for (stream, kind) in [(&self.events, "sub"), (&self.redo, "redo")] {
                let prefix = consumer_prefix(&service, kind);
                let names: Vec<String> = stream
                    .consumer_names()
                    .filter_map(|n| async move { n.ok() })
                    .collect()
                    .await;
                for name in names.iter().filter(|n| n.starts_with(&prefix)) {
                    stream
                        .delete_consumer(name)
                        .await
                        .with_context(|| format!("cannot delete JetStream consumer {name}"))?;
                }
            }
            self.dead
                .purge()
                .filter(dead_filter(Some(&service)))
                .await
                .context("cannot delete the dead letters")?;
            self.redo
                .purge()
                .filter(format!("bazaar.redo.{service}.>"))
                .await
                .context("cannot delete the replays")?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_names_are_valid_and_distinct() {
        let a = Subscription {
            subscriber: "orders".into(),
            topic: "payments.done".into(),
        };
        let b = Subscription {
            subscriber: "orders".into(),
            topic: "payments_done".into(),
        };
        let name = consumer_name(&a, "sub");
        assert!(
            name.starts_with(&consumer_prefix("orders", "sub")),
            "{name}"
        );
        assert!(name.contains("-orders-payments_done-"), "{name}");
        assert!(!name.contains('.'));
        assert_ne!(name, consumer_name(&b, "sub"));
        let other = Subscription {
            subscriber: "orders-archive".into(),
            topic: "payments.done".into(),
        };
        assert!(!consumer_name(&other, "sub").starts_with(&consumer_prefix("orders", "sub")));
    }
}
