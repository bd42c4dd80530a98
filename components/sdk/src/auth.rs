//! Who is calling, and tokens signed by the host (`bazaar:platform/auth`).
//!
//! The gateway verifies a client's bearer token before any service runs
//! and passes the verified caller on in `x-bazaar-*` headers it first
//! strips from client input; a call to another service carries them on and
//! adds the calling service. No guest can set them, so a service trusts
//! them and reads them through [`Request`]:
//!
//! 1. [`Request::user`], [`Request::roles`]: the verified caller, if any.
//! 2. [`Request::caller`]: the calling service, on a service call.
//! 3. [`Request::require_user`] (401) and [`Request::require_self_or_admin`]
//!    (401 or 403): the checks a handler runs before touching a record.
//!
//! Which routes need a token, or the `admin` role, is decided in
//! `gateway.toml`; a service still checks that a user touches only their
//! own records.
//!
//! ```ignore
//! fn get_order(req: Request) -> Result<Response> {
//!     req.require_authenticated()?;
//!     let order = load(req.param("id")?)?;
//!     req.require_self_or_admin(&order.user_id)?;
//!     Response::json(200, &order)
//! }
//! ```
//!
//! A service granted `issues_tokens` signs a token for a user it has
//! authenticated with [`issue_token`].

use crate::bindings::bazaar::platform::auth as wit;
use crate::error::{Error, Result};
use crate::request::Request;

/// Request header with the verified caller's subject (a user id, or
/// `api-key:NAME`); set only by the host.
pub const USER_HEADER: &str = "x-bazaar-user";
/// Request header with the verified caller's roles, comma-separated; set
/// only by the host.
pub const ROLES_HEADER: &str = "x-bazaar-roles";
/// Request header naming the calling service on a service call; set only
/// by the host.
pub const CALLER_HEADER: &str = "x-bazaar-caller";
/// The role that may see and change every user's records.
pub const ADMIN_ROLE: &str = "admin";

/// A token (a JWT) signed by the host for `subject` with `roles`, valid for
/// the host's configured lifetime. A refusal (the service is not granted
/// `issues_tokens`, or a role is not in its `token_roles`) is the service's
/// own misconfiguration: a 500 whose detail is logged, not sent.
pub fn issue_token(subject: &str, roles: &[&str]) -> Result<String> {
    let roles: Vec<String> = roles.iter().map(|role| (*role).to_owned()).collect();
    wit::issue_token(subject, &roles)
        .map_err(|refusal| Error::internal(format!("the host refused to issue a token: {refusal}")))
}

impl Request {
    /// The verified caller's subject (`x-bazaar-user`), e.g. a user id;
    /// `None` for an anonymous request.
    pub fn user(&self) -> Option<&str> {
        self.header(USER_HEADER).filter(|user| !user.is_empty())
    }

    /// The verified caller's roles (`x-bazaar-roles`); none for an
    /// anonymous request.
    pub fn roles(&self) -> Vec<&str> {
        // The host sets both headers or neither: roles without a subject
        // are not a caller's.
        if self.user().is_none() {
            return Vec::new();
        }
        self.header(ROLES_HEADER)
            .map(|roles| {
                roles
                    .split(',')
                    .map(str::trim)
                    .filter(|role| !role.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the verified caller has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles().contains(&role)
    }

    /// Whether the verified caller has the [`ADMIN_ROLE`].
    pub fn is_admin(&self) -> bool {
        self.has_role(ADMIN_ROLE)
    }

    /// The calling service (`x-bazaar-caller`) on a service call; `None`
    /// for a request from a client.
    pub fn caller(&self) -> Option<&str> {
        self.header(CALLER_HEADER)
            .filter(|caller| !caller.is_empty())
    }

    /// The verified caller's subject, or a 401 "log in first".
    pub fn require_user(&self) -> Result<&str> {
        self.user()
            .ok_or_else(|| Error::unauthorized("log in first"))
    }

    /// Nothing when the request is a service call or carries a verified
    /// user; a 401 "log in first" otherwise. Run it before loading a record
    /// whose owner [`Request::require_self_or_admin`] then checks, so an
    /// anonymous client learns nothing, not even whether the record exists.
    pub fn require_authenticated(&self) -> Result<()> {
        match self.caller() {
            Some(_) => Ok(()),
            None => self.require_user().map(drop),
        }
    }

    /// Nothing when the caller may act on records of `owner_id`: that user
    /// themself, an [`ADMIN_ROLE`], or another service (whose grants in
    /// `gateway.toml` decide whom it may call). A 401 without a verified
    /// user, a 403 for anyone else.
    pub fn require_self_or_admin(&self, owner_id: &str) -> Result<()> {
        if self.caller().is_some() {
            return Ok(());
        }
        let user = self.require_user()?;
        if user == owner_id || self.is_admin() {
            Ok(())
        } else {
            Err(Error::forbidden("this belongs to another user"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Method;

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut request = Request::new(Method::Get, "/x");
        request.headers = headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.as_bytes().to_vec()))
            .collect();
        request
    }

    fn status(result: Result<()>) -> Option<u16> {
        result.err().map(|error| error.status)
    }

    #[test]
    fn identity_comes_from_the_host_headers() {
        let req = request(&[
            ("x-bazaar-user", "u1"),
            ("x-bazaar-roles", "customer, admin,,"),
        ]);
        assert_eq!(req.user(), Some("u1"));
        assert_eq!(req.roles(), ["customer", "admin"]);
        assert!(req.has_role("customer") && req.is_admin());
        assert!(!req.has_role("admi"), "roles match whole names only");
        assert_eq!(req.caller(), None);
    }

    #[test]
    fn empty_headers_are_no_identity_and_roles_need_a_user() {
        let req = request(&[
            ("x-bazaar-user", ""),
            ("x-bazaar-roles", "admin"),
            ("x-bazaar-caller", ""),
        ]);
        assert_eq!(req.user(), None);
        assert!(
            req.roles().is_empty(),
            "roles without a subject count for nothing"
        );
        assert!(!req.is_admin());
        assert_eq!(req.caller(), None);
    }

    #[test]
    fn anonymous_requests_are_told_to_log_in() {
        let req = request(&[]);
        let error = req.require_user().unwrap_err();
        assert_eq!(
            (error.status, error.message.as_str()),
            (401, "log in first")
        );
        assert_eq!(status(req.require_authenticated()), Some(401));
        assert_eq!(status(req.require_self_or_admin("u1")), Some(401));
    }

    #[test]
    fn users_may_act_on_their_own_records_only() {
        let req = request(&[("x-bazaar-user", "u1"), ("x-bazaar-roles", "customer")]);
        assert_eq!(req.require_user(), Ok("u1"));
        assert_eq!(status(req.require_authenticated()), None);
        assert_eq!(status(req.require_self_or_admin("u1")), None);
        assert_eq!(status(req.require_self_or_admin("u2")), Some(403));
        assert_eq!(
            status(req.require_self_or_admin("")),
            Some(403),
            "a record with no owner is not everyone's"
        );
    }

    #[test]
    fn admins_may_act_on_anyones_records() {
        let req = request(&[("x-bazaar-user", "ops"), ("x-bazaar-roles", "admin")]);
        assert_eq!(status(req.require_self_or_admin("u2")), None);
    }

    #[test]
    fn service_calls_are_allowed_with_or_without_a_user() {
        let bare = request(&[("x-bazaar-caller", "orders")]);
        assert_eq!(bare.caller(), Some("orders"));
        assert_eq!(status(bare.require_authenticated()), None);
        assert_eq!(status(bare.require_self_or_admin("u2")), None);
        assert_eq!(status(bare.require_user().map(drop)), Some(401));
        let carried = request(&[("x-bazaar-caller", "orders"), ("X-Bazaar-User", "u1")]);
        assert_eq!(carried.user(), Some("u1"), "header names match in any case");
        assert_eq!(status(carried.require_self_or_admin("u2")), None);
    }
}
