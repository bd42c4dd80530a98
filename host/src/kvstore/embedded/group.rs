//! Group commit: writes from concurrent requests to one store share one
//! transaction and one fsync, with the same durability as one each.
//!
//! The queue is [`crate::group_commit`]; a leader applies each queued
//! operation in turn in one write transaction and commits once. An operation
//! whose condition fails (or that finds a value it cannot increment) is
//! skipped before it writes anything and fails alone; a storage error
//! fails the whole group, and nothing of it was committed.

use super::{Batch, META, NEXT_OUTBOX_SEQ, OUTBOX, StoreError, Write, table};
use anyhow::Context as _;
use redb::{Database, ReadableTable as _, TableError, WriteTransaction};

/// A write waiting for the next commit.
pub(super) enum Op {
    /// Conditions, writes and outbox entries, all or nothing.
    Batch(Batch),
    /// Adds to a decimal counter.
    Increment {
        bucket: String,
        key: String,
        delta: u64,
    },
    /// Drops relayed outbox entries up to a sequence number.
    TrimOutbox(u64),
}

/// What a committed operation gives back.
pub(super) enum Done {
    /// Written.
    Written,
    /// The counter's new value.
    Counter(u64),
}

/// The queue of one store's writers.
pub(super) type GroupCommit = crate::group_commit::GroupCommit<Op, Result<Done, StoreError>>;

/// Commits `op` with whatever else is queued, durably, and returns its own
/// result. Blocks: call it off the async threads.
pub(super) fn submit(queue: &GroupCommit, db: &Database, op: Op) -> Result<Done, StoreError> {
    queue
        .submit(op, |group| commit_group(db, group))
        .unwrap_or_else(|abandoned| Err(StoreError::Storage(abandoned.into())))
}

/// Applies `group` in one transaction; every ticket gets a result.
fn commit_group(db: &Database, group: Vec<(u64, Op)>) -> Vec<(u64, Result<Done, StoreError>)> {
    let applied = (|| -> anyhow::Result<Vec<(u64, Result<Done, StoreError>)>> {
        let txn = db.begin_write().context("begin write")?;
        let mut results = Vec::with_capacity(group.len());
        for (ticket, op) in group.iter().map(|(t, op)| (*t, op)) {
            let result = match op {
                Op::Batch(batch) => apply_batch(&txn, batch).map(|r| r.map(|()| Done::Written)),
                Op::Increment { bucket, key, delta } => {
                    apply_increment(&txn, bucket, key, *delta).map(|r| r.map(Done::Counter))
                }
                Op::TrimOutbox(seq) => apply_trim(&txn, *seq).map(|()| Ok(Done::Written)),
            }?;
            results.push((ticket, result));
        }
        txn.commit().context("commit")?;
        Ok(results)
    })();
    match applied {
        Ok(results) => results,
        Err(e) => {
            let message = format!("{e:#}");
            group
                .into_iter()
                .map(|(ticket, _)| {
                    (
                        ticket,
                        Err(StoreError::Storage(anyhow::anyhow!("{message}"))),
                    )
                })
                .collect()
        }
    }
}

/// Checks `batch`'s conditions against everything written so far in
/// `txn`; only if all hold, applies its writes and outbox entries.
fn apply_batch(txn: &WriteTransaction, batch: &Batch) -> anyhow::Result<Result<(), StoreError>> {
    for condition in &batch.conditions {
        let current = match txn.open_table(table(&condition.bucket)) {
            Ok(table) => table
                .get(condition.key.as_str())
                .context("read key")?
                .map(|v| v.value().to_vec()),
            Err(TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(anyhow::Error::from(e).context("open bucket")),
        };
        if current != condition.expected {
            return Ok(Err(StoreError::Conflict {
                bucket: condition.bucket.clone(),
                key: condition.key.clone(),
            }));
        }
    }
    for write in &batch.writes {
        match write {
            Write::Set { bucket, key, value } => {
                let mut table = txn.open_table(table(bucket)).context("open bucket")?;
                table
                    .insert(key.as_str(), value.as_slice())
                    .context("write key")?;
            }
            Write::Delete { bucket, key } => {
                let mut table = txn.open_table(table(bucket)).context("open bucket")?;
                table.remove(key.as_str()).context("delete key")?;
            }
        }
    }
    if !batch.outbox.is_empty() {
        let mut meta = txn.open_table(META).context("open meta")?;
        let mut seq = meta
            .get(NEXT_OUTBOX_SEQ)
            .context("read outbox sequence")?
            .map_or(1, |v| v.value());
        let mut outbox = txn.open_table(OUTBOX).context("open outbox")?;
        for event in &batch.outbox {
            outbox
                .insert(seq, event.as_slice())
                .context("append to outbox")?;
            seq += 1;
        }
        meta.insert(NEXT_OUTBOX_SEQ, seq)
            .context("write outbox sequence")?;
    }
    Ok(Ok(()))
}

fn apply_increment(
    txn: &WriteTransaction,
    bucket: &str,
    key: &str,
    delta: u64,
) -> anyhow::Result<Result<u64, StoreError>> {
    let mut table = txn.open_table(table(bucket)).context("open bucket")?;
    let current = match table.get(key).context("read key")? {
        None => 0,
        Some(value) => match std::str::from_utf8(value.value())
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        {
            Some(n) => n,
            None => return Ok(Err(StoreError::NotACounter(key.to_owned()))),
        },
    };
    let Some(next) = current.checked_add(delta) else {
        return Ok(Err(StoreError::Overflow(key.to_owned())));
    };
    table
        .insert(key, next.to_string().as_bytes())
        .context("write key")?;
    Ok(Ok(next))
}

fn apply_trim(txn: &WriteTransaction, seq: u64) -> anyhow::Result<()> {
    let mut outbox = txn.open_table(OUTBOX).context("open outbox")?;
    outbox
        .retain_in(..=seq, |_, _| false)
        .context("trim outbox")?;
    Ok(())
}
