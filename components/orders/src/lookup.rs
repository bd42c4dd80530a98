//! Checking the buyer and pricing the lines with the `users` and
//! `products` services, before anything is reserved or charged.

use crate::model::{ItemInput, OrderItem, single_currency, total_cents};
use bazaar_sdk::call::{self, Reply};
use bazaar_sdk::{Error, Result};
use serde::Deserialize;

/// What an order needs of a product; the rest of its JSON is ignored.
#[derive(Deserialize)]
struct ProductInfo {
    id: String,
    name: String,
    price_cents: u64,
    currency: String,
}

/// The lines priced, their total and their one currency.
pub struct Priced {
    /// The lines, in the order sent, with names and unit prices.
    pub items: Vec<OrderItem>,
    /// Σ unit price × quantity, in cents.
    pub total_cents: u64,
    /// The currency every line shares.
    pub currency: String,
}

/// A 422 unless `users` knows `user_id`.
pub fn require_known_user(user_id: &str) -> Result<()> {
    let reply = call::get("users", &format!("/api/users/{user_id}"))?;
    match reply.status {
        200..=299 => Ok(()),
        404 => Err(Error::new(422, format!("no user with id {user_id}"))),
        _ => Err(unavailable("users", &reply)),
    }
}

/// Prices `items` at the products' current prices, asking `products` once
/// per distinct product: a 422 if one does not exist or the currencies
/// differ.
pub fn price(items: &[ItemInput]) -> Result<Priced> {
    let mut products: Vec<ProductInfo> = Vec::new();
    for item in items {
        if !products.iter().any(|p| p.id == item.product_id) {
            products.push(product(&item.product_id)?);
        }
    }
    let currency = single_currency(products.iter().map(|p| p.currency.as_str()))?;
    let mut lines = Vec::with_capacity(items.len());
    for item in items {
        let product = products
            .iter()
            .find(|p| p.id == item.product_id)
            .ok_or_else(|| Error::internal("a priced product went missing"))?;
        lines.push(OrderItem {
            product_id: item.product_id.clone(),
            name: product.name.clone(),
            quantity: item.quantity,
            unit_price_cents: product.price_cents,
        });
    }
    Ok(Priced {
        total_cents: total_cents(&lines)?,
        items: lines,
        currency,
    })
}

fn product(product_id: &str) -> Result<ProductInfo> {
    let reply = call::get("products", &format!("/api/products/{product_id}"))?;
    match reply.status {
        200..=299 => {
            let mut product: ProductInfo = reply.json()?;
            // Keyed by the id asked for, whatever the body says.
            product.id = product_id.to_owned();
            Ok(product)
        }
        404 => Err(Error::new(422, format!("no product with id {product_id}"))),
        _ => Err(unavailable("products", &reply)),
    }
}

/// A callee's unexpected failure: 503 or 504 pass on as they are (the
/// client may retry), anything else is a 502.
fn unavailable(service: &str, reply: &Reply) -> Error {
    let status = match reply.status {
        503 | 504 => reply.status,
        _ => 502,
    };
    Error::new(
        status,
        format!("{service} is unavailable (it answered {})", reply.status),
    )
}
