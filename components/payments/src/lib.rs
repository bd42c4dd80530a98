//! The `payments` service: a simulated card processor.
//!
//! Card `4000000000000002` is declined; every other valid card succeeds.
//! Only a card's last four digits are kept: the full number is checked and
//! dropped within the request, and never stored, logged or quoted in an
//! error.
//!
//! Keys in bucket `payments`:
//! - `payment:{id}` → the payment;
//! - `idem:{key}` → what an `Idempotency-Key` stands for:
//!   `{"payment_id", "fingerprint", "status_code"}`, plus `"voided": true`
//!   once voided (alone, as a tombstone, when the void came first).
//!
//! A payment belongs to the verified user who made it (`x-bazaar-user`,
//! which a call from `orders` carries on from the order's user): only they,
//! an `admin`, or another service may read or refund it. A client must be
//! logged in to charge.
//!
//! `/internal/...` is not among the gateway routes: only other services
//! reach it, by calling `http://payments.internal/...`.
//!
//! # Layout
//!
//! - `card`: card checks (digits, length, Luhn) and the last four digits.
//! - `model`: records, keys, fingerprints and request checks.
//! - `store`: the bucket and the retry loop.
//! - `charge`: charges, idempotent by key.
//! - `settle`: reads, refunds and voids.

mod card;
mod charge;
mod model;
mod settle;
mod store;

use bazaar_sdk::{Error, Request, Response, Result, Router};

fn routes() -> Router {
    Router::new()
        .post("/api/payments", charge::create)
        .get("/api/payments/{id}", settle::get)
        .post("/api/payments/{id}/refund", settle::refund)
        .post("/internal/payments/void", internal_void)
}

bazaar_sdk::service!(routes);

/// Voids are for service calls only. The gateway never routes
/// `/internal/...` here; the caller check also covers a gateway route that
/// someone widens by mistake.
fn internal_void(req: Request) -> Result<Response> {
    if req.caller().is_none() {
        return Err(Error::forbidden("this endpoint is for other services only"));
    }
    settle::void(req)
}
