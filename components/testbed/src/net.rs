//! The network: outbound HTTP, calls to other services and raw sockets.
//! A transport failure answers 502 with the `wasi:http` error code as the
//! `error`, so tests can tell `HTTP-request-denied` from `loop-detected`.

use bazaar_sdk::{Error, Method, Request, Response, Result, call, outbound, platform};
use serde_json::json;
use std::time::Duration;

/// Outbound GET of `?url=`: `{"status": upstream status, "body": upstream text}`.
pub fn fetch(req: Request) -> Result<Response> {
    let url = req
        .query_param("url")
        .ok_or_else(|| Error::bad_request("missing ?url="))?;
    let response = outbound::send(&Method::Get, &url, &[], &[])
        .map_err(|error| Error::new(502, error.to_string()))?;
    Response::json(
        200,
        &json!({ "status": response.status, "body": response.text() }),
    )
}

/// Sends (`?method=`, default POST) a body of `?chunks=N` lines to
/// `?url=`, one every `?ms=` ms, each sent as it is written; answers with
/// the upstream's status and body. A client that goes away meanwhile
/// cancels it mid-body.
pub fn send_slowly(req: Request) -> Result<Response> {
    let url = req
        .query_param("url")
        .ok_or_else(|| Error::bad_request("missing ?url="))?;
    let method = match req.query_param("method").as_deref() {
        None | Some("POST") => Method::Post,
        Some("PUT") => Method::Put,
        Some(other) => return Err(Error::bad_request(format!("method {other} is not offered"))),
    };
    let number = |name: &str| -> Result<u64> {
        req.query_param(name)
            .unwrap_or_default()
            .parse()
            .map_err(|_| Error::bad_request(format!("?{name}= must be a number")))
    };
    let (chunks, pause) = (number("chunks")?, Duration::from_millis(number("ms")?));
    let response = outbound::send_streaming(&method, &url, &[], |body| {
        for n in 0..chunks {
            body.send(format!("chunk {n}\n").as_bytes())?;
            platform::sleep(pause);
        }
        Ok(())
    })
    .map_err(|error| Error::new(502, error.to_string()))?;
    Response::json(
        200,
        &json!({ "status": response.status, "body": response.text() }),
    )
}

/// Calls `http://{service}.internal/{path}` with this request's method,
/// query, body and content type; answers with the callee's status, body
/// and content type, and its `x-bazaar-version` as `x-callee-version`.
pub fn call(req: Request) -> Result<Response> {
    let service = req.param("service")?;
    // Forward the path as it arrived, still percent-encoded: segments after
    // `/{svc}/call/{service}`.
    let rest: Vec<&str> = req
        .path
        .split('/')
        .filter(|s| !s.is_empty())
        .skip(3)
        .collect();
    let mut path = format!("/{}", rest.join("/"));
    if let Some(query) = &req.query {
        path = format!("{path}?{query}");
    }
    let headers: Vec<(String, Vec<u8>)> = req
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .cloned()
        .collect();
    let reply = call::send_with(service, &req.method, &path, &headers, &req.body)
        .map_err(|error| Error::new(502, error.cause.to_string()))?;
    let mut response = Response::new(reply.status);
    if let Some(version) = reply.header("x-bazaar-version") {
        response = response.with_header("x-callee-version", version);
    }
    if let Some(content_type) = reply.header("content-type") {
        response = response.with_header("content-type", content_type);
    }
    Ok(response.with_body(reply.body))
}

/// Opens a raw TCP connection to `?addr=IP:PORT` through `wasi:sockets`:
/// 200 `connected`, or 403 with the error.
pub fn socket(req: Request) -> Result<Response> {
    let addr: std::net::SocketAddr = req
        .query_param("addr")
        .ok_or_else(|| Error::bad_request("missing ?addr="))?
        .parse()
        .map_err(|_| Error::bad_request("addr must be IP:PORT"))?;
    match std::net::TcpStream::connect(addr) {
        Ok(_stream) => Ok(Response::new(200).with_body("connected")),
        Err(error) => Ok(Response::new(403).with_body(error.to_string())),
    }
}
