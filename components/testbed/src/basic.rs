//! Echoes and reads: what a request looked like, and what the service sees.

use bazaar_sdk::{Error, Request, Response, Result, config, log};
use serde_json::{Map, Value};

/// Answers with the request's body, its `x-` headers prefixed `echo-`, and
/// the status asked for in `x-status`.
pub fn echo(req: Request) -> Result<Response> {
    let status = req
        .header("x-status")
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut response = Response::new(status).with_body(req.body.clone());
    for (name, value) in &req.headers {
        if name.starts_with("x-") {
            response = response.with_header(&format!("echo-{name}"), value.clone());
        }
    }
    Ok(response
        .with_header("x-method", req.method.as_str())
        .with_header("x-query", req.query.clone().unwrap_or_default()))
}

/// `len` bytes of a repeating pattern, so a client can check every byte.
pub fn bytes(req: Request) -> Result<Response> {
    let len: usize = req.param_as("len")?;
    let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    Ok(Response::new(200).with_body(body))
}

/// A 200 whose headers include two the host refuses, a hop-by-hop
/// `connection` and a name with a space, between two it takes.
pub fn refused_headers(_req: Request) -> Result<Response> {
    Ok(Response::new(200)
        .with_header("x-before", "kept")
        .with_header("connection", "close")
        .with_header("bad name", "refused")
        .with_header("x-after", "kept")
        .with_body("the body, intact\n"))
}

/// The `{*rest}` of the path, decoded.
pub fn path(req: Request) -> Result<Response> {
    Ok(Response::new(200).with_body(req.param("rest")?.to_owned()))
}

/// The request's headers as a JSON object; repeated names are joined
/// with `, `.
pub fn headers(req: Request) -> Result<Response> {
    let mut object = Map::new();
    for (name, value) in &req.headers {
        let text = String::from_utf8_lossy(value).into_owned();
        let joined = match object.remove(name) {
            Some(Value::String(before)) => format!("{before}, {text}"),
            _ => text,
        };
        object.insert(name.to_ascii_lowercase(), Value::String(joined));
    }
    Response::json(200, &object)
}

/// Every config value, as a JSON object.
pub fn config_all(_req: Request) -> Result<Response> {
    let values: Map<String, Value> = config::all()
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    Response::json(200, &values)
}

/// One config value, as text.
pub fn config_get(req: Request) -> Result<Response> {
    match config::get(req.param("key")?) {
        Some(value) => Ok(Response::new(200).with_body(value)),
        None => Err(Error::not_found("no such config key")),
    }
}

/// Logs the body at info level.
pub fn log_line(req: Request) -> Result<Response> {
    log::info(&String::from_utf8_lossy(&req.body));
    Ok(Response::new(204))
}

/// Prints `line` `times` times (default 1) to `stream` (`stdout`, the
/// default, or `stderr`), for tests of how the host captures guest output;
/// with `partial=1`, without the newline (flushed, so the host has it).
pub fn print(req: Request) -> Result<Response> {
    let line = req.query_param("line").unwrap_or_default();
    let times: u64 = match req.query_param("times") {
        Some(times) => times
            .parse()
            .map_err(|_| Error::bad_request("times must be a number"))?,
        None => 1,
    };
    let to_stderr = match req.query_param("stream").as_deref() {
        None | Some("stdout") => false,
        Some("stderr") => true,
        Some(other) => {
            return Err(Error::bad_request(format!(
                "stream must be stdout or stderr, not `{other}`"
            )));
        }
    };
    let partial = req.query_param("partial").as_deref() == Some("1");
    for _ in 0..times {
        match (to_stderr, partial) {
            (true, false) => eprintln!("{line}"),
            (false, false) => println!("{line}"),
            (true, true) => eprint!("{line}"),
            (false, true) => {
                use std::io::Write as _;
                print!("{line}");
                let _ = std::io::stdout().flush();
            }
        }
    }
    Ok(Response::new(204))
}

/// Requests and events this instance served, counted in its own memory,
/// not in the store: a fresh instance always answers 1, a warm one counts
/// on.
static SERVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts one more request or event served by this instance; the new count.
pub fn count_served() -> u64 {
    SERVED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
}

/// Counts this request with the others this instance served, and says how
/// many times this instance built its routes: `{"value": n, "routes_built": m}`.
pub fn memory_counter(_req: Request) -> Result<Response> {
    Response::json(
        200,
        &serde_json::json!({
            "value": count_served(),
            "routes_built": ROUTES_BUILT.load(std::sync::atomic::Ordering::Relaxed),
        }),
    )
}

/// How many times this instance's `routes()` ran.
static ROUTES_BUILT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts one more building of the routes.
pub fn count_routes_built() {
    ROUTES_BUILT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}
