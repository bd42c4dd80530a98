//! Runs one request, or one event delivery, in a fresh instance of a
//! service's current version, inside the service's sandbox limits.
//!
//! Each gets its own `Store` (so no guest state leaks between requests) and
//! the limits of its service (`[services.X.limits]`, else `[runtime]`'s):
//! 1. a concurrency permit, waited for briefly, else [`RuntimeError::Busy`];
//! 2. a memory cap on all the instance's memories together, inside a
//!    host-wide budget (`limiter`), and a cap on host-side resources;
//! 3. a CPU-time budget measured as time spent running the guest and its
//!    host calls (`meter`), checked at every epoch tick;
//! 4. the request's deadline, which covers waiting for the permit,
//!    instantiation, the handler and the streaming of the response body.
//!
//! A guest whose client went away is stopped (`guard`), and a run that
//! ends early ends the bodies it was writing broken (`ending`). New
//! components are instantiated once before they serve (`trial`).
//!
//! # Layout
//!
//! - `sandbox`: [`Sandbox`], which builds each store with its limits.
//! - `limiter`: memory caps per instance and per host.
//! - `meter`: CPU time as time spent in `poll`.
//! - `guard`: the response body that aborts its guest when dropped.
//! - `ending`: the running store that aborts unfinished bodies when dropped.
//! - `settled`: the body of a guest that finished before its head went out,
//!   read ahead so it goes out with a `content-length`.
//! - `trial`: [`TrialRun`], the loader's trial instantiation.
//! - `warm`: [`WarmPool`], instances kept between requests for services
//!   that opt in with `instance_reuse`.

mod ending;
mod guard;
mod instance;
mod limiter;
mod meter;
mod sandbox;
mod settled;
mod trial;
mod warm;

pub use limiter::{HostMemory, MemoryRefusal, SandboxLimiter};
pub use sandbox::Sandbox;
pub use trial::{TrialFailure, TrialRun};
pub use warm::{IDLE_CLOCK, IdleClock, WarmPool};

use crate::calls::ServiceCalls;
use crate::capability::GuestEvent;
use crate::context::RequestContext;
use crate::loader::{LoadedService, short};
use crate::registry::{ServiceContext, ServiceRegistry};
use crate::state::RequestState;
use bytes::Bytes;
use futures_util::FutureExt as _;
use guard::{AbortOnDrop, GuardedBody};
use http::StatusCode;
use http_body_util::BodyExt as _;
use instance::Live;
use meter::Metered;
use sandbox::CpuLimitExceeded;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// How long a request waits for one of its service's concurrency permits
/// before it is refused as busy: long enough to ride out a burst, short
/// enough that a client is told to retry instead of queueing.
const ADMISSION_WAIT: Duration = Duration::from_millis(100);

/// Why a request did not produce a response.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The request could not be handed to the guest (e.g. no Host header).
    #[error("the request could not be passed to the service: {0}")]
    BadRequest(String),
    /// The service is at its `max_concurrency`, or every instance slot of
    /// the host is in use.
    #[error("the service is busy; retry shortly")]
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

/// Marks the end of a request's deadline.
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
struct DeadlineExceeded;

/// Runs requests against loaded services.
pub struct Runtime {
    sandbox: Sandbox,
    /// Service calls the guests make, run by this runtime.
    calls: Arc<ServiceCalls>,
    /// Replaces warm instances that served their share.
    refill: Refill,
}

/// Drops warm instances of large components that served their share and
/// makes the ones taking their place, on the shared runtime rather than on
/// the thread serving the request: making such an instance (5-25 ms for a
/// Python one, whose memory image is copied in) would otherwise hold up
/// every connection of that thread.
#[derive(Clone)]
struct Refill {
    sandbox: Sandbox,
    calls: Arc<ServiceCalls>,
    shared: tokio::runtime::Handle,
}

impl Refill {
    /// Instances made faster than this are left to the next request to
    /// make, as before: waking a thread of the shared runtime, which then
    /// takes a core from a busy gateway thread, costs that thread's
    /// connections more than the instance itself (the p99 of warm hello at
    /// 16 connections went from 0.5-1.6 to 1.3-2.4 ms with every
    /// replacement handed over).
    const HAND_OVER_FROM: Duration = Duration::from_millis(1);

    /// Puts `live`, whose request or event ended well in `store`, back in
    /// its service's pool for the next one, unless it went over a limit;
    /// one that served its share is dropped and replaced (see
    /// [`Self::replace`]).
    fn give_back(
        &self,
        service: &Arc<ServiceContext>,
        version: &Arc<LoadedService>,
        store: ending::RunningStore,
        live: Live,
        record: warm::Record,
    ) {
        // Bodies it left unfinished end broken, whether it is kept or not.
        let Some(store) = store.returned() else {
            return;
        };
        // A store dropped here writes its partial lines out itself.
        let Some(pool) = &service.warm else { return };
        store.data().flush_output();
        if let Some(refusal) = store.data().limiter.refusal() {
            tracing::debug!(service = %service.name, version = version.short_version(), "not reused: {refusal}");
            return;
        }
        let instance = warm::WarmInstance::new(Arc::clone(&version.version), store, live, record);
        if let Some(used_up) = pool.give_back(instance) {
            self.replace(used_up, Arc::clone(service), Arc::clone(version));
        }
    }

    /// Drops `used_up`, an instance of `version` that served its share,
    /// and, when making one took long, makes the instance taking its
    /// place, unless the service has moved on to another version or holds
    /// enough idle ones by then. One that fails to be made is left out; the
    /// next request makes its own.
    fn replace(
        &self,
        used_up: warm::WarmInstance,
        service: Arc<ServiceContext>,
        version: Arc<LoadedService>,
    ) {
        if used_up.record.made_in < Self::HAND_OVER_FROM {
            return;
        }
        let this = self.clone();
        self.shared.spawn(async move {
            // Frees its pool slot first, for the new instance to take.
            drop(used_up);
            let Some(pool) = service
                .warm
                .as_ref()
                .filter(|pool| pool.wants(&version.version))
            else {
                return;
            };
            let ctx = RequestContext::internal(
                format!("warm-{}", version.short_version()),
                Instant::now() + service.limits.timeout,
            );
            let (mut store, meter) = this.sandbox.store(
                version.pre.engine(),
                &service,
                &version.version,
                &ctx,
                &this.calls,
            );
            let made = Metered::new(Live::make(&mut store, &version), Arc::clone(&meter));
            match tokio::time::timeout_at(ctx.deadline, made).await {
                // One whose start-up had a growth refused is not kept, as
                // after a request.
                Ok(Ok(_)) if store.data().limiter.refusal().is_some() => {}
                Ok(Ok((live, made_in))) => {
                    service.metrics.instantiated(made_in);
                    let record = warm::Record {
                        meter,
                        uses: 0,
                        made_in,
                    };
                    pool.keep(warm::WarmInstance::new(
                        Arc::clone(&version.version),
                        store,
                        live,
                        record,
                    ));
                }
                Ok(Err(e)) => tracing::debug!(service = %service.name, version = version.short_version(), error = format!("{e:#}"), "a warm instance could not be made ahead"),
                Err(_) => tracing::debug!(service = %service.name, version = version.short_version(), "making a warm instance ahead timed out"),
            }
        });
    }
}

/// Where a request or an event delivery starts: an instance of the
/// version, idle warm or just made, in its store.
struct Start {
    store: wasmtime::Store<RequestState>,
    live: Live,
    /// Its record, or a new one's.
    record: warm::Record,
}

impl Runtime {
    /// A runtime building its stores with `sandbox`; service calls find
    /// their callee in `registry` and may nest `max_call_depth` deep.
    pub fn new(
        sandbox: Sandbox,
        registry: Arc<ServiceRegistry>,
        max_call_depth: usize,
    ) -> Arc<Self> {
        Arc::new_cyclic(|runtime| {
            let calls = Arc::new(ServiceCalls::new(registry, runtime.clone(), max_call_depth));
            Self {
                refill: Refill {
                    sandbox: sandbox.clone(),
                    calls: Arc::clone(&calls),
                    shared: tokio::runtime::Handle::current(),
                },
                sandbox,
                calls,
            }
        })
    }

    /// An idle warm instance of `version` of `service` for `ctx`, when the
    /// service keeps them and one is idle, else a new one, made within the
    /// request's deadline and CPU budget.
    ///
    /// When the pool has no slot of some kind left (instances, the core
    /// instances, memories and tables they are made of, fiber stacks), an
    /// idle warm instance gives its up (see [`make_room`]) and the instance
    /// is made again in a new store (a failed one may hold some of its
    /// parts until dropped). Failing first and freeing after covers every
    /// kind of slot, a request racing another for the last one included.
    async fn start(
        &self,
        service: &Arc<ServiceContext>,
        version: &LoadedService,
        ctx: &RequestContext,
    ) -> Result<Start, RuntimeError> {
        let warm = service
            .warm
            .as_ref()
            .and_then(|pool| pool.take(&version.version));
        if let Some(mut instance) = warm {
            instance.store.data_mut().begin_request(ctx.clone());
            Sandbox::rearm(&mut instance.store, &instance.record.meter);
            return Ok(Start {
                store: instance.store,
                live: instance.live,
                record: instance.record,
            });
        }
        let engine = version.pre.engine();
        loop {
            let (mut store, meter) =
                self.sandbox
                    .store(engine, service, &version.version, ctx, &self.calls);
            let made = Metered::new(Live::make(&mut store, version), Arc::clone(&meter));
            let error = match tokio::time::timeout_at(ctx.deadline, made).await {
                Ok(Ok((live, made_in))) => {
                    service.metrics.instantiated(made_in);
                    return Ok(Start {
                        store,
                        live,
                        record: warm::Record {
                            meter,
                            uses: 0,
                            made_in,
                        },
                    });
                }
                Ok(Err(error)) => error,
                Err(_) => return Err(RuntimeError::Timeout),
            };
            service.metrics.cpu_time(meter.spent());
            if error
                .chain()
                .any(|e| e.is::<wasmtime::PoolConcurrencyLimitError>())
            {
                drop(store);
                if make_room(self.calls.registry(), engine) {
                    continue;
                }
            } else {
                report_memory(&service.name, &version.version, &store);
            }
            return Err(classify(error));
        }
    }

    /// Serves `request` with a fresh instance of `version` of `service`, or
    /// an idle warm one when the service keeps them.
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
        if version.http.is_none() {
            return Err(RuntimeError::NoHttpHandler);
        }
        let permit = admit(service, ctx.deadline).await?;
        let Start {
            mut store,
            live,
            record,
        } = self.start(service, &version, &ctx).await?;
        let head_sent = Arc::new(AtomicBool::new(false));
        let head_request = request.method() == http::Method::HEAD;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let handed = {
            let mut http = store.data_mut().http();
            match http.new_incoming_request(Scheme::Http, request) {
                // The guest's resource table is full: its fault, not the client's.
                Err(e) if e.is::<wasmtime::component::ResourceTableError>() => {
                    Err(RuntimeError::Failed(format!("{e:#}")))
                }
                Err(e) => Err(RuntimeError::BadRequest(format!("{e:#}"))),
                Ok(req) => {
                    let flag = Arc::clone(&head_sent);
                    http.new_response_outparam_from_callback(move |result| {
                        flag.store(true, Ordering::Release);
                        let _ = sender.send(result);
                    })
                    .map(|out| (req, out))
                    // A full resource table again.
                    .map_err(|e| RuntimeError::Failed(format!("{e:#}")))
                }
            }
        };
        let (req, out) = match handed {
            Ok(handed) => handed,
            Err(e) => {
                // Nothing ran: where the service keeps instances, this one
                // goes back as it was, so a request the guest cannot be
                // given (no Host header, say) costs no instance. One whose
                // table is full is dropped.
                if let (RuntimeError::BadRequest(_), Some(pool)) = (&e, &service.warm)
                    && store.data().limiter.refusal().is_none()
                {
                    pool.keep(warm::WarmInstance::new(
                        Arc::clone(&version.version),
                        store,
                        live,
                        record,
                    ));
                }
                return Err(e);
            }
        };

        let service = Arc::clone(service);
        let deadline = ctx.deadline;
        let refill = self.refill.clone();
        // The guest's run, from its call to its return; the deadline and
        // the concurrency permit are inside, so they bound the body it
        // streams too.
        let run = async move {
            let _permit = permit;
            // Whatever ends the run early, bodies left unfinished end broken.
            let mut store = ending::RunningStore::new(store);
            let meter = Arc::clone(&record.meter);
            let in_flight = crate::metrics::InFlight::start(&service.metrics);
            let mut live = live;
            let run = async {
                live.http(&mut store, &version)?
                    .wasi_http_incoming_handler()
                    .call_handle(&mut *store, req, out)
                    .await?;
                Ok::<_, wasmtime::Error>(live)
            };
            let result = match tokio::time::timeout_at(deadline, Metered::new(run, meter)).await {
                Ok(result) => result,
                Err(_) => Err(DeadlineExceeded.into()),
            };
            drop(in_flight);
            service.metrics.cpu_time(record.meter.spent());
            match result {
                // Only an instance that ended well, within its limits,
                // having answered, serves again.
                Ok(live) if head_sent.load(Ordering::Acquire) => {
                    refill.give_back(&service, &version, store, live, record);
                    Ok(())
                }
                // It returned without setting its response (its client is
                // told so): not an instance to trust with another request.
                Ok(_) => Ok(()),
                Err(e) => {
                    report_memory(&service.name, &version.version, &store);
                    if head_sent.load(Ordering::Acquire) {
                        tracing::warn!(service = %service.name, version = version.short_version(), error = format!("{e:#}"), "the service failed after setting its response head");
                    }
                    Err(e)
                }
            }
        };
        // Its lines keep the request's context even in a task of its own.
        let run = crate::telemetry::scope::carry(run);
        let mut run: GuestRun = Box::pin(std::panic::AssertUnwindSafe(run).catch_unwind());

        // The guest runs inside this request's task until it hands over its
        // response head: a handler that answers in one go (most do) finishes
        // here, with no task of its own and no hand-off between threads.
        // The guest is polled before the head's receiver: a receiver polled
        // first holds this task's waker, and the guest setting its head
        // during the same poll would wake the task that is running it, a
        // spurious reschedule per request that can also wake an idle
        // worker thread.
        let mut receiver = receiver;
        let first = std::future::poll_fn(|cx| {
            if let Poll::Ready(ended) = run.as_mut().poll(cx) {
                return Poll::Ready(Err(ended));
            }
            Pin::new(&mut receiver).poll(cx).map(Ok)
        })
        .await;
        match first {
            // Still streaming its body: the rest of the guest's run gets a
            // task of its own, so its deadline holds even while the client
            // reads slowly and nothing polls the body.
            Ok(Ok(Ok(response))) => Ok(guarded(response, AbortOnDrop::new(tokio::spawn(run)))),
            Ok(Ok(Err(code))) => Err(RuntimeError::Guest(code)),
            // It dropped its response without setting it; how it ended says why.
            Ok(Err(_)) => Err(no_response(run.await)),
            Err(ended) => match receiver.try_recv() {
                // The guest has finished: nothing to guard, and what it
                // wrote of its body waits in the channel, read ahead.
                Ok(Ok(response)) if matches!(ended, Ok(Ok(()))) => {
                    Ok(settled::settle(response, head_request))
                }
                Ok(Err(code)) => Err(RuntimeError::Guest(code)),
                // No head, or one set before a failure and not yet sent:
                // the client is told how it ended, not sent a broken body.
                Ok(Ok(_)) | Err(_) => Err(no_response(ended)),
            },
        }
    }

    /// Delivers `event` to a fresh instance of `version` of `service`, or
    /// an idle warm one when the service keeps them; `Ok(Err(message))` is
    /// the subscriber declining it.
    pub async fn handle_event(
        &self,
        ctx: RequestContext,
        service: &Arc<ServiceContext>,
        version: &Arc<LoadedService>,
        event: GuestEvent,
    ) -> Result<Result<(), String>, RuntimeError> {
        if version.events.is_none() {
            return Err(RuntimeError::NoEventHandler);
        }
        let _permit = admit(service, ctx.deadline).await?;
        let Start {
            store,
            mut live,
            record,
        } = self.start(service, version, &ctx).await?;
        // A failure ends the bodies of requests it was sending broken.
        let mut store = ending::RunningStore::new(store);
        let meter = Arc::clone(&record.meter);
        let _in_flight = crate::metrics::InFlight::start(&service.metrics);
        let run = async {
            let outcome = live
                .events(&mut store, version)?
                .bazaar_platform_event_handler()
                .call_handle(&mut *store, &event)
                .await?;
            Ok::<_, wasmtime::Error>((live, outcome))
        };
        let outcome = tokio::time::timeout_at(ctx.deadline, Metered::new(run, meter)).await;
        service.metrics.cpu_time(record.meter.spent());
        match outcome {
            Ok(Ok((live, outcome))) => {
                self.refill.give_back(service, version, store, live, record);
                Ok(outcome)
            }
            Ok(Err(e)) => {
                report_memory(&service.name, &version.version, &store);
                Err(classify(e))
            }
            Err(_) => Err(RuntimeError::Timeout),
        }
    }
}

/// A guest's run, started by [`Runtime::handle_http`]; a panic inside it
/// is caught and answered like a failure.
type GuestRun = Pin<Box<dyn Future<Output = GuestResult> + Send>>;
/// How a guest's run ended: its own result, or the payload of a panic.
type GuestResult = Result<wasmtime::Result<()>, Box<dyn std::any::Any + Send>>;

/// The response whose body stops `guard`'s guest if the client leaves early.
fn guarded(
    response: http::Response<HyperOutgoingBody>,
    guard: AbortOnDrop<GuestResult>,
) -> http::Response<HyperOutgoingBody> {
    let declared = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    response.map(|body| GuardedBody::new(body, guard, declared).boxed_unsync())
}

/// Why a guest that ended without a response head failed.
fn no_response(ended: GuestResult) -> RuntimeError {
    match ended {
        Ok(Ok(())) => RuntimeError::Failed("it returned without setting a response".into()),
        Ok(Err(e)) => classify(e),
        Err(_) => RuntimeError::Failed("the request task panicked".into()),
    }
}

/// A permit to run one more request of `service`, waited for at most
/// [`ADMISSION_WAIT`] and never past `deadline`.
async fn admit(
    service: &ServiceContext,
    deadline: Instant,
) -> Result<OwnedSemaphorePermit, RuntimeError> {
    let permits = Arc::clone(&service.concurrency);
    if let Ok(permit) = Arc::clone(&permits).try_acquire_owned() {
        return Ok(permit);
    }
    let until = (Instant::now() + ADMISSION_WAIT).min(deadline);
    match tokio::time::timeout_at(until, permits.acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        // The gateway logs the refusal; this says which limit it was.
        _ => {
            tracing::debug!(
                service = %service.name,
                max_concurrency = service.limits.max_concurrency,
                "the service is at its concurrency limit"
            );
            Err(RuntimeError::Busy)
        }
    }
}

/// Drops one idle warm instance in `engine`'s pool, of the service in
/// `registry` that keeps the most there (its one idle longest), to free
/// its slots; whether there was one. Warm services keep up to
/// `max_concurrency` idle instances each until they idle out or a deploy
/// retires them, so without this a few that were busy once would leave no
/// slot for the others' requests (refused as busy) or for a deploy's
/// trial. Called when an instance could not be made for want of a slot of
/// some kind; the store is dropped on the caller's thread before it tries
/// again: resetting a large instance's memory takes milliseconds, paid
/// only when the pool is full.
pub(crate) fn make_room(
    registry: &crate::registry::ServiceRegistry,
    engine: &wasmtime::Engine,
) -> bool {
    let snapshot = registry.load();
    let fullest = snapshot
        .services()
        .filter_map(|slot| Some((slot.context.warm.as_ref()?, &slot.context.name)))
        .map(|(pool, name)| (pool.idle_on(engine), pool, name))
        .filter(|(idle, ..)| *idle > 0)
        .max_by_key(|(idle, ..)| *idle);
    let Some((evicted, service)) =
        fullest.and_then(|(_, pool, name)| Some((pool.evict_on(engine)?, name)))
    else {
        return false;
    };
    drop(evicted);
    crate::metrics::warm_evicted(service);
    tracing::debug!(%service, "an idle warm instance gave its pool slots up");
    true
}

/// Logs a refused memory growth behind a failure: the trap itself only
/// says the guest aborted.
fn report_memory(
    service: &str,
    version: &str,
    store: &wasmtime::Store<crate::state::RequestState>,
) {
    if let Some(refusal) = store.data().limiter.refusal() {
        tracing::warn!(
            service,
            version = short(version),
            "memory growth refused: {refusal}"
        );
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
