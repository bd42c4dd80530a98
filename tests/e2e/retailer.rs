//! The whole retailer: users, products, inventory, payments, orders and
//! notifications working together through calls and events.

use crate::support::{self, BinaryHost, TestHost, wasm_bytes, with_custom_section};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const GOOD_CARD: &str = "4242424242424242";
const DECLINED_CARD: &str = "4000000000000002";

/// The six services, as in the demo, with cheap Argon2 and short
/// reservations, plus the testbed as `probe` (it may call inventory's
/// internal routes) and a debug route on notifications for fault tests.
pub const RETAILER: &str = r#"
[services.users]
component = "users.wasm"
routes = ["/api/users", "/api/users/login", "/api/users/{*rest}"]
publishes = ["user-registered"]
issues_tokens = true
token_roles = ["customer"]
access = "authenticated"
[[services.users.rules]]
routes = ["/api/users", "/api/users/login"]
methods = ["POST"]
access = "public"
[services.users.config]
argon2_memory_kib = 256
argon2_iterations = 1

[services.products]
component = "products.wasm"
routes = ["/api/products", "/api/products/{*rest}"]
[[services.products.rules]]
methods = ["POST", "PUT", "DELETE"]
access = "role:admin"

[services.inventory]
component = "inventory.wasm"
routes = ["/api/inventory/{*rest}"]
calls = ["products"]
[[services.inventory.rules]]
methods = ["PUT"]
access = "role:admin"

[services.payments]
component = "payments.wasm"
routes = ["/api/payments", "/api/payments/{*rest}"]
access = "authenticated"

[services.orders]
component = "orders.wasm"
routes = ["/api/orders", "/api/orders/{*rest}"]
calls = ["users", "products", "inventory", "payments"]
publishes = ["order-placed"]
access = "authenticated"

[services.notifications]
component = "notifications.wasm"
routes = ["/api/notifications", "/notifications-debug/{*rest}"]
subscribes = ["user-registered", "order-placed"]
access = "authenticated"

[services.probe]
component = "testbed.wasm"
routes = ["/probe/{*rest}"]
calls = ["inventory"]
"#;

/// A host running the retailer with room for 50 concurrent orders.
async fn retailer() -> TestHost {
    TestHost::start_edited(support::temp_dir(), RETAILER, "", |text| {
        text.replace("max_instances = 64", "max_instances = 256")
    })
    .await
}

/// A logged-in customer.
#[derive(Clone)]
pub struct Customer {
    /// The user id.
    pub id: String,
    /// The bearer token login returned.
    pub token: String,
}

async fn call(
    host: &TestHost,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = host.http.request(method, host.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post(host: &TestHost, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    call(host, Method::POST, path, token, Some(body)).await
}

async fn get_json(host: &TestHost, path: &str, token: Option<&str>) -> (u16, Value) {
    call(host, Method::GET, path, token, None).await
}

/// An admin token, from the admin API as an operator gets one.
pub async fn admin_token(host: &TestHost) -> String {
    let issued = host
        .http
        .post(host.admin_url("/auth/tokens"))
        .bearer_auth(support::TOKEN)
        .json(&json!({ "subject": "ops", "roles": ["admin"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(issued.status(), 200);
    issued.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Registers `name`, logs in, and returns the customer.
pub async fn register(host: &TestHost, name: &str) -> Customer {
    let email = format!("{name}@example.com");
    let (status, user) = post(
        host,
        "/api/users",
        None,
        json!({ "username": name, "email": email, "password": "correct horse" }),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    let (status, login) = post(
        host,
        "/api/users/login",
        None,
        json!({ "email": email, "password": "correct horse" }),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    Customer {
        id: user["id"].as_str().unwrap().to_owned(),
        token: login["token"].as_str().unwrap().to_owned(),
    }
}

/// A product priced `price_cents` USD with `stock` units, made by an admin.
pub async fn stocked_product(host: &TestHost, name: &str, price_cents: u64, stock: u64) -> String {
    let admin = admin_token(host).await;
    let (status, product) = post(
        host,
        "/api/products",
        Some(&admin),
        json!({ "name": name, "price_cents": price_cents, "currency": "USD" }),
    )
    .await;
    assert_eq!(status, 201, "{product}");
    let id = product["id"].as_str().unwrap().to_owned();
    let (status, stocked) = call(
        host,
        Method::PUT,
        &format!("/api/inventory/{id}"),
        Some(&admin),
        Some(json!({ "quantity": stock })),
    )
    .await;
    assert_eq!(status, 200, "{stocked}");
    id
}

async fn stock(host: &TestHost, product: &str) -> (u64, u64) {
    let (status, stock) = get_json(host, &format!("/api/inventory/{product}"), None).await;
    assert_eq!(status, 200, "{stock}");
    (
        stock["available"].as_u64().unwrap(),
        stock["reserved"].as_u64().unwrap(),
    )
}

/// `customer` orders `quantity` of `product`, paying with `card`.
pub async fn order(
    host: &TestHost,
    customer: &Customer,
    product: &str,
    quantity: u64,
    card: &str,
) -> (u16, Value) {
    post(
        host,
        "/api/orders",
        Some(&customer.token),
        json!({ "user_id": customer.id, "items": [{ "product_id": product, "quantity": quantity }], "card": card }),
    )
    .await
}

/// The notifications of `customer`, once there are at least `count`.
async fn notifications(host: &TestHost, customer: &Customer, count: usize) -> Vec<Value> {
    support::eventually(
        WAIT,
        &format!("{count} notifications for {}", customer.id),
        || async {
            let path = format!("/api/notifications?user={}", customer.id);
            let (_, body) = get_json(host, &path, Some(&customer.token)).await;
            let list = body["notifications"].as_array()?.clone();
            (list.len() >= count).then_some(list)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_to_order_confirmation() {
    let host = retailer().await;
    let user = register(&host, "dana").await;
    let welcome = notifications(&host, &user, 1).await;
    assert_eq!(welcome[0]["kind"], "welcome");
    assert!(welcome[0]["message"].as_str().unwrap().contains("dana"));

    let mug = stocked_product(&host, "Mug", 1299, 5).await;
    let (status, placed) = order(&host, &user, &mug, 2, GOOD_CARD).await;
    assert_eq!(status, 201, "{placed}");
    assert_eq!(placed["total_cents"], 2598);
    assert_eq!(placed["card_last4"], "4242");
    assert!(
        !placed.to_string().contains(GOOD_CARD),
        "the card never comes back whole"
    );
    assert_eq!(
        stock(&host, &mug).await,
        (3, 0),
        "stock went down, nothing left reserved"
    );

    let payment_id = placed["payment_id"].as_str().unwrap();
    let (status, payment) = get_json(
        &host,
        &format!("/api/payments/{payment_id}"),
        Some(&user.token),
    )
    .await;
    assert_eq!(status, 200, "{payment}");
    assert_eq!(
        (payment["status"].as_str(), payment["amount_cents"].as_u64()),
        (Some("succeeded"), Some(2598))
    );

    let order_id = placed["id"].as_str().unwrap();
    let (status, fetched) =
        get_json(&host, &format!("/api/orders/{order_id}"), Some(&user.token)).await;
    assert_eq!((status, &fetched["id"]), (200, &placed["id"]));
    let (_, mine) = get_json(
        &host,
        &format!("/api/orders?user={}", user.id),
        Some(&user.token),
    )
    .await;
    assert_eq!(mine["orders"][0]["id"], placed["id"]);

    // Another customer sees none of it; nobody without a token does.
    let other = register(&host, "mallory").await;
    let theirs = format!("/api/orders?user={}", user.id);
    assert_eq!(get_json(&host, &theirs, Some(&other.token)).await.0, 403);
    assert_eq!(
        get_json(
            &host,
            &format!("/api/orders/{order_id}"),
            Some(&other.token)
        )
        .await
        .0,
        403
    );
    assert_eq!(
        get_json(
            &host,
            &format!("/api/payments/{payment_id}"),
            Some(&other.token)
        )
        .await
        .0,
        403
    );
    assert_eq!(
        get_json(
            &host,
            &format!("/api/notifications?user={}", user.id),
            Some(&other.token)
        )
        .await
        .0,
        403
    );
    assert_eq!(get_json(&host, &theirs, None).await.0, 401);
    let impostor = Customer {
        id: user.id.clone(),
        token: other.token.clone(),
    };
    assert_eq!(
        order(&host, &impostor, &mug, 1, GOOD_CARD).await.0,
        403,
        "an order for someone else is refused"
    );

    let list = notifications(&host, &user, 2).await;
    assert_eq!(
        list[0]["kind"], "order-confirmation",
        "newest first: {list:?}"
    );
    assert!(list[0]["message"].as_str().unwrap().contains(order_id));
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_card_answers_402_and_leaves_stock_unchanged() {
    let host = retailer().await;
    let user = register(&host, "erin").await;
    let lamp = stocked_product(&host, "Lamp", 4000, 3).await;
    let (status, body) = order(&host, &user, &lamp, 1, DECLINED_CARD).await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(stock(&host, &lamp).await, (3, 0));
    let (_, mine) = get_json(
        &host,
        &format!("/api/orders?user={}", user.id),
        Some(&user.token),
    )
    .await;
    assert_eq!(mine["orders"], json!([]));
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_idempotency_key_charges_once_even_concurrently() {
    let host = std::sync::Arc::new(retailer().await);
    let payer = register(&host, "payer").await;
    let charge =
        json!({ "order_id": "o-idem", "amount_cents": 500, "currency": "USD", "card": GOOD_CARD });
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (host, charge, token) = (
            std::sync::Arc::clone(&host),
            charge.clone(),
            payer.token.clone(),
        );
        tasks.spawn(async move {
            let response = host
                .http
                .post(host.url("/api/payments"))
                .bearer_auth(token)
                .header("idempotency-key", "key-123")
                .json(&charge)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        });
    }
    let mut ids = std::collections::BTreeSet::new();
    while let Some(result) = tasks.join_next().await {
        let (status, payment) = result.unwrap();
        assert_eq!(status, 201, "{payment}");
        ids.insert(payment["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "one charge for one key: {ids:?}");
    let other = host
        .http
        .post(host.url("/api/payments"))
        .bearer_auth(&payer.token)
        .header("idempotency-key", "key-123")
        .json(&json!({ "order_id": "o-idem", "amount_cents": 999, "currency": "USD", "card": GOOD_CARD }))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 422, "the key was used with another request");
    match std::sync::Arc::try_unwrap(host) {
        Ok(host) => {
            host.stop().await;
        }
        Err(_) => panic!("tasks should have released the host"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_orders_against_eight_in_stock_sell_exactly_eight() {
    let host = std::sync::Arc::new(retailer().await);
    let user = register(&host, "frank").await;
    let item = stocked_product(&host, "Limited print", 2500, 8).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (host, user, item) = (std::sync::Arc::clone(&host), user.clone(), item.clone());
        tasks.spawn(async move { order(&host, &user, &item, 1, GOOD_CARD).await });
    }
    let (mut sold, mut refused) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            (201, _) => sold += 1,
            (409, _) => refused += 1,
            (status, body) => {
                panic!("an order should sell or be refused as out of stock: {status} {body}")
            }
        }
    }
    assert_eq!((sold, refused), (8, 42));
    assert_eq!(stock(&host, &item).await, (0, 0));
    match std::sync::Arc::try_unwrap(host) {
        Ok(host) => {
            host.stop().await;
        }
        Err(_) => panic!("tasks should have released the host"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payments_outage_leaves_nothing_reserved_or_charged() {
    let host = retailer().await;
    let user = register(&host, "gina").await;
    let kettle = stocked_product(&host, "Kettle", 3000, 4).await;
    let removed = host
        .http
        .delete(host.admin_url("/services/payments"))
        .bearer_auth(support::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 200);
    let (status, body) = order(&host, &user, &kettle, 2, GOOD_CARD).await;
    assert!(
        (500..600).contains(&status),
        "an outage is a 5xx: {status} {body}"
    );
    assert_eq!(
        stock(&host, &kettle).await,
        (4, 0),
        "the reservation was released"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_reservation_expires_and_returns_its_stock() {
    let host = retailer().await;
    let vase = stocked_product(&host, "Vase", 1500, 5).await;
    let reserve = json!({ "order_id": "abandoned-1", "items": [{ "product_id": vase, "quantity": 3 }], "ttl_ms": 300 });
    let (status, body) = post(
        &host,
        "/probe/call/inventory/internal/reservations",
        None,
        reserve,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(stock(&host, &vase).await, (2, 3));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        stock(&host, &vase).await,
        (5, 0),
        "the expired reservation gave its stock back"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_failing_for_a_while_lose_and_double_nothing() {
    let host = TestHost::start_edited(support::temp_dir(), RETAILER, "", |text| {
        text.replace("max_attempts = 4", "max_attempts = 100")
    })
    .await;
    // A stand-in that refuses every event, then the real service again.
    let failing = with_custom_section(&wasm_bytes("testbed"), "failing notifications");
    assert_eq!(host.deploy("notifications", failing).await.status(), 200);
    let flag = host
        .http
        .put(host.url("/notifications-debug/kv/control/fail"))
        .bearer_auth(admin_token(&host).await)
        .body("1")
        .send()
        .await
        .unwrap();
    assert_eq!(flag.status(), 204);
    let mut users = Vec::new();
    for i in 0..5 {
        users.push(register(&host, &format!("late{i}")).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = host.admin_json("/events").await;
    let welcome = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["topic"] == "user-registered")
        .cloned()
        .unwrap();
    assert!(
        welcome["attempts"].as_u64().unwrap() >= 1,
        "deliveries are failing: {welcome}"
    );
    assert_eq!(
        host.deploy("notifications", wasm_bytes("notifications"))
            .await
            .status(),
        200
    );
    for user in &users {
        let list = notifications(&host, user, 1).await;
        assert_eq!(
            list.len(),
            1,
            "exactly one welcome for {}: {list:?}",
            user.id
        );
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcomes_arrive_after_a_kill_9_right_after_registrations() {
    let dir = support::temp_dir();
    let config = support::binary_config(&dir, RETAILER);
    let http = reqwest::Client::new();
    let host = BinaryHost::spawn(&config, &dir.join("1.log"));
    let mut users = Vec::new();
    for i in 0..8 {
        let response = http
            .post(format!("{}/api/users", host.url))
            .json(&json!({ "username": format!("crash{i}"), "email": format!("crash{i}@example.com"), "password": "correct horse" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        users.push(
            response.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    host.kill();

    let host = BinaryHost::spawn(&config, &dir.join("2.log"));
    for (i, user) in users.iter().enumerate() {
        let login: Value = http
            .post(format!("{}/api/users/login", host.url))
            .json(&json!({ "email": format!("crash{i}@example.com"), "password": "correct horse" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["token"].as_str().unwrap().to_owned();
        let list = support::eventually(WAIT, "a welcome after the restart", || async {
            let body: Value = http
                .get(format!("{}/api/notifications?user={user}", host.url))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let list = body["notifications"].as_array()?.clone();
            (!list.is_empty()).then_some(list)
        })
        .await;
        assert_eq!(list.len(), 1, "one welcome for {user}");
    }
    host.kill();
}
