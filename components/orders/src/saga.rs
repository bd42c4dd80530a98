//! The steps of placing an order that change other services — reserve
//! stock, charge, commit the stock — and the compensations that undo them
//! when a later step fails, so nothing stays reserved or charged.
//!
//! Every step is keyed by the order id (the reservation's id, the charge's
//! `Idempotency-Key`), so a compensation can name what it undoes even when
//! the step's own answer never arrived.

use crate::model::ItemInput;
use bazaar_sdk::call::{self, Reply};
use bazaar_sdk::{Error, Method, Result, log, platform};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

/// Tries of a compensation that meets a transport failure or a 5xx.
const COMPENSATION_TRIES: u32 = 3;
/// Pause between those tries.
const COMPENSATION_PAUSE: Duration = Duration::from_millis(50);

/// What an order keeps of its payment.
#[derive(Deserialize)]
pub struct Paid {
    /// The payment's id.
    pub id: String,
    /// The card's last four digits, for the order.
    pub card_last4: String,
}

/// Holds stock for every line (all or none). Not enough stock, or a product
/// never stocked, is a 409 with inventory's message; any other failure is a
/// 503, after releasing whatever may have been held.
pub fn reserve(order_id: &str, items: &[ItemInput]) -> Result<()> {
    let body = json!({ "order_id": order_id, "items": items });
    let reply = match call::post_json("inventory", "/internal/reservations", &body) {
        Ok(reply) => reply,
        Err(error) => {
            log::warn(&format!(
                "reserving stock for order {order_id}: {}",
                error.message
            ));
            // The reservation may have been made before the call failed.
            release(order_id);
            return Err(Error::new(503, "inventory is unavailable"));
        }
    };
    match reply.status {
        200..=299 => Ok(()),
        404 | 409 => Err(Error::conflict(reply.error_message())),
        status => {
            log::warn(&format!(
                "reserving stock for order {order_id}: inventory answered {status}"
            ));
            release(order_id);
            Err(Error::new(503, "inventory is unavailable"))
        }
    }
}

/// Charges the card with the order id as `Idempotency-Key`. A decline is a
/// 402 after releasing the stock; any other failure voids the charge (it
/// may have gone through unseen), releases the stock, and is a 502, 503 or
/// 504 "payment failed: ...".
pub fn pay(order_id: &str, total_cents: u64, currency: &str, card: &Value) -> Result<Paid> {
    let body = json!({
        "order_id": order_id,
        "amount_cents": total_cents,
        "currency": currency,
        "card": card,
    });
    let body = serde_json::to_vec(&body).map_err(Error::internal)?;
    let headers = [
        ("idempotency-key".to_owned(), order_id.as_bytes().to_vec()),
        ("content-type".to_owned(), b"application/json".to_vec()),
    ];
    let failure = match call::send_with("payments", &Method::Post, "/api/payments", &headers, &body)
    {
        Ok(reply) if reply.is_success() => match reply.json::<Paid>() {
            Ok(paid) => return Ok(paid),
            Err(error) => Error::new(502, error.message),
        },
        Ok(reply) if reply.status == 402 => {
            release(order_id);
            return Err(Error::new(402, reply.error_message()));
        }
        Ok(reply) => {
            let status = match reply.status {
                503 | 504 => reply.status,
                _ => 502,
            };
            Error::new(status, reply.error_message())
        }
        Err(error) => Error::from(error),
    };
    log::warn(&format!(
        "charging order {order_id} failed ({} {}); voiding and releasing",
        failure.status, failure.message
    ));
    void(order_id);
    release(order_id);
    Err(Error::new(
        failure.status,
        format!("payment failed: {}", failure.message),
    ))
}

/// Marks the stock of a paid order sold. On failure the payment is
/// refunded and the stock released, and the order fails with a 502.
pub fn commit(order_id: &str, payment_id: &str) -> Result<()> {
    let path = format!("/internal/reservations/{order_id}/commit");
    let problem = match call::post("inventory", &path) {
        Ok(reply) if reply.is_success() => return Ok(()),
        Ok(reply) => reply.error_message(),
        Err(error) => error.message,
    };
    log::warn(&format!(
        "committing stock of order {order_id} failed ({problem}); refunding and releasing"
    ));
    refund(payment_id);
    release(order_id);
    Err(Error::new(
        502,
        format!("could not commit the stock reservation: {problem}"),
    ))
}

/// Gives back the stock held for `order_id`, best effort. A 404 (nothing
/// was held) or 409 (it was sold) ends the attempt: there is nothing to undo.
pub fn release(order_id: &str) {
    let path = format!("/internal/reservations/{order_id}/release");
    compensate("release the stock", order_id, || {
        call::post("inventory", &path)
    });
}

/// Refunds `payment_id`, best effort.
pub fn refund(payment_id: &str) {
    let path = format!("/api/payments/{payment_id}/refund");
    compensate("refund payment", payment_id, || {
        call::post("payments", &path)
    });
}

/// Voids any charge made with the order id as its key, best effort: a
/// succeeded one is refunded, and one still on its way is refused.
fn void(order_id: &str) {
    let body = json!({ "idempotency_key": order_id });
    compensate("void the charge", order_id, || {
        call::post_json("payments", "/internal/payments/void", &body)
    });
}

/// Runs a compensation, trying again on a transport failure or a 5xx; a
/// failure in the end is logged loudly, as it needs a person.
fn compensate(what: &str, id: &str, mut send: impl FnMut() -> Result<Reply>) {
    let mut last = String::new();
    for try_number in 1..=COMPENSATION_TRIES {
        match send() {
            Ok(reply) if reply.status < 500 => return,
            Ok(reply) => last = format!("answered {}: {}", reply.status, reply.error_message()),
            Err(error) => last = error.message,
        }
        if try_number < COMPENSATION_TRIES {
            platform::sleep(COMPENSATION_PAUSE);
        }
    }
    log::error(&format!("could not {what} for {id}: {last}"));
}
