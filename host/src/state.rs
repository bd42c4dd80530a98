//! The data of one request's `Store`: WASI contexts, the resource table, the
//! service the request belongs to and the request's context.

use crate::calls::ServiceCalls;
use crate::capability::outbound::OutboundHooks;
use crate::capability::stdio::GuestOutput;
use crate::context::RequestContext;
use crate::kvstore::ServiceStore;
use crate::registry::ServiceContext;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Per-request store data.
pub struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    /// Decides which outbound requests leave the host, and runs service calls.
    hooks: OutboundHooks,
    /// Caps linear memory and table growth of this instance.
    pub(crate) limits: StoreLimits,
    service: Arc<ServiceContext>,
    /// Content hash of the version serving this request, for log lines.
    version: Arc<str>,
    ctx: RequestContext,
    /// Where each `list-keys` page of this request ended; a cursor is an
    /// index into this list plus one.
    list_cursors: Vec<String>,
}

/// Parts a key-value call may touch.
pub(crate) struct KeyValueParts<'a> {
    pub store: &'a Arc<ServiceStore>,
    pub table: &'a mut ResourceTable,
    pub list_cursors: &'a mut Vec<String>,
}

impl RequestState {
    /// Fresh state for one request to `service` at `version`.
    pub fn new(
        service: Arc<ServiceContext>,
        version: Arc<str>,
        ctx: RequestContext,
        limits: StoreLimits,
        calls: Arc<ServiceCalls>,
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
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutboundHooks::new(Arc::clone(&service), ctx.clone(), calls),
            limits,
            service,
            version,
            ctx,
            list_cursors: Vec::new(),
        }
    }

    pub(crate) fn keyvalue_parts(&mut self) -> KeyValueParts<'_> {
        KeyValueParts {
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
