//! The `users` service: registration, login and profiles.
//!
//! Passwords are stored only as salted Argon2id hashes and never leave the
//! service. Keys in bucket `users`: `user:{id}` → the user record,
//! `email:{email}` → id as JSON text (the uniqueness index). Every change
//! that touches both is one transaction whose conditions keep the index
//! unique and pointing at its owner. A registration publishes
//! `user-registered` (`{"user_id", "username", "email"}`) in its commit.
//!
//! Logging in answers a token the host signs (`auth::issue_token`, role
//! `customer`); the gateway verifies it on later requests and tells this
//! service who is calling. A profile is read, changed or deleted only by
//! its user, an `admin`, or another service; changing the email or the
//! password also takes the current password.
//!
//! # Layout
//!
//! - `model`: records, request bodies, keys and the checks on them.
//! - `password`: hashing and verifying, and the stand-in hash for unknown
//!   emails.
//! - `store`: the bucket, loading a user, and the email-index conflicts.
//! - `account`: registering and logging in.
//! - `profile`: reading, changing and deleting a profile.

mod account;
mod model;
mod password;
mod profile;
mod store;

use bazaar_sdk::Router;

fn routes() -> Router {
    Router::new()
        .post("/api/users", account::register)
        .post("/api/users/login", account::login)
        .get("/api/users/{id}", profile::get)
        .put("/api/users/{id}", profile::update)
        .delete("/api/users/{id}", profile::delete)
}

bazaar_sdk::service!(routes);
