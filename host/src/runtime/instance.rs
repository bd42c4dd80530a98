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
        match &mut self.http {
            Some(proxy) => Ok(proxy),
            slot @ None => {
                let indices = version
                    .http
                    .as_ref()
                    .ok_or_else(|| wasmtime::format_err!("the component has no HTTP handler"))?;
                Ok(slot.insert(indices.load(store, &self.instance)?))
            }
        }
    }

    /// Its event handler; `version` must be the one it was made from.
    pub(super) fn events(
        &mut self,
        store: &mut Store<RequestState>,
        version: &LoadedService,
    ) -> wasmtime::Result<&EventHandler> {
        match &mut self.events {
            Some(handler) => Ok(handler),
            slot @ None => {
                let indices = version
                    .events
                    .as_ref()
                    .ok_or_else(|| wasmtime::format_err!("the component has no event handler"))?;
                Ok(slot.insert(indices.load(store, &self.instance)?))
            }
        }
    }
}
