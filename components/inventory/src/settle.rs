//! Ending a pending reservation: commit (sold), release (given back) or
//! expire (given back by the sweep). All three are one transaction that
//! requires the reservation exactly as read, so whichever comes first wins
//! and the others see its result.

use crate::model::{
    Reservation, Settle, Status, Stock, expiry_key, reservation_key, settled_outcome, stock_key,
};
use crate::reserve::no_reservation;
use crate::store::{self, with_retries};
use bazaar_sdk::kv::{self, Attempt, Bucket, Transaction};
use bazaar_sdk::{Request, Response, Result, valid_id};

/// `POST /internal/reservations/{order_id}/commit`.
pub fn commit(req: Request) -> Result<Response> {
    answer(req, Settle::Commit)
}

/// `POST /internal/reservations/{order_id}/release`.
pub fn release(req: Request) -> Result<Response> {
    answer(req, Settle::Release)
}

fn answer(req: Request, how: Settle) -> Result<Response> {
    let order_id = valid_id("order_id", req.param("order_id")?)?;
    let bucket = store::bucket()?;
    let reservation = settle(&bucket, order_id, how)?.ok_or_else(|| no_reservation(order_id))?;
    Response::json(200, &reservation)
}

/// Settles the reservation of `order_id` as `how`, retrying lost races.
/// `None` when the order has no reservation; a repeat of what already
/// happened answers the reservation unchanged; a contradiction (committing
/// a released one, releasing a committed one) is a 409.
pub fn settle(bucket: &Bucket, order_id: &str, how: Settle) -> Result<Option<Reservation>> {
    with_retries(|| attempt(bucket, order_id, how))
}

fn attempt(bucket: &Bucket, order_id: &str, how: Settle) -> Result<Attempt<Option<Reservation>>> {
    let key = reservation_key(order_id);
    let Some(stored) = bucket.get(&key)? else {
        return Ok(Attempt::Done(None));
    };
    let mut reservation: Reservation = kv::decode_json(&key, &stored)?;
    if reservation.status != Status::Pending {
        settled_outcome(reservation.status, how, order_id)?;
        return Ok(Attempt::Done(Some(reservation)));
    }
    reservation.status = how.target();
    let mut tx = Transaction::new()
        .require(bucket, &key, Some(&stored))
        .set_json(bucket, &key, &reservation)
        .delete(
            bucket,
            &expiry_key(reservation.expires_at_ms, &reservation.order_id),
        );
    // Lines were merged per product when the reservation was made, so each
    // stock key is read and written once here.
    for item in &reservation.items {
        let stock_key = stock_key(&item.product_id);
        let stock_bytes = bucket.get(&stock_key)?;
        let stock: Stock = match &stock_bytes {
            Some(bytes) => kv::decode_json(&stock_key, bytes)?,
            // Stock records are never deleted; should one vanish, settling
            // still must not strand the reservation.
            None => Stock::default(),
        };
        tx = tx
            .require(bucket, &stock_key, stock_bytes.as_deref())
            .set_json(bucket, &stock_key, &how.apply(stock, item.quantity));
    }
    tx.commit_or_retry(Some(reservation))
}
