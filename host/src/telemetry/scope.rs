//! A request's log context, with a span only when a line needs one.
//!
//! Every line logged while a request runs (a host warning, a guest's
//! stdout, a call's lines) starts with `request{request_id=.. service=..
//! version=..}`, the request span's context. A `tracing` span made for each
//! request costs its creation, its fields formatted as text, an enter and an
//! exit on every poll and its closing: about 5% of a warm hello request,
//! for a context most requests never log under. So, with the binary's log
//! layers ([`super::init`]) and unless spans are exported (or `RUST_LOG`
//! filters by span), the request's context rides in a task-local
//! [`RequestScope`] and its span is made the first time a line
//! is logged outside any span while the request runs: [`InRequest`], the
//! formatter's wrapper, enters that span around the line, so it reads as
//! it always did. A task the request starts keeps the context through
//! [`carry`]; a span made inside a request takes the request's as its
//! parent through [`parent`].

use crate::loader::short;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::task::futures::TaskLocalFuture;
use tracing::Subscriber;
use tracing::field::display;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

tokio::task_local! {
    /// The request the running task works for.
    static CURRENT: Arc<RequestScope>;
}

/// Whether a request's span waits until a line needs it: set by
/// [`super::init`], which installs [`InRequest`], unless spans are exported
/// or `RUST_LOG` selects by span (a span made late would be too late for
/// either). Any other subscriber (an embedder's, the tests') gets the span
/// up front, as it would not know to make it.
static LAZY: AtomicBool = AtomicBool::new(false);

/// Makes each request's span only when a line needs it, from now on.
pub(super) fn make_spans_lazily() {
    LAZY.store(true, Ordering::Relaxed);
}

/// Whether each request's span is made as the request arrives.
pub fn eager() -> bool {
    !LAZY.load(Ordering::Relaxed)
}

/// One request's log context.
pub struct RequestScope {
    state: Mutex<ScopeState>,
}

struct ScopeState {
    id: Arc<str>,
    /// The service it was routed to, once it is.
    service: Option<Arc<str>>,
    /// The version (content hash) that serves it, once one does.
    version: Option<Arc<str>>,
    /// The request's span: made up front when [`eager`], else by the
    /// first line that needs it.
    span: Option<tracing::Span>,
}

impl RequestScope {
    /// The context of the request `id`, whose span is `span` (made up
    /// front), or made when first needed if `span` is disabled.
    pub fn new(id: Arc<str>, span: &tracing::Span) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(ScopeState {
                id,
                service: None,
                version: None,
                span: (!span.is_none()).then(|| span.clone()),
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ScopeState> {
        // Nothing panics while holding it; a poisoned lock still holds
        // consistent fields.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The request's span, made now if it was not yet.
    fn span(&self) -> tracing::Span {
        let mut state = self.state();
        if let Some(span) = &state.span {
            return span.clone();
        }
        let span = request_span(&state.id);
        if let Some(service) = &state.service {
            span.record("service", display(service));
        }
        if let Some(version) = &state.version {
            span.record("version", display(short(version)));
        }
        state.span = Some(span.clone());
        span
    }

    /// Runs `future` as working for this request. A plain wrapper, not
    /// an `async fn`: one would hold the future twice (before and while
    /// it runs), and a request's future is some kilobytes.
    pub fn run<F: Future>(self: Arc<Self>, future: F) -> TaskLocalFuture<Arc<Self>, F> {
        CURRENT.scope(self, future)
    }
}

/// The span of request `id` when spans are not exported: only what its
/// log lines carry and its access line does not (fields the access line
/// has anyway would cost formatting for nothing).
pub fn request_span(id: &str) -> tracing::Span {
    tracing::info_span!(
        parent: None,
        "request",
        request_id = %id,
        service = tracing::field::Empty,
        version = tracing::field::Empty,
    )
}

/// Notes, for the running request's lines, the service and route it was
/// routed to (`method` names an exported span).
pub fn routed(service: &Arc<str>, route: &str, method: &http::Method) {
    let _ = CURRENT.try_with(|scope| {
        let mut state = scope.state();
        state.service = Some(Arc::clone(service));
        if let Some(span) = &state.span {
            span.record("service", display(service));
            span.record("route", display(route));
            super::rename(span, || format!("{method} {route}"));
        }
    });
}

/// Notes, for the running request's lines, the version serving it.
pub fn serving(version: &Arc<str>) {
    let _ = CURRENT.try_with(|scope| {
        let mut state = scope.state();
        state.version = Some(Arc::clone(version));
        if let Some(span) = &state.span {
            span.record("version", display(short(version)));
        }
    });
}

/// The span a span made now should be the child of: the current one, or
/// else the running request's (made now if need be).
pub fn parent() -> tracing::Span {
    let current = tracing::Span::current();
    if !current.is_none() {
        return current;
    }
    CURRENT.try_with(|scope| scope.span()).unwrap_or(current)
}

/// `future`, still working for the running request (its span and its
/// scope) wherever it is polled, e.g. in a task of its own.
pub fn carry<F>(future: F) -> impl Future<Output = F::Output> + use<F>
where
    F: Future,
{
    use futures_util::future::Either;
    use tracing::Instrument as _;
    let future = future.in_current_span();
    match CURRENT.try_with(Arc::clone) {
        Ok(scope) => Either::Left(scope.run(future)),
        Err(_) => Either::Right(future),
    }
}

/// An event formatter that gives a line logged outside any span, while a
/// request runs, that request's span, as if the line were logged in it.
pub struct InRequest<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for InRequest<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        if event.is_contextual()
            && ctx.lookup_current().is_none()
            && let Ok(span) = CURRENT.try_with(|scope| scope.span())
        {
            return span.in_scope(|| self.0.format_event(ctx, writer, event));
        }
        self.0.format_event(ctx, writer, event)
    }
}
