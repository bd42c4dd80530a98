//! The event log in one redb file, `<data dir>/events.redb`: the default
//! for a single host.
//!
//! Tables: the events of each topic by sequence number, the newest sequence
//! number of each topic, the last outbox entry taken from each publisher,
//! each subscription's state, dead letters, and dead letters queued for
//! replay. Every change commits with immediate durability before it is
//! acknowledged.

use super::{
    BoxFuture, DeadLetter, EventLog, Pending, StoredEvent, Subscription, SubscriptionStats, now_ms,
};
use anyhow::Context as _;
use redb::{
    Database, ReadableDatabase as _, ReadableTable as _, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

/// (topic, seq) → event.
const LOG: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("log");
/// topic → newest seq.
const HEADS: TableDefinition<&str, u64> = TableDefinition::new("heads");
/// publisher → last outbox seq appended.
const RELAYED: TableDefinition<&str, u64> = TableDefinition::new("relayed");
/// (subscriber, topic) → [`SubState`].
const SUBS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("subscriptions");
/// (subscriber, topic, seq) → [`DeadRecord`].
const DEAD: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("dead-letters");
/// (subscriber, topic, seq) → event, dead letters queued for replay.
const REDO: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("replays");

/// Where a subscription is.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SubState {
    /// Topic position handled so far.
    delivered: u64,
    /// Failed attempts at the event it is on.
    attempts: u32,
    /// No retry before this (ms since the epoch).
    not_before_ms: u64,
    /// The last failure.
    last_error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct DeadRecord {
    event: StoredEvent,
    attempts: u32,
    error: String,
    dead_at_ms: u64,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).unwrap_or_default()
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> anyhow::Result<T> {
    postcard::from_bytes(bytes).map_err(|e| anyhow::anyhow!("damaged event log record: {e}"))
}

/// The embedded event log.
#[derive(Clone)]
pub struct EmbeddedLog {
    db: Arc<Database>,
}

impl EmbeddedLog {
    /// Opens (creating) `<data_dir>/events.redb`.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("events.redb");
        let db = Database::create(&path).with_context(|| {
            format!(
                "cannot open the event log at {}; is another bazaar using this data directory?",
                path.display()
            )
        })?;
        let txn = db.begin_write().context("begin write")?;
        {
            // Create every table once, so readers never meet a missing one.
            txn.open_table(LOG)?;
            txn.open_table(HEADS)?;
            txn.open_table(RELAYED)?;
            txn.open_table(SUBS)?;
            txn.open_table(DEAD)?;
            txn.open_table(REDO)?;
        }
        txn.commit().context("create event log tables")?;
        Ok(Self { db: Arc::new(db) })
    }

    fn blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Database) -> anyhow::Result<T> + Send + 'static,
    ) -> BoxFuture<'_, anyhow::Result<T>> {
        let db = Arc::clone(&self.db);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || op(&db))
                .await
                .context("event log task failed")?
        })
    }
}

fn state(txn: &WriteTransaction, sub: &Subscription) -> anyhow::Result<SubState> {
    let table = txn.open_table(SUBS)?;
    let value = table.get((sub.subscriber.as_str(), sub.topic.as_str()))?;
    value.map_or(Ok(SubState::default()), |v| decode(v.value()))
}

fn put_state(txn: &WriteTransaction, sub: &Subscription, state: &SubState) -> anyhow::Result<()> {
    let mut table = txn.open_table(SUBS)?;
    table.insert(
        (sub.subscriber.as_str(), sub.topic.as_str()),
        encode(state).as_slice(),
    )?;
    Ok(())
}

/// Drops events of `topic` that every subscription has handled.
fn prune(txn: &WriteTransaction, topic: &str) -> anyhow::Result<()> {
    let mut lowest = u64::MAX;
    for entry in txn.open_table(SUBS)?.iter()? {
        let (key, value) = entry?;
        if key.value().1 == topic {
            lowest = lowest.min(decode::<SubState>(value.value())?.delivered);
        }
    }
    let mut log = txn.open_table(LOG)?;
    log.retain_in((topic, 0)..=(topic, lowest), |_, _| false)?;
    Ok(())
}

/// Advances `sub` past `pending` and resets its retry state.
fn advance(txn: &WriteTransaction, sub: &Subscription, pending: &Pending) -> anyhow::Result<()> {
    let key = (sub.subscriber.as_str(), sub.topic.as_str(), pending.seq);
    let mut current = state(txn, sub)?;
    if pending.replayed {
        txn.open_table(REDO)?.remove(key)?;
    } else {
        current.delivered = current.delivered.max(pending.seq);
    }
    current.attempts = 0;
    current.not_before_ms = 0;
    current.last_error = None;
    put_state(txn, sub, &current)?;
    prune(txn, &sub.topic)
}

impl EventLog for EmbeddedLog {
    fn append(
        &self,
        publisher: String,
        entries: Vec<(u64, StoredEvent)>,
    ) -> BoxFuture<'_, anyhow::Result<Vec<String>>> {
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            let mut grown = BTreeSet::new();
            {
                let mut relayed = txn.open_table(RELAYED)?;
                let mut heads = txn.open_table(HEADS)?;
                let mut log = txn.open_table(LOG)?;
                let mut last = relayed.get(publisher.as_str())?.map_or(0, |v| v.value());
                for (outbox_seq, event) in entries {
                    if outbox_seq <= last {
                        continue; // appended before a crash cut the relay short
                    }
                    let seq = heads.get(event.topic.as_str())?.map_or(0, |v| v.value()) + 1;
                    heads.insert(event.topic.as_str(), seq)?;
                    log.insert((event.topic.as_str(), seq), event.encode().as_slice())?;
                    grown.insert(event.topic.clone());
                    last = outbox_seq;
                }
                relayed.insert(publisher.as_str(), last)?;
            }
            for topic in &grown {
                prune(&txn, topic)?;
            }
            txn.commit()?;
            Ok(grown.into_iter().collect())
        })
    }

    fn subscribe(&self, sub: Subscription) -> BoxFuture<'_, anyhow::Result<()>> {
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            let exists = txn
                .open_table(SUBS)?
                .get((sub.subscriber.as_str(), sub.topic.as_str()))?
                .is_some();
            if !exists {
                let head = txn
                    .open_table(HEADS)?
                    .get(sub.topic.as_str())?
                    .map_or(0, |v| v.value());
                let start = SubState {
                    delivered: head,
                    ..SubState::default()
                };
                put_state(&txn, &sub, &start)?;
            }
            txn.commit()?;
            Ok(())
        })
    }

    fn next(&self, sub: Subscription) -> BoxFuture<'_, anyhow::Result<Option<Pending>>> {
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let (s, t) = (sub.subscriber.as_str(), sub.topic.as_str());
            let current: SubState = match txn.open_table(SUBS)?.get((s, t))? {
                Some(v) => decode(v.value())?,
                None => return Ok(None),
            };
            let pending = |seq, bytes: &[u8], replayed| -> anyhow::Result<Pending> {
                Ok(Pending {
                    seq,
                    event: StoredEvent::decode(bytes)?,
                    attempts: current.attempts,
                    not_before_ms: current.not_before_ms,
                    replayed,
                })
            };
            let redo = txn.open_table(REDO)?;
            if let Some(entry) = redo.range((s, t, 0)..=(s, t, u64::MAX))?.next() {
                let (key, value) = entry?;
                return pending(key.value().2, value.value(), true).map(Some);
            }
            let log = txn.open_table(LOG)?;
            let after = current.delivered.saturating_add(1);
            match log.range((t, after)..=(t, u64::MAX))?.next() {
                Some(entry) => {
                    let (key, value) = entry?;
                    pending(key.value().1, value.value(), false).map(Some)
                }
                None => Ok(None),
            }
        })
    }

    fn ack(&self, sub: Subscription, pending: Pending) -> BoxFuture<'_, anyhow::Result<()>> {
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            advance(&txn, &sub, &pending)?;
            txn.commit()?;
            Ok(())
        })
    }

    fn retry_later(
        &self,
        sub: Subscription,
        pending: Pending,
        error: String,
        not_before_ms: u64,
    ) -> BoxFuture<'_, anyhow::Result<()>> {
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            let mut current = state(&txn, &sub)?;
            current.attempts = pending.attempts.saturating_add(1);
            current.not_before_ms = not_before_ms;
            current.last_error = Some(error);
            put_state(&txn, &sub, &current)?;
            txn.commit()?;
            Ok(())
        })
    }

    fn dead_letter(
        &self,
        sub: Subscription,
        pending: Pending,
        error: String,
    ) -> BoxFuture<'_, anyhow::Result<()>> {
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            let record = DeadRecord {
                event: pending.event.clone(),
                attempts: pending.attempts.saturating_add(1),
                error,
                dead_at_ms: now_ms(),
            };
            txn.open_table(DEAD)?.insert(
                (sub.subscriber.as_str(), sub.topic.as_str(), pending.seq),
                encode(&record).as_slice(),
            )?;
            advance(&txn, &sub, &pending)?;
            txn.commit()?;
            Ok(())
        })
    }

    fn replay(
        &self,
        subscriber: String,
        topic: Option<String>,
    ) -> BoxFuture<'_, anyhow::Result<usize>> {
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            let topics = topics_of(&txn, &subscriber, topic.as_deref())?;
            let mut moved = 0;
            for t in &topics {
                let s = subscriber.as_str();
                let mut dead = txn.open_table(DEAD)?;
                let mut redo = txn.open_table(REDO)?;
                let mut entries = Vec::new();
                for entry in dead
                    .extract_from_if((s, t.as_str(), 0)..=(s, t.as_str(), u64::MAX), |_, _| true)?
                {
                    let (key, value) = entry?;
                    let record: DeadRecord = decode(value.value())?;
                    entries.push((key.value().2, record.event.encode()));
                }
                for (seq, event) in &entries {
                    redo.insert((s, t.as_str(), *seq), event.as_slice())?;
                }
                drop((dead, redo));
                if !entries.is_empty() {
                    // A replay starts its attempts afresh.
                    let sub = Subscription {
                        subscriber: subscriber.clone(),
                        topic: t.clone(),
                    };
                    let mut current = state(&txn, &sub)?;
                    current.attempts = 0;
                    current.not_before_ms = 0;
                    put_state(&txn, &sub, &current)?;
                }
                moved += entries.len();
            }
            txn.commit()?;
            Ok(moved)
        })
    }

    fn stats(&self) -> BoxFuture<'_, anyhow::Result<Vec<SubscriptionStats>>> {
        self.blocking(|db| {
            let txn = db.begin_read()?;
            let heads = txn.open_table(HEADS)?;
            let dead = txn.open_table(DEAD)?;
            let redo = txn.open_table(REDO)?;
            let mut stats = Vec::new();
            for entry in txn.open_table(SUBS)?.iter()? {
                let (key, value) = entry?;
                let (s, t) = key.value();
                let current: SubState = decode(value.value())?;
                let head = heads.get(t)?.map_or(0, |v| v.value());
                let count = |range: redb::Range<'_, (&str, &str, u64), &[u8]>| range.count() as u64;
                let replays = count(redo.range((s, t, 0)..=(s, t, u64::MAX))?);
                stats.push(SubscriptionStats {
                    subscriber: s.to_owned(),
                    topic: t.to_owned(),
                    backlog: head.saturating_sub(current.delivered) + replays,
                    delivered_through: current.delivered,
                    published_through: head,
                    attempts: current.attempts,
                    last_error: current.last_error,
                    dead_letters: count(dead.range((s, t, 0)..=(s, t, u64::MAX))?),
                });
            }
            Ok(stats)
        })
    }

    fn dead_letters(
        &self,
        subscriber: Option<String>,
    ) -> BoxFuture<'_, anyhow::Result<Vec<DeadLetter>>> {
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let mut letters = Vec::new();
            for entry in txn.open_table(DEAD)?.iter()? {
                let (key, value) = entry?;
                let (s, t, seq) = key.value();
                if subscriber.as_deref().is_some_and(|want| want != s) {
                    continue;
                }
                let record: DeadRecord = decode(value.value())?;
                letters.push(DeadLetter {
                    subscriber: s.to_owned(),
                    topic: t.to_owned(),
                    seq,
                    event: record.event,
                    attempts: record.attempts,
                    error: record.error,
                    dead_at_ms: record.dead_at_ms,
                });
            }
            Ok(letters)
        })
    }

    fn forget(&self, service: String) -> BoxFuture<'_, anyhow::Result<()>> {
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            let topics = topics_of(&txn, &service, None)?;
            for t in &topics {
                let s = service.as_str();
                let range = (s, t.as_str(), 0)..=(s, t.as_str(), u64::MAX);
                txn.open_table(DEAD)?
                    .retain_in(range.clone(), |_, _| false)?;
                txn.open_table(REDO)?.retain_in(range, |_, _| false)?;
                txn.open_table(SUBS)?.remove((s, t.as_str()))?;
                prune(&txn, t)?;
            }
            txn.open_table(RELAYED)?.remove(service.as_str())?;
            txn.commit()?;
            Ok(())
        })
    }
}

/// The topics `subscriber` has subscriptions to (just `only`, when given).
fn topics_of(
    txn: &WriteTransaction,
    subscriber: &str,
    only: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let mut topics = BTreeMap::new();
    for entry in txn.open_table(SUBS)?.iter()? {
        let (key, _) = entry?;
        let (s, t) = key.value();
        if s == subscriber && only.is_none_or(|o| o == t) {
            topics.insert(t.to_owned(), ());
        }
    }
    Ok(topics.into_keys().collect())
}

#[cfg(test)]
mod tests;
