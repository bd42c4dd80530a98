//! The `users` service: registration, login and profiles.
//!
//! Passwords are stored only as salted Argon2id hashes and never leave the
//! service. Keys in bucket `users`: `user:{id}` → the user record,
//! `email:{email}` → id as JSON text (the uniqueness index). Every change
//! that touches both is one transaction whose conditions keep the index
//! unique and pointing at its owner. A registration publishes
//! `user-registered` (`{"user_id", "username", "email"}`) in its commit.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use bazaar_sdk::kv::{self, CommitError, Transaction};
use bazaar_sdk::{Error, Request, Response, Result, Router, config, log, platform};
use serde::{Deserialize, Serialize};

fn routes() -> Router {
    Router::new()
        .post("/api/users", register)
        .post("/api/users/login", login)
        .get("/api/users/{id}", get_user)
        .put("/api/users/{id}", update_user)
        .delete("/api/users/{id}", delete_user)
}

bazaar_sdk::service!(routes);

/// What is stored; only [`PublicUser`] is ever sent.
#[derive(Serialize, Deserialize)]
struct StoredUser {
    id: String,
    username: String,
    email: String,
    password_hash: String,
    created_at: u64,
}

#[derive(Serialize)]
struct PublicUser<'a> {
    id: &'a str,
    username: &'a str,
    email: &'a str,
    created_at: u64,
}

impl StoredUser {
    fn public(&self) -> PublicUser<'_> {
        PublicUser {
            id: &self.id,
            username: &self.username,
            email: &self.email,
            created_at: self.created_at,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Registration {
    username: String,
    email: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    email: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Update {
    username: Option<String>,
    email: Option<String>,
    password: Option<String>,
}

fn bucket() -> Result<kv::Bucket> {
    Ok(kv::open("users")?)
}

fn user_key(id: &str) -> String {
    format!("user:{id}")
}

fn email_key(email: &str) -> String {
    format!("email:{email}")
}

fn register(req: Request) -> Result<Response> {
    let input: Registration = req.json()?;
    let username = valid_username(&input.username)?;
    let email = valid_email(&input.email)?;
    valid_password(&input.password)?;
    let users = bucket()?;
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
        password_hash: hash_password(&input.password)?,
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

fn login(req: Request) -> Result<Response> {
    let input: Login = req.json()?;
    let users = bucket()?;
    let denied = || Error::unauthorized("invalid email or password");
    let email = input.email.trim().to_ascii_lowercase();
    let id: String = users.get_json(&email_key(&email))?.ok_or_else(denied)?;
    let user: StoredUser = users.get_json(&user_key(&id))?.ok_or_else(denied)?;
    if !verify_password(&input.password, &user.password_hash)? {
        return Err(denied());
    }
    Response::json(200, &user.public())
}

fn get_user(req: Request) -> Result<Response> {
    let (user, _) = load(&bucket()?, req.param("id")?)?;
    Response::json(200, &user.public())
}

/// Commits only if the record is still the one read, so a racing update or
/// delete is never overwritten; an email change moves the index in the same
/// commit, claiming the new email and releasing the old one together.
fn update_user(req: Request) -> Result<Response> {
    let input: Update = req.json()?;
    let users = bucket()?;
    let (mut user, stored) = load(&users, req.param("id")?)?;
    if let Some(username) = &input.username {
        user.username = valid_username(username)?;
    }
    let mut old_email = None;
    if let Some(email) = &input.email {
        let email = valid_email(email)?;
        if email != user.email {
            if users.exists(&email_key(&email))? {
                return Err(email_taken(&email));
            }
            old_email = Some(std::mem::replace(&mut user.email, email));
        }
    }
    if let Some(password) = &input.password {
        valid_password(password)?;
        user.password_hash = hash_password(password)?;
    }
    let key = user_key(&user.id);
    let mut tx = Transaction::new()
        .require(&users, &key, Some(&stored))
        .set_json(&users, &key, &user);
    if let Some(old) = &old_email {
        tx = tx
            .require_absent(&users, &email_key(&user.email))
            .require(&users, &email_key(old), Some(&id_value(&user.id)?))
            .set_json(&users, &email_key(&user.email), &user.id)
            .delete(&users, &email_key(old));
    }
    tx.commit().map_err(|e| on_email_conflict(e, &user.email))?;
    Response::json(200, &user.public())
}

/// Deletes the user and, if the email index still points at them, the
/// index too, never another user's login.
fn delete_user(req: Request) -> Result<Response> {
    let users = bucket()?;
    let (user, stored) = load(&users, req.param("id")?)?;
    let key = user_key(&user.id);
    let index = email_key(&user.email);
    let mut tx = Transaction::new()
        .require(&users, &key, Some(&stored))
        .delete(&users, &key);
    let id = id_value(&user.id)?;
    if users.get(&index)?.as_deref() == Some(id.as_slice()) {
        tx = tx.require(&users, &index, Some(&id)).delete(&users, &index);
    }
    tx.commit()?;
    Ok(Response::new(204))
}

/// The user with `id` and its record as stored, for `require`.
fn load(users: &kv::Bucket, id: &str) -> Result<(StoredUser, Vec<u8>)> {
    let stored = users
        .get(&user_key(id))?
        .ok_or_else(|| Error::not_found(format!("no user with id {id}")))?;
    let user = serde_json::from_slice(&stored).map_err(Error::internal)?;
    Ok((user, stored))
}

/// An id as the email index stores it (JSON text).
fn id_value(id: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(id).map_err(Error::internal)
}

fn email_taken(email: &str) -> Error {
    Error::conflict(format!("a user with email {email} already exists"))
}

/// A conflict on the index of `email` means someone else holds it.
fn on_email_conflict(error: CommitError, email: &str) -> Error {
    match error {
        CommitError::Conflict(key) if key == email_key(email) => email_taken(email),
        other => other.into(),
    }
}

fn valid_username(username: &str) -> Result<String> {
    let username = username.trim();
    let ok = (3..=32).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !ok {
        return Err(Error::bad_request(
            "username must be 3-32 characters of letters, digits, `_`, `-` or `.`",
        ));
    }
    Ok(username.to_owned())
}

fn valid_email(email: &str) -> Result<String> {
    let email = email.trim().to_ascii_lowercase();
    let ok = email.len() <= 254
        && !email.contains(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if !ok {
        return Err(Error::bad_request("email must look like name@example.com"));
    }
    Ok(email)
}

fn valid_password(password: &str) -> Result<()> {
    if password.chars().count() < 8 || password.len() > 1024 {
        return Err(Error::bad_request("password must be 8-1024 characters"));
    }
    Ok(())
}

/// Argon2id; memory and passes come from config so tests can make it cheap.
fn hasher() -> Result<Argon2<'static>> {
    let params = Params::new(
        config::get_or("argon2_memory_kib", Params::DEFAULT_M_COST),
        config::get_or("argon2_iterations", Params::DEFAULT_T_COST),
        1,
        None,
    )
    .map_err(Error::internal)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&platform::random_bytes(16)).map_err(Error::internal)?;
    Ok(hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(Error::internal)?
        .to_string())
}

fn verify_password(password: &str, hash: &str) -> Result<bool> {
    let parsed = PasswordHash::new(hash).map_err(Error::internal)?;
    // The hash string carries its own parameters, so changing the config
    // does not lock out existing users.
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}
