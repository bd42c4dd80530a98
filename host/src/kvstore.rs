//! Each service's durable key-value data: one redb file per service.
//!
//! The file lives at `<data dir>/services/<name>/kv.redb`, so no key of one
//! service shares a file, let alone a table, with another's. A bucket is a
//! table in that file. Every write is its own transaction committed with
//! redb's default immediate durability (fsync), so a write the guest saw
//! succeed survives a crash of the host.

use anyhow::Context as _;
use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition, TableError};
use std::path::{Path, PathBuf};

/// Keys returned by one `list-keys` call.
const LIST_PAGE: usize = 1000;

/// Longest bucket name accepted; table names are stored in the file.
const MAX_BUCKET_NAME: usize = 255;

/// The bucket a guest gets when it opens `""`.
const DEFAULT_BUCKET: &str = "default";

/// One service's store.
pub struct ServiceStore {
    db: Database,
    path: PathBuf,
}

/// A page of keys and the cursor for the next page.
pub struct KeyPage {
    /// Keys in this page, in order.
    pub keys: Vec<String>,
    /// Pass back to continue; `None` when this was the last page.
    pub cursor: Option<u64>,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The bucket name is empty-after-defaulting, too long or has control characters.
    #[error("bucket name {0:?} is invalid: use 1-255 printable characters")]
    InvalidBucket(String),
    /// An atomic increment found a value that is not a decimal u64.
    #[error("key {0:?} does not hold a counter (a decimal u64)")]
    NotACounter(String),
    /// An atomic increment would pass u64::MAX.
    #[error("incrementing key {0:?} would overflow")]
    Overflow(String),
    /// The database itself failed.
    #[error(transparent)]
    Storage(#[from] anyhow::Error),
}

impl ServiceStore {
    /// Opens (creating if needed) the store of `service` under `data_dir`.
    pub fn open(data_dir: &Path, service: &str) -> anyhow::Result<Self> {
        let dir = data_dir.join("services").join(service);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
        let path = dir.join("kv.redb");
        let db = Database::create(&path).with_context(|| {
            format!(
                "cannot open the store of service `{service}` at {}; is another bazaar using this data directory?",
                path.display()
            )
        })?;
        Ok(Self { db, path })
    }

    /// Where this store lives on disk.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks a guest-chosen bucket name and maps `""` to the default bucket.
    pub fn bucket_name(identifier: &str) -> Result<String, StoreError> {
        let name = if identifier.is_empty() {
            DEFAULT_BUCKET
        } else {
            identifier
        };
        if name.len() > MAX_BUCKET_NAME || name.chars().any(char::is_control) {
            return Err(StoreError::InvalidBucket(identifier.to_owned()));
        }
        Ok(name.to_owned())
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
        let txn = self.db.begin_read().context("begin read")?;
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

    /// Writes every pair in one transaction.
    pub fn set_many(&self, bucket: &str, pairs: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        self.write(bucket, |table| {
            for (key, value) in pairs {
                table.insert(key.as_str(), value.as_slice())?;
            }
            Ok(())
        })
    }

    /// Deletes every key in one transaction; missing keys are fine.
    pub fn delete_many<K: AsRef<str>>(&self, bucket: &str, keys: &[K]) -> Result<(), StoreError> {
        self.write(bucket, |table| {
            for key in keys {
                table.remove(key.as_ref())?;
            }
            Ok(())
        })
    }

    /// Adds `delta` to the decimal counter at `key` (absent counts as 0) and
    /// returns the new value, atomically.
    pub fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, StoreError> {
        let txn = self.db.begin_write().context("begin write")?;
        let next = {
            let mut table = txn.open_table(table(bucket)).context("open bucket")?;
            let current = match table.get(key).context("read key")? {
                None => 0,
                Some(value) => std::str::from_utf8(value.value())
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| StoreError::NotACounter(key.to_owned()))?,
            };
            let next = current
                .checked_add(delta)
                .ok_or_else(|| StoreError::Overflow(key.to_owned()))?;
            table
                .insert(key, next.to_string().as_bytes())
                .context("write key")?;
            next
        };
        txn.commit().context("commit")?;
        Ok(next)
    }

    /// One page of the bucket's keys, in key order, starting at `cursor`.
    pub fn list_keys(&self, bucket: &str, cursor: Option<u64>) -> Result<KeyPage, StoreError> {
        let skip = usize::try_from(cursor.unwrap_or(0)).unwrap_or(usize::MAX);
        let txn = self.db.begin_read().context("begin read")?;
        let table = match txn.open_table(table(bucket)) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => {
                return Ok(KeyPage {
                    keys: Vec::new(),
                    cursor: None,
                });
            }
            Err(e) => return Err(anyhow::Error::from(e).context("open bucket").into()),
        };
        let mut keys = Vec::new();
        let mut more = false;
        for entry in table.iter().context("list keys")?.skip(skip) {
            if keys.len() == LIST_PAGE {
                more = true;
                break;
            }
            let (key, _) = entry.context("read key")?;
            keys.push(key.value().to_owned());
        }
        let cursor = more.then(|| (skip + keys.len()) as u64);
        Ok(KeyPage { keys, cursor })
    }

    fn write(
        &self,
        bucket: &str,
        apply: impl FnOnce(&mut redb::Table<&str, &[u8]>) -> Result<(), redb::StorageError>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().context("begin write")?;
        {
            let mut table = txn.open_table(table(bucket)).context("open bucket")?;
            apply(&mut table).context("write keys")?;
        }
        txn.commit().context("commit")?;
        Ok(())
    }
}

fn table(bucket: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(bucket)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (ServiceStore, PathBuf) {
        let dir = std::env::temp_dir().join(format!("bazaar-kv-{}", uuid::Uuid::new_v4()));
        (ServiceStore::open(&dir, "svc").expect("open store"), dir)
    }

    #[test]
    fn values_round_trip_and_missing_buckets_read_empty() {
        let (store, dir) = store();
        assert_eq!(store.get("b", "k").expect("get"), None);
        store
            .set_many("b", &[("k".into(), b"v".to_vec())])
            .expect("set");
        assert_eq!(store.get("b", "k").expect("get"), Some(b"v".to_vec()));
        assert_eq!(store.get("other", "k").expect("get"), None);
        store.delete_many("b", &["k"]).expect("delete");
        assert_eq!(store.get("b", "k").expect("get"), None);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn increment_counts_and_rejects_non_counters() {
        let (store, dir) = store();
        assert_eq!(store.increment("b", "n", 2).expect("inc"), 2);
        assert_eq!(store.increment("b", "n", 3).expect("inc"), 5);
        assert_eq!(store.get("b", "n").expect("get"), Some(b"5".to_vec()));
        store
            .set_many("b", &[("s".into(), b"text".to_vec())])
            .expect("set");
        assert!(matches!(
            store.increment("b", "s", 1),
            Err(StoreError::NotACounter(_))
        ));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn list_keys_pages_through_everything() {
        let (store, dir) = store();
        let pairs: Vec<(String, Vec<u8>)> = (0..2500)
            .map(|i| (format!("k{i:05}"), Vec::new()))
            .collect();
        store.set_many("b", &pairs).expect("set");
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store.list_keys("b", cursor).expect("list");
            seen.extend(page.keys);
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen.len(), 2500);
        assert_eq!(seen.first().map(String::as_str), Some("k00000"));
        std::fs::remove_dir_all(dir).ok();
    }
}
