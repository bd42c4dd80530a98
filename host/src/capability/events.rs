//! `bazaar:platform/events`: publish one event to a granted topic. It is a
//! transaction with nothing but the event, so it is in the outbox, durably,
//! before `publish` returns.

use super::generated::bazaar::platform::events::{self, PublishError as Error};
use super::generated::bazaar::platform::transaction::CommitError;
use super::transaction::commit_with_events;
use crate::context::RequestContext;
use crate::kvstore::Batch;
use crate::registry::ServiceContext;
use crate::state::RequestState;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker};

/// What a publish may touch.
pub struct EventsView<'a> {
    service: &'a Arc<ServiceContext>,
    ctx: &'a RequestContext,
}

struct HasEvents;

impl HasData for HasEvents {
    type Data<'a> = EventsView<'a>;
}

/// Adds `bazaar:platform/events` to `linker`.
pub fn add_to_linker(linker: &mut Linker<RequestState>) -> wasmtime::Result<()> {
    events::add_to_linker::<_, HasEvents>(linker, |state| {
        let (service, ctx, _) = state.publish_parts();
        EventsView { service, ctx }
    })
}

impl events::Host for EventsView<'_> {
    async fn publish(
        &mut self,
        topic: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<String, Error>> {
        let committed = commit_with_events(
            self.service,
            self.ctx,
            Batch::default(),
            vec![(topic, payload)],
        )
        .await;
        Ok(match committed {
            Ok(mut ids) => ids
                .pop()
                .ok_or_else(|| Error::Unavailable("no event id".into())),
            Err(CommitError::Denied(message)) => Err(Error::Denied(message)),
            Err(CommitError::Invalid(message)) => Err(Error::Invalid(message)),
            Err(CommitError::Conflict(key)) => {
                Err(Error::Unavailable(format!("conflict on {key}")))
            }
            Err(CommitError::Store(e)) => Err(Error::Unavailable(format!("{e:?}"))),
        })
    }
}
