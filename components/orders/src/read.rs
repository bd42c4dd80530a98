//! Reading orders: one by id, or a user's, newest first.

use crate::model::{Order, order_key, user_index_prefix};
use crate::store;
use bazaar_sdk::{Error, Request, Response, Result, valid_id};
use serde::Serialize;

/// `GET /api/orders/{id}`: the order's user or an `admin` (401 without a
/// caller, 404 when absent, 403 for another user).
pub fn get(req: Request) -> Result<Response> {
    req.require_authenticated()?;
    let id = req.param("id")?;
    let order: Order = store::bucket()?
        .get_json(&order_key(id))?
        .ok_or_else(|| Error::not_found(format!("no order with id {id}")))?;
    req.require_self_or_admin(&order.user_id)?;
    Response::json(200, &order)
}

/// `GET /api/orders?user={id}`: `{"orders": [...]}`, newest first, read
/// through the user's index rather than every order. Only that user or an
/// `admin` (401 without a caller, 403 for another user).
pub fn list(req: Request) -> Result<Response> {
    req.require_authenticated()?;
    let user = req
        .query_param("user")
        .ok_or_else(|| Error::bad_request("missing ?user= (the user whose orders to list)"))?;
    let user = valid_id("user", &user)?;
    req.require_self_or_admin(user)?;
    let bucket = store::bucket()?;
    let prefix = user_index_prefix(user);
    // Index keys end in the order id and sort oldest first.
    let keys: Vec<String> = bucket
        .keys_with_prefix(&prefix)?
        .iter()
        .rev()
        .filter_map(|key| order_id_of(&prefix, key))
        .map(order_key)
        .collect();
    let orders: Vec<Order> = bucket.get_many_json(&keys)?;
    Response::json(200, &OrderList { orders })
}

/// The list answer; a struct rather than `json!` keeps each order's
/// fields in their declared order.
#[derive(Serialize)]
struct OrderList {
    orders: Vec<Order>,
}

/// The order id at the end of an index key `{prefix}{time}:{order_id}`.
fn order_id_of<'a>(prefix: &str, key: &'a str) -> Option<&'a str> {
    key.strip_prefix(prefix)?.split_once(':').map(|(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::user_index_key;

    #[test]
    fn index_keys_give_back_their_order_id() {
        let prefix = user_index_prefix("u1");
        let key = user_index_key("u1", 42, "abc");
        assert_eq!(order_id_of(&prefix, &key), Some("abc"));
        assert_eq!(order_id_of(&prefix, "user:u2:1:abc"), None);
    }
}
