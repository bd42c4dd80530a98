//! The `inventory` service: stock per product, and reservations that hold
//! stock for an order until it is committed (sold), released or expired.
//!
//! Keys in bucket `inventory`:
//! - `stock:{product_id}` → `{"available", "reserved"}`;
//! - `reservation:{order_id}` → the reservation;
//! - `expiry:{expires_at_ms:020}:{order_id}` → the order id, while pending:
//!   an index in time order that the expiry sweep reads from the start.
//!
//! Every change is a transaction that requires the exact bytes it read and
//! is retried when it loses a race, so concurrent orders never oversell.
//! `/internal/...` is not among the gateway routes: only other services
//! reach it, by calling `http://inventory.internal/...`.
//!
//! # Layout
//!
//! - `model`: records, key formats and the pure stock rules.
//! - `store`: the bucket and the retry loop.
//! - `stock`: set and read stock.
//! - `reserve`: make and read reservations.
//! - `settle`: commit, release and expire reservations.
//! - `expiry`: the sweep that runs before every request.

mod expiry;
mod model;
mod reserve;
mod settle;
mod stock;
mod store;

use bazaar_sdk::{Error, Request, Response, Result, Router};

type Handler = fn(Request) -> Result<Response>;

fn routes() -> Router {
    Router::new()
        .put("/api/inventory/{product_id}", swept(stock::set))
        .get("/api/inventory/{product_id}", swept(stock::get))
        .post("/internal/reservations", internal(reserve::create))
        .get("/internal/reservations/{order_id}", internal(reserve::get))
        .post(
            "/internal/reservations/{order_id}/commit",
            internal(settle::commit),
        )
        .post(
            "/internal/reservations/{order_id}/release",
            internal(settle::release),
        )
}

bazaar_sdk::service!(routes);

/// Runs the expiry sweep before `handler`, so what it reads or changes
/// already reflects every reservation whose time is up.
fn swept(handler: Handler) -> impl Fn(Request) -> Result<Response> {
    move |req| {
        expiry::sweep();
        handler(req)
    }
}

/// [`swept`], for service calls only. The gateway never routes
/// `/internal/...` here; the caller check also covers a gateway route that
/// someone widens by mistake.
fn internal(handler: Handler) -> impl Fn(Request) -> Result<Response> {
    let handler = swept(handler);
    move |req| {
        if req.caller().is_none() {
            return Err(Error::forbidden("this endpoint is for other services only"));
        }
        handler(req)
    }
}
