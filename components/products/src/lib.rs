//! The `products` service: the catalogue.
//!
//! Keys in bucket `products`: `product:{id}` → the product.

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

fn list(_req: Request) -> Result<Response> {
    let products = bucket()?;
    let keys: Vec<String> = products
        .keys()?
        .into_iter()
        .filter(|k| k.starts_with(KEY_PREFIX))
        .collect();
    let mut items: Vec<Product> = products.get_many_json(&keys)?;
    items.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    Response::json(200, &serde_json::json!({ "products": items }))
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
