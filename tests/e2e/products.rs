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
    let mut names: Vec<&str> = list["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["Apron", "Mug"], "the list should hold both");

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_is_listed_in_pages_that_never_skip_or_repeat() {
    let host = TestHost::start().await;
    let mut created = Vec::new();
    for i in 0..7 {
        let product: Value = host
            .send_json(
                Method::POST,
                "/api/products",
                &json!({ "name": format!("Item {i}"), "price_cents": 100 + i, "currency": "USD" }),
            )
            .await
            .json()
            .await
            .unwrap();
        created.push(product["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0.. {
        assert!(page < 10, "paging should end");
        let path = match &cursor {
            Some(c) => format!("/api/products?limit=3&cursor={c}"),
            None => "/api/products?limit=3".to_owned(),
        };
        let body: Value = host.get(&path).await.json().await.unwrap();
        let items = body["products"].as_array().unwrap();
        assert!(items.len() <= 3, "a page holds at most the limit");
        seen.extend(items.iter().map(|p| p["id"].as_str().unwrap().to_owned()));
        // A product created between pages sorts somewhere; pages stay whole.
        if page == 0 {
            let extra: Value = host
                .send_json(
                    Method::POST,
                    "/api/products",
                    &json!({ "name": "Late", "price_cents": 1, "currency": "USD" }),
                )
                .await
                .json()
                .await
                .unwrap();
            created.push(extra["id"].as_str().unwrap().to_owned());
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let unique: std::collections::BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no product twice: {seen:?}");
    for id in &created[..7] {
        assert!(
            seen.contains(id),
            "every product that existed throughout is listed"
        );
    }
    assert_eq!(host.get("/api/products?limit=0").await.status(), 400);
    host.stop().await;
}
