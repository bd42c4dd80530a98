//! An instance of a service's version, made for a request or an event
//! delivery, and its handlers, each looked up the first time it is called:
//! a warm instance made for an event may serve requests next, and the
//! other way round.

use crate::capability::EventHandler;
use crate::loader::LoadedService;
use crate::state::RequestState;
use std::time::Duration;
use tokio::time::Instant;
use wasmtime::Store;
use wasmtime::component::Instance;
use wasmtime_wasi_http::p2::bindings::Proxy;

/// An instance, and the handlers of it looked up so far.
pub(super) struct Live {
    instance: Instance,
    http: Option<Proxy>,
    events: Option<EventHandler>,
}

impl Live {
    /// Instantiates `version` in `store`; also says how long that took.
    pub(super) async fn make(
        store: &mut Store<RequestState>,
        version: &LoadedService,
    ) -> wasmtime::Result<(Self, Duration)> {
        let started = Instant::now();
        let instance = version.pre.instantiate_async(&mut *store).await?;
        let live = Self {
            instance,
            http: None,
            events: None,
        };
        Ok((live, started.elapsed()))
    }

    /// Its HTTP handler; `version` must be the one it was made from.
    pub(super) fn http(
        &mut self,
        store: &mut Store<RequestState>,
        version: &LoadedService,
    ) -> wasmtime::Result<&Proxy> {
        let Self { instance, http, .. } = self;
        loaded(http, || {
            version
                .http
                .as_ref()
                .ok_or_else(|| wasmtime::format_err!("the component has no HTTP handler"))?
                .load(store, instance)
        })
    }

    /// Its event handler; `version` must be the one it was made from.
    pub(super) fn events(
        &mut self,
        store: &mut Store<RequestState>,
        version: &LoadedService,
    ) -> wasmtime::Result<&EventHandler> {
        let Self {
            instance, events, ..
        } = self;
        loaded(events, || {
            version
                .events
                .as_ref()
                .ok_or_else(|| wasmtime::format_err!("the component has no event handler"))?
                .load(store, instance)
        })
    }
}

/// What `slot` holds, loaded into it by `load` the first time.
fn loaded<T>(
    slot: &mut Option<T>,
    load: impl FnOnce() -> wasmtime::Result<T>,
) -> wasmtime::Result<&T> {
    match slot {
        Some(held) => Ok(held),
        empty @ None => Ok(empty.insert(load()?)),
    }
}
