//! `GET`, `PUT` and `DELETE /api/users/{id}`: only for the user themself,
//! an `admin`, or another service (401 without a verified caller, 403 for
//! anyone else). The check runs before the record is read, so nobody else
//! learns even whether an id exists.

use crate::model::{
    StoredUser, Update, changes_credentials, email_key, id_value, user_key, valid_email,
    valid_password, valid_username,
};
use crate::password;
use crate::store::{self, email_taken, on_email_conflict};
use bazaar_sdk::kv::Transaction;
use bazaar_sdk::{Error, Request, Response, Result, log};

/// `GET /api/users/{id}`: 200 with the public user.
pub fn get(req: Request) -> Result<Response> {
    let id = req.param("id")?;
    req.require_self_or_admin(id)?;
    let (user, _) = store::load(&store::bucket()?, id)?;
    Response::json(200, &user.public())
}

/// `PUT /api/users/{id}`: 200 with the user changed. A new email or
/// password needs `current_password` (403 if missing or wrong), except
/// from an `admin`, who resets accounts without knowing their passwords.
///
/// Commits only if the record is still the one read, so a racing update or
/// delete is never overwritten; an email change moves the index in the same
/// commit, claiming the new email and releasing the old one together.
pub fn update(req: Request) -> Result<Response> {
    let id = req.param("id")?;
    req.require_self_or_admin(id)?;
    let input: Update = req.json()?;
    let users = store::bucket()?;
    let (mut user, stored) = store::load(&users, id)?;
    let username = input.username.as_deref().map(valid_username).transpose()?;
    let email = input.email.as_deref().map(valid_email).transpose()?;
    if let Some(password) = &input.password {
        valid_password(password)?;
    }
    // Before the email is looked up, so a stolen token cannot learn
    // through a 409 which emails are registered.
    if changes_credentials(&user, email.as_deref(), input.password.is_some()) && !req.is_admin() {
        check_current_password(&user, input.current_password.as_deref())?;
    }
    if let Some(username) = username {
        user.username = username;
    }
    let mut old_email = None;
    if let Some(email) = email.filter(|email| *email != user.email) {
        if users.exists(&email_key(&email))? {
            return Err(email_taken(&email));
        }
        old_email = Some(std::mem::replace(&mut user.email, email));
    }
    if let Some(new_password) = &input.password {
        user.password_hash = password::hash(new_password)?;
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
    if old_email.is_some() || input.password.is_some() {
        log::info(&format!("user {} changed their email or password", user.id));
    }
    Response::json(200, &user.public())
}

/// Nothing if `current` is `user`'s password; a 403 otherwise.
fn check_current_password(user: &StoredUser, current: Option<&str>) -> Result<()> {
    let Some(current) = current else {
        return Err(Error::forbidden(
            "changing the email or password needs current_password",
        ));
    };
    if !password::verify(current, &user.password_hash)? {
        return Err(Error::forbidden("current password is wrong"));
    }
    Ok(())
}

/// `DELETE /api/users/{id}`: 204. Deletes the user and, if the email index
/// still points at them, the index too, never another user's login.
pub fn delete(req: Request) -> Result<Response> {
    let id = req.param("id")?;
    req.require_self_or_admin(id)?;
    let users = store::bucket()?;
    let (user, stored) = store::load(&users, id)?;
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
    log::info(&format!("deleted user {}", user.id));
    Ok(Response::new(204))
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::Params;

    fn user_with_password(password: &str) -> StoredUser {
        let cheap = Params::new(64, 1, 1, None).unwrap();
        StoredUser {
            id: "u1".into(),
            username: "alice".into(),
            email: "alice@example.com".into(),
            password_hash: password::hash_with(password, &cheap, &[9; 16]).unwrap(),
            created_at: 1,
        }
    }

    #[test]
    fn a_credential_change_needs_the_right_current_password() {
        let user = user_with_password("correct horse");
        assert_eq!(check_current_password(&user, Some("correct horse")), Ok(()));
        let wrong = check_current_password(&user, Some("battery staple")).unwrap_err();
        assert_eq!(
            (wrong.status, wrong.message.as_str()),
            (403, "current password is wrong")
        );
        let missing = check_current_password(&user, None).unwrap_err();
        assert_eq!(missing.status, 403, "{}", missing.message);
    }
}
