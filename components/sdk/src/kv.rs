//! The service's own durable key-value store (`wasi:keyvalue`), with JSON helpers.

use crate::bindings::wasi::keyvalue::{atomics, batch, store};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A store failure.
#[derive(Debug)]
pub enum KvError {
    /// The host refused or failed the operation.
    Store(String),
    /// A stored value is not the JSON expected.
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
        Self::Store(match err {
            store::Error::NoSuchStore => "no such store".into(),
            store::Error::AccessDenied => "access denied".into(),
            store::Error::Other(m) => m,
        })
    }
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
        self.get(key)?
            .map(|bytes| serde_json::from_slice(&bytes).map_err(|e| KvError::Decode(e.to_string())))
            .transpose()
    }

    /// Stores `value` at `key` as JSON.
    pub fn set_json<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), KvError> {
        let bytes = serde_json::to_vec(value).map_err(|e| KvError::Decode(e.to_string()))?;
        self.set(key, &bytes)
    }

    /// Every key, across all pages.
    pub fn keys(&self) -> Result<Vec<String>, KvError> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.inner.list_keys(cursor)?;
            keys.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// Adds `delta` to the counter at `key` and returns the new value, atomically.
    pub fn increment(&self, key: &str, delta: u64) -> Result<u64, KvError> {
        Ok(atomics::increment(&self.inner, key, delta)?)
    }

    /// The JSON values of `keys` that exist, read together.
    pub fn get_many_json<T: DeserializeOwned>(&self, keys: &[String]) -> Result<Vec<T>, KvError> {
        batch::get_many(&self.inner, keys)?
            .into_iter()
            .flatten()
            .map(|(_, bytes)| {
                serde_json::from_slice(&bytes).map_err(|e| KvError::Decode(e.to_string()))
            })
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
}
