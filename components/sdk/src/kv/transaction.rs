//! All-or-nothing writes with conditions and events (the outbox), over
//! `bazaar:platform/transaction`.

use super::Bucket;
use crate::bindings::bazaar::platform::transaction as wit;
use crate::error::Error;
use serde::Serialize;

/// Writes, the conditions they depend on and the events announcing them,
/// committed together or not at all:
///
/// ```ignore
/// let users = kv::open("users")?;
/// Transaction::new()
///     .require_absent(&users, "email:ann@example.com")
///     .set_json(&users, "user:42", &user)
///     .set_json(&users, "email:ann@example.com", "42")
///     .publish_json("users.registered", &user)
///     .commit()?; // a conflict is a 409
/// ```
///
/// Nothing happens until [`Transaction::commit`]; dropping a transaction
/// discards it.
pub struct Transaction {
    inner: wit::Transaction,
    /// A value that could not be encoded; the commit reports it as
    /// `Invalid` instead of committing without it.
    unencodable: Option<String>,
}

/// Why a commit did nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitError {
    /// A `require` did not hold; carries the key. Re-read and retry, or
    /// report the conflict (a 409 through `?`).
    Conflict(String),
    /// A `publish` names a topic the service may not publish to.
    Denied(String),
    /// The transaction is too large or malformed, or a value could not be encoded.
    Invalid(String),
    /// The store failed.
    Store(String),
}

impl std::fmt::Display for CommitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Conflict(key) => write!(f, "conflict: `{key}` changed"),
            Self::Denied(m) => write!(f, "denied: {m}"),
            Self::Invalid(m) => write!(f, "invalid transaction: {m}"),
            Self::Store(m) => write!(f, "key-value store: {m}"),
        }
    }
}

impl std::error::Error for CommitError {}

/// A conflict is a 409 naming the key; anything else is the service's own
/// fault, so a 500 whose detail is logged, not sent.
impl From<CommitError> for Error {
    fn from(err: CommitError) -> Self {
        match err {
            CommitError::Conflict(key) => {
                Error::conflict(format!("`{key}` was changed concurrently; retry"))
            }
            other => Error::internal(other),
        }
    }
}

impl From<wit::CommitError> for CommitError {
    fn from(err: wit::CommitError) -> Self {
        match err {
            wit::CommitError::Conflict(key) => Self::Conflict(key),
            wit::CommitError::Denied(m) => Self::Denied(m),
            wit::CommitError::Invalid(m) => Self::Invalid(m),
            wit::CommitError::Store(e) => Self::Store(super::store_error_text(e)),
        }
    }
}

impl Default for Transaction {
    fn default() -> Self {
        Self::new()
    }
}

impl Transaction {
    /// An empty transaction.
    pub fn new() -> Self {
        Self {
            inner: wit::Transaction::new(),
            unencodable: None,
        }
    }

    /// The commit fails with [`CommitError::Conflict`] unless `key` holds
    /// exactly `expected` (`None` meaning absent) when it commits.
    pub fn require(self, bucket: &Bucket, key: &str, expected: Option<&[u8]>) -> Self {
        self.inner.require(bucket.raw(), key, expected);
        self
    }

    /// The commit fails with [`CommitError::Conflict`] if `key` exists.
    pub fn require_absent(self, bucket: &Bucket, key: &str) -> Self {
        self.require(bucket, key, None)
    }

    /// Sets `key` to `value`.
    pub fn set(self, bucket: &Bucket, key: &str, value: &[u8]) -> Self {
        self.inner.set(bucket.raw(), key, value);
        self
    }

    /// Sets `key` to `value` as JSON.
    pub fn set_json<T: Serialize + ?Sized>(
        mut self,
        bucket: &Bucket,
        key: &str,
        value: &T,
    ) -> Self {
        match serde_json::to_vec(value) {
            Ok(bytes) => self.set(bucket, key, &bytes),
            Err(e) => {
                self.unencodable = Some(format!("value for `{key}`: {e}"));
                self
            }
        }
    }

    /// Deletes `key` (absent keys are fine).
    pub fn delete(self, bucket: &Bucket, key: &str) -> Self {
        self.inner.delete(bucket.raw(), key);
        self
    }

    /// Publishes `payload` to `topic` if, and only if, the commit succeeds.
    pub fn publish(self, topic: &str, payload: &[u8]) -> Self {
        self.inner.publish(topic, payload);
        self
    }

    /// Publishes `value` as JSON to `topic` if, and only if, the commit succeeds.
    pub fn publish_json<T: Serialize + ?Sized>(mut self, topic: &str, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(bytes) => self.publish(topic, &bytes),
            Err(e) => {
                self.unencodable = Some(format!("event for `{topic}`: {e}"));
                self
            }
        }
    }

    /// Commits every change in one durable transaction. Returns the ids of
    /// the events it published, in order.
    pub fn commit(self) -> Result<Vec<String>, CommitError> {
        if let Some(problem) = self.unencodable {
            return Err(CommitError::Invalid(format!(
                "could not encode the {problem}"
            )));
        }
        Ok(wit::commit(self.inner)?)
    }
}
