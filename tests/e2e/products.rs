use crate::support::TestHost;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_crud() {
    let host = TestHost::start().await;
    let created = host
        .send_json(
            Method::POST,
            "/api/products",
            &json!({ "name": " Mug ", "price_cents": 1299, "currency": "usd", "description": "Holds tea" }),
        )
        .await;
    assert_eq!(created.status(), 201);
    let product: Value = created.json().await.unwrap();
    let id = product["id"].as_str().unwrap().to_owned();
    assert_eq!(product["name"], "Mug");
    assert_eq!(product["currency"], "USD");

    host.send_json(
        Method::POST,
        "/api/products",
        &json!({ "name": "Apron", "price_cents": 2500, "currency": "EUR" }),
    )
    .await;
    let list: Value = host.get("/api/products").await.json().await.unwrap();
    let names: Vec<&str> = list["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Apron", "Mug"],
        "the list should hold both, sorted by name"
    );

    let replaced = host
        .send_json(
            Method::PUT,
            &format!("/api/products/{id}"),
            &json!({ "name": "Big mug", "price_cents": 1599, "currency": "GBP" }),
        )
        .await;
    assert_eq!(replaced.status(), 200);
    let fetched: Value = host
        .get(&format!("/api/products/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetched["name"], "Big mug");
    assert_eq!(fetched["price_cents"], 1599);

    let deleted = host
        .http
        .delete(host.url(&format!("/api/products/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(host.get(&format!("/api/products/{id}")).await.status(), 404);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_products_are_refused() {
    let host = TestHost::start().await;
    for bad in [
        json!({ "name": "", "price_cents": 100, "currency": "USD" }),
        json!({ "name": "Mug", "price_cents": -5, "currency": "USD" }),
        json!({ "name": "Mug", "price_cents": 12.5, "currency": "USD" }),
        json!({ "name": "Mug", "price_cents": 100, "currency": "XYZ" }),
        json!({ "name": "Mug", "currency": "USD" }),
        json!({ "name": "Mug", "price_cents": 100, "currency": "USD", "colour": "red" }),
    ] {
        let response = host.send_json(Method::POST, "/api/products", &bad).await;
        assert_eq!(response.status(), 400, "{bad} should be refused");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].is_string(), "errors should be JSON: {body}");
    }
    let list: Value = host.get("/api/products").await.json().await.unwrap();
    assert_eq!(
        list["products"].as_array().unwrap().len(),
        0,
        "nothing invalid was stored"
    );
    host.stop().await;
}
