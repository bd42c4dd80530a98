//! `wasi:keyvalue` (store, atomics, batch) over the service's own
//! [`ServiceStore`].
//!
//! The host picks the store from the service the request was routed to; the
//! guest only names a bucket inside it, so no identifier a guest can send
//! reaches another service's data. Writes fsync, so they run on the blocking
//! pool instead of stalling the async workers.

use super::generated::wasi::keyvalue::{atomics, batch, store};
use crate::kvstore::{ServiceStore, StoreError};
use crate::state::HostState;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable, ResourceTableError};

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

/// What a key-value call may touch: the service's store and the resource table.
pub struct KeyValueView<'a> {
    store: &'a Arc<ServiceStore>,
    table: &'a mut ResourceTable,
}

struct HasKeyValue;

impl HasData for HasKeyValue {
    type Data<'a> = KeyValueView<'a>;
}

/// Adds `wasi:keyvalue/{store,atomics,batch}` to `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    fn view(state: &mut HostState) -> KeyValueView<'_> {
        let (store, table) = state.keyvalue_parts();
        KeyValueView { store, table }
    }
    store::add_to_linker::<_, HasKeyValue>(linker, view)?;
    atomics::add_to_linker::<_, HasKeyValue>(linker, view)?;
    batch::add_to_linker::<_, HasKeyValue>(linker, view)?;
    Ok(())
}

impl KeyValueView<'_> {
    fn bucket(&self, bucket: &Resource<Bucket>) -> Result<String, KeyValueError> {
        Ok(self.table.get(bucket)?.name.clone())
    }

    /// Runs a store operation on the blocking pool.
    fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&ServiceStore) -> Result<T, StoreError> + Send + 'static,
    ) -> impl Future<Output = Result<T, KeyValueError>> + Send + 'static {
        let store = Arc::clone(self.store);
        async move {
            match tokio::task::spawn_blocking(move || op(&store)).await {
                Ok(result) => Ok(result?),
                Err(join) => Err(KeyValueError::Other(format!("store task failed: {join}"))),
            }
        }
    }
}

impl store::Host for KeyValueView<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, KeyValueError> {
        let name = ServiceStore::bucket_name(&identifier)?;
        Ok(self.table.push(Bucket { name })?)
    }

    fn convert_error(&mut self, err: KeyValueError) -> wasmtime::Result<store::Error> {
        Ok(match err {
            KeyValueError::AccessDenied => store::Error::AccessDenied,
            KeyValueError::Other(message) => store::Error::Other(message),
        })
    }
}

impl store::HostBucket for KeyValueView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, KeyValueError> {
        let bucket = self.bucket(&bucket)?;
        self.run(move |s| s.get(&bucket, &key)).await
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), KeyValueError> {
        let bucket = self.bucket(&bucket)?;
        self.run(move |s| s.set_many(&bucket, &[(key, value)]))
            .await
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), KeyValueError> {
        let bucket = self.bucket(&bucket)?;
        self.run(move |s| s.delete_many(&bucket, &[key])).await
    }

    async fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<bool, KeyValueError> {
        let bucket = self.bucket(&bucket)?;
        self.run(move |s| Ok(s.get(&bucket, &key)?.is_some())).await
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse, KeyValueError> {
        let bucket = self.bucket(&bucket)?;
        let page = self.run(move |s| s.list_keys(&bucket, cursor)).await?;
        Ok(store::KeyResponse {
            keys: page.keys,
            cursor: page.cursor,
        })
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
        self.run(move |s| s.increment(&bucket, &key, delta)).await
    }
}

impl batch::Host for KeyValueView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KeyValueError> {
        let bucket = self.bucket(&bucket)?;
        self.run(move |s| {
            let values = s.get_many(&bucket, &keys)?;
            Ok(keys
                .into_iter()
                .zip(values)
                .map(|(k, v)| v.map(|v| (k, v)))
                .collect())
        })
        .await
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), KeyValueError> {
        let bucket = self.bucket(&bucket)?;
        self.run(move |s| s.set_many(&bucket, &key_values)).await
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<(), KeyValueError> {
        let bucket = self.bucket(&bucket)?;
        self.run(move |s| s.delete_many(&bucket, &keys)).await
    }
}
