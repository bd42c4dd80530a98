//! The glue between `wasi:http/incoming-handler` and a [`Router`]: read the
//! request, dispatch it, write the response.

use crate::bindings::wasi::http::types::{
    Fields, HeaderError, IncomingBody, IncomingRequest, Method as WasiMethod, OutgoingBody,
    OutgoingResponse, ResponseOutparam,
};
use crate::bindings::wasi::io::streams::StreamError;
use crate::body::{self, BodyWriter};
use crate::error::{Error, Result};
use crate::log;
use crate::request::{Method, Request};
use crate::response::Response;
use crate::router::Router;
use std::cell::OnceCell;

thread_local! {
    /// The service's routes, built by the first request an instance serves:
    /// an instance kept warm routes the next ones without building them
    /// again (for the testbed's 40 routes: a vector and 40 pattern strings
    /// allocated, and freed, per request).
    static ROUTER: OnceCell<Router> = const { OnceCell::new() };
}

/// Reads `request`, routes it, and writes the response. Called by [`crate::service!`].
pub fn serve(request: IncomingRequest, response_out: ResponseOutparam, routes: fn() -> Router) {
    let response = match read_request(request) {
        Ok(request) => ROUTER.with(|router| router.get_or_init(routes).dispatch(request)),
        Err(error) => error.into_response(),
    };
    write_response(response, response_out);
    crate::error::set_request_id(None);
}

fn read_request(incoming: IncomingRequest) -> Result<Request> {
    let method = match incoming.method() {
        WasiMethod::Get => Method::Get,
        WasiMethod::Post => Method::Post,
        WasiMethod::Put => Method::Put,
        WasiMethod::Patch => Method::Patch,
        WasiMethod::Delete => Method::Delete,
        WasiMethod::Head => Method::Head,
        WasiMethod::Options => Method::Options,
        WasiMethod::Connect => Method::Other("CONNECT".into()),
        WasiMethod::Trace => Method::Other("TRACE".into()),
        WasiMethod::Other(name) => Method::Other(name),
    };
    let target = incoming.path_with_query().unwrap_or_else(|| "/".into());
    let mut request = Request::new(method, &target);
    request.headers = incoming.headers().entries();
    crate::error::set_request_id(request.header("x-request-id"));
    let body = incoming
        .consume()
        .map_err(|()| Error::internal("request body already taken"))?;
    let stream = body
        .stream()
        .map_err(|()| Error::internal("request body stream already taken"))?;
    request.body = body::read_to_end(&stream).map_err(|error| match error {
        StreamError::LastOperationFailed(e) => Error::bad_request(format!(
            "could not read the request body: {}",
            e.to_debug_string()
        )),
        StreamError::Closed => Error::internal("request body closed early"),
    })?;
    // The stream is a child of the body and must go before it is finished.
    drop(stream);
    IncomingBody::finish(body);
    Ok(request)
}

/// Statuses whose responses never have a body (RFC 9110 §6.4.1).
fn is_bodyless(status: u16) -> bool {
    matches!(status, 100..=199 | 204 | 304)
}

/// The headers to send for `response`: the handler's, except that a
/// buffered body's `content-length` is always the SDK's (exactly one, the
/// true length), a streamed body keeps the handler's if it set one, and
/// a status that has no body gets none.
fn outgoing_headers(response: &Response, streamed: bool) -> Vec<(String, Vec<u8>)> {
    let bodyless = is_bodyless(response.status);
    let own_length = bodyless || !streamed;
    let mut headers: Vec<(String, Vec<u8>)> = response
        .headers
        .iter()
        .filter(|(name, _)| !(own_length && name.eq_ignore_ascii_case("content-length")))
        .cloned()
        .collect();
    if !bodyless && !streamed {
        let length = response.body.len().to_string().into_bytes();
        headers.push(("content-length".to_owned(), length));
    }
    headers
}

fn write_response(mut response: Response, out: ResponseOutparam) {
    let stream = response.take_stream();
    let bodyless = is_bodyless(response.status);
    let headers = response_fields(outgoing_headers(&response, stream.is_some()));
    let outgoing = OutgoingResponse::new(headers);
    // A new response is a 200 already: one host call fewer for most.
    if response.status != 200 && outgoing.set_status_code(response.status).is_err() {
        let error = Error::internal(format!(
            "the handler answered with invalid status {}",
            response.status
        ));
        return write_response(error.into_response(), out);
    }
    let Ok(body) = outgoing.body() else {
        log::error("response body already taken");
        return;
    };
    ResponseOutparam::set(out, Ok(outgoing));
    if let Ok(output) = body.write() {
        let written = if bodyless {
            if !response.body.is_empty() || stream.is_some() {
                log::warn(&format!(
                    "dropped the body of a {} response, which must have none",
                    response.status
                ));
            }
            Ok(())
        } else if let Some(write) = stream {
            write(&mut BodyWriter::new(output));
            Ok(())
        } else {
            body::write_all(output, &response.body)
        };
        // Closed: the client went away, or the host has every byte the
        // content-length promised and let the body go before the last
        // flush reported back; neither is the service's to warn about.
        if let Err(error) = written
            && error.kind() != std::io::ErrorKind::BrokenPipe
        {
            log::warn(&format!("could not write the response body: {error}"));
        }
    }
    if let Err(error) = OutgoingBody::finish(body, None) {
        log::error(&format!(
            "could not finish the response body: {}",
            crate::outbound::code_text(&error)
        ));
    }
}

/// The response's header fields, made in one host call; when the host
/// refuses the list, header by header, so that only the refused ones are
/// dropped (each with a warning).
fn response_fields(headers: Vec<(String, Vec<u8>)>) -> Fields {
    if let Ok(fields) = Fields::from_list(&headers) {
        return fields;
    }
    let fields = Fields::new();
    for (name, value) in headers {
        if let Err(error) = fields.append(&name, &value) {
            log::warn(&format!(
                "dropped response header `{name}`: {}",
                header_error(&error)
            ));
        }
    }
    fields
}

fn header_error(error: &HeaderError) -> &'static str {
    match error {
        HeaderError::InvalidSyntax => "invalid name or value",
        HeaderError::Forbidden => "forbidden by the host",
        HeaderError::Immutable => "headers are immutable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lengths(response: &Response, streamed: bool) -> Vec<String> {
        outgoing_headers(response, streamed)
            .into_iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .map(|(_, value)| String::from_utf8_lossy(&value).into_owned())
            .collect()
    }

    #[test]
    fn buffered_bodies_get_exactly_one_true_content_length() {
        let plain = Response::new(200).with_body("hello");
        assert_eq!(lengths(&plain, false), ["5"]);
        let wrong = Response::new(200)
            .with_header("Content-Length", "99")
            .with_body("hello");
        assert_eq!(
            lengths(&wrong, false),
            ["5"],
            "the handler's length is replaced"
        );
    }

    #[test]
    fn bodyless_statuses_get_no_content_length() {
        for status in [101, 204, 304] {
            let response = Response::new(status).with_header("content-length", "0");
            assert_eq!(
                lengths(&response, false),
                Vec::<String>::new(),
                "status {status}"
            );
        }
    }

    #[test]
    fn streamed_bodies_keep_only_the_handlers_length() {
        let declared = Response::new(200).with_header("content-length", "12");
        assert_eq!(lengths(&declared, true), ["12"]);
        assert_eq!(lengths(&Response::new(200), true), Vec::<String>::new());
    }
}
