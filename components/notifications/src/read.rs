//! `GET /api/notifications?user={id}`.

use crate::message::{Notification, user_prefix};
use crate::store;
use bazaar_sdk::{Error, Request, Response, Result};
use serde::Serialize;

/// Entries read per page of the scan.
const PAGE: u32 = 500;

/// `{"notifications": [...]}` of one user, newest first (the key order).
/// Only that user or an `admin` (401 without a caller, 403 for another
/// user).
pub fn list(req: Request) -> Result<Response> {
    req.require_authenticated()?;
    let user = req.query_param("user").ok_or_else(|| {
        Error::bad_request("missing ?user= (the user whose notifications to list)")
    })?;
    bazaar_sdk::valid_id("user", &user)?;
    req.require_self_or_admin(&user)?;
    let bucket = store::bucket()?;
    let prefix = user_prefix(&user);
    let mut notifications: Vec<Notification> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = bucket.scan_json::<Notification>(&prefix, after.as_deref(), PAGE)?;
        notifications.extend(page.entries.into_iter().map(|(_, note)| note));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Response::json(200, &NotificationList { notifications })
}

/// The list answer; a struct rather than `json!` keeps each message's
/// fields in their declared order.
#[derive(Serialize)]
struct NotificationList {
    notifications: Vec<Notification>,
}
