//! The data of one request's `Store`: WASI contexts, the resource table and
//! the service the request belongs to.

use crate::capability::outbound::OutboundPolicy;
use crate::kvstore::ServiceStore;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// What a service is granted, built once per service at load time and shared
/// by every request to it.
pub struct ServiceGrants {
    /// The service's name.
    pub name: Arc<str>,
    /// Its durable store.
    pub store: Arc<ServiceStore>,
    /// Its `wasi:config` values.
    pub config: BTreeMap<String, String>,
    /// Outbound HTTP authorities it may call.
    pub outbound_hosts: Arc<[String]>,
}

/// Per-request store data.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    /// Decides which outbound requests leave the host.
    outbound: OutboundPolicy,
    /// Caps linear memory and table growth of this instance.
    pub(crate) limits: StoreLimits,
    grants: Arc<ServiceGrants>,
    /// Content hash of the version serving this request, for log lines.
    version: Arc<str>,
}

impl HostState {
    /// Fresh state for one request to `grants`' service at `version`.
    pub fn new(grants: Arc<ServiceGrants>, version: Arc<str>, limits: StoreLimits) -> Self {
        // No preopens, no environment, no network: a WASI call that needs one
        // of those fails inside the guest instead of reaching the host.
        let wasi = WasiCtx::builder().inherit_stdout().inherit_stderr().build();
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            outbound: OutboundPolicy::new(grants.name.clone(), grants.outbound_hosts.clone()),
            limits,
            grants,
            version,
        }
    }

    pub(crate) fn keyvalue_parts(&mut self) -> (&Arc<ServiceStore>, &mut ResourceTable) {
        (&self.grants.store, &mut self.table)
    }

    pub(crate) fn config_values(&mut self) -> &BTreeMap<String, String> {
        &self.grants.config
    }

    pub(crate) fn identity(&mut self) -> (&str, &str) {
        (&self.grants.name, &self.version)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}
