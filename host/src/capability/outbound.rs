//! Outbound `wasi:http` requests: allowed only to the authorities a service's
//! `allowed_outbound_hosts` grants; everything else is denied with
//! `HTTP-request-denied`, which the guest sees as an ordinary error.

use http::Request;
use std::sync::Arc;
use wasmtime_wasi_http::{Error, RequestOptions, Result, WasiBody, WasiHttpHooks};

/// The per-request outbound policy of one service.
pub struct OutboundPolicy {
    /// Authorities (`host` or `host:port`) the service may call.
    allowed: Arc<[String]>,
    /// Service name, for the denial log line.
    service: Arc<str>,
}

impl OutboundPolicy {
    /// A policy allowing exactly `allowed`.
    pub fn new(service: Arc<str>, allowed: Arc<[String]>) -> Self {
        Self { allowed, service }
    }

    fn permits(&self, request: &Request<WasiBody>) -> bool {
        let Some(authority) = request.uri().authority() else {
            return false;
        };
        self.allowed.iter().any(|a| {
            a.eq_ignore_ascii_case(authority.as_str()) || a.eq_ignore_ascii_case(authority.host())
        })
    }
}

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<(
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                )>,
            > + Send,
    > {
        if self.permits(&request) {
            let default = wasmtime_wasi_http::default_hooks();
            return default.send_request(request, options, fut);
        }
        tracing::warn!(
            service = %self.service,
            uri = %request.uri(),
            "outbound request denied: add the host to allowed_outbound_hosts to grant it"
        );
        Box::new(async { Err(Error::HttpRequestDenied) })
    }
}
