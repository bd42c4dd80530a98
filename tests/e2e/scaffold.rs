//! `bazaar new`, as a new user runs it: scaffold, build, deploy to a
//! running host, curl. And the Python `reviews` service added live to the
//! retailer.
//!
//! The Python parts need componentize-py: `scripts/test` installs it, puts
//! it on PATH, builds `components/py-reviews` and sets
//! `BAZAAR_PY_REVIEWS`; without them these tests say so and skip.

use crate::retailer::RETAILER;
use crate::support::{self, TOKEN, TestHost};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

/// Runs the `bazaar` binary against `host`'s admin API.
fn bazaar(host: &TestHost, args: &[&str]) -> String {
    let admin = format!("http://{}", host.running.admin_addr);
    let output = Command::new(env!("CARGO_BIN_EXE_bazaar"))
        .args(args)
        .args(["--admin-url", &admin, "--token", TOKEN])
        .output()
        .expect("the bazaar binary should run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "bazaar {args:?} failed: {text}");
    text
}

fn scaffold(name: &str, lang: &str, dir: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_bazaar"))
        .args(["new", name, "--lang", lang, "--dir"])
        .arg(dir)
        .output()
        .expect("bazaar new should run");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "bazaar new failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

fn has_componentize_py() -> bool {
    let found = Command::new("componentize-py")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: componentize-py is not on PATH (scripts/test installs it)");
    }
    found
}

async fn exercise_items(host: &TestHost, name: &str) {
    let put = host
        .http
        .put(host.url(&format!("/api/{name}/items/tea")))
        .json(&json!({ "name": "Tea", "quantity": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200, "{}", put.text().await.unwrap());
    let list: Value = host
        .get(&format!("/api/{name}/items"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["name"], "Tea", "{list}");
    assert_eq!(
        host.get(&format!("/api/{name}/items/none")).await.status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_scaffold_builds_deploys_and_answers() {
    let dir = support::temp_dir().join("shelf");
    let steps = scaffold("shelf", "rust", &dir);
    assert!(
        steps.contains("bazaar deploy shelf"),
        "next steps are printed: {steps}"
    );
    // Share the components' build directory so the SDK's dependencies are
    // compiled once.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../components/target");
    let build = Command::new(env!("CARGO"))
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .unwrap();
    assert!(build.success(), "the scaffold should build");
    let wasm = target.join("wasm32-wasip2/release/shelf.wasm");
    let host = TestHost::start().await;
    let out = bazaar(
        &host,
        &[
            "deploy",
            "shelf",
            wasm.to_str().unwrap(),
            "--route",
            "/api/shelf",
            "--route",
            "/api/shelf/{*rest}",
        ],
    );
    assert!(out.contains("added service `shelf`"), "{out}");
    exercise_items(&host, "shelf").await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_scaffold_builds_deploys_and_answers() {
    if !has_componentize_py() {
        return;
    }
    let dir = support::temp_dir().join("wishlist");
    scaffold("wishlist", "python", &dir);
    let build = Command::new(dir.join("build.sh")).status().unwrap();
    assert!(build.success(), "the Python scaffold should test and build");
    let host = TestHost::start().await;
    let wasm = dir.join("wishlist.wasm");
    bazaar(
        &host,
        &[
            "deploy",
            "wishlist",
            wasm.to_str().unwrap(),
            "--route",
            "/api/wishlist",
            "--route",
            "/api/wishlist/{*rest}",
        ],
    );
    exercise_items(&host, "wishlist").await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_reviews_service_joins_the_running_retailer() {
    let Ok(reviews) = std::env::var("BAZAAR_PY_REVIEWS") else {
        eprintln!(
            "skipped: BAZAAR_PY_REVIEWS is not set (scripts/test builds components/py-reviews)"
        );
        return;
    };
    let host = TestHost::start_in(support::temp_dir(), RETAILER, "").await;
    let versions_before = host.admin_json("/services").await;
    bazaar(
        &host,
        &[
            "deploy",
            "reviews",
            &reviews,
            "--route",
            "/api/reviews",
            "--subscribes",
            "order-placed",
        ],
    );
    let after = host.admin_json("/services").await;
    for service in versions_before.as_array().unwrap() {
        let now = after
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == service["name"])
            .unwrap();
        assert_eq!(
            now["version"], service["version"],
            "adding reviews touches no other service"
        );
    }

    let buyer = crate::retailer::register(&host, "reviewer").await;
    let other = crate::retailer::register(&host, "lurker").await;
    let mug = crate::retailer::stocked_product(&host, "Mug", 1299, 3).await;
    let (status, placed) = crate::retailer::order(&host, &buyer, &mug, 1, "4242424242424242").await;
    assert_eq!(status, 201, "{placed}");

    let review = json!({ "product_id": mug, "rating": 5, "text": "Holds tea well." });
    let post = |token: Option<&str>, body: &Value| {
        let mut request = host.http.post(host.url("/api/reviews")).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let posted = support::eventually(
        std::time::Duration::from_secs(60),
        "the buyer's review",
        || async {
            let response = post(Some(&buyer.token), &review).await.unwrap();
            (response.status() == 201).then_some(response)
        },
    )
    .await;
    let posted: Value = posted.json().await.unwrap();
    assert_eq!(posted["rating"], 5);
    assert_eq!(
        posted["user_id"],
        buyer.id.as_str(),
        "written by the token's user"
    );
    let status = |response: reqwest::Response| response.status();
    assert_eq!(
        status(post(Some(&other.token), &review).await.unwrap()),
        403,
        "only buyers may review"
    );
    assert_eq!(
        status(post(None, &review).await.unwrap()),
        401,
        "a review needs a token"
    );
    let forged = json!({ "user_id": buyer.id, "product_id": mug, "rating": 1, "text": "Meh." });
    assert_eq!(
        status(post(Some(&other.token), &forged).await.unwrap()),
        403,
        "no one reviews in another's name"
    );
    assert_eq!(
        status(
            host.http
                .post(host.url("/api/reviews"))
                .header("x-bazaar-user", buyer.id.as_str())
                .json(&review)
                .send()
                .await
                .unwrap()
        ),
        401,
        "a client's own x-bazaar-user header is dropped by the gateway"
    );
    let listed: Value = host
        .get(&format!("/api/reviews?product={mug}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["reviews"].as_array().unwrap().len(), 1);
    assert_eq!(listed["average_rating"], 5.0);
    host.stop().await;
}

/// Scaffolding a service under a name the gateway file already runs says
/// that deploying it under that name would replace that service.
#[test]
fn a_scaffold_named_after_a_configured_service_is_warned_about() {
    let dir = support::temp_dir();
    let config = support::binary_config(
        &dir,
        "[services.users]\ncomponent = \"users.wasm\"\nroutes = [\"/api/users\"]\n",
    );
    let new = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_bazaar"))
            .arg("--config")
            .arg(&config)
            .args(["new", name, "--dir"])
            .arg(dir.join(name))
            .output()
            .expect("bazaar new should run")
    };
    let taken = new("users");
    assert!(taken.status.success());
    let said = String::from_utf8_lossy(&taken.stderr);
    assert!(
        said.contains("already has a service `users`") && said.contains("replaces it"),
        "{said}"
    );
    let free = new("wishes");
    assert!(free.status.success());
    assert!(
        !String::from_utf8_lossy(&free.stderr).contains("already has"),
        "no note for a new name"
    );
}
