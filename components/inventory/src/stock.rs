//! Setting and reading a product's stock: `/api/inventory/{product_id}`.

use crate::model::{MAX_QUANTITY, Stock, stock_key};
use crate::store::{self, with_retries};
use bazaar_sdk::kv::{self, Transaction};
use bazaar_sdk::{Error, Request, Response, Result, call, valid_id};
use serde::{Deserialize, Serialize};

/// The body of a PUT.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StockInput {
    quantity: u64,
}

/// A stock record as clients see it.
#[derive(Serialize)]
struct StockView<'a> {
    product_id: &'a str,
    available: u64,
    reserved: u64,
}

fn view(product_id: &str, stock: Stock) -> Result<Response> {
    Response::json(
        200,
        &StockView {
            product_id,
            available: stock.available,
            reserved: stock.reserved,
        },
    )
}

/// `PUT /api/inventory/{product_id}`: sets the units available, leaving
/// those held by pending reservations as they are.
pub fn set(req: Request) -> Result<Response> {
    let product_id = valid_id("product_id", req.param("product_id")?)?;
    let input: StockInput = req.json()?;
    if input.quantity > MAX_QUANTITY {
        return Err(Error::bad_request(format!(
            "quantity must be 0-{MAX_QUANTITY}"
        )));
    }
    require_product(product_id)?;
    let bucket = store::bucket()?;
    let key = stock_key(product_id);
    let stock = with_retries(|| {
        let stored = bucket.get(&key)?;
        let old = match &stored {
            Some(bytes) => kv::decode_json::<Stock>(&key, bytes)?,
            None => Stock::default(),
        };
        let new = Stock {
            available: input.quantity,
            reserved: old.reserved,
        };
        // Requiring the bytes read keeps a reservation that moved units
        // meanwhile from being overwritten with a stale `reserved`.
        let tx = Transaction::new()
            .require(&bucket, &key, stored.as_deref())
            .set_json(&bucket, &key, &new);
        tx.commit_or_retry(new)
    })?;
    view(product_id, stock)
}

/// `GET /api/inventory/{product_id}`: 404 until stock was first set.
pub fn get(req: Request) -> Result<Response> {
    let product_id = valid_id("product_id", req.param("product_id")?)?;
    let key = stock_key(product_id);
    let stored = store::bucket()?
        .get(&key)?
        .ok_or_else(|| Error::not_found(format!("no stock was set for product {product_id}")))?;
    view(product_id, kv::decode_json(&key, &stored)?)
}

/// Asks `products` whether the product exists: its 404 is ours, any other
/// failure means the catalogue could not be checked.
fn require_product(product_id: &str) -> Result<()> {
    let reply = call::get("products", &format!("/api/products/{product_id}"))?;
    match reply.status {
        200..=299 => Ok(()),
        404 => Err(Error::not_found(format!("no product with id {product_id}"))),
        status => Err(Error::new(
            502,
            format!("could not check product {product_id}: products answered {status}"),
        )),
    }
}
