//! The service's own durable key-value store (`wasi:keyvalue` and
//! `bazaar:platform/kv`), with JSON helpers, ordered scans,
//! compare-and-swap, all-or-nothing [`Transaction`]s and the retry loop
//! of optimistic changes ([`with_retries`]).

mod retry;
mod transaction;

pub use retry::{Attempt, MAX_ATTEMPTS, decode_json, with_retries};
pub use transaction::{CommitError, Transaction};

use crate::bindings::bazaar::platform::kv as platform_kv;
use crate::bindings::wasi::keyvalue::{atomics, batch, store};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Most entries the host returns in one page of a scan.
const MAX_PAGE: u32 = 1000;

/// A store failure.
#[derive(Debug)]
pub enum KvError {
    /// The host refused or failed the operation.
    Store(String),
    /// A stored value is not the JSON expected, or a value could not be encoded.
    Decode(String),
}

impl std::fmt::Display for KvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Store(m) => write!(f, "key-value store: {m}"),
            Self::Decode(m) => write!(f, "stored value is not valid: {m}"),
        }
    }
}

impl std::error::Error for KvError {}

impl From<store::Error> for KvError {
    fn from(err: store::Error) -> Self {
        Self::Store(store_error_text(err))
    }
}

pub(crate) fn store_error_text(err: store::Error) -> String {
    match err {
        store::Error::NoSuchStore => "no such store".into(),
        store::Error::AccessDenied => "access denied".into(),
        store::Error::Other(m) => m,
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, KvError> {
    serde_json::from_slice(bytes).map_err(|e| KvError::Decode(e.to_string()))
}

/// One page of a [`Bucket::scan`]: entries in key order, and where to go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<V = Vec<u8>> {
    /// Keys and their values.
    pub entries: Vec<(String, V)>,
    /// Pass as `start_after` to read the next page; `None` after the last.
    pub next: Option<String>,
}

/// A bucket of the service's store.
pub struct Bucket {
    inner: store::Bucket,
}

/// Opens bucket `name` of this service's store.
pub fn open(name: &str) -> Result<Bucket, KvError> {
    Ok(Bucket {
        inner: store::open(name)?,
    })
}

impl Bucket {
    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.inner.get(key)?)
    }

    /// Sets the raw value of `key`.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        Ok(self.inner.set(key, value)?)
    }

    /// Removes `key`; absent keys are fine.
    pub fn delete(&self, key: &str) -> Result<(), KvError> {
        Ok(self.inner.delete(key)?)
    }

    /// Whether `key` exists.
    pub fn exists(&self, key: &str) -> Result<bool, KvError> {
        Ok(self.inner.exists(key)?)
    }

    /// The value of `key`, decoded from JSON.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, KvError> {
        self.get(key)?.map(|bytes| decode(&bytes)).transpose()
    }

    /// Stores `value` at `key` as JSON.
    pub fn set_json<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), KvError> {
        let bytes = serde_json::to_vec(value).map_err(|e| KvError::Decode(e.to_string()))?;
        self.set(key, &bytes)
    }

    /// Entries whose key starts with `prefix`, in key order, after
    /// `start_after` (exclusive), at most `limit` of them (the host caps it
    /// at 1000). Each page is one snapshot; paging on with `next` never
    /// skips or repeats a key that exists throughout the scan.
    pub fn scan(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Result<Page, KvError> {
        let page = platform_kv::scan(&self.inner, prefix, start_after, limit)?;
        Ok(Page {
            entries: page.entries,
            next: page.next,
        })
    }

    /// [`Bucket::scan`] with every value decoded from JSON.
    pub fn scan_json<T: DeserializeOwned>(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Result<Page<T>, KvError> {
        let page = self.scan(prefix, start_after, limit)?;
        let entries = page
            .entries
            .into_iter()
            .map(|(key, bytes)| Ok((key, decode(&bytes)?)))
            .collect::<Result<_, KvError>>()?;
        Ok(Page {
            entries,
            next: page.next,
        })
    }

    /// Every key starting with `prefix`, in order, across all pages.
    pub fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        let mut keys = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.scan(prefix, after.as_deref(), MAX_PAGE)?;
            keys.extend(page.entries.into_iter().map(|(key, _)| key));
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// Every key, in order, across all pages.
    pub fn keys(&self) -> Result<Vec<String>, KvError> {
        self.keys_with_prefix("")
    }

    /// Sets `key` to `new` (`None` deletes it) if and only if it holds
    /// exactly `expected` (`None` meaning absent), atomically. Returns
    /// whether the swap happened.
    pub fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, KvError> {
        Ok(platform_kv::compare_and_swap(
            &self.inner,
            key,
            expected,
            new,
        )?)
    }

    /// Adds `delta` to the counter at `key` and returns the new value,
    /// atomically; a `delta` of 0 reads the counter.
    pub fn increment(&self, key: &str, delta: u64) -> Result<u64, KvError> {
        Ok(atomics::increment(&self.inner, key, delta)?)
    }

    /// The JSON values of `keys` that exist, read together.
    pub fn get_many_json<T: DeserializeOwned>(&self, keys: &[String]) -> Result<Vec<T>, KvError> {
        batch::get_many(&self.inner, keys)?
            .into_iter()
            .flatten()
            .map(|(_, bytes)| decode(&bytes))
            .collect()
    }

    /// Writes several raw pairs in one transaction.
    pub fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        Ok(batch::set_many(&self.inner, pairs)?)
    }

    /// Deletes several keys in one transaction.
    pub fn delete_many(&self, keys: &[String]) -> Result<(), KvError> {
        Ok(batch::delete_many(&self.inner, keys)?)
    }

    /// The host's handle, for [`Transaction`].
    pub(crate) fn raw(&self) -> &store::Bucket {
        &self.inner
    }
}
