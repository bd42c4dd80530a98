//! The bucket, loading a user, and what a conflict on the email index means.

use crate::model::{StoredUser, email_key, user_key};
use bazaar_sdk::kv::{self, CommitError};
use bazaar_sdk::{Error, Result};

/// The users bucket.
pub fn bucket() -> Result<kv::Bucket> {
    Ok(kv::open("users")?)
}

/// The user with `id` and its record as stored, for `require`; 404 if
/// there is none.
pub fn load(users: &kv::Bucket, id: &str) -> Result<(StoredUser, Vec<u8>)> {
    let stored = users
        .get(&user_key(id))?
        .ok_or_else(|| Error::not_found(format!("no user with id {id}")))?;
    let user = serde_json::from_slice(&stored).map_err(Error::internal)?;
    Ok((user, stored))
}

/// The user whose email is `email` (lowercase), if any.
pub fn find_by_email(users: &kv::Bucket, email: &str) -> Result<Option<StoredUser>> {
    let Some(id) = users.get_json::<String>(&email_key(email))? else {
        return Ok(None);
    };
    Ok(users.get_json(&user_key(&id))?)
}

/// The 409 for an email someone else holds.
pub fn email_taken(email: &str) -> Error {
    Error::conflict(format!("a user with email {email} already exists"))
}

/// A conflict on the index of `email` means someone else holds it.
pub fn on_email_conflict(error: CommitError, email: &str) -> Error {
    match error {
        CommitError::Conflict(key) if key == email_key(email) => email_taken(email),
        other => other.into(),
    }
}
