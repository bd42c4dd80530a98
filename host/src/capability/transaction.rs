//! `bazaar:platform/transaction`: key-value writes, the conditions they
//! depend on, and the events announcing them, committed in one durable
//! transaction of the service's store (the outbox pattern).
//!
//! The guest assembles a transaction with calls that cannot fail; limits and
//! grants are checked at `commit`, which either applies everything or
//! nothing. Committed events go to the store's outbox, from which the relay
//! moves them to the event log.

use super::generated::bazaar::platform::transaction::{self, CommitError};
use super::keyvalue::{Bucket, KeyValueError, bucket_name};
use crate::context::RequestContext;
use crate::events::{MAX_PAYLOAD, StoredEvent, now_ms};
use crate::kvstore::{Batch, Condition, StoreError, Write};
use crate::registry::ServiceContext;
use crate::state::RequestState;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

/// Most writes and conditions in one transaction.
const MAX_OPERATIONS: usize = 1000;
/// Most events in one transaction.
const MAX_EVENTS: usize = 100;
/// Most bytes of keys, values and payloads in one transaction.
const MAX_BYTES: usize = 16 << 20;

/// The host side of a `transaction` resource.
#[derive(Default)]
pub struct PendingTransaction {
    batch: Batch,
    events: Vec<(String, Vec<u8>)>,
    bytes: usize,
    /// The first problem found while assembling, reported at commit.
    problem: Option<String>,
}

impl PendingTransaction {
    fn account(&mut self, bytes: usize) {
        self.bytes = self.bytes.saturating_add(bytes);
        let operations = self.batch.conditions.len() + self.batch.writes.len();
        if self.problem.is_none() {
            if self.bytes > MAX_BYTES {
                self.problem = Some(format!("a transaction may carry at most {MAX_BYTES} bytes"));
            } else if operations > MAX_OPERATIONS {
                self.problem = Some(format!(
                    "a transaction may hold at most {MAX_OPERATIONS} writes and conditions"
                ));
            } else if self.events.len() > MAX_EVENTS {
                self.problem = Some(format!(
                    "a transaction may publish at most {MAX_EVENTS} events"
                ));
            }
        }
    }
}

/// What a transaction call may touch.
pub struct TransactionView<'a> {
    service: &'a Arc<ServiceContext>,
    ctx: &'a RequestContext,
    table: &'a mut ResourceTable,
}

struct HasTransaction;

impl HasData for HasTransaction {
    type Data<'a> = TransactionView<'a>;
}

/// Adds `bazaar:platform/transaction` to `linker`.
pub fn add_to_linker(linker: &mut Linker<RequestState>) -> wasmtime::Result<()> {
    transaction::add_to_linker::<_, HasTransaction>(linker, |state| {
        let (service, ctx, table) = state.publish_parts();
        TransactionView {
            service,
            ctx,
            table,
        }
    })
}

/// Commits `batch` with `events` for `service`: checks the grants, encodes
/// the events into the outbox, commits, and rings the relay. Returns the
/// events' ids.
pub(crate) async fn commit_with_events(
    service: &Arc<ServiceContext>,
    ctx: &RequestContext,
    mut batch: Batch,
    events: Vec<(String, Vec<u8>)>,
) -> Result<Vec<String>, CommitError> {
    let mut ids = Vec::with_capacity(events.len());
    let mut topics = Vec::with_capacity(events.len());
    for (topic, payload) in events {
        if !service.may_publish(&topic) {
            tracing::warn!(service = %service.name, %topic, "publish denied: add the topic to publishes of the service");
            return Err(CommitError::Denied(format!(
                "service `{}` may not publish to `{topic}`; add it to `publishes`",
                service.name
            )));
        }
        if payload.len() > MAX_PAYLOAD {
            return Err(CommitError::Invalid(format!(
                "an event payload may be at most {MAX_PAYLOAD} bytes"
            )));
        }
        let event = StoredEvent {
            id: format!("evt_{}", uuid::Uuid::new_v4().simple()),
            topic,
            source: service.name.to_string(),
            payload,
            published_at_ms: now_ms(),
            request_id: Some(ctx.id.to_string()),
            traceparent: Some(ctx.trace.header()),
        };
        ids.push(event.id.clone());
        topics.push(event.topic.clone());
        batch.outbox.push(event.encode());
    }
    let publishes = !batch.outbox.is_empty();

    let result = match service.store.commit(batch).await {
        Err(StoreError::Conflict { key, .. }) => Ok(Err(key)),
        other => other.map(Ok),
    };
    match result {
        Ok(Ok(())) => {
            if publishes {
                service.outbox_ready.notify_one();
                for topic in &topics {
                    crate::metrics::published(&service.name, topic, 1);
                }
            }
            Ok(ids)
        }
        Ok(Err(key)) => Err(CommitError::Conflict(key)),
        Err(e) => Err(CommitError::Store(KeyValueError::from(e).into_guest())),
    }
}

impl transaction::HostTransaction for TransactionView<'_> {
    async fn new(&mut self) -> wasmtime::Result<Resource<PendingTransaction>> {
        Ok(self.table.push(PendingTransaction::default())?)
    }

    async fn require(
        &mut self,
        tx: Resource<PendingTransaction>,
        bucket: Resource<Bucket>,
        key: String,
        expected: Option<Vec<u8>>,
    ) -> wasmtime::Result<()> {
        let bucket = self.checked_bucket(&bucket);
        let tx = self.table.get_mut(&tx)?;
        let size = key.len() + expected.as_ref().map_or(0, Vec::len);
        match bucket {
            Ok(bucket) => tx.batch.conditions.push(Condition {
                bucket,
                key,
                expected,
            }),
            Err(problem) => tx.problem = tx.problem.take().or(Some(problem)),
        }
        tx.account(size);
        Ok(())
    }

    async fn set(
        &mut self,
        tx: Resource<PendingTransaction>,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<()> {
        let bucket = self.checked_bucket(&bucket);
        let tx = self.table.get_mut(&tx)?;
        let size = key.len() + value.len();
        match bucket {
            Ok(bucket) => tx.batch.writes.push(Write::Set { bucket, key, value }),
            Err(problem) => tx.problem = tx.problem.take().or(Some(problem)),
        }
        tx.account(size);
        Ok(())
    }

    async fn delete(
        &mut self,
        tx: Resource<PendingTransaction>,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<()> {
        let bucket = self.checked_bucket(&bucket);
        let tx = self.table.get_mut(&tx)?;
        let size = key.len();
        match bucket {
            Ok(bucket) => tx.batch.writes.push(Write::Delete { bucket, key }),
            Err(problem) => tx.problem = tx.problem.take().or(Some(problem)),
        }
        tx.account(size);
        Ok(())
    }

    async fn publish(
        &mut self,
        tx: Resource<PendingTransaction>,
        topic: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<()> {
        let tx = self.table.get_mut(&tx)?;
        let size = topic.len() + payload.len();
        tx.events.push((topic, payload));
        tx.account(size);
        Ok(())
    }

    async fn drop(&mut self, tx: Resource<PendingTransaction>) -> wasmtime::Result<()> {
        self.table.delete(tx)?;
        Ok(())
    }
}

impl TransactionView<'_> {
    fn checked_bucket(&self, bucket: &Resource<Bucket>) -> Result<String, String> {
        bucket_name(self.table, bucket).map_err(|e| match e {
            KeyValueError::AccessDenied => "access denied to a bucket".to_owned(),
            KeyValueError::Other(message) => message,
        })
    }
}

impl transaction::Host for TransactionView<'_> {
    async fn commit(
        &mut self,
        tx: Resource<PendingTransaction>,
    ) -> wasmtime::Result<Result<Vec<String>, CommitError>> {
        let tx = self.table.delete(tx)?;
        if let Some(problem) = tx.problem {
            return Ok(Err(CommitError::Invalid(problem)));
        }
        Ok(commit_with_events(self.service, self.ctx, tx.batch, tx.events).await)
    }
}
