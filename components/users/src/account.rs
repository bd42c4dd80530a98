//! Joining and logging in: `POST /api/users` and `POST /api/users/login`,
//! both public.

use crate::model::{
    Login, LoginAnswer, Registration, StoredUser, email_key, user_key, valid_email, valid_password,
    valid_username,
};
use crate::password;
use crate::store::{self, email_taken, on_email_conflict};
use bazaar_sdk::kv::Transaction;
use bazaar_sdk::{Error, Request, Response, Result, auth, log, platform};

/// The roles of a token this service issues; `admin` tokens come from the
/// host's operators, never from here.
const TOKEN_ROLES: &[&str] = &["customer"];

/// `POST /api/users`: 201 with the new user; 409 if the email is taken.
pub fn register(req: Request) -> Result<Response> {
    let input: Registration = req.json()?;
    let username = valid_username(&input.username)?;
    let email = valid_email(&input.email)?;
    valid_password(&input.password)?;
    let users = store::bucket()?;
    // A cheap early answer for the common case; the commit below is what
    // makes the email unique, even against a registration racing this one
    // through the Argon2 hash.
    if users.exists(&email_key(&email))? {
        return Err(email_taken(&email));
    }
    let user = StoredUser {
        id: platform::random_id(),
        username,
        email,
        password_hash: password::hash(&input.password)?,
        created_at: platform::unix_time(),
    };
    let committed = Transaction::new()
        .require_absent(&users, &email_key(&user.email))
        .require_absent(&users, &user_key(&user.id))
        .set_json(&users, &user_key(&user.id), &user)
        .set_json(&users, &email_key(&user.email), &user.id)
        // In the same commit as the writes (the outbox), so subscribers
        // hear of exactly the registrations that happened.
        .publish_json("user-registered", &registered_event(&user))
        .commit();
    committed.map_err(|e| on_email_conflict(e, &user.email))?;
    log::info(&format!("registered user {}", user.id));
    Response::json(201, &user.public())
}

/// The `user-registered` payload: who joined, never their password hash.
fn registered_event(user: &StoredUser) -> serde_json::Value {
    serde_json::json!({
        "user_id": user.id,
        "username": user.username,
        "email": user.email,
    })
}

/// `POST /api/users/login`: 200 `{"token", "user"}`, or 401 "invalid email
/// or password" whether the email is unknown or the password wrong.
///
/// An unknown email is checked against [`password::stand_in`], so both
/// failures cost one Argon2id evaluation and take as long as each other.
pub fn login(req: Request) -> Result<Response> {
    let input: Login = req.json()?;
    let users = store::bucket()?;
    let email = input.email.trim().to_ascii_lowercase();
    let user = store::find_by_email(&users, &email)?;
    // Made on both paths (it only formats a string), so they differ in
    // nothing but the hash checked.
    let stand_in = password::stand_in(&password::params()?).map_err(Error::internal)?;
    let hash = user.as_ref().map_or(&stand_in, |user| &user.password_hash);
    let verified = password::verify(&input.password, hash)?;
    let user = match user {
        Some(user) if verified => user,
        _ => return Err(Error::unauthorized("invalid email or password")),
    };
    let token = auth::issue_token(&user.id, TOKEN_ROLES)?;
    log::info(&format!("user {} logged in", user.id));
    Response::json(
        200,
        &LoginAnswer {
            token,
            user: user.public(),
        },
    )
}
