//! Logs and traces of the `bazaar` binary.
//!
//! Logs go to stderr as human text or JSON lines (`--log-format`), written
//! by a thread of their own so a request never waits on them. When
//! `[telemetry] otlp_endpoint` is set, every span is also exported over
//! OTLP/HTTP (JSON) to an OpenTelemetry collector: a request is a span
//! continuing the client's W3C `traceparent`; service calls and event
//! deliveries are its children, in the same trace. Without an exporter a
//! request's span is made only when a line logged inside it needs it
//! ([`scope`]).

pub mod access;
pub mod scope;
mod writer;

use crate::context::TraceContext;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Keeps the log writer and the span exporter running; dropping it
/// flushes both.
pub struct TelemetryGuard {
    _logs: writer::LogFlusher,
    traces: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.traces.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: could not flush the last spans: {e}");
        }
    }
}

/// Whether spans are exported: set once by [`init`].
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether this process exports spans over OTLP. Without an exporter, a
/// request's span only gives its log lines their context, and work done
/// for the exported trace (names, trace ids taken from the span) is skipped.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Sets up logging (and span export, with `otlp_endpoint`, e.g.
/// `http://127.0.0.1:4318`) for this process.
pub fn init(format: LogFormat, otlp_endpoint: Option<&str>) -> anyhow::Result<TelemetryGuard> {
    // Lines go to a buffer that a thread of their own writes to stderr.
    let (writer, logs) = writer::spawn(std::io::stderr())
        .map_err(|e| anyhow::anyhow!("cannot start the log thread: {e}"))?;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,cranelift=warn,wasmtime=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    access::install(writer.clone(), format, ansi);
    let (text, json) = match format {
        LogFormat::Text => (
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi)
                    .with_writer(writer)
                    .map_event_format(scope::InRequest),
            ),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(writer)
                    .map_event_format(scope::InRequest),
            ),
        ),
    };
    let traces = otlp_endpoint.map(tracer_provider).transpose()?;
    EXPORTING.store(traces.is_some(), Ordering::Relaxed);
    // The layers above make a request's span when a line needs it, unless
    // an exported span must exist from the request's start, or a filter
    // that selects by span (`RUST_LOG=[request{service=..}]=debug`) must
    // see it before the lines inside it are filtered.
    let filters_by_span = std::env::var("RUST_LOG").is_ok_and(|v| v.contains('['));
    if traces.is_none() && !filters_by_span {
        scope::make_spans_lazily();
    }
    let otel = traces
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("bazaar")));
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .with(otel)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))?;
    if let Some(endpoint) = otlp_endpoint {
        tracing::info!(%endpoint, "exporting spans over OTLP/HTTP");
    }
    Ok(TelemetryGuard {
        _logs: logs,
        traces,
    })
}

fn tracer_provider(endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()
        .map_err(|e| anyhow::anyhow!("cannot set up the OTLP exporter for {endpoint}: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("bazaar")
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Makes `span` continue the trace of `parent`, when spans are exported.
/// Call it before anything else uses the span.
pub fn continue_trace(span: &tracing::Span, parent: &TraceContext) {
    if !exporting() {
        return;
    }
    let remote = SpanContext::new(
        TraceId::from_bytes(parent.trace_id),
        SpanId::from_bytes(parent.span_id),
        TraceFlags::new(parent.flags),
        true,
        TraceState::default(),
    );
    let context = opentelemetry::Context::new().with_remote_span_context(remote);
    // Without an exporter there is nothing to attach to; that is fine.
    let _ = span.set_parent(context);
}

/// The W3C trace context of `span` as exported, so what travels to guests
/// and callees names the exported span; `None` when spans are not exported.
pub fn trace_of(span: &tracing::Span) -> Option<TraceContext> {
    if !exporting() {
        return None;
    }
    let context = span.context();
    let exported = context.span();
    let span_context = exported.span_context();
    span_context.is_valid().then(|| TraceContext {
        trace_id: span_context.trace_id().to_bytes(),
        span_id: span_context.span_id().to_bytes(),
        flags: span_context.trace_flags().to_u8(),
    })
}

/// The W3C trace context of the current span as exported; `None`, without
/// looking the span up, when spans are not exported.
pub fn current_trace() -> Option<TraceContext> {
    if !exporting() {
        return None;
    }
    trace_of(&tracing::Span::current())
}

/// Names `span` as exported, e.g. `POST /api/orders` once the route is
/// known (the name given at creation is fixed once the span has started).
pub fn rename(span: &tracing::Span, name: impl FnOnce() -> String) {
    if !exporting() {
        return;
    }
    span.context().span().update_name(name());
}
