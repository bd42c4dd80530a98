//! How a guest's run ends for the bodies it was writing.
//!
//! wasi-http ends an outgoing body whose finish signal was dropped as if it
//! were complete. A guest that finishes or drops its bodies itself is fine
//! (a dropped body is aborted); but when its store goes away under it (it
//! failed, or its request was cancelled because the client went away),
//! a body it was still writing, its response's or that of a request it was
//! sending, would look whole to whoever reads it: a truncated upload taken
//! for the entire one. [`RunningStore`] ends such bodies with an error
//! whenever the store is dropped before the guest returned well, and when
//! it returned with a body neither finished nor dropped (a leaked handle,
//! or a language runtime that drops it late): that body would otherwise
//! look whole once the store goes, or keep its reader waiting for as long
//! as a warm instance idles. Such an instance is not reused either: the
//! stream it may still hold would write into that body's channel, which
//! its reader may not have closed yet, so a later request's bytes could
//! reach an earlier request's client.

use crate::state::RequestState;
use std::ops::{Deref, DerefMut};
use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::body::{HostOutgoingBody, StreamContext};

/// A store a guest is running in. Dropped without [`Self::returned`]
/// (a failure, or a cancelled request), it first aborts every body the
/// guest had not finished.
pub(super) struct RunningStore(Option<Store<RequestState>>);

impl RunningStore {
    pub(super) fn new(store: Store<RequestState>) -> Self {
        Self(Some(store))
    }

    /// The store of a guest that returned well, to serve again as a warm
    /// instance; `None` (the store dropped) when it left a body unfinished,
    /// which is then ended with an error.
    pub(super) fn returned(mut self) -> Option<Store<RequestState>> {
        let mut store = self.0.take()?;
        let unfinished = abort_unfinished_bodies(store.data_mut().http().table);
        (unfinished == 0).then_some(store)
    }
}

impl Deref for RunningStore {
    type Target = Store<RequestState>;

    fn deref(&self) -> &Self::Target {
        match &self.0 {
            Some(store) => store,
            // Only `returned` takes it, and that consumes the guard.
            None => unreachable!("a running store is used after it was returned"),
        }
    }
}

impl DerefMut for RunningStore {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match &mut self.0 {
            Some(store) => store,
            None => unreachable!("a running store is used after it was returned"),
        }
    }
}

impl Drop for RunningStore {
    fn drop(&mut self) {
        if let Some(store) = &mut self.0 {
            abort_unfinished_bodies(store.data_mut().http().table);
        }
    }
}

/// Ends every outgoing body left in `table` with an error.
///
/// Each stays in the table as a spent body, not removed: the guest may
/// still hold its handle (a warm instance keeps it across requests), and
/// a freed slot could later hold another body that handle would then
/// reach. A spent body has no stream to hand out (`write` on it fails),
/// and it claims a length no write could reach, so a `finish` called on
/// it later fails instead of passing for a body sent whole. That error is
/// a response body-size one even for a request's body: which of the two
/// the original was is private to wasmtime-wasi-http. Returns how many
/// bodies it ended.
fn abort_unfinished_bodies(table: &mut ResourceTable) -> usize {
    let mut ended = 0;
    for entry in table.iter_mut() {
        if let Some(body) = entry.downcast_mut::<HostOutgoingBody>() {
            // A finished body has left the table; this one never will.
            let (mut spent, _) =
                HostOutgoingBody::new(StreamContext::Response, Some(u64::MAX), 1, 1);
            drop(spent.take_output_stream());
            std::mem::replace(body, spent).abort();
            ended += 1;
        }
    }
    ended
}
