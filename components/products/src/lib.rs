//! The `products` service: the catalogue.
//!
//! Keys in bucket `products`: `product:{id}` → the product. The list pages
//! through them in key order (`?limit=N&cursor=C`).

use bazaar_sdk::{Error, Request, Response, Result, Router, config, kv, platform};
use serde::{Deserialize, Serialize};

fn routes() -> Router {
    Router::new()
        .get("/api/products", list)
        .post("/api/products", create)
        .get("/api/products/{id}", get)
        .put("/api/products/{id}", update)
        .delete("/api/products/{id}", remove)
}

bazaar_sdk::service!(routes);

#[derive(Serialize, Deserialize)]
struct Product {
    id: String,
    name: String,
    description: String,
    price_cents: u64,
    currency: String,
    created_at: u64,
    updated_at: u64,
}

/// The fields a client sends to create or replace a product.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductInput {
    name: String,
    #[serde(default)]
    description: String,
    price_cents: u64,
    currency: String,
}

const KEY_PREFIX: &str = "product:";

fn bucket() -> Result<kv::Bucket> {
    Ok(kv::open("products")?)
}

fn key(id: &str) -> String {
    format!("{KEY_PREFIX}{id}")
}

/// Checks an input and returns it normalised.
fn validate(mut input: ProductInput) -> Result<ProductInput> {
    input.name = input.name.trim().to_owned();
    if input.name.is_empty() || input.name.chars().count() > 200 {
        return Err(Error::bad_request("name must be 1-200 characters"));
    }
    if input.description.chars().count() > 5000 {
        return Err(Error::bad_request(
            "description must be at most 5000 characters",
        ));
    }
    if input.price_cents > 10_000_000_000 {
        return Err(Error::bad_request(
            "price_cents must be at most 10000000000",
        ));
    }
    input.currency = input.currency.trim().to_ascii_uppercase();
    let accepted = config::get("currencies").unwrap_or_else(|| "USD,EUR,GBP".into());
    if !accepted.split(',').any(|c| c.trim() == input.currency) {
        return Err(Error::bad_request(format!(
            "currency must be one of {accepted}"
        )));
    }
    Ok(input)
}

/// Products in a page when the client names no `limit`.
const DEFAULT_PAGE: u32 = 50;
/// Most products in one page.
const MAX_PAGE: u32 = 200;

/// One page of the catalogue in key order, `?limit=N&cursor=C`: reads at
/// most one page from the store, never the whole catalogue. The cursor is
/// the id of the last product of the previous page.
fn list(req: Request) -> Result<Response> {
    let limit = page_limit(req.query_param("limit").as_deref())?;
    let after = req.query_param("cursor").map(|cursor| key(&cursor));
    let page = bucket()?.scan_json::<Product>(KEY_PREFIX, after.as_deref(), limit)?;
    let next_cursor = page
        .next
        .map(|last| last.strip_prefix(KEY_PREFIX).unwrap_or(&last).to_owned());
    let items: Vec<Product> = page.entries.into_iter().map(|(_, p)| p).collect();
    Response::json(
        200,
        &serde_json::json!({ "products": items, "next_cursor": next_cursor }),
    )
}

/// The page size asked for: [`DEFAULT_PAGE`] when absent, else 1..=[`MAX_PAGE`].
fn page_limit(raw: Option<&str>) -> Result<u32> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_PAGE);
    };
    match raw.trim().parse::<u32>() {
        Ok(limit) if (1..=MAX_PAGE).contains(&limit) => Ok(limit),
        _ => Err(Error::bad_request(format!(
            "limit must be a whole number from 1 to {MAX_PAGE}"
        ))),
    }
}

fn create(req: Request) -> Result<Response> {
    let input = validate(req.json()?)?;
    let now = platform::unix_time();
    let product = Product {
        id: platform::random_id(),
        name: input.name,
        description: input.description,
        price_cents: input.price_cents,
        currency: input.currency,
        created_at: now,
        updated_at: now,
    };
    bucket()?.set_json(&key(&product.id), &product)?;
    Response::json(201, &product)
}

fn get(req: Request) -> Result<Response> {
    Response::json(200, &load(&bucket()?, req.param("id")?)?)
}

fn update(req: Request) -> Result<Response> {
    let input = validate(req.json()?)?;
    let products = bucket()?;
    let mut product = load(&products, req.param("id")?)?;
    product.name = input.name;
    product.description = input.description;
    product.price_cents = input.price_cents;
    product.currency = input.currency;
    product.updated_at = platform::unix_time();
    products.set_json(&key(&product.id), &product)?;
    Response::json(200, &product)
}

fn remove(req: Request) -> Result<Response> {
    let products = bucket()?;
    let product = load(&products, req.param("id")?)?;
    products.delete(&key(&product.id))?;
    Ok(Response::new(204))
}

fn load(products: &kv::Bucket, id: &str) -> Result<Product> {
    products
        .get_json(&key(id))?
        .ok_or_else(|| Error::not_found(format!("no product with id {id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_limit_defaults_to_50_and_accepts_1_to_200() {
        assert_eq!(page_limit(None), Ok(50));
        assert_eq!(page_limit(Some("1")), Ok(1));
        assert_eq!(page_limit(Some("200")), Ok(200));
    }

    #[test]
    fn page_limit_refuses_zero_too_many_and_garbage_with_400() {
        for raw in ["0", "201", "-1", "ten", ""] {
            let status = page_limit(Some(raw)).map_err(|e| e.status);
            assert_eq!(status, Err(400), "limit `{raw}` should be a 400");
        }
    }

    #[test]
    fn keys_are_the_prefix_and_the_id() {
        assert_eq!(key("abc"), "product:abc");
    }
}
