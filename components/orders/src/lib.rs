//! The `orders` service: places orders across `users`, `products`,
//! `inventory` and `payments`, and announces them on `order-placed`.
//!
//! Placing an order reserves its stock, charges the card (the order id is
//! the `Idempotency-Key`), commits the stock, then stores the order and
//! publishes the event in one commit. A failing step undoes the earlier
//! ones: nothing stays reserved or charged.
//!
//! Only a logged-in user places orders, for themself (an `admin` for
//! anyone), and reads their own; the gateway verifies the token, and the
//! calls this service makes carry that identity on.
//!
//! Keys in bucket `orders`:
//! - `order:{id}` → the order;
//! - `user:{user_id}:{created_at_ms:020}:{order_id}` → the order id: each
//!   user's orders in time order, so listing them reads only theirs.
//!
//! # Layout
//!
//! - `model`: orders, keys, request checks, totals and currency.
//! - `lookup`: the buyer and the prices, from `users` and `products`.
//! - `saga`: reserve, charge, commit, and the compensations.
//! - `place`: placing an order, step by step.
//! - `read`: reading orders.
//! - `store`: the bucket.

mod lookup;
mod model;
mod place;
mod read;
mod saga;
mod store;

use bazaar_sdk::Router;

fn routes() -> Router {
    Router::new()
        .post("/api/orders", place::create)
        .get("/api/orders", read::list)
        .get("/api/orders/{id}", read::get)
}

bazaar_sdk::service!(routes);
