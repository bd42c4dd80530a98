//! Each service's durable key-value data and event outbox, behind one
//! [`ServiceStore`] whatever the backend:
//!
//! - [`embedded`]: one redb file per service in the data directory (the
//!   default; one host).
//! - [`postgres`]: one PostgreSQL schema per service (a fleet of hosts).
//!
//! Either way the host picks the store from the service a request was
//! routed to, so no name a guest can send reaches another service's data;
//! a write is durable before it is acknowledged; and events published in a
//! [`Batch`] are committed in the same transaction as its writes, for the
//! relay to move to the event log afterwards.

pub mod embedded;
pub mod postgres;

pub use embedded::EmbeddedStore;
pub use postgres::PgStore;

use std::sync::Arc;

/// Keys returned by one `list-keys` call, and the cap on one scan page.
pub const PAGE_LIMIT: usize = 1000;

/// Longest bucket name accepted.
const MAX_BUCKET_NAME: usize = 255;

/// The bucket a guest gets when it opens `""`.
const DEFAULT_BUCKET: &str = "default";

/// Buckets whose names start with this belong to the host, not the guest.
const RESERVED_PREFIX: &str = "__bazaar";

/// One change in a [`Batch`].
#[derive(Debug, Clone)]
pub enum Write {
    /// Sets `key` to `value`.
    Set {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The new value.
        value: Vec<u8>,
    },
    /// Deletes `key`; absent keys are fine.
    Delete {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
}

/// A condition a [`Batch`] commits under: `key` holds exactly `expected`
/// (`None` meaning absent).
#[derive(Debug, Clone)]
pub struct Condition {
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// The value required, or `None` for "absent".
    pub expected: Option<Vec<u8>>,
}

/// Conditions, writes and outbox entries committed together or not at all.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Checked first; one that fails aborts the batch.
    pub conditions: Vec<Condition>,
    /// Applied in order.
    pub writes: Vec<Write>,
    /// Encoded events appended to the outbox.
    pub outbox: Vec<Vec<u8>>,
}

impl Batch {
    /// Sets `key` to `new` (`None` deletes) only if it holds exactly
    /// `expected` (`None` meaning absent).
    pub fn compare_and_swap(
        bucket: &str,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Self {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let write = match new {
            Some(value) => Write::Set {
                bucket: bucket.clone(),
                key: key.clone(),
                value,
            },
            None => Write::Delete {
                bucket: bucket.clone(),
                key: key.clone(),
            },
        };
        Self {
            conditions: vec![Condition {
                bucket,
                key,
                expected,
            }],
            writes: vec![write],
            outbox: Vec::new(),
        }
    }
}

/// Whether a compare-and-swap batch applied: a failed condition is `false`.
pub fn swapped(result: Result<(), StoreError>) -> Result<bool, StoreError> {
    match result {
        Ok(()) => Ok(true),
        Err(StoreError::Conflict { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Entries of one scan page and where the next starts.
pub struct ScanPage {
    /// Keys and values in key order.
    pub entries: Vec<(String, Vec<u8>)>,
    /// The last key of this page when more follow.
    pub next: Option<String>,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The bucket name is too long, has control characters or is reserved.
    #[error(
        "bucket name {0:?} is invalid: use 1-255 printable characters not starting with `__bazaar`"
    )]
    InvalidBucket(String),
    /// An atomic increment found a value that is not a decimal u64.
    #[error("key {0:?} does not hold a counter (a decimal u64)")]
    NotACounter(String),
    /// An atomic increment would pass u64::MAX.
    #[error("incrementing key {0:?} would overflow")]
    Overflow(String),
    /// A condition of a batch did not hold.
    #[error("key {key:?} in bucket {bucket:?} does not hold the expected value")]
    Conflict {
        /// The bucket.
        bucket: String,
        /// The key whose condition failed.
        key: String,
    },
    /// The database itself failed.
    #[error(transparent)]
    Storage(#[from] anyhow::Error),
}

/// Checks a guest-chosen bucket name and maps `""` to the default bucket.
pub fn bucket_name(identifier: &str) -> Result<String, StoreError> {
    let name = if identifier.is_empty() {
        DEFAULT_BUCKET
    } else {
        identifier
    };
    if name.len() > MAX_BUCKET_NAME
        || name.chars().any(char::is_control)
        || name.starts_with(RESERVED_PREFIX)
    {
        return Err(StoreError::InvalidBucket(identifier.to_owned()));
    }
    Ok(name.to_owned())
}

/// One service's store, on the backend the host runs with.
pub enum ServiceStore {
    /// A redb file in the data directory.
    Embedded(EmbeddedStore),
    /// A schema in the fleet's PostgreSQL database.
    Postgres(PgStore),
}

/// Outbox entries taken for relaying; see [`ServiceStore::outbox_take`].
pub struct OutboxPage {
    /// (sequence number, encoded event), oldest first.
    pub entries: Vec<(u64, Vec<u8>)>,
    lease: Option<postgres::PgLease>,
}

impl ServiceStore {
    /// Runs `op` on an embedded store on the blocking pool (its writes wait
    /// for an fsync).
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        op: impl FnOnce(&EmbeddedStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || match &*this {
            Self::Embedded(store) => op(store),
            Self::Postgres(_) => Err(StoreError::Storage(anyhow::anyhow!(
                "a PostgreSQL store has no blocking operations"
            ))),
        })
        .await
        .map_err(|e| StoreError::Storage(anyhow::anyhow!("store task failed: {e}")))?
    }

    /// The value of `key`, if any.
    pub async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get_many(bucket, &[key]).await?.pop().flatten())
    }

    /// The values of `keys`, read from one snapshot. An embedded store
    /// answers right here: redb reads never wait for a writer.
    pub async fn get_many<K: AsRef<str> + Sync>(
        &self,
        bucket: &str,
        keys: &[K],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        match self {
            Self::Embedded(store) => store.get_many(bucket, keys),
            Self::Postgres(store) => store.get_many(bucket, keys).await,
        }
    }

    /// Whether `key` exists, without copying its value.
    pub async fn exists(&self, bucket: &str, key: &str) -> Result<bool, StoreError> {
        match self {
            Self::Embedded(store) => store.exists(bucket, key),
            Self::Postgres(store) => store.exists(bucket, key).await,
        }
    }

    /// Up to `limit` entries whose key starts with `prefix`, after
    /// `start_after`, in key order, read from one snapshot.
    pub async fn scan(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ScanPage, StoreError> {
        match self {
            Self::Embedded(store) => store.scan(bucket, prefix, start_after, limit),
            Self::Postgres(store) => store.scan(bucket, prefix, start_after, limit).await,
        }
    }

    /// Up to [`PAGE_LIMIT`] keys after `start_after`, and whether more follow.
    pub async fn list_keys(
        &self,
        bucket: &str,
        start_after: Option<&str>,
    ) -> Result<(Vec<String>, bool), StoreError> {
        let page = self.scan(bucket, "", start_after, PAGE_LIMIT).await?;
        let more = page.next.is_some();
        Ok((page.entries.into_iter().map(|(k, _)| k).collect(), more))
    }

    /// Checks every condition of `batch`, then applies its writes and
    /// appends its outbox entries, all in one durable transaction.
    pub async fn commit(self: &Arc<Self>, batch: Batch) -> Result<(), StoreError> {
        match &**self {
            Self::Embedded(_) => self.blocking(move |store| store.commit(&batch)).await,
            Self::Postgres(store) => store.commit(&batch).await,
        }
    }

    /// Writes every pair in one transaction.
    pub async fn set_many(
        self: &Arc<Self>,
        bucket: &str,
        pairs: Vec<(String, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let writes = pairs
            .into_iter()
            .map(|(key, value)| Write::Set {
                bucket: bucket.to_owned(),
                key,
                value,
            })
            .collect();
        self.commit(Batch {
            writes,
            ..Batch::default()
        })
        .await
    }

    /// Deletes every key in one transaction; missing keys are fine.
    pub async fn delete_many(
        self: &Arc<Self>,
        bucket: &str,
        keys: Vec<String>,
    ) -> Result<(), StoreError> {
        let writes = keys
            .into_iter()
            .map(|key| Write::Delete {
                bucket: bucket.to_owned(),
                key,
            })
            .collect();
        self.commit(Batch {
            writes,
            ..Batch::default()
        })
        .await
    }

    /// Sets `key` to `new` (`None` deletes) if it holds exactly `expected`
    /// (`None` meaning absent); returns whether it did.
    pub async fn compare_and_swap(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, StoreError> {
        swapped(
            self.commit(Batch::compare_and_swap(bucket, key, expected, new))
                .await,
        )
    }

    /// Adds `delta` to the decimal counter at `key` (absent counts as 0) and
    /// returns the new value, atomically.
    pub async fn increment(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        delta: u64,
    ) -> Result<u64, StoreError> {
        match &**self {
            Self::Embedded(_) => {
                let (bucket, key) = (bucket.to_owned(), key.to_owned());
                self.blocking(move |store| store.increment(&bucket, &key, delta))
                    .await
            }
            Self::Postgres(store) => store.increment(bucket, key, delta).await,
        }
    }

    /// Takes up to `limit` outbox entries, oldest first, for the relay to
    /// append to the event log and then hand to [`ServiceStore::outbox_done`].
    /// `None` when the outbox is empty, or (on a fleet) another host is
    /// relaying it, which keeps each publisher's events in order.
    pub async fn outbox_take(
        self: &Arc<Self>,
        limit: usize,
    ) -> Result<Option<OutboxPage>, StoreError> {
        match &**self {
            Self::Embedded(_) => {
                let entries = self.blocking(move |store| store.outbox_page(limit)).await?;
                Ok((!entries.is_empty()).then_some(OutboxPage {
                    entries,
                    lease: None,
                }))
            }
            Self::Postgres(store) => {
                Ok(store
                    .outbox_take(limit)
                    .await?
                    .map(|(entries, lease)| OutboxPage {
                        entries,
                        lease: Some(lease),
                    }))
            }
        }
    }

    /// Removes the entries of `page` from the outbox: the log has them.
    pub async fn outbox_done(self: &Arc<Self>, page: OutboxPage) -> Result<(), StoreError> {
        let seqs: Vec<u64> = page.entries.iter().map(|(seq, _)| *seq).collect();
        match page.lease {
            Some(lease) => lease.finish(&seqs).await,
            None => match seqs.last() {
                Some(&last) => {
                    self.blocking(move |store| store.outbox_remove_through(last))
                        .await
                }
                None => Ok(()),
            },
        }
    }
}

/// Where the host opens its services' stores.
#[derive(Clone)]
pub enum StoreBackend {
    /// redb files under `<data dir>/services/`.
    Embedded {
        /// The data directory.
        data_dir: std::path::PathBuf,
    },
    /// Schemas in the fleet's PostgreSQL database.
    Postgres(crate::fleet::pg::Pg),
}

impl StoreBackend {
    /// Opens (creating if needed) the store of `service`.
    pub async fn open(&self, service: &str) -> anyhow::Result<Arc<ServiceStore>> {
        Ok(Arc::new(match self {
            Self::Embedded { data_dir } => {
                // Opening an existing file reads and may sync it: off the
                // async threads, and many at once at start-up.
                let (data_dir, service) = (data_dir.clone(), service.to_owned());
                let store =
                    tokio::task::spawn_blocking(move || EmbeddedStore::open(&data_dir, &service))
                        .await??;
                ServiceStore::Embedded(store)
            }
            Self::Postgres(pg) => ServiceStore::Postgres(PgStore::open(pg.clone(), service).await?),
        }))
    }

    /// Deletes everything `service` stored. Its store must be closed.
    pub async fn purge(&self, service: &str) -> anyhow::Result<()> {
        match self {
            Self::Embedded { data_dir } => {
                let dir = EmbeddedStore::dir_of(data_dir, service);
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => {
                        Err(anyhow::Error::from(e)
                            .context(format!("cannot delete {}", dir.display())))
                    }
                }
            }
            Self::Postgres(pg) => PgStore::purge(pg, service).await,
        }
    }
}
