//! `POST /api/orders`: check, price, reserve, charge, commit, record.
//!
//! Each step runs only when the ones before it succeeded, and a failing
//! step undoes the earlier ones (see `saga`), so an order either ends
//! placed, paid and recorded, or leaves nothing reserved or charged.

use crate::lookup::{self, Priced};
use crate::model::{Order, OrderInput, OrderItem, order_key, user_index_key, validate};
use crate::saga;
use crate::store;
use bazaar_sdk::kv::Transaction;
use bazaar_sdk::{Error, Request, Response, Result, log, platform};
use serde::Serialize;

/// The `order-placed` event: what notifications and other subscribers need.
#[derive(Serialize)]
struct OrderPlaced<'a> {
    order_id: &'a str,
    user_id: &'a str,
    items: &'a [OrderItem],
    total_cents: u64,
    currency: &'a str,
    payment_id: &'a str,
}

/// Places an order; 201 with it. Needs a logged-in caller (401), who
/// orders for themself unless they are an `admin` (403).
pub fn create(req: Request) -> Result<Response> {
    req.require_user()?;
    let input: OrderInput = req.json()?;
    validate(&input)?;
    req.require_self_or_admin(&input.user_id)?;
    lookup::require_known_user(&input.user_id)?;
    let Priced {
        items,
        total_cents,
        currency,
    } = lookup::price(&input.items)?;
    let order_id = platform::random_id();
    saga::reserve(&order_id, &input.items)?;
    let paid = saga::pay(&order_id, total_cents, &currency, &input.card)?;
    saga::commit(&order_id, &paid.id)?;
    let created_at_ms = platform::unix_time_ms();
    let order = Order {
        id: order_id,
        user_id: input.user_id,
        items,
        total_cents,
        currency,
        status: "placed".to_owned(),
        payment_id: paid.id,
        card_last4: paid.card_last4,
        created_at: created_at_ms / 1000,
    };
    if let Err(error) = record(&order, created_at_ms) {
        // The stock is already sold and cannot be un-committed; the money
        // at least goes back.
        saga::refund(&order.payment_id);
        return Err(Error::internal(format!(
            "recording order {} failed after payment: {error}",
            order.id
        )));
    }
    log::info(&format!(
        "order {} placed by user {}: {} {}",
        order.id, order.user_id, order.total_cents, order.currency
    ));
    Response::json(201, &order)
}

/// Stores the order and its place in the user's index and announces it,
/// in one commit: the event goes out if and only if the order is stored.
fn record(order: &Order, created_at_ms: u64) -> std::result::Result<(), String> {
    let bucket = store::bucket().map_err(|e| e.message)?;
    let key = order_key(&order.id);
    let event = OrderPlaced {
        order_id: &order.id,
        user_id: &order.user_id,
        items: &order.items,
        total_cents: order.total_cents,
        currency: &order.currency,
        payment_id: &order.payment_id,
    };
    Transaction::new()
        .require_absent(&bucket, &key)
        .set_json(&bucket, &key, order)
        .set_json(
            &bucket,
            &user_index_key(&order.user_id, created_at_ms, &order.id),
            &order.id,
        )
        .publish_json("order-placed", &event)
        .commit()
        .map(drop)
        .map_err(|e| e.to_string())
}
