//! `wasi:config/store`: each service reads only its own
//! `[services.NAME.config]` table.

use super::generated::wasi::config::store;
use crate::state::RequestState;
use std::collections::BTreeMap;
use wasmtime::component::{HasData, Linker};

/// What a config call may read: the service's table.
pub struct ConfigView<'a> {
    values: &'a BTreeMap<String, String>,
}

struct HasConfig;

impl HasData for HasConfig {
    type Data<'a> = ConfigView<'a>;
}

/// Adds `wasi:config/store` to `linker`.
pub fn add_to_linker(linker: &mut Linker<RequestState>) -> wasmtime::Result<()> {
    store::add_to_linker::<_, HasConfig>(linker, |state| ConfigView {
        values: state.config_values(),
    })
}

impl store::Host for ConfigView<'_> {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, store::Error>> {
        Ok(Ok(self.values.get(&key).cloned()))
    }

    async fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, store::Error>> {
        Ok(Ok(self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()))
    }
}
