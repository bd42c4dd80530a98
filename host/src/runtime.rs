//! Runs one request in a fresh instance of a service's current version.
//!
//! Each request gets its own `Store` (so no guest state leaks between
//! requests), a memory cap, and a CPU-time budget counted in epoch ticks: the
//! guest yields to the scheduler at every tick and traps when the budget is
//! spent, so a loop costs its own request and nothing else.

use crate::loader::LoadedService;
use crate::state::{HostState, ServiceGrants};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{Engine, Store, StoreLimitsBuilder, UpdateDeadline};
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
    /// Wall-clock limit until the response head is ready.
    pub timeout: Duration,
}

/// Why a request did not produce a response.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The request could not be handed to the guest (e.g. no Host header).
    #[error("the request could not be passed to the service: {0}")]
    BadRequest(String),
    /// Every instance slot is in use.
    #[error("the host is at its instance limit")]
    Busy,
    /// The guest used up its CPU-time budget.
    #[error("the service exceeded its CPU time limit")]
    CpuLimit,
    /// No response within the wall-clock limit.
    #[error("the service did not respond in time")]
    Timeout,
    /// The guest trapped, or finished without responding.
    #[error("the service failed: {0}")]
    Failed(String),
    /// The guest answered with a `wasi:http` error code instead of a response.
    #[error("the service returned an error: {0:?}")]
    Guest(ErrorCode),
}

/// Marks the trap raised when a request's CPU budget runs out.
#[derive(Debug, thiserror::Error)]
#[error("CPU time limit exceeded")]
struct CpuLimitExceeded;

/// Runs requests against loaded services.
pub struct Runtime {
    engine: Engine,
    limits: RequestLimits,
}

impl Runtime {
    /// A runtime on `engine` with `limits` for every request.
    pub fn new(engine: Engine, limits: RequestLimits) -> Self {
        Self { engine, limits }
    }

    /// Serves `request` with a fresh instance of `service`.
    pub async fn handle<B>(
        &self,
        grants: Arc<ServiceGrants>,
        service: Arc<LoadedService>,
        request: http::Request<B>,
    ) -> Result<http::Response<HyperOutgoingBody>, RuntimeError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .instances(usize::MAX)
            .tables(usize::MAX)
            .memories(usize::MAX)
            .build();
        let mut store = Store::new(
            &self.engine,
            HostState::new(grants, Arc::clone(&service.version), limits),
        );
        store.limiter(|state| &mut state.limits);
        let budget = self.limits.cpu_ticks;
        let mut spent = 0u64;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            spent += 1;
            if spent > budget {
                return Err(CpuLimitExceeded.into());
            }
            Ok(UpdateDeadline::Yield(1))
        });

        let (sender, receiver) = tokio::sync::oneshot::channel();
        let (req, out) = {
            let mut http = store.data_mut().http();
            let req = http
                .new_incoming_request(Scheme::Http, request)
                .map_err(|e| RuntimeError::BadRequest(format!("{e:#}")))?;
            let out = http
                .new_response_outparam(sender)
                .map_err(|e| RuntimeError::Failed(format!("{e:#}")))?;
            (req, out)
        };

        let pre = service.pre.clone();
        // The guest runs in its own task so it can keep streaming the body
        // after it has handed over the response head.
        let task = tokio::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        });
        let abort = task.abort_handle();

        match tokio::time::timeout(self.limits.timeout, receiver).await {
            Err(_) => {
                abort.abort();
                Err(RuntimeError::Timeout)
            }
            Ok(Ok(Ok(response))) => {
                let version = Arc::clone(&service.version);
                tokio::spawn(async move {
                    if let Ok(Err(e)) = task.await {
                        tracing::warn!(version = %version, error = format!("{e:#}"), "service failed after sending its response head");
                    }
                });
                Ok(response)
            }
            Ok(Ok(Err(code))) => Err(RuntimeError::Guest(code)),
            Ok(Err(_)) => Err(match task.await {
                Ok(Ok(())) => RuntimeError::Failed("it returned without setting a response".into()),
                Ok(Err(e)) => classify(e),
                Err(join) => RuntimeError::Failed(format!("the request task failed: {join}")),
            }),
        }
    }
}

fn classify(error: wasmtime::Error) -> RuntimeError {
    if error.chain().any(|e| e.is::<CpuLimitExceeded>()) {
        RuntimeError::CpuLimit
    } else if error
        .chain()
        .any(|e| e.is::<wasmtime::PoolConcurrencyLimitError>())
    {
        RuntimeError::Busy
    } else {
        RuntimeError::Failed(format!("{error:?}"))
    }
}
