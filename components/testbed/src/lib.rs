//! A service for the host's own tests, mounted under any first path
//! segment (`/alpha/...`, `/beta/...`) so one component can serve as several services: echoes requests, pokes at its store
//! and config, and misbehaves on purpose (traps, loops, memory bombs).

use bazaar_sdk::{Error, Request, Response, Result, Router, config, kv, log};

fn routes() -> Router {
    Router::new()
        .route(bazaar_sdk::Method::Post, "/{svc}/echo", echo)
        .get("/{svc}/bytes/{len}", bytes)
        .get("/{svc}/kv/{bucket}/{key}", kv_get)
        .put("/{svc}/kv/{bucket}/{key}", kv_put)
        .delete("/{svc}/kv/{bucket}/{key}", kv_delete)
        .post("/{svc}/counter/{key}", counter)
        .get("/{svc}/config", config_all)
        .get("/{svc}/config/{key}", config_get)
        .post("/{svc}/log", log_line)
        .get("/{svc}/trap", trap)
        .get("/{svc}/loop", spin)
        .get("/{svc}/oom", oom)
        .get("/{svc}/path/{*rest}", path)
}

bazaar_sdk::service!(routes);

/// Answers with the request's body, its headers prefixed `echo-`, and the
/// status asked for in `x-status`.
fn echo(req: Request) -> Result<Response> {
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
fn bytes(req: Request) -> Result<Response> {
    let len: usize = req
        .param("len")?
        .parse()
        .map_err(|_| Error::bad_request("len must be a number"))?;
    let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    Ok(Response::new(200).with_body(body))
}

fn kv_get(req: Request) -> Result<Response> {
    match kv::open(req.param("bucket")?)?.get(req.param("key")?)? {
        Some(value) => Ok(Response::new(200).with_body(value)),
        None => Err(Error::not_found("no such key")),
    }
}

fn kv_put(req: Request) -> Result<Response> {
    kv::open(req.param("bucket")?)?.set(req.param("key")?, &req.body)?;
    Ok(Response::new(204))
}

fn kv_delete(req: Request) -> Result<Response> {
    kv::open(req.param("bucket")?)?.delete(req.param("key")?)?;
    Ok(Response::new(204))
}

fn counter(req: Request) -> Result<Response> {
    let value = kv::open("counters")?.increment(req.param("key")?, 1)?;
    Response::json(200, &serde_json::json!({ "value": value }))
}

fn config_all(_req: Request) -> Result<Response> {
    let values: serde_json::Map<String, serde_json::Value> = config::all()
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    Response::json(200, &values)
}

fn config_get(req: Request) -> Result<Response> {
    match config::get(req.param("key")?) {
        Some(value) => Ok(Response::new(200).with_body(value)),
        None => Err(Error::not_found("no such config key")),
    }
}

fn log_line(req: Request) -> Result<Response> {
    log::info(&String::from_utf8_lossy(&req.body));
    Ok(Response::new(204))
}

fn trap(_req: Request) -> Result<Response> {
    panic!("the testbed was asked to trap");
}

fn spin(_req: Request) -> Result<Response> {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

fn oom(_req: Request) -> Result<Response> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 16 << 20]);
        std::hint::black_box(&hoard);
    }
}

fn path(req: Request) -> Result<Response> {
    Ok(Response::new(200).with_body(req.param("rest")?.to_owned()))
}
