//! Making and reading reservations: `POST /internal/reservations` and
//! `GET /internal/reservations/{order_id}`.

use crate::model::{
    Item, Reservation, Status, Stock, expiry_key, hold, merge_items, reservation_key, stock_key,
};
use crate::store::{self, with_retries};
use bazaar_sdk::kv::{self, Attempt, Bucket, Transaction};
use bazaar_sdk::{Error, Request, Response, Result, config, platform, valid_id};
use serde::Deserialize;

/// Reservation lifetime when neither the request nor the config names one.
const DEFAULT_TTL_MS: u64 = 60_000;
/// Longest lifetime a request may ask for: a week.
const MAX_TTL_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// The body of a reservation request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReservationInput {
    order_id: String,
    items: Vec<Item>,
    ttl_ms: Option<u64>,
}

/// `POST /internal/reservations`: holds every line or none, in one
/// transaction. Repeating it for the same order answers the reservation
/// made the first time (200), so a caller may retry safely.
pub fn create(req: Request) -> Result<Response> {
    let input: ReservationInput = req.json()?;
    let order_id = valid_id("order_id", &input.order_id)?;
    let items = merge_items(&input.items)?;
    let ttl_ms = match input.ttl_ms {
        Some(ttl) if ttl > MAX_TTL_MS => {
            return Err(Error::bad_request(format!(
                "ttl_ms must be at most {MAX_TTL_MS}"
            )));
        }
        Some(ttl) => ttl,
        None => config::get_or("reservation_ttl_ms", DEFAULT_TTL_MS),
    };
    let bucket = store::bucket()?;
    let (status, reservation) = with_retries(|| attempt(&bucket, order_id, &items, ttl_ms))?;
    Response::json(status, &reservation)
}

/// One try: read the reservation and every stock record, then commit only
/// if none of them changed meanwhile.
fn attempt(
    bucket: &Bucket,
    order_id: &str,
    items: &[Item],
    ttl_ms: u64,
) -> Result<Attempt<(u16, Reservation)>> {
    let key = reservation_key(order_id);
    if let Some(stored) = bucket.get(&key)? {
        return Ok(Attempt::Done((200, kv::decode_json(&key, &stored)?)));
    }
    let now = platform::unix_time_ms();
    let reservation = Reservation {
        order_id: order_id.to_owned(),
        items: items.to_vec(),
        status: Status::Pending,
        expires_at_ms: now.saturating_add(ttl_ms),
        created_at_ms: now,
    };
    let mut tx = Transaction::new();
    for item in items {
        let stock_key = stock_key(&item.product_id);
        let stored = bucket.get(&stock_key)?.ok_or_else(|| {
            Error::not_found(format!("no stock was set for product {}", item.product_id))
        })?;
        let stock: Stock = kv::decode_json(&stock_key, &stored)?;
        let held = hold(stock, &item.product_id, item.quantity)?;
        tx = tx
            .require(bucket, &stock_key, Some(&stored))
            .set_json(bucket, &stock_key, &held);
    }
    let tx = tx
        .require_absent(bucket, &key)
        .set_json(bucket, &key, &reservation)
        .set_json(
            bucket,
            &expiry_key(reservation.expires_at_ms, order_id),
            order_id,
        );
    // A conflict on the reservation key means the same order raced us:
    // the retry reads its reservation and answers it.
    tx.commit_or_retry((201, reservation))
}

/// `GET /internal/reservations/{order_id}`.
pub fn get(req: Request) -> Result<Response> {
    let order_id = valid_id("order_id", req.param("order_id")?)?;
    let key = reservation_key(order_id);
    let stored = store::bucket()?
        .get(&key)?
        .ok_or_else(|| no_reservation(order_id))?;
    Response::json(200, &kv::decode_json::<Reservation>(&key, &stored)?)
}

/// The 404 for an order without a reservation.
pub fn no_reservation(order_id: &str) -> Error {
    Error::not_found(format!("no reservation for order {order_id}"))
}
