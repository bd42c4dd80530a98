//! `wasi:keyvalue` (store, atomics, batch) and `bazaar:platform/kv` (scan,
//! compare-and-swap) over the service's own [`ServiceStore`].
//!
//! The host picks the store from the service the request was routed to; the
//! guest only names a bucket inside it, so no identifier a guest can send
//! reaches another service's data.

use super::generated::bazaar::platform::kv;
use super::generated::wasi::keyvalue::{atomics, batch, store};
use crate::kvstore::{self, PAGE_LIMIT, ServiceStore, StoreError};
use crate::state::RequestState;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable, ResourceTableError};

/// Most `list-keys` pages one request may walk; each keeps one key.
const MAX_LIST_CURSORS: usize = 10_000;

/// The host side of a `bucket` resource: a checked bucket name.
pub struct Bucket {
    name: String,
}

/// An error a guest sees as `wasi:keyvalue/store.error`.
#[derive(Debug)]
pub enum KeyValueError {
    /// The bucket name was refused.
    AccessDenied,
    /// Anything else, with a message for the guest.
    Other(String),
}

impl From<ResourceTableError> for KeyValueError {
    fn from(err: ResourceTableError) -> Self {
        Self::Other(err.to_string())
    }
}

impl From<StoreError> for KeyValueError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::InvalidBucket(_) => Self::AccessDenied,
            StoreError::Storage(e) => {
                tracing::error!(error = format!("{e:#}"), "key-value store failed");
                Self::Other("the store failed; see the host log".into())
            }
            other => Self::Other(other.to_string()),
        }
    }
}

impl KeyValueError {
    /// The guest-visible form.
    pub(crate) fn into_guest(self) -> store::Error {
        match self {
            Self::AccessDenied => store::Error::AccessDenied,
            Self::Other(message) => store::Error::Other(message),
        }
    }
}

/// What a key-value call may touch: the service's store, the resource
/// table, and the request's list cursors.
pub struct KeyValueView<'a> {
    service: &'a Arc<str>,
    store: &'a Arc<ServiceStore>,
    table: &'a mut ResourceTable,
    list_cursors: &'a mut Vec<String>,
}

struct HasKeyValue;

impl HasData for HasKeyValue {
    type Data<'a> = KeyValueView<'a>;
}

/// Adds `wasi:keyvalue/{store,atomics,batch}` and `bazaar:platform/kv` to `linker`.
pub fn add_to_linker(linker: &mut Linker<RequestState>) -> wasmtime::Result<()> {
    fn view(state: &mut RequestState) -> KeyValueView<'_> {
        let parts = state.keyvalue_parts();
        KeyValueView {
            service: parts.service,
            store: parts.store,
            table: parts.table,
            list_cursors: parts.list_cursors,
        }
    }
    store::add_to_linker::<_, HasKeyValue>(linker, view)?;
    atomics::add_to_linker::<_, HasKeyValue>(linker, view)?;
    batch::add_to_linker::<_, HasKeyValue>(linker, view)?;
    kv::add_to_linker::<_, HasKeyValue>(linker, view)?;
    Ok(())
}

/// The checked name of the bucket behind `bucket`.
pub(crate) fn bucket_name(
    table: &ResourceTable,
    bucket: &Resource<Bucket>,
) -> Result<String, KeyValueError> {
    Ok(table.get(bucket)?.name.clone())
}

impl KeyValueView<'_> {
    fn bucket(&self, bucket: &Resource<Bucket>) -> Result<String, KeyValueError> {
        bucket_name(self.table, bucket)
    }

    /// The service's name and store, owned, so a store call does not hold
    /// the view (and its resource table) across an await.
    fn handles(&self) -> (Arc<str>, Arc<ServiceStore>) {
        (Arc::clone(self.service), Arc::clone(self.store))
    }
}

/// Runs a store operation of `service`, timing it for the metrics.
async fn timed<T>(
    service: &Arc<str>,
    name: &'static str,
    op: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, KeyValueError> {
    let started = std::time::Instant::now();
    let result = op.await;
    crate::metrics::kv_operation(service, name, started.elapsed());
    Ok(result?)
}

impl store::Host for KeyValueView<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, KeyValueError> {
        let name = kvstore::bucket_name(&identifier)?;
        Ok(self.table.push(Bucket { name })?)
    }

    fn convert_error(&mut self, err: KeyValueError) -> wasmtime::Result<store::Error> {
        Ok(err.into_guest())
    }
}

impl store::HostBucket for KeyValueView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, KeyValueError> {
        let bucket = self.bucket(&bucket)?;
        let (service, store) = self.handles();
        timed(&service, "get", store.get(&bucket, &key)).await
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), KeyValueError> {
        let bucket = self.bucket(&bucket)?;
        let (service, store) = self.handles();
        timed(&service, "set", store.set_many(&bucket, vec![(key, value)])).await
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), KeyValueError> {
        let bucket = self.bucket(&bucket)?;
        let (service, store) = self.handles();
        timed(&service, "delete", store.delete_many(&bucket, vec![key])).await
    }

    async fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<bool, KeyValueError> {
        let bucket = self.bucket(&bucket)?;
        let (service, store) = self.handles();
        timed(&service, "exists", store.exists(&bucket, &key)).await
    }

    /// Pages by key: the cursor stands for the last key returned, kept in
    /// this request's state, so pages stay stable under concurrent writes.
    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse, KeyValueError> {
        let bucket = self.bucket(&bucket)?;
        let (service, store) = self.handles();
        let after = match cursor {
            None => None,
            Some(n) => Some(
                usize::try_from(n)
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|i| self.list_cursors.get(i))
                    .cloned()
                    .ok_or_else(|| {
                        KeyValueError::Other(
                            "unknown cursor: a cursor is valid only within the request that received it"
                                .into(),
                        )
                    })?,
            ),
        };
        let (keys, more) = timed(
            &service,
            "list_keys",
            store.list_keys(&bucket, after.as_deref()),
        )
        .await?;
        let cursor = match keys.last() {
            Some(last) if more => {
                if self.list_cursors.len() >= MAX_LIST_CURSORS {
                    return Err(KeyValueError::Other(
                        "too many list-keys pages in one request; use bazaar:platform/kv.scan"
                            .into(),
                    ));
                }
                self.list_cursors.push(last.clone());
                Some(self.list_cursors.len() as u64)
            }
            _ => None,
        };
        Ok(store::KeyResponse { keys, cursor })
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KeyValueView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> Result<u64, KeyValueError> {
        let bucket = self.bucket(&bucket)?;
        let (service, store) = self.handles();
        timed(&service, "increment", store.increment(&bucket, &key, delta)).await
    }
}

impl batch::Host for KeyValueView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KeyValueError> {
        let bucket = self.bucket(&bucket)?;
        let (service, store) = self.handles();
        let values = timed(&service, "get_many", store.get_many(&bucket, &keys)).await?;
        Ok(keys
            .into_iter()
            .zip(values)
            .map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), KeyValueError> {
        let bucket = self.bucket(&bucket)?;
        let (service, store) = self.handles();
        timed(&service, "set_many", store.set_many(&bucket, key_values)).await
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<(), KeyValueError> {
        let bucket = self.bucket(&bucket)?;
        let (service, store) = self.handles();
        timed(&service, "delete_many", store.delete_many(&bucket, keys)).await
    }
}

impl kv::Host for KeyValueView<'_> {
    async fn scan(
        &mut self,
        bucket: Resource<Bucket>,
        prefix: String,
        start_after: Option<String>,
        limit: u32,
    ) -> Result<kv::Page, KeyValueError> {
        let bucket = self.bucket(&bucket)?;
        let (service, store) = self.handles();
        let limit = usize::try_from(limit).unwrap_or(PAGE_LIMIT);
        let page = timed(
            &service,
            "scan",
            store.scan(&bucket, &prefix, start_after.as_deref(), limit),
        )
        .await?;
        Ok(kv::Page {
            entries: page.entries,
            next: page.next,
        })
    }

    async fn compare_and_swap(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, KeyValueError> {
        let bucket = self.bucket(&bucket)?;
        let (service, store) = self.handles();
        timed(
            &service,
            "compare_and_swap",
            store.compare_and_swap(&bucket, &key, expected, new),
        )
        .await
    }
}
