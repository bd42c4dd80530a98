//! Outbound `wasi:http` requests, the only way a service reaches anything.
//!
//! - `http://NAME.internal/...` is a service call: the host runs it
//!   in-process on NAME's current version, if the caller's `calls` grants it
//!   (see [`crate::calls`]).
//! - Anything else must match an `allowed_outbound_hosts` entry exactly:
//!   scheme, host and port (a missing port is the scheme's default). A name
//!   that resolves to a loopback, private or link-local address is refused
//!   unless the entry names that address itself, so a grant for a public
//!   host cannot be pointed at the admin API or the local network.
//!
//! Every refusal is `HTTP-request-denied` (or `destination-IP-prohibited`) in
//! the guest and a host log line naming the service.

use crate::calls::ServiceCalls;
use crate::context::RequestContext;
use crate::registry::ServiceContext;
use http::Request;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, Error, ForbiddenHeaderFilter, RequestOptions, Result, WasiBody,
    WasiHttpHooks,
};

/// The host suffix of service calls.
pub const INTERNAL_SUFFIX: &str = ".internal";

/// The headers a guest never sees nor sets: wasmtime-wasi-http's own list,
/// held once. Its default check builds that list and a shared closure on
/// every call, five times a request.
static FORBIDDEN_HEADERS: [http::HeaderName; 9] = DEFAULT_FORBIDDEN_HEADERS;

fn is_forbidden(name: &http::HeaderName) -> bool {
    FORBIDDEN_HEADERS.contains(name)
}

/// Default connect, first-byte and between-bytes timeout for outside calls;
/// far below wasmtime-wasi-http's 600 s, and the request's deadline caps it.
const OUTSIDE_TIMEOUT: Duration = Duration::from_secs(30);

/// One `allowed_outbound_hosts` entry: `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRule {
    https: bool,
    host: RuleHost,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RuleHost {
    /// A host name, lowercase.
    Name(String),
    /// `*.example.com`: any name ending in `.example.com` (stored with the dot).
    Suffix(String),
    /// An IP address, which also grants it when it is loopback or private.
    Ip(IpAddr),
}

impl OutboundRule {
    /// Parses `scheme://host[:port]`; the error shows the form to use.
    pub fn parse(entry: &str) -> std::result::Result<Self, String> {
        let Some((scheme, rest)) = entry.split_once("://") else {
            return Err(format!(
                "`{entry}` needs a scheme: write `https://{entry}` (or `http://...`)"
            ));
        };
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            other => return Err(format!("`{entry}`: scheme `{other}` is not http or https")),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "`{entry}` must be only `scheme://host[:port]`, without a path or user"
            ));
        }
        let uri: http::uri::Authority = authority
            .parse()
            .map_err(|e| format!("`{entry}` is not a valid host: {e}"))?;
        let host = uri.host().to_ascii_lowercase();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = if let Ok(ip) = host.parse::<IpAddr>() {
            RuleHost::Ip(ip)
        } else if let Some(suffix) = host.strip_prefix("*.") {
            RuleHost::Suffix(format!(".{suffix}"))
        } else if host.contains('*') {
            return Err(format!(
                "`{entry}`: a wildcard must be a whole leading `*.`"
            ));
        } else {
            RuleHost::Name(host.to_owned())
        };
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(Self { https, host, port })
    }

    fn matches(&self, https: bool, host: &str, port: u16) -> bool {
        self.https == https
            && self.port == port
            && match &self.host {
                RuleHost::Name(name) => name == host,
                RuleHost::Suffix(suffix) => host.ends_with(suffix.as_str()),
                RuleHost::Ip(ip) => host.parse::<IpAddr>().is_ok_and(|h| h == *ip),
            }
    }

    fn names_ip(&self, ip: IpAddr) -> bool {
        self.host == RuleHost::Ip(ip)
    }
}

/// Loopback, private, link-local, unspecified and similar addresses, which
/// a grant by name must never reach.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                // 100.64.0.0/10, carrier-grade NAT.
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_internal(IpAddr::V4(v4)))
        }
    }
}

/// The per-request outbound policy of one service.
pub struct OutboundHooks {
    service: Arc<ServiceContext>,
    ctx: RequestContext,
    calls: Arc<ServiceCalls>,
}

impl OutboundHooks {
    /// The hooks of a request of `service` in `ctx`.
    pub fn new(
        service: Arc<ServiceContext>,
        ctx: RequestContext,
        calls: Arc<ServiceCalls>,
    ) -> Self {
        Self {
            service,
            ctx,
            calls,
        }
    }

    /// The next request of a warm instance runs in `ctx`.
    pub fn set_context(&mut self, ctx: RequestContext) {
        self.ctx = ctx;
    }

    fn deny(&self, request: &Request<WasiBody>, why: &str) -> Error {
        tracing::warn!(
            service = %self.service.name,
            uri = %request.uri(),
            "outbound request denied: {why}"
        );
        Error::HttpRequestDenied
    }
}

type SendResult = Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
)>;

impl WasiHttpHooks for OutboundHooks {
    fn is_forbidden_header(&mut self, name: &http::HeaderName) -> bool {
        is_forbidden(name)
    }

    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        /// The same check as a shared closure (wasi:http 0.3 asks for it).
        static FILTER: std::sync::LazyLock<ForbiddenHeaderFilter> =
            std::sync::LazyLock::new(|| Arc::new(is_forbidden));
        Arc::clone(&FILTER)
    }

    fn send_request(
        &mut self,
        mut request: Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let https = request.uri().scheme_str() == Some("https");
        let Some(authority) = request.uri().authority().cloned() else {
            return Box::new(async { Err(Error::HttpRequestUriInvalid) });
        };
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if let Some(callee) = host.strip_suffix(INTERNAL_SUFFIX) {
            let call = self.calls.call(&self.service, &self.ctx, callee, request);
            return Box::new(async move {
                let response = call.await?;
                Ok((response, Box::new(async { Ok(()) }) as Box<_>))
            });
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let rules: Vec<&OutboundRule> = self
            .service
            .outbound
            .iter()
            .filter(|r| r.matches(https, &host, port))
            .collect();
        if rules.is_empty() {
            let error = self.deny(
                &request,
                "add its scheme://host:port to allowed_outbound_hosts to grant it",
            );
            return Box::new(async move { Err(error) });
        }
        let ip_granted = |ip: IpAddr| rules.iter().any(|r| r.names_ip(ip));
        if let Ok(ip) = host.parse::<IpAddr>()
            && is_internal(ip)
            && !ip_granted(ip)
        {
            let error = self.deny(&request, "internal addresses need an entry naming the IP");
            return Box::new(async move { Err(error) });
        }
        let named_ips: Vec<IpAddr> = rules
            .iter()
            .filter_map(|r| match r.host {
                RuleHost::Ip(ip) => Some(ip),
                _ => None,
            })
            .collect();
        let service = Arc::clone(&self.service.name);
        let remaining = self
            .ctx
            .deadline
            .saturating_duration_since(tokio::time::Instant::now());
        let timeout = OUTSIDE_TIMEOUT.min(remaining);
        let options = RequestOptions {
            connect_timeout: Some(
                options
                    .and_then(|o| o.connect_timeout)
                    .unwrap_or(timeout)
                    .min(timeout),
            ),
            first_byte_timeout: Some(
                options
                    .and_then(|o| o.first_byte_timeout)
                    .unwrap_or(timeout)
                    .min(timeout),
            ),
            between_bytes_timeout: Some(
                options
                    .and_then(|o| o.between_bytes_timeout)
                    .unwrap_or(timeout)
                    .min(timeout),
            ),
        };
        Box::new(async move {
            // Resolve here, refuse internal addresses, and for plain HTTP
            // connect to the address checked (TLS pins the name by itself).
            if host.parse::<IpAddr>().is_err() {
                let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .map_err(|_| Error::DnsError {
                        rcode: Some("lookup failed".into()),
                        info_code: None,
                    })?
                    .collect();
                let Some(first) = resolved.first().copied() else {
                    return Err(Error::DestinationNotFound);
                };
                if let Some(bad) = resolved
                    .iter()
                    .find(|a| is_internal(a.ip()) && !named_ips.contains(&a.ip()))
                {
                    tracing::warn!(%service, %host, address = %bad.ip(), "outbound request denied: the host resolves to an internal address");
                    return Err(Error::DestinationIpProhibited);
                }
                if !https {
                    let path = request
                        .uri()
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .to_owned();
                    *request.uri_mut() = http::Uri::builder()
                        .scheme("http")
                        .authority(first.to_string())
                        .path_and_query(path)
                        .build()
                        .map_err(|_| Error::HttpRequestUriInvalid)?;
                }
            }
            let (response, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            use http_body_util::BodyExt;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(entry: &str) -> OutboundRule {
        OutboundRule::parse(entry).expect("valid rule")
    }

    #[test]
    fn scheme_host_and_port_must_all_match() {
        let r = rule("https://api.example.com");
        assert!(r.matches(true, "api.example.com", 443));
        assert!(!r.matches(false, "api.example.com", 80), "scheme differs");
        assert!(!r.matches(true, "api.example.com", 8443), "port differs");
        assert!(!r.matches(true, "evil.example.com", 443));
        let r = rule("http://127.0.0.1:8080");
        assert!(r.matches(false, "127.0.0.1", 8080));
        assert!(!r.matches(false, "127.0.0.1", 9090));
        assert!(r.names_ip("127.0.0.1".parse().expect("ip")));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let r = rule("https://*.example.com");
        assert!(r.matches(true, "a.example.com", 443));
        assert!(!r.matches(true, "example.com", 443));
        assert!(!r.matches(true, "aexample.com", 443));
    }

    #[test]
    fn malformed_entries_are_refused() {
        for bad in [
            "example.com",
            "ftp://example.com",
            "https://example.com/path",
            "https://user@example.com",
            "https://ex*ample.com",
        ] {
            assert!(OutboundRule::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "169.254.169.254",
            "::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
        ] {
            assert!(is_internal(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(!is_internal(ip.parse().expect("ip")), "{ip}");
        }
    }
}
