//! Users as stored and answered, the request bodies, the keys, and the
//! checks on them: pure, so they run in native unit tests.

use bazaar_sdk::{Error, Result};
use serde::{Deserialize, Serialize};

/// What is stored; only [`PublicUser`] is ever sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredUser {
    /// Random id; the subject of the user's tokens.
    pub id: String,
    /// Shown to others; need not be unique.
    pub username: String,
    /// Lowercase; unique through the `email:` index.
    pub email: String,
    /// Argon2id, in PHC form with its own parameters.
    pub password_hash: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
}

/// A user as clients see it: everything but the password hash.
#[derive(Debug, Serialize)]
pub struct PublicUser<'a> {
    /// See [`StoredUser::id`].
    pub id: &'a str,
    /// See [`StoredUser::username`].
    pub username: &'a str,
    /// See [`StoredUser::email`].
    pub email: &'a str,
    /// See [`StoredUser::created_at`].
    pub created_at: u64,
}

impl StoredUser {
    /// The user as clients see it.
    pub fn public(&self) -> PublicUser<'_> {
        PublicUser {
            id: &self.id,
            username: &self.username,
            email: &self.email,
            created_at: self.created_at,
        }
    }
}

/// The body of `POST /api/users`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// See [`StoredUser::username`].
    pub username: String,
    /// See [`StoredUser::email`].
    pub email: String,
    /// Hashed at once, never stored.
    pub password: String,
}

/// The body of `POST /api/users/login`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// Any case; compared lowercase.
    pub email: String,
    /// Checked against the stored hash.
    pub password: String,
}

/// The body of `PUT /api/users/{id}`: the fields to change.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    /// A new username.
    pub username: Option<String>,
    /// A new email; needs `current_password` if it differs.
    pub email: Option<String>,
    /// A new password; needs `current_password`.
    pub password: Option<String>,
    /// Proves that whoever holds the token also knows the password, so a
    /// stolen token alone cannot take the account over.
    pub current_password: Option<String>,
}

/// The body of a successful login.
#[derive(Serialize)]
pub struct LoginAnswer<'a> {
    /// A bearer token signed by the host, for `Authorization: Bearer ...`.
    pub token: String,
    /// Who logged in.
    pub user: PublicUser<'a>,
}

/// The key of a user record.
pub fn user_key(id: &str) -> String {
    format!("user:{id}")
}

/// The key of the email index entry.
pub fn email_key(email: &str) -> String {
    format!("email:{email}")
}

/// An id as the email index stores it (JSON text).
pub fn id_value(id: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(id).map_err(Error::internal)
}

/// Whether changing `user` to `new_email` (already checked and lowercase)
/// and `new_password` changes what logs in, and so needs the current
/// password.
pub fn changes_credentials(user: &StoredUser, new_email: Option<&str>, new_password: bool) -> bool {
    new_password || new_email.is_some_and(|email| email != user.email)
}

/// A username: 3-32 letters, digits, `_`, `-` or `.`, trimmed.
pub fn valid_username(username: &str) -> Result<String> {
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

/// An email, trimmed and lowercased.
pub fn valid_email(email: &str) -> Result<String> {
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

/// A new password: 8-1024 characters.
pub fn valid_password(password: &str) -> Result<()> {
    if password.chars().count() < 8 || password.len() > 1024 {
        return Err(Error::bad_request("password must be 8-1024 characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> StoredUser {
        StoredUser {
            id: "u1".into(),
            username: "alice".into(),
            email: "alice@example.com".into(),
            password_hash: "$argon2id$secret".into(),
            created_at: 7,
        }
    }

    #[test]
    fn the_public_user_never_carries_the_hash() {
        let json = serde_json::to_string(&alice().public()).unwrap();
        assert_eq!(
            json,
            r#"{"id":"u1","username":"alice","email":"alice@example.com","created_at":7}"#
        );
    }

    #[test]
    fn a_login_answer_is_the_token_and_the_public_user() {
        let user = alice();
        let answer = LoginAnswer {
            token: "t.o.k".into(),
            user: user.public(),
        };
        let json: serde_json::Value = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["token"], "t.o.k");
        assert_eq!(json["user"]["id"], "u1");
        assert!(!json.to_string().contains("argon2"), "leaks: {json}");
    }

    #[test]
    fn new_emails_and_passwords_need_the_current_password_but_usernames_do_not() {
        let user = alice();
        assert!(changes_credentials(&user, None, true));
        assert!(changes_credentials(&user, Some("eve@example.com"), false));
        assert!(
            !changes_credentials(&user, Some("alice@example.com"), false),
            "the same email is no change"
        );
        assert!(!changes_credentials(&user, None, false));
    }

    #[test]
    fn updates_name_only_known_fields() {
        let update: Update =
            serde_json::from_str(r#"{"password":"new one!","current_password":"old one!"}"#)
                .unwrap();
        assert_eq!(update.current_password.as_deref(), Some("old one!"));
        assert!(serde_json::from_str::<Update>(r#"{"password_hash":"x"}"#).is_err());
    }

    #[test]
    fn emails_are_trimmed_lowercase_and_need_a_dotted_domain() {
        assert_eq!(
            valid_email(" Ann@Example.COM "),
            Ok("ann@example.com".into())
        );
        for bad in [
            "ann",
            "ann@",
            "@x.io",
            "ann@x",
            "ann@.x.io",
            "a b@x.io",
            "a@b@x.io",
        ] {
            assert_eq!(valid_email(bad).map_err(|e| e.status), Err(400), "{bad}");
        }
    }

    #[test]
    fn usernames_and_passwords_have_bounds() {
        assert_eq!(valid_username(" ann_1 "), Ok("ann_1".into()));
        for bad in ["an", "a b c", &"a".repeat(33)] {
            assert!(valid_username(bad).is_err(), "{bad}");
        }
        assert!(valid_password("eight ch").is_ok());
        assert!(valid_password("seven c").is_err());
        assert!(valid_password(&"x".repeat(1025)).is_err());
    }
}
