//! A service for the host's own tests, mounted under any first path
//! segment (`/alpha/...`, `/beta/...`) so one component can serve as several
//! services: it echoes requests, pokes at its store, events, config and the
//! network, and misbehaves on purpose (traps, loops, memory bombs, slow
//! bodies).
//!
//! # Layout
//!
//! - `basic`: echo, bytes, paths, headers, config, logs and prints.
//! - `store`: key-value reads and writes, scans, compare-and-swap,
//!   transactions and publishing.
//! - `net`: outbound HTTP, service calls and raw sockets.
//! - `hostile`: traps, loops, memory bombs and growth, deep recursion, huge
//!   headers, resource floods, sleeps, and slow or endless bodies.
//! - `events`: the event handler, steered by data, and its record.

mod basic;
mod events;
mod hostile;
mod net;
mod store;

use bazaar_sdk::{Method, Router};

fn routes() -> Router {
    basic::count_routes_built();
    Router::new()
        .route(Method::Post, "/{svc}/echo", basic::echo)
        .get("/{svc}/bytes/{len}", basic::bytes)
        .get("/{svc}/path/{*rest}", basic::path)
        .get("/{svc}/headers", basic::headers)
        .get("/{svc}/refused-headers", basic::refused_headers)
        .get("/{svc}/memory-counter", basic::memory_counter)
        .get("/{svc}/config", basic::config_all)
        .get("/{svc}/config/{key}", basic::config_get)
        .post("/{svc}/log", basic::log_line)
        .get("/{svc}/print", basic::print)
        .get("/{svc}/kv/{bucket}/{key}", store::kv_get)
        .put("/{svc}/kv/{bucket}/{key}", store::kv_put)
        .delete("/{svc}/kv/{bucket}/{key}", store::kv_delete)
        .post("/{svc}/counter/{key}", store::counter)
        .post("/{svc}/cas/{bucket}/{key}", store::cas)
        .get("/{svc}/scan/{bucket}", store::scan)
        .post("/{svc}/tx/{bucket}", store::tx)
        .post("/{svc}/publish/{topic}", store::publish)
        .get("/{svc}/events", events::list)
        .get("/{svc}/fetch", net::fetch)
        .get("/{svc}/send-slowly", net::send_slowly)
        .get("/{svc}/call/{service}/{*path}", net::call)
        .post("/{svc}/call/{service}/{*path}", net::call)
        .put("/{svc}/call/{service}/{*path}", net::call)
        .delete("/{svc}/call/{service}/{*path}", net::call)
        .get("/{svc}/socket", net::socket)
        .get("/{svc}/trap", hostile::trap)
        .get("/{svc}/trap-mid-body/{ms}", hostile::trap_mid_body)
        .get("/{svc}/loop", hostile::spin)
        .get("/{svc}/oom", hostile::oom)
        .get("/{svc}/sleep/{ms}", hostile::sleep)
        .get("/{svc}/burn/{ms}", hostile::burn)
        .get("/{svc}/stream/{chunks}/{ms}", hostile::stream)
        .get("/{svc}/grow/{step_mib}", hostile::grow)
        .get("/{svc}/recurse", hostile::recurse)
        .get("/{svc}/huge-header/{kib}", hostile::huge_header)
        .get("/{svc}/fields/{n}", hostile::fields)
        .get("/{svc}/endless", hostile::endless)
        .get("/{svc}/slow-body", hostile::slow_body)
}

bazaar_sdk::service!(routes, events = events::handle);
