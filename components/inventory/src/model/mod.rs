//! What inventory stores, its key formats and the pure rules over them,
//! kept free of host calls so they run in native unit tests.

use bazaar_sdk::{Error, Result, valid_id};
use serde::{Deserialize, Serialize};

/// Most units one stock record or one reservation line may hold.
pub const MAX_QUANTITY: u64 = 1_000_000_000;
/// Most lines in one reservation.
pub const MAX_ITEMS: usize = 100;

/// Stock of one product, at `stock:{product_id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stock {
    /// Units that can still be reserved.
    pub available: u64,
    /// Units held by pending reservations, not yet sold.
    pub reserved: u64,
}

/// One line of a reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// The product held.
    pub product_id: String,
    /// How many units.
    pub quantity: u64,
}

/// Where a reservation is in its life; only `Pending` holds stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Stock is held, waiting for the order to commit or release it.
    Pending,
    /// The units were sold: they left `reserved` for good.
    Committed,
    /// The order gave the units back.
    Released,
    /// Nobody settled it in time; the sweep gave the units back.
    Expired,
}

/// A hold on stock for one order, at `reservation:{order_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The order it holds stock for; one reservation per order.
    pub order_id: String,
    /// The lines, one per distinct product.
    pub items: Vec<Item>,
    /// Where it is in its life.
    pub status: Status,
    /// When a pending reservation expires, in ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// When it was made, in ms since the Unix epoch.
    pub created_at_ms: u64,
}

/// The key of a product's stock record.
pub fn stock_key(product_id: &str) -> String {
    format!("stock:{product_id}")
}

/// The key of an order's reservation.
pub fn reservation_key(order_id: &str) -> String {
    format!("reservation:{order_id}")
}

/// Prefix of the expiry index; its keys sort by expiry time.
pub const EXPIRY_PREFIX: &str = "expiry:";

/// The expiry index key of a reservation: zero-padded so that key order is
/// time order, and a scan from the start meets the oldest first.
pub fn expiry_key(expires_at_ms: u64, order_id: &str) -> String {
    format!("{EXPIRY_PREFIX}{expires_at_ms:020}:{order_id}")
}

/// The expiry time and order id of an expiry index key, if well formed.
pub fn parse_expiry_key(key: &str) -> Option<(u64, &str)> {
    let (time, order_id) = key.strip_prefix(EXPIRY_PREFIX)?.split_once(':')?;
    if time.len() != 20 || order_id.is_empty() {
        return None;
    }
    Some((time.parse().ok()?, order_id))
}

/// Checks reservation lines and merges lines of the same product (in
/// first-seen order), so one transaction never writes a stock key twice.
pub fn merge_items(items: &[Item]) -> Result<Vec<Item>> {
    if items.is_empty() || items.len() > MAX_ITEMS {
        return Err(Error::bad_request(format!(
            "items must list 1-{MAX_ITEMS} lines"
        )));
    }
    let mut merged: Vec<Item> = Vec::with_capacity(items.len());
    for item in items {
        valid_id("product_id", &item.product_id)?;
        if !(1..=MAX_QUANTITY).contains(&item.quantity) {
            return Err(Error::bad_request(format!(
                "quantity of product {} must be 1-{MAX_QUANTITY}",
                item.product_id
            )));
        }
        match merged.iter_mut().find(|m| m.product_id == item.product_id) {
            Some(line) => {
                line.quantity = line.quantity.saturating_add(item.quantity);
                if line.quantity > MAX_QUANTITY {
                    return Err(Error::bad_request(format!(
                        "quantity of product {} must be at most {MAX_QUANTITY} in all",
                        item.product_id
                    )));
                }
            }
            None => merged.push(item.clone()),
        }
    }
    Ok(merged)
}

/// `stock` with `quantity` moved from available to reserved; a 409 naming
/// what is left when there is not enough.
pub fn hold(stock: Stock, product_id: &str, quantity: u64) -> Result<Stock> {
    if stock.available < quantity {
        return Err(Error::conflict(format!(
            "not enough stock of product {product_id}: {} available",
            stock.available
        )));
    }
    Ok(Stock {
        available: stock.available - quantity,
        reserved: stock.reserved.saturating_add(quantity),
    })
}

/// How a pending reservation is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Sold: the units leave `reserved`.
    Commit,
    /// Given back by the order: the units return to `available`.
    Release,
    /// Given back by the sweep: as `Release`, recorded as `expired`.
    Expire,
}

impl Settle {
    /// The status a pending reservation ends in.
    pub fn target(self) -> Status {
        match self {
            Self::Commit => Status::Committed,
            Self::Release => Status::Released,
            Self::Expire => Status::Expired,
        }
    }

    /// `stock` after settling `quantity` units. `reserved` saturates rather
    /// than failing: a record that somehow holds less than a pending
    /// reservation must not make the reservation impossible to settle.
    pub fn apply(self, stock: Stock, quantity: u64) -> Stock {
        let reserved = stock.reserved.saturating_sub(quantity);
        match self {
            Self::Commit => Stock {
                available: stock.available,
                reserved,
            },
            Self::Release | Self::Expire => Stock {
                available: stock.available.saturating_add(quantity),
                reserved,
            },
        }
    }
}

/// What settling a reservation already in `status` means, when it is not
/// pending: `Ok` = answer it unchanged (a repeat), `Err` = a 409.
pub fn settled_outcome(status: Status, how: Settle, order_id: &str) -> Result<()> {
    let repeat = matches!(
        (status, how),
        (Status::Committed, Settle::Commit)
            | (
                Status::Released | Status::Expired,
                Settle::Release | Settle::Expire
            )
    );
    if repeat {
        return Ok(());
    }
    let state = match status {
        Status::Pending => "pending",
        Status::Committed => "committed",
        Status::Released => "released",
        Status::Expired => "expired",
    };
    Err(Error::conflict(format!(
        "the reservation of order {order_id} is already {state}"
    )))
}

#[cfg(test)]
mod tests;
