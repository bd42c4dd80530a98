use crate::support::TestHost;
use reqwest::Method;
use serde_json::{Value, json};

async fn register(host: &TestHost, username: &str, email: &str) -> Value {
    let response = host
        .send_json(
            Method::POST,
            "/api/users",
            &json!({ "username": username, "email": email, "password": "correct horse" }),
        )
        .await;
    assert_eq!(
        response.status(),
        201,
        "registering {email} should create a user"
    );
    response.json().await.unwrap()
}

fn assert_no_secret(body: &str) {
    assert!(
        !body.contains("password") && !body.contains("argon2"),
        "a response must never carry the password or its hash: {body}"
    );
}

async fn login(host: &TestHost, email: &str, password: &str) -> reqwest::Response {
    host.send_json(
        Method::POST,
        "/api/users/login",
        &json!({ "email": email, "password": password }),
    )
    .await
}

async fn with_token(
    host: &TestHost,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = host.http.request(method, host.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_fetch_update_delete() {
    let host = TestHost::start().await;
    let user = register(&host, "alice", "Alice@Example.com").await;
    let id = user["id"].as_str().unwrap().to_owned();
    assert_eq!(user["email"], "alice@example.com", "emails are normalised");
    assert_no_secret(&user.to_string());

    let logged_in = login(&host, "alice@example.com", "correct horse").await;
    assert_eq!(logged_in.status(), 200);
    let text = logged_in.text().await.unwrap();
    assert_no_secret(&text);
    let session: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(session["user"]["id"], id.as_str());
    let token = session["token"]
        .as_str()
        .expect("login returns a token")
        .to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    // Unknown email and wrong password fail alike.
    let wrong = login(&host, "alice@example.com", "battery staple").await;
    assert_eq!(wrong.status(), 401);
    let wrong = wrong.text().await.unwrap();
    let unknown = login(&host, "nobody@example.com", "battery staple").await;
    assert_eq!(unknown.status(), 401);
    let strip = |body: &str| {
        let mut v: Value = serde_json::from_str(body).unwrap();
        v.as_object_mut().unwrap().remove("request_id");
        v
    };
    assert_eq!(
        strip(&wrong),
        strip(&unknown.text().await.unwrap()),
        "no hint which emails exist"
    );

    let path = format!("/api/users/{id}");
    assert_eq!(
        host.get(&path).await.status(),
        401,
        "a profile needs a token"
    );
    let fetched = with_token(&host, Method::GET, &path, &token, None).await;
    assert_eq!(fetched.status(), 200);
    let fetched = fetched.text().await.unwrap();
    assert_no_secret(&fetched);
    assert!(fetched.contains("alice"));

    let eve = register(&host, "eve", "eve@example.com").await;
    let eve_token: Value = login(&host, "eve@example.com", "correct horse")
        .await
        .json()
        .await
        .unwrap();
    let eve_token = eve_token["token"].as_str().unwrap();
    assert_eq!(
        with_token(&host, Method::GET, &path, eve_token, None)
            .await
            .status(),
        403,
        "not someone else's"
    );
    let takeover = with_token(
        &host,
        Method::PUT,
        &path,
        eve_token,
        Some(json!({ "password": "stolen password" })),
    )
    .await;
    assert_eq!(takeover.status(), 403);
    let _ = eve;

    let no_current = with_token(
        &host,
        Method::PUT,
        &path,
        &token,
        Some(json!({ "password": "new password!" })),
    )
    .await;
    assert_eq!(
        no_current.status(),
        403,
        "a new password needs the current one"
    );
    let updated = with_token(
        &host,
        Method::PUT,
        &path,
        &token,
        Some(json!({ "username": "alice2", "email": "a2@example.com", "password": "new password!", "current_password": "correct horse" })),
    )
    .await;
    assert_eq!(updated.status(), 200);
    let updated: Value = updated.json().await.unwrap();
    assert_eq!(updated["username"], "alice2");
    assert_eq!(
        login(&host, "a2@example.com", "new password!")
            .await
            .status(),
        200,
        "the new email and password should log in"
    );
    // The old email is free again.
    register(&host, "carol", "alice@example.com").await;

    let deleted = with_token(&host, Method::DELETE, &path, &token, None).await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        with_token(&host, Method::GET, &path, &token, None)
            .await
            .status(),
        404
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_duplicates_and_unknown_ids_are_refused() {
    let host = TestHost::start().await;
    register(&host, "bob", "bob@example.com").await;

    let duplicate = host
        .send_json(
            Method::POST,
            "/api/users",
            &json!({ "username": "bobby", "email": "BOB@example.com", "password": "correct horse" }),
        )
        .await;
    assert_eq!(duplicate.status(), 409, "a duplicate email should conflict");

    let malformed = host
        .http
        .post(host.url("/api/users"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let request_id = malformed.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = malformed.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("JSON"), "{body}");
    // A service's error quotes the request id, as the gateway's do.
    assert_eq!(body["request_id"], request_id.as_str(), "{body}");

    let missing = host
        .send_json(
            Method::POST,
            "/api/users",
            &json!({ "username": "x1y", "email": "x@example.com" }),
        )
        .await;
    assert_eq!(missing.status(), 400);
    assert!(
        missing.text().await.unwrap().contains("password"),
        "the missing field should be named"
    );

    for bad in [
        json!({ "username": "ok_name", "email": "not-an-email", "password": "correct horse" }),
        json!({ "username": "a", "email": "a@example.com", "password": "correct horse" }),
        json!({ "username": "ok_name", "email": "a@example.com", "password": "short" }),
    ] {
        let response = host.send_json(Method::POST, "/api/users", &bad).await;
        assert_eq!(response.status(), 400, "{bad} should be refused");
    }

    // Without a token nothing says whether an id exists; with one, another
    // user's id (existing or not) is refused the same way.
    assert_eq!(host.get("/api/users/doesnotexist").await.status(), 401);
    let session: Value = login(&host, "bob@example.com", "correct horse")
        .await
        .json()
        .await
        .unwrap();
    let token = session["token"].as_str().unwrap();
    let missing = with_token(&host, Method::GET, "/api/users/doesnotexist", token, None).await;
    assert_eq!(missing.status(), 403);
    let update_missing = with_token(
        &host,
        Method::PUT,
        "/api/users/doesnotexist",
        token,
        Some(json!({ "username": "zzz" })),
    )
    .await;
    assert_eq!(update_missing.status(), 403);
    let delete_missing = with_token(
        &host,
        Method::DELETE,
        "/api/users/doesnotexist",
        token,
        None,
    )
    .await;
    assert_eq!(delete_missing.status(), 403);
    let wrong_method = host
        .http
        .patch(host.url("/api/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_registrations_of_one_email_make_one_account() {
    let host = std::sync::Arc::new(TestHost::start().await);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let host = std::sync::Arc::clone(&host);
        tasks.spawn(async move {
            host.send_json(
                Method::POST,
                "/api/users",
                &json!({ "username": format!("racer{i}"), "email": "race@example.com", "password": "correct horse" }),
            )
            .await
            .status()
            .as_u16()
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = tasks.join_next().await {
        statuses.push(status.unwrap());
    }
    statuses.sort_unstable();
    let mut expected = vec![201];
    expected.extend([409; 19]);
    assert_eq!(statuses, expected, "exactly one registration may win");

    // The winner logs in; deleting it frees the email for a new account.
    let login = host
        .send_json(
            Method::POST,
            "/api/users/login",
            &json!({ "email": "race@example.com", "password": "correct horse" }),
        )
        .await;
    assert_eq!(login.status(), 200);
    let session = login.json::<Value>().await.unwrap();
    let id = session["user"]["id"].as_str().unwrap().to_owned();
    let token = session["token"].as_str().unwrap().to_owned();
    let deleted = host
        .http
        .delete(host.url(&format!("/api/users/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    register(&host, "second", "race@example.com").await;
    match std::sync::Arc::try_unwrap(host) {
        Ok(host) => {
            host.stop().await;
        }
        Err(_) => panic!("the tasks should have released the host"),
    }
}
