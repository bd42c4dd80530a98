//! Service-to-service calls: a guest's outbound request to
//! `http://NAME.internal/PATH` runs in-process on NAME's current version.
//!
//! No socket is opened; the callee gets a fresh instance under its own
//! limits and the caller's deadline. A call is allowed only when the
//! caller's `calls` grants it; a cycle, or a chain deeper than
//! `max_call_depth`, fails at once. A callee that traps or times out gives
//! the caller an error response (JSON, with the status the gateway would
//! use), never a hang. The request id and the trace travel with the call.

use crate::context::{CALLER_HEADER, RequestContext};
use crate::gateway::{SERVICE_HEADER, VERSION_HEADER, error_response};
use crate::registry::{ServiceContext, ServiceRegistry, ServiceSlot};
use crate::runtime::Runtime;
use http::{HeaderValue, StatusCode};
use http_body_util::BodyExt as _;
use std::sync::{Arc, Weak};
use tracing::Instrument as _;
use wasmtime_wasi_http::{Error, WasiBody};

/// Runs service calls.
pub struct ServiceCalls {
    registry: Arc<ServiceRegistry>,
    runtime: Weak<Runtime>,
    max_depth: usize,
}

impl ServiceCalls {
    /// The services calls are resolved in.
    pub(crate) fn registry(&self) -> &Arc<ServiceRegistry> {
        &self.registry
    }

    /// Calls resolved in `registry` and run by `runtime`.
    pub fn new(registry: Arc<ServiceRegistry>, runtime: Weak<Runtime>, max_depth: usize) -> Self {
        Self {
            registry,
            runtime,
            max_depth,
        }
    }

    /// Checks the call from `caller` (in `ctx`) to `callee` now, and returns
    /// the future that runs it.
    pub fn call(
        &self,
        caller: &ServiceContext,
        ctx: &RequestContext,
        callee: &str,
        request: http::Request<WasiBody>,
    ) -> impl Future<Output = Result<http::Response<WasiBody>, Error>> + Send + 'static {
        let admitted = self.admit(caller, ctx, callee);
        let runtime = self.runtime.upgrade();
        let caller = Arc::clone(&caller.name);
        // Made here, inside the caller's request span: the future below runs
        // in a task of wasi:http's own, outside it.
        let span = tracing::info_span!(
            parent: crate::telemetry::scope::parent(),
            "call",
            caller = %caller,
            callee = %callee,
            otel.name = %format_args!("call {callee}"),
            otel.kind = "client",
        );
        async move {
            let (slot, mut child) = admitted?;
            let runtime = runtime.ok_or(Error::DestinationUnavailable)?;
            if let Some(trace) = crate::telemetry::current_trace() {
                child.trace = trace;
            }
            Ok(run(&runtime, &slot, child, &caller, request).await)
        }
        .instrument(span)
    }

    fn admit(
        &self,
        caller: &ServiceContext,
        ctx: &RequestContext,
        callee: &str,
    ) -> Result<(Arc<ServiceSlot>, RequestContext), Error> {
        let from = &caller.name;
        if !caller.may_call(callee) {
            tracing::warn!(caller = %from, %callee, "service call denied: `{from}` may not call `{callee}`; add \"{callee}\" to `calls` of `{from}`");
            return Err(Error::HttpRequestDenied);
        }
        if ctx.has_entered(callee) {
            tracing::warn!(caller = %from, %callee, "service call refused: {} → {callee} would loop", ctx.path());
            return Err(Error::LoopDetected);
        }
        if ctx.depth() >= self.max_depth {
            tracing::warn!(caller = %from, %callee, "service call refused: {} → {callee} is deeper than max_call_depth = {}", ctx.path(), self.max_depth);
            return Err(Error::InternalError(Some(format!(
                "the call chain {} → {callee} is deeper than max_call_depth = {}",
                ctx.path(),
                self.max_depth
            ))));
        }
        let Some(slot) = self.registry.get(callee) else {
            tracing::warn!(caller = %from, %callee, "service call failed: no service `{callee}`");
            return Err(Error::DestinationNotFound);
        };
        let child = ctx.enter(&slot.context.name);
        Ok((slot, child))
    }
}

/// Runs the call; every failure is an error response, as at the gateway.
async fn run(
    runtime: &Runtime,
    slot: &ServiceSlot,
    ctx: RequestContext,
    caller: &str,
    mut request: http::Request<WasiBody>,
) -> http::Response<WasiBody> {
    let Some(version) = slot.current() else {
        let message = format!("service `{}` is not available", slot.name());
        return error_body(StatusCode::SERVICE_UNAVAILABLE, &message, &ctx.id);
    };
    let headers = request.headers_mut();
    // Only the host says who is calling: what the guest set is dropped.
    crate::gateway::set_host_headers(headers, &ctx);
    if let Ok(value) = HeaderValue::from_str(caller) {
        headers.insert(CALLER_HEADER, value);
    }
    let version_header = version.version_header.clone();
    let id = Arc::clone(&ctx.id);
    match runtime
        .handle_http(ctx, &slot.context, version, request)
        .await
    {
        Ok(mut response) => {
            let headers = response.headers_mut();
            headers.insert(SERVICE_HEADER, slot.context.name_header.clone());
            headers.insert(VERSION_HEADER, version_header);
            response
        }
        Err(e) => error_body(e.status(), &e.client_message(), &id),
    }
}

fn error_body(status: StatusCode, message: &str, request_id: &str) -> http::Response<WasiBody> {
    error_response(status, message, request_id).map(|body| {
        body.map_err(|e| Error::InternalError(Some(e.to_string())))
            .boxed_unsync()
    })
}
