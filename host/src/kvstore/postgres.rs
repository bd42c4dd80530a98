//! The fleet store: one PostgreSQL schema per service.
//!
//! Service `users` keeps its data in schema `svc_users`: table `kv`
//! (bucket, key, value, all `bytea`, so keys sort bytewise as in the
//! embedded store) and table `outbox` (events waiting for the relay). The
//! host builds every statement from the name of the service the request
//! was routed to; no guest input names a schema or a table.
//!
//! A write is acknowledged only after `COMMIT` returned, which with
//! PostgreSQL's defaults (`fsync = on`, `synchronous_commit = on`) means
//! its WAL record is on disk. A batch with conditions (compare-and-swap,
//! transactions) and an increment run `SERIALIZABLE` and are retried after
//! a serialization failure; plain writes run `READ COMMITTED`. A write that
//! failed before `COMMIT` was sent is retried on a fresh connection while
//! the server restarts; one whose `COMMIT` got no answer is reported as
//! failed, never run twice.

use super::{Batch, PAGE_LIMIT, ScanPage, StoreError, Write};
use crate::fleet::pg::{Attempt, Pg, PgError, Retry, lock_key};
use deadpool_postgres::Object;
use tokio_postgres::IsolationLevel;

/// One service's schema.
pub struct PgStore {
    pg: Pg,
    schema: String,
    /// Advisory-lock key of this service's outbox: one relay at a time
    /// across the fleet keeps publish order.
    relay_key: i64,
}

/// Entries taken from an outbox, held (locked) until relayed.
pub struct PgLease {
    client: Option<Object>,
    schema: String,
}

impl Drop for PgLease {
    fn drop(&mut self) {
        // Not finished: close the session, which rolls the transaction
        // back and frees the lock; the entries stay for the next relay.
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

impl PgLease {
    /// Deletes the relayed entries `seqs` and ends the lease.
    pub async fn finish(mut self, seqs: &[u64]) -> Result<(), StoreError> {
        let client = self
            .client
            .take()
            .ok_or_else(|| StoreError::Storage(anyhow::anyhow!("the outbox lease has ended")))?;
        let seqs: Vec<i64> = seqs.iter().map(|&s| s as i64).collect();
        let delete = format!("DELETE FROM {}.outbox WHERE seq = ANY($1)", self.schema);
        let result = async {
            client.execute(&delete, &[&seqs]).await?;
            client.batch_execute("COMMIT").await
        }
        .await;
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                drop(Object::take(client));
                Err(storage(PgError::Query(e), "trim the outbox"))
            }
        }
    }
}

/// The schema of `service`: `svc_<name>`, quoted; a long name is cut and
/// made unique with a hash, to fit PostgreSQL's 63-byte identifiers.
pub fn schema_of(service: &str) -> String {
    let name = format!("svc_{service}");
    if name.len() <= 63 {
        return format!("\"{name}\"");
    }
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(service.as_bytes());
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let cut: String = service.chars().take(40).collect();
    format!("\"svc_{cut}_{hash}\"")
}

/// Evaluates `$once` (an [`Attempt`]) with `$client`, a pooled connection,
/// until it is done, retrying conflicts and lost connections as [`Retry`]
/// paces them; the value of the `Result<T, StoreError>` it ends with, or
/// an early return of the error.
macro_rules! retrying {
    ($self:ident, $what:literal, |$client:ident| $once:expr) => {{
        let mut retry = Retry::default();
        loop {
            let mut held = $self.pg.get().await.map_err(|e| storage(e, $what))?;
            let $client = &mut held;
            match $once {
                Attempt::Done(result) => break result.map_err(|e| storage(e, $what))?,
                Attempt::Retry(e) => retry.again(e, held).await.map_err(|e| storage(e, $what))?,
            }
        }
    }};
}

/// Starts a transaction at `level` on `client`.
async fn begin(
    client: &mut Object,
    level: IsolationLevel,
) -> Result<deadpool_postgres::Transaction<'_>, tokio_postgres::Error> {
    client
        .build_transaction()
        .isolation_level(level)
        .start()
        .await
}

fn storage(e: PgError, what: &str) -> StoreError {
    StoreError::Storage(anyhow::Error::from(e).context(format!("cannot {what} in PostgreSQL")))
}

/// The smallest byte string greater than every string starting with
/// `prefix`, if there is one.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl PgStore {
    /// Opens the store of `service`, creating its schema on first use.
    pub async fn open(pg: Pg, service: &str) -> anyhow::Result<Self> {
        let schema = schema_of(service);
        let ddl = format!(
            "SELECT pg_advisory_xact_lock({lock});
             CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.kv (
                 bucket bytea NOT NULL,
                 key bytea NOT NULL,
                 value bytea NOT NULL,
                 PRIMARY KEY (bucket, key));
             CREATE TABLE IF NOT EXISTS {schema}.outbox (
                 seq bigserial PRIMARY KEY,
                 event bytea NOT NULL);",
            lock = lock_key("bazaar-ddl"),
        );
        let mut client = pg.get().await?;
        let txn = client.transaction().await?;
        txn.batch_execute(&ddl).await.map_err(|e| {
            anyhow::anyhow!("cannot create schema {schema} for service `{service}`: {e}")
        })?;
        txn.commit().await?;
        Ok(Self {
            pg,
            relay_key: lock_key(&format!("bazaar-relay:{service}")),
            schema,
        })
    }

    /// Drops the schema of `service` with everything in it.
    pub async fn purge(pg: &Pg, service: &str) -> anyhow::Result<()> {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", schema_of(service));
        pg.get().await?.batch_execute(&sql).await?;
        Ok(())
    }

    /// The values of `keys`, in order.
    pub async fn get_many<K: AsRef<str>>(
        &self,
        bucket: &str,
        keys: &[K],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let sql = format!(
            "SELECT key, value FROM {}.kv WHERE bucket = $1 AND key = ANY($2)",
            self.schema
        );
        let wanted: Vec<&[u8]> = keys.iter().map(|k| k.as_ref().as_bytes()).collect();
        let rows = self.read(&sql, &[&bucket.as_bytes(), &wanted]).await?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            let key: Vec<u8> = row.get(0);
            let value: Vec<u8> = row.get(1);
            found.insert(key, value);
        }
        Ok(keys
            .iter()
            .map(|k| found.get(k.as_ref().as_bytes()).cloned())
            .collect())
    }

    /// Whether `key` exists.
    pub async fn exists(&self, bucket: &str, key: &str) -> Result<bool, StoreError> {
        let sql = format!(
            "SELECT 1 FROM {}.kv WHERE bucket = $1 AND key = $2",
            self.schema
        );
        let rows = self
            .read(&sql, &[&bucket.as_bytes(), &key.as_bytes()])
            .await?;
        Ok(!rows.is_empty())
    }

    /// Up to `limit` entries whose key starts with `prefix`, after
    /// `start_after`, in key order.
    pub async fn scan(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ScanPage, StoreError> {
        let limit = limit.clamp(1, PAGE_LIMIT);
        let (lower, inclusive) = match start_after {
            Some(after) if after >= prefix => (after.as_bytes(), false),
            _ => (prefix.as_bytes(), true),
        };
        let upper = prefix_end(prefix.as_bytes());
        let sql = format!(
            "SELECT key, value FROM {}.kv WHERE bucket = $1 AND key {} $2 {} ORDER BY key LIMIT $3",
            self.schema,
            if inclusive { ">=" } else { ">" },
            if upper.is_some() { "AND key < $4" } else { "" },
        );
        let fetch = (limit + 1) as i64;
        let rows = match &upper {
            Some(upper) => {
                self.read(
                    &sql,
                    &[&bucket.as_bytes(), &lower, &fetch, &upper.as_slice()],
                )
                .await?
            }
            None => {
                self.read(&sql, &[&bucket.as_bytes(), &lower, &fetch])
                    .await?
            }
        };
        let mut entries = Vec::with_capacity(rows.len().min(limit));
        for row in rows.iter().take(limit) {
            let key: Vec<u8> = row.get(0);
            let key = String::from_utf8(key).map_err(|_| {
                StoreError::Storage(anyhow::anyhow!("a key in {} is not UTF-8", self.schema))
            })?;
            entries.push((key, row.get::<_, Vec<u8>>(1)));
        }
        let next = if rows.len() > limit {
            entries.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        Ok(ScanPage { entries, next })
    }

    /// Checks the conditions of `batch`, then applies its writes and
    /// appends its outbox entries, in one transaction.
    pub async fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        let level = if batch.conditions.is_empty() {
            IsolationLevel::ReadCommitted
        } else {
            IsolationLevel::Serializable
        };
        retrying!(self, "write", |client| self
            .commit_once(client, batch, level)
            .await)
    }

    async fn commit_once(
        &self,
        client: &mut Object,
        batch: &Batch,
        level: IsolationLevel,
    ) -> Attempt<Result<(), StoreError>> {
        let txn = match begin(client, level).await {
            Ok(txn) => txn,
            Err(e) => return Attempt::before_commit(e),
        };
        let select = format!(
            "SELECT value FROM {}.kv WHERE bucket = $1 AND key = $2",
            self.schema
        );
        for condition in &batch.conditions {
            let rows = match txn
                .query(
                    &select,
                    &[&condition.bucket.as_bytes(), &condition.key.as_bytes()],
                )
                .await
            {
                Ok(rows) => rows,
                Err(e) => return Attempt::before_commit(e),
            };
            let current: Option<Vec<u8>> = rows.first().map(|r| r.get(0));
            if current != condition.expected {
                // Dropping the transaction rolls it back.
                return Attempt::Done(Ok(Err(StoreError::Conflict {
                    bucket: condition.bucket.clone(),
                    key: condition.key.clone(),
                })));
            }
        }
        if let Err(e) = self.apply(&txn, batch).await {
            return Attempt::before_commit(e);
        }
        Attempt::at_commit(txn.commit().await).map(Ok)
    }

    async fn apply(
        &self,
        txn: &deadpool_postgres::Transaction<'_>,
        batch: &Batch,
    ) -> Result<(), tokio_postgres::Error> {
        let upsert = format!(
            "INSERT INTO {}.kv (bucket, key, value) VALUES ($1, $2, $3)
             ON CONFLICT (bucket, key) DO UPDATE SET value = EXCLUDED.value",
            self.schema
        );
        let delete = format!(
            "DELETE FROM {}.kv WHERE bucket = $1 AND key = $2",
            self.schema
        );
        for write in &batch.writes {
            match write {
                Write::Set { bucket, key, value } => {
                    txn.execute(&upsert, &[&bucket.as_bytes(), &key.as_bytes(), value])
                        .await?;
                }
                Write::Delete { bucket, key } => {
                    txn.execute(&delete, &[&bucket.as_bytes(), &key.as_bytes()])
                        .await?;
                }
            }
        }
        if !batch.outbox.is_empty() {
            let insert = format!(
                "INSERT INTO {}.outbox (event) SELECT * FROM unnest($1::bytea[])",
                self.schema
            );
            txn.execute(&insert, &[&batch.outbox]).await?;
        }
        Ok(())
    }

    /// Adds `delta` to the decimal counter at `key` (absent counts as 0)
    /// and returns the new value, atomically.
    pub async fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, StoreError> {
        retrying!(self, "increment", |client| self
            .increment_once(client, bucket, key, delta)
            .await)
    }

    async fn increment_once(
        &self,
        client: &mut Object,
        bucket: &str,
        key: &str,
        delta: u64,
    ) -> Attempt<Result<u64, StoreError>> {
        let txn = match begin(client, IsolationLevel::Serializable).await {
            Ok(txn) => txn,
            Err(e) => return Attempt::before_commit(e),
        };
        let select = format!(
            "SELECT value FROM {}.kv WHERE bucket = $1 AND key = $2",
            self.schema
        );
        let rows = match txn
            .query(&select, &[&bucket.as_bytes(), &key.as_bytes()])
            .await
        {
            Ok(rows) => rows,
            Err(e) => return Attempt::before_commit(e),
        };
        let current = match rows.first() {
            None => 0,
            Some(row) => {
                let bytes: Vec<u8> = row.get(0);
                match std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    Some(n) => n,
                    None => return Attempt::Done(Ok(Err(StoreError::NotACounter(key.to_owned())))),
                }
            }
        };
        let Some(next) = current.checked_add(delta) else {
            return Attempt::Done(Ok(Err(StoreError::Overflow(key.to_owned()))));
        };
        let batch = Batch {
            writes: vec![Write::Set {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                value: next.to_string().into_bytes(),
            }],
            ..Batch::default()
        };
        if let Err(e) = self.apply(&txn, &batch).await {
            return Attempt::before_commit(e);
        }
        Attempt::at_commit(txn.commit().await).map(|()| Ok(next))
    }

    /// Takes up to `limit` outbox entries, oldest first, and holds them
    /// until [`PgLease::finish`]; `None` when the outbox is empty or
    /// another host is relaying it right now.
    pub async fn outbox_take(
        &self,
        limit: usize,
    ) -> Result<Option<(Vec<(u64, Vec<u8>)>, PgLease)>, StoreError> {
        let client = self
            .pg
            .get()
            .await
            .map_err(|e| storage(e, "read the outbox"))?;
        let mut lease = PgLease {
            client: Some(client),
            schema: self.schema.clone(),
        };
        let Some(client) = lease.client.as_ref() else {
            return Ok(None);
        };
        let select = format!(
            "SELECT seq, event FROM {}.outbox ORDER BY seq LIMIT $1",
            self.schema
        );
        let result = async {
            client.batch_execute("BEGIN").await?;
            let locked: bool = client
                .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&self.relay_key])
                .await?
                .get(0);
            if !locked {
                return Ok(None);
            }
            let rows = client.query(&select, &[&(limit as i64)]).await?;
            Ok(Some(
                rows.into_iter()
                    .map(|row| (row.get::<_, i64>(0) as u64, row.get::<_, Vec<u8>>(1)))
                    .collect::<Vec<_>>(),
            ))
        }
        .await;
        match result {
            Ok(Some(entries)) if !entries.is_empty() => Ok(Some((entries, lease))),
            Ok(_) => {
                if let Some(client) = lease.client.take() {
                    // Ends the transaction (and frees the lock) before the
                    // connection goes back to the pool.
                    if client.batch_execute("ROLLBACK").await.is_err() {
                        drop(Object::take(client));
                    }
                }
                Ok(None)
            }
            Err(e) => Err(storage(PgError::Query(e), "read the outbox")),
        }
    }

    /// Runs a read, again on a fresh connection if the first one broke.
    async fn read(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        retrying!(self, "read", |client| {
            let result = match client.prepare_cached(sql).await {
                Ok(statement) => client.query(&statement, params).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(rows) => Attempt::Done(Ok(Ok(rows))),
                Err(e) => Attempt::before_commit(e),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_fit_postgres() {
        assert_eq!(schema_of("users"), "\"svc_users\"");
        let long = "a".repeat(64);
        let schema = schema_of(&long);
        assert!(schema.len() <= 65, "{schema}");
        assert_ne!(schema_of(&long), schema_of(&"a".repeat(63)));
    }

    #[test]
    fn prefix_ends_bound_every_key_with_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
