//! The data of one request's `Store`: WASI contexts, the resource table, the
//! service the request belongs to and the request's context.

use crate::calls::ServiceCalls;
use crate::capability::outbound::OutboundHooks;
use crate::capability::stdio::GuestOutput;
use crate::context::RequestContext;
use crate::kvstore::ServiceStore;
use crate::registry::ServiceContext;
use crate::runtime::SandboxLimiter;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Bytes one `fields` resource (a header map the guest builds) may take in
/// host memory, as wasmtime-wasi-http estimates it; half its 128 KiB
/// default, still far above what a client or proxy accepts in a head.
const FIELD_SIZE_LIMIT: usize = 64 << 10;

/// Per-request store data.
pub struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    /// Decides which outbound requests leave the host, and runs service calls.
    hooks: OutboundHooks,
    /// Caps memory and table growth of this instance, and charges it to
    /// the host's budget.
    pub(crate) limiter: SandboxLimiter,
    service: Arc<ServiceContext>,
    /// Content hash of the version serving this request, for log lines.
    version: Arc<str>,
    ctx: RequestContext,
    /// Where each `list-keys` page of this request ended; a cursor is an
    /// index into this list plus one.
    list_cursors: Vec<String>,
    /// The guest's stdout and stderr, whose budget is per request.
    output: GuestOutput,
}

/// Parts a key-value call may touch.
pub(crate) struct KeyValueParts<'a> {
    pub service: &'a Arc<str>,
    pub store: &'a Arc<ServiceStore>,
    pub table: &'a mut ResourceTable,
    pub list_cursors: &'a mut Vec<String>,
}

impl RequestState {
    /// Fresh state for one request to `service` at `version`, holding at
    /// most `max_resources` host-side resources at once.
    pub fn new(
        service: Arc<ServiceContext>,
        version: Arc<str>,
        ctx: RequestContext,
        limiter: SandboxLimiter,
        calls: Arc<ServiceCalls>,
        max_resources: usize,
    ) -> Self {
        let output = GuestOutput::new(Arc::clone(&service.name), Arc::clone(&version));
        // No preopens, no environment, no sockets: a WASI call that needs
        // one of those fails inside the guest instead of reaching the host.
        // The socket switches are off by default in wasmtime-wasi 48, but its
        // docs disagree with themselves, so say it here too.
        let wasi = WasiCtx::builder()
            .stdout(output.stream("stdout"))
            .stderr(output.stream("stderr"))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        // Resources live in host memory no limiter sees: cap their number
        // and the size of each header map.
        let mut table = ResourceTable::new();
        table.set_max_capacity(max_resources);
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(FIELD_SIZE_LIMIT);
        Self {
            wasi,
            http,
            table,
            hooks: OutboundHooks::new(Arc::clone(&service), ctx.clone(), calls),
            limiter,
            service,
            version,
            ctx,
            list_cursors: Vec::new(),
            output,
        }
    }

    /// Makes a warm instance's state ready for its next request, in `ctx`:
    /// what belongs to one request (its context, cursors, output budget)
    /// starts afresh; the instance and its resources stay.
    pub(crate) fn begin_request(&mut self, ctx: RequestContext) {
        self.hooks.set_context(ctx.clone());
        self.ctx = ctx;
        self.list_cursors.clear();
        self.output.reset();
    }

    /// Logs the partial lines the guest's stdout and stderr hold, tagged
    /// with the request that wrote them (see `GuestOutput::flush`).
    pub(crate) fn flush_output(&self) {
        self.output.flush();
    }

    pub(crate) fn keyvalue_parts(&mut self) -> KeyValueParts<'_> {
        KeyValueParts {
            service: &self.service.name,
            store: &self.service.store,
            table: &mut self.table,
            list_cursors: &mut self.list_cursors,
        }
    }

    pub(crate) fn publish_parts(
        &mut self,
    ) -> (&Arc<ServiceContext>, &RequestContext, &mut ResourceTable) {
        (&self.service, &self.ctx, &mut self.table)
    }

    pub(crate) fn config_values(&mut self) -> &BTreeMap<String, String> {
        &self.service.config
    }

    pub(crate) fn identity(&mut self) -> (&str, &str) {
        (&self.service.name, &self.version)
    }
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}
