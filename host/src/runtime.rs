//! Runs one request, or one event delivery, in a fresh instance of a
//! service's current version.
//!
//! Each gets its own `Store` (so no guest state leaks between requests), a
//! memory cap, a CPU-time budget counted in epoch ticks (the guest yields at
//! every tick and traps when the budget is spent), and the request's
//! deadline, which covers instantiation, the handler and the streaming of
//! the response body. A guest whose client went away is stopped.

use crate::calls::ServiceCalls;
use crate::capability::GuestEvent;
use crate::context::RequestContext;
use crate::loader::{LoadedService, short};
use crate::registry::{ServiceContext, ServiceRegistry};
use crate::state::RequestState;
use bytes::Bytes;
use http::StatusCode;
use http_body::{Body, Frame};
use http_body_util::BodyExt as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokio::task::JoinHandle;
use tracing::Instrument as _;
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Per-request limits applied to every instance.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Epoch ticks of guest execution allowed per request.
    pub cpu_ticks: u64,
    /// Largest linear memory, in bytes.
    pub memory_bytes: usize,
}

/// Why a request did not produce a response.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The request could not be handed to the guest (e.g. no Host header).
    #[error("the request could not be passed to the service: {0}")]
    BadRequest(String),
    /// Every instance slot is in use.
    #[error("the host is at its instance limit; retry shortly")]
    Busy,
    /// The guest used up its CPU-time budget.
    #[error("the service exceeded its CPU time limit")]
    CpuLimit,
    /// The request's deadline passed.
    #[error("the service did not respond in time")]
    Timeout,
    /// The guest trapped, or finished without responding.
    #[error("the service failed: {0}")]
    Failed(String),
    /// The guest answered with a `wasi:http` error code instead of a response.
    #[error("the service returned an error: {0:?}")]
    Guest(ErrorCode),
    /// The component exports no HTTP handler.
    #[error("the service does not handle HTTP requests")]
    NoHttpHandler,
    /// The component exports no event handler.
    #[error("the service does not handle events")]
    NoEventHandler,
}

impl RuntimeError {
    /// The HTTP status a client sees.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::CpuLimit | Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Failed(_) | Self::NoEventHandler => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Guest(_) => StatusCode::BAD_GATEWAY,
            Self::NoHttpHandler => StatusCode::NOT_FOUND,
        }
    }

    /// The message a client sees; a trap's details go to the log instead.
    pub fn client_message(&self) -> String {
        match self {
            Self::Failed(detail) => {
                tracing::error!(error = %detail, "service failed");
                "the service failed while handling the request".to_owned()
            }
            other => {
                tracing::warn!(error = %other, "request failed");
                other.to_string()
            }
        }
    }
}

/// Marks the trap raised when a request's CPU budget runs out.
#[derive(Debug, thiserror::Error)]
#[error("CPU time limit exceeded")]
struct CpuLimitExceeded;

/// Marks the end of a request's deadline.
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
struct DeadlineExceeded;

/// Runs requests against loaded services.
pub struct Runtime {
    engine: Engine,
    store_limits: StoreLimits,
    cpu_ticks: u64,
    /// Service calls the guests make, run by this runtime.
    calls: Arc<ServiceCalls>,
}

impl Runtime {
    /// A runtime on `engine` with `limits` for every request; service calls
    /// find their callee in `registry` and may nest `max_call_depth` deep.
    pub fn new(
        engine: Engine,
        limits: RequestLimits,
        registry: Arc<ServiceRegistry>,
        max_call_depth: usize,
    ) -> Arc<Self> {
        Arc::new_cyclic(|runtime| Self {
            engine,
            store_limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .instances(usize::MAX)
                .tables(usize::MAX)
                .memories(usize::MAX)
                .build(),
            cpu_ticks: limits.cpu_ticks,
            calls: Arc::new(ServiceCalls::new(registry, runtime.clone(), max_call_depth)),
        })
    }

    fn store(
        &self,
        service: &Arc<ServiceContext>,
        version: &LoadedService,
        ctx: &RequestContext,
    ) -> Store<RequestState> {
        let state = RequestState::new(
            Arc::clone(service),
            Arc::clone(&version.version),
            ctx.clone(),
            self.store_limits.clone(),
            Arc::clone(&self.calls),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        let budget = self.cpu_ticks;
        let mut spent = 0u64;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            spent += 1;
            if spent > budget {
                return Err(CpuLimitExceeded.into());
            }
            Ok(UpdateDeadline::Yield(1))
        });
        store
    }

    /// Serves `request` with a fresh instance of `version` of `service`.
    pub async fn handle_http<B>(
        &self,
        ctx: RequestContext,
        service: &Arc<ServiceContext>,
        version: Arc<LoadedService>,
        request: http::Request<B>,
    ) -> Result<http::Response<HyperOutgoingBody>, RuntimeError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let pre = version.http.clone().ok_or(RuntimeError::NoHttpHandler)?;
        let mut store = self.store(service, &version, &ctx);
        let head_sent = Arc::new(AtomicBool::new(false));
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let (req, out) = {
            let mut http = store.data_mut().http();
            let req = http
                .new_incoming_request(Scheme::Http, request)
                .map_err(|e| RuntimeError::BadRequest(format!("{e:#}")))?;
            let flag = Arc::clone(&head_sent);
            let out = http
                .new_response_outparam_from_callback(move |result| {
                    flag.store(true, Ordering::Release);
                    let _ = sender.send(result);
                })
                .map_err(|e| RuntimeError::Failed(format!("{e:#}")))?;
            (req, out)
        };

        let (name, version_id) = (Arc::clone(&service.name), Arc::clone(&version.version));
        let deadline = ctx.deadline;
        // The guest runs in its own task so it can keep streaming the body
        // after it has handed over the response head; the deadline is
        // inside, so it bounds the body too.
        let task = tokio::spawn(
            async move {
                let run = async {
                    let proxy = pre.instantiate_async(&mut store).await?;
                    proxy
                        .wasi_http_incoming_handler()
                        .call_handle(&mut store, req, out)
                        .await
                };
                let result = match tokio::time::timeout_at(deadline, run).await {
                    Ok(result) => result,
                    Err(_) => Err(DeadlineExceeded.into()),
                };
                if let Err(e) = &result
                    && head_sent.load(Ordering::Acquire)
                {
                    tracing::warn!(service = %name, version = short(&version_id), error = format!("{e:#}"), "the service failed after sending its response head");
                }
                result
            }
            .in_current_span(),
        );
        let mut guard = AbortOnDrop(Some(task));

        match receiver.await {
            Ok(Ok(response)) => {
                Ok(response.map(|body| GuardedBody { inner: body, guard }.boxed_unsync()))
            }
            Ok(Err(code)) => Err(RuntimeError::Guest(code)),
            Err(_) => Err(match guard.join().await {
                Some(Ok(Ok(()))) => {
                    RuntimeError::Failed("it returned without setting a response".into())
                }
                Some(Ok(Err(e))) => classify(e),
                Some(Err(join)) => RuntimeError::Failed(format!("the request task failed: {join}")),
                None => RuntimeError::Failed("the request task is gone".into()),
            }),
        }
    }

    /// Delivers `event` to a fresh instance of `version` of `service`;
    /// `Ok(Err(message))` is the subscriber declining it.
    pub async fn handle_event(
        &self,
        ctx: RequestContext,
        service: &Arc<ServiceContext>,
        version: &Arc<LoadedService>,
        event: GuestEvent,
    ) -> Result<Result<(), String>, RuntimeError> {
        let pre = version.events.clone().ok_or(RuntimeError::NoEventHandler)?;
        let mut store = self.store(service, version, &ctx);
        let run = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance
                .bazaar_platform_event_handler()
                .call_handle(&mut store, &event)
                .await
        };
        match tokio::time::timeout_at(ctx.deadline, run).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(e)) => Err(classify(e)),
            Err(_) => Err(RuntimeError::Timeout),
        }
    }
}

fn classify(error: wasmtime::Error) -> RuntimeError {
    if error.chain().any(|e| e.is::<CpuLimitExceeded>()) {
        RuntimeError::CpuLimit
    } else if error.chain().any(|e| e.is::<DeadlineExceeded>()) {
        RuntimeError::Timeout
    } else if error
        .chain()
        .any(|e| e.is::<wasmtime::PoolConcurrencyLimitError>())
    {
        RuntimeError::Busy
    } else {
        RuntimeError::Failed(format!("{error:?}"))
    }
}

/// Aborts the guest task when dropped, unless it was detached or joined.
struct AbortOnDrop<T>(Option<JoinHandle<T>>);

impl<T> AbortOnDrop<T> {
    async fn join(&mut self) -> Option<Result<T, tokio::task::JoinError>> {
        Some(self.0.take()?.await)
    }

    /// Lets the task run to its own end.
    fn detach(&mut self) {
        self.0 = None;
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// A response body that stops its guest when dropped before its end: a
/// client that went away takes its instance with it.
struct GuardedBody {
    inner: HyperOutgoingBody,
    guard: AbortOnDrop<wasmtime::Result<()>>,
}

impl Drop for GuardedBody {
    fn drop(&mut self) {
        // hyper may never poll a body that says it is already at its end.
        if self.inner.is_end_stream() {
            self.guard.detach();
        }
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            // The whole body went out: the guest may finish what it does
            // after responding, under its deadline.
            self.guard.detach();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
