//! The embedded store: one redb file per service.
//!
//! The file lives at `<data dir>/services/<name>/kv.redb`, so no key of one
//! service shares a file, let alone a table, with another's. It is created
//! by the service's first write, not when the service starts: until then
//! every read finds nothing, and a host of many services that never store
//! anything creates, syncs and maps no file for them. A bucket is a
//! table in that file. Every write is committed with redb's immediate
//! durability (fsync) before it is acknowledged, so a write the guest saw
//! succeed survives a `kill -9` of the host (a power loss is up to the disk
//! honouring fsync). Writes from concurrent requests share transactions
//! and fsyncs (group commit, in `group`).
//!
//! The same file holds the service's event outbox: events published in a
//! [`Batch`] are committed in the same transaction as its writes, and the
//! event relay moves them to the event log afterwards.

use super::{Batch, PAGE_LIMIT, ScanPage, StoreError, Write};
use anyhow::Context as _;
use group::{Done, GroupCommit, Op, submit};
use redb::{
    Database, ReadTransaction, ReadableDatabase as _, ReadableTable as _, TableDefinition,
    TableError,
};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

/// Events waiting for the relay, by sequence number.
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("__bazaar/outbox");
/// Host counters (the next outbox sequence number).
const META: TableDefinition<&str, u64> = TableDefinition::new("__bazaar/meta");
const NEXT_OUTBOX_SEQ: &str = "outbox-next-seq";

/// Page cache per store; redb's default (1 GiB per file) would let a host
/// with many services grow far past its memory.
const CACHE_BYTES: usize = 32 << 20;

/// One service's redb store.
pub struct EmbeddedStore {
    /// The database, once its file exists.
    db: OnceLock<Database>,
    /// Held while the file is created.
    creating: Mutex<()>,
    dir: PathBuf,
    /// Writers waiting for, or sharing, the next commit.
    group: GroupCommit,
}

impl EmbeddedStore {
    /// The directory holding `service`'s data under `data_dir`.
    pub fn dir_of(data_dir: &Path, service: &str) -> PathBuf {
        data_dir.join("services").join(service)
    }

    /// Opens the store of `service` under `data_dir`: its file now if it
    /// exists, else (created) on the first write.
    pub fn open(data_dir: &Path, service: &str) -> anyhow::Result<Self> {
        let store = Self {
            db: OnceLock::new(),
            creating: Mutex::new(()),
            dir: Self::dir_of(data_dir, service),
            group: GroupCommit::default(),
        };
        if store.path().exists() {
            store.database()?;
        }
        Ok(store)
    }

    fn path(&self) -> PathBuf {
        self.dir.join("kv.redb")
    }

    /// The database, its file opened or created if it is not yet.
    fn database(&self) -> anyhow::Result<&Database> {
        if let Some(db) = self.db.get() {
            return Ok(db);
        }
        let _creating = self.creating.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(db) = self.db.get() {
            return Ok(db);
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create data directory {}", self.dir.display()))?;
        let path = self.path();
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .with_context(|| {
                format!(
                    "cannot open the store at {}; is another bazaar using this data directory?",
                    path.display()
                )
            })?;
        Ok(self.db.get_or_init(|| db))
    }

    /// A read transaction, or `None` while nothing was ever written.
    fn begin_read(&self) -> Result<Option<ReadTransaction>, StoreError> {
        match self.db.get() {
            Some(db) => Ok(Some(db.begin_read().context("begin read")?)),
            None => Ok(None),
        }
    }

    /// The directory of this store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The value of `key`, if any.
    pub fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get_many(bucket, &[key])?.pop().flatten())
    }

    /// The values of `keys`, read from one snapshot.
    pub fn get_many<K: AsRef<str>>(
        &self,
        bucket: &str,
        keys: &[K],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let Some(txn) = self.begin_read()? else {
            return Ok(vec![None; keys.len()]);
        };
        let table = match txn.open_table(table(bucket)) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(vec![None; keys.len()]),
            Err(e) => return Err(anyhow::Error::from(e).context("open bucket").into()),
        };
        keys.iter()
            .map(|key| {
                let value = table.get(key.as_ref()).context("read key")?;
                Ok(value.map(|v| v.value().to_vec()))
            })
            .collect()
    }

    /// Whether `key` exists, without copying its value.
    pub fn exists(&self, bucket: &str, key: &str) -> Result<bool, StoreError> {
        let Some(txn) = self.begin_read()? else {
            return Ok(false);
        };
        match txn.open_table(table(bucket)) {
            Ok(table) => Ok(table.get(key).context("read key")?.is_some()),
            Err(TableError::TableDoesNotExist(_)) => Ok(false),
            Err(e) => Err(anyhow::Error::from(e).context("open bucket").into()),
        }
    }

    /// Writes every pair in one transaction.
    pub fn set_many(&self, bucket: &str, pairs: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        let writes = pairs
            .iter()
            .map(|(key, value)| Write::Set {
                bucket: bucket.to_owned(),
                key: key.clone(),
                value: value.clone(),
            })
            .collect();
        self.commit(&Batch {
            writes,
            ..Batch::default()
        })
    }

    /// Deletes every key in one transaction; missing keys are fine.
    pub fn delete_many<K: AsRef<str>>(&self, bucket: &str, keys: &[K]) -> Result<(), StoreError> {
        let writes = keys
            .iter()
            .map(|key| Write::Delete {
                bucket: bucket.to_owned(),
                key: key.as_ref().to_owned(),
            })
            .collect();
        self.commit(&Batch {
            writes,
            ..Batch::default()
        })
    }

    /// Sets `key` to `new` (`None` deletes) if it holds exactly `expected`
    /// (`None` meaning absent); returns whether it did.
    pub fn compare_and_swap(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, StoreError> {
        super::swapped(self.commit(&Batch::compare_and_swap(bucket, key, expected, new)))
    }

    /// Checks every condition of `batch`, then applies its writes and
    /// appends its outbox entries, all in one durable transaction (shared,
    /// through group commit, with concurrent writers).
    pub fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        submit(&self.group, self.database()?, Op::Batch(batch.clone())).map(|_| ())
    }

    /// Adds `delta` to the decimal counter at `key` (absent counts as 0) and
    /// returns the new value, atomically.
    pub fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, StoreError> {
        let op = Op::Increment {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            delta,
        };
        match submit(&self.group, self.database()?, op)? {
            Done::Counter(value) => Ok(value),
            Done::Written => Err(StoreError::Storage(anyhow::anyhow!(
                "an increment answered without a value"
            ))),
        }
    }

    /// Up to `limit` entries whose key starts with `prefix`, after
    /// `start_after`, in key order, read from one snapshot.
    pub fn scan(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ScanPage, StoreError> {
        let limit = limit.clamp(1, PAGE_LIMIT);
        let nothing = || ScanPage {
            entries: Vec::new(),
            next: None,
        };
        let Some(txn) = self.begin_read()? else {
            return Ok(nothing());
        };
        let table = match txn.open_table(table(bucket)) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(nothing()),
            Err(e) => return Err(anyhow::Error::from(e).context("open bucket").into()),
        };
        let start = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut entries = Vec::new();
        let mut more = false;
        for entry in table
            .range::<&str>((start, Bound::Unbounded))
            .context("scan")?
        {
            let (key, value) = entry.context("read entry")?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            if entries.len() == limit {
                more = true;
                break;
            }
            entries.push((key.to_owned(), value.value().to_vec()));
        }
        let next = if more {
            entries.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        Ok(ScanPage { entries, next })
    }

    /// Up to [`PAGE_LIMIT`] keys after `start_after`, and whether more follow.
    pub fn list_keys(
        &self,
        bucket: &str,
        start_after: Option<&str>,
    ) -> Result<(Vec<String>, bool), StoreError> {
        let page = self.scan(bucket, "", start_after, PAGE_LIMIT)?;
        let more = page.next.is_some();
        Ok((page.entries.into_iter().map(|(k, _)| k).collect(), more))
    }

    /// Up to `limit` outbox entries, oldest first.
    pub fn outbox_page(&self, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let Some(txn) = self.begin_read()? else {
            return Ok(Vec::new());
        };
        let outbox = match txn.open_table(OUTBOX) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(anyhow::Error::from(e).context("open outbox").into()),
        };
        let mut page = Vec::new();
        for entry in outbox.iter().context("read outbox")?.take(limit) {
            let (seq, event) = entry.context("read outbox entry")?;
            page.push((seq.value(), event.value().to_vec()));
        }
        Ok(page)
    }

    /// Removes outbox entries up to and including `seq`, once relayed.
    pub fn outbox_remove_through(&self, seq: u64) -> Result<(), StoreError> {
        match self.db.get() {
            Some(db) => submit(&self.group, db, Op::TrimOutbox(seq)).map(|_| ()),
            None => Ok(()),
        }
    }
}

fn table(bucket: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(bucket)
}

mod group;
#[cfg(test)]
mod tests;
