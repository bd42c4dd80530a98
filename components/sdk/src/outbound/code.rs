//! `wasi:http` error codes as the text their WIT spells, and the gateway
//! status each deserves.

use crate::bindings::wasi::http::types::ErrorCode;

/// The case name of `code` as written in `wasi:http`'s WIT (e.g.
/// `HTTP-request-denied`, `loop-detected`), with its payload in
/// parentheses when it carries one (`internal-error(no such service)`).
pub fn code_text(code: &ErrorCode) -> String {
    use ErrorCode as C;
    let (name, detail): (&str, Option<String>) = match code {
        C::DnsTimeout => ("DNS-timeout", None),
        C::DnsError(p) => (
            "DNS-error",
            join([p.rcode.clone(), p.info_code.map(|c| c.to_string())]),
        ),
        C::DestinationNotFound => ("destination-not-found", None),
        C::DestinationUnavailable => ("destination-unavailable", None),
        C::DestinationIpProhibited => ("destination-IP-prohibited", None),
        C::DestinationIpUnroutable => ("destination-IP-unroutable", None),
        C::ConnectionRefused => ("connection-refused", None),
        C::ConnectionTerminated => ("connection-terminated", None),
        C::ConnectionTimeout => ("connection-timeout", None),
        C::ConnectionReadTimeout => ("connection-read-timeout", None),
        C::ConnectionWriteTimeout => ("connection-write-timeout", None),
        C::ConnectionLimitReached => ("connection-limit-reached", None),
        C::TlsProtocolError => ("TLS-protocol-error", None),
        C::TlsCertificateError => ("TLS-certificate-error", None),
        C::TlsAlertReceived(p) => (
            "TLS-alert-received",
            join([p.alert_id.map(|id| id.to_string()), p.alert_message.clone()]),
        ),
        C::HttpRequestDenied => ("HTTP-request-denied", None),
        C::HttpRequestLengthRequired => ("HTTP-request-length-required", None),
        C::HttpRequestBodySize(n) => ("HTTP-request-body-size", n.map(|n| n.to_string())),
        C::HttpRequestMethodInvalid => ("HTTP-request-method-invalid", None),
        C::HttpRequestUriInvalid => ("HTTP-request-URI-invalid", None),
        C::HttpRequestUriTooLong => ("HTTP-request-URI-too-long", None),
        C::HttpRequestHeaderSectionSize(n) => {
            ("HTTP-request-header-section-size", n.map(|n| n.to_string()))
        }
        C::HttpRequestHeaderSize(p) => (
            "HTTP-request-header-size",
            p.as_ref().and_then(|p| p.field_name.clone()),
        ),
        C::HttpRequestTrailerSectionSize(n) => (
            "HTTP-request-trailer-section-size",
            n.map(|n| n.to_string()),
        ),
        C::HttpRequestTrailerSize(p) => ("HTTP-request-trailer-size", p.field_name.clone()),
        C::HttpResponseIncomplete => ("HTTP-response-incomplete", None),
        C::HttpResponseHeaderSectionSize(n) => (
            "HTTP-response-header-section-size",
            n.map(|n| n.to_string()),
        ),
        C::HttpResponseHeaderSize(p) => ("HTTP-response-header-size", p.field_name.clone()),
        C::HttpResponseBodySize(n) => ("HTTP-response-body-size", n.map(|n| n.to_string())),
        C::HttpResponseTrailerSectionSize(n) => (
            "HTTP-response-trailer-section-size",
            n.map(|n| n.to_string()),
        ),
        C::HttpResponseTrailerSize(p) => ("HTTP-response-trailer-size", p.field_name.clone()),
        C::HttpResponseTransferCoding(c) => ("HTTP-response-transfer-coding", c.clone()),
        C::HttpResponseContentCoding(c) => ("HTTP-response-content-coding", c.clone()),
        C::HttpResponseTimeout => ("HTTP-response-timeout", None),
        C::HttpUpgradeFailed => ("HTTP-upgrade-failed", None),
        C::HttpProtocolError => ("HTTP-protocol-error", None),
        C::LoopDetected => ("loop-detected", None),
        C::ConfigurationError => ("configuration-error", None),
        C::InternalError(m) => ("internal-error", m.clone()),
    };
    match detail {
        Some(detail) => format!("{name}({detail})"),
        None => name.to_owned(),
    }
}

fn join<const N: usize>(parts: [Option<String>; N]) -> Option<String> {
    let present: Vec<String> = parts.into_iter().flatten().collect();
    (!present.is_empty()).then(|| present.join(", "))
}

/// The status a gateway answers when a request upstream failed with
/// `code`: 504 for timeouts, 503 when the callee is unavailable or
/// overloaded, 502 for everything else.
pub fn gateway_status(code: &ErrorCode) -> u16 {
    use ErrorCode as C;
    match code {
        C::DnsTimeout
        | C::ConnectionTimeout
        | C::ConnectionReadTimeout
        | C::ConnectionWriteTimeout
        | C::HttpResponseTimeout => 504,
        C::ConnectionRefused | C::ConnectionLimitReached | C::DestinationUnavailable => 503,
        _ => 502,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_as_their_wit_names() {
        assert_eq!(
            code_text(&ErrorCode::HttpRequestDenied),
            "HTTP-request-denied"
        );
        assert_eq!(code_text(&ErrorCode::LoopDetected), "loop-detected");
        assert_eq!(code_text(&ErrorCode::InternalError(None)), "internal-error");
        assert_eq!(
            code_text(&ErrorCode::InternalError(Some("boom".into()))),
            "internal-error(boom)"
        );
        assert_eq!(
            code_text(&ErrorCode::HttpResponseBodySize(Some(12))),
            "HTTP-response-body-size(12)"
        );
    }

    #[test]
    fn timeouts_are_504_and_refusals_503() {
        assert_eq!(gateway_status(&ErrorCode::ConnectionTimeout), 504);
        assert_eq!(gateway_status(&ErrorCode::HttpResponseTimeout), 504);
        assert_eq!(gateway_status(&ErrorCode::ConnectionLimitReached), 503);
        assert_eq!(gateway_status(&ErrorCode::ConnectionRefused), 503);
        assert_eq!(gateway_status(&ErrorCode::HttpRequestDenied), 502);
        assert_eq!(gateway_status(&ErrorCode::LoopDetected), 502);
    }
}
