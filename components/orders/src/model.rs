//! Orders as stored and answered, their keys, and the pure checks and sums
//! behind placing one.

use bazaar_sdk::{Error, Result, valid_id};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most lines in one order.
pub const MAX_ITEMS: usize = 50;
/// Most units of one line.
pub const MAX_QUANTITY: u64 = 1000;

/// A line as the client sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemInput {
    /// The product ordered.
    pub product_id: String,
    /// How many units.
    pub quantity: u64,
}

/// The body of `POST /api/orders`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderInput {
    /// Who orders.
    pub user_id: String,
    /// What they order.
    pub items: Vec<ItemInput>,
    /// The card, passed on to `payments` and never stored here. Any JSON
    /// value, so a number sent by mistake is refused by a message that
    /// does not quote it.
    pub card: Value,
}

/// A line of a placed order, priced when it was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    /// The product.
    pub product_id: String,
    /// Its name when ordered, so the order reads right after a rename.
    pub name: String,
    /// How many units.
    pub quantity: u64,
    /// Its price when ordered, in cents.
    pub unit_price_cents: u64,
}

/// A placed order, at `order:{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Random id; also the payment's idempotency key.
    pub id: String,
    /// Who ordered.
    pub user_id: String,
    /// The lines, as sent, priced.
    pub items: Vec<OrderItem>,
    /// Σ unit price × quantity, in cents.
    pub total_cents: u64,
    /// The one currency of every line.
    pub currency: String,
    /// Always `placed`: an order is stored only once paid and committed.
    pub status: String,
    /// The payment that paid for it.
    pub payment_id: String,
    /// The last four digits of the card, from the payment.
    pub card_last4: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
}

/// The key of an order.
pub fn order_key(id: &str) -> String {
    format!("order:{id}")
}

/// The prefix of a user's order index; see [`user_index_key`].
pub fn user_index_prefix(user_id: &str) -> String {
    format!("user:{user_id}:")
}

/// A user's order index key: zero-padded time first, so key order is the
/// order in which they were placed.
pub fn user_index_key(user_id: &str, created_at_ms: u64, order_id: &str) -> String {
    format!(
        "{}{created_at_ms:020}:{order_id}",
        user_index_prefix(user_id)
    )
}

/// Checks an order request (everything but whether things exist).
pub fn validate(input: &OrderInput) -> Result<()> {
    valid_id("user_id", &input.user_id)?;
    if input.items.is_empty() || input.items.len() > MAX_ITEMS {
        return Err(Error::bad_request(format!(
            "items must list 1-{MAX_ITEMS} lines"
        )));
    }
    for item in &input.items {
        valid_id("product_id", &item.product_id)?;
        if !(1..=MAX_QUANTITY).contains(&item.quantity) {
            return Err(Error::bad_request(format!(
                "quantity of product {} must be 1-{MAX_QUANTITY}",
                item.product_id
            )));
        }
    }
    valid_card(&input.card)
}

/// Checks the card the way `payments` will (a string of 12-19 digits,
/// spaces and dashes allowed, Luhn-valid), so that a typo is the client's
/// 400 here rather than a failed payment after stock was reserved. The
/// message never quotes the number.
pub fn valid_card(card: &Value) -> Result<()> {
    let Value::String(text) = card else {
        return Err(Error::bad_request("card must be a string of digits"));
    };
    let digits: Vec<u32> = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .map(|c| c.to_digit(10))
        .collect::<Option<_>>()
        .ok_or_else(|| Error::bad_request("card must contain only digits, spaces and dashes"))?;
    if !(12..=19).contains(&digits.len()) {
        return Err(Error::bad_request("card must have 12-19 digits"));
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| match (i % 2 == 1, d * 2) {
            (true, doubled) if doubled > 9 => doubled - 9,
            (true, doubled) => doubled,
            (false, _) => d,
        })
        .sum();
    if !sum.is_multiple_of(10) {
        return Err(Error::bad_request("card number is not valid"));
    }
    Ok(())
}

/// The sum of every line's price × quantity; a 422 if it does not fit.
pub fn total_cents(items: &[OrderItem]) -> Result<u64> {
    items.iter().try_fold(0u64, |total, item| {
        item.unit_price_cents
            .checked_mul(item.quantity)
            .and_then(|line| total.checked_add(line))
            .ok_or_else(|| Error::new(422, "the order total is too large"))
    })
}

/// The one currency all `currencies` share; a 422 naming two that differ.
pub fn single_currency<'a>(mut currencies: impl Iterator<Item = &'a str>) -> Result<String> {
    let first = currencies
        .next()
        .ok_or_else(|| Error::bad_request("an order needs at least one item"))?;
    match currencies.find(|c| *c != first) {
        Some(other) => Err(Error::new(
            422,
            format!("all items must share one currency; found {first} and {other}"),
        )),
        None => Ok(first.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(price: u64, quantity: u64) -> OrderItem {
        OrderItem {
            product_id: "p".into(),
            name: "P".into(),
            quantity,
            unit_price_cents: price,
        }
    }

    fn input(items: Vec<ItemInput>, card: Value) -> OrderInput {
        OrderInput {
            user_id: "u1".into(),
            items,
            card,
        }
    }

    fn line(quantity: u64) -> ItemInput {
        ItemInput {
            product_id: "p1".into(),
            quantity,
        }
    }

    #[test]
    fn totals_multiply_and_add_in_cents() {
        assert_eq!(total_cents(&[item(1299, 2), item(1, 3)]), Ok(2601));
        let huge = total_cents(&[item(u64::MAX, 2)]).map_err(|e| e.status);
        assert_eq!(huge, Err(422));
    }

    #[test]
    fn mixed_currencies_are_422() {
        assert_eq!(
            single_currency(["USD", "USD"].into_iter()),
            Ok("USD".into())
        );
        let mixed = single_currency(["USD", "EUR"].into_iter()).unwrap_err();
        assert_eq!(mixed.status, 422);
        assert!(mixed.message.contains("USD and EUR"), "{}", mixed.message);
    }

    #[test]
    fn orders_need_1_to_50_lines_of_1_to_1000_units() {
        let card = json!("4242424242424242");
        assert!(validate(&input(vec![line(1)], card.clone())).is_ok());
        for items in [vec![], vec![line(0)], vec![line(1001)], vec![line(1); 51]] {
            let status = validate(&input(items, card.clone())).map_err(|e| e.status);
            assert_eq!(status, Err(400));
        }
    }

    #[test]
    fn cards_must_be_luhn_valid_strings_and_errors_never_quote_them() {
        assert!(valid_card(&json!("4242-4242 4242-4242")).is_ok());
        for bad in [
            json!("4242424242424241"),
            json!("42424242"),
            json!(4242424242424242u64),
        ] {
            let error = valid_card(&bad).unwrap_err();
            assert_eq!(error.status, 400);
            assert!(!error.message.contains("4242"), "leaks: {}", error.message);
        }
    }

    #[test]
    fn index_keys_sort_by_time_within_a_user() {
        let early = user_index_key("u", 999, "b");
        let late = user_index_key("u", 1_000, "a");
        assert!(early < late);
        assert!(early.starts_with(&user_index_prefix("u")));
        assert!(!user_index_key("u1", 1, "x").starts_with(&user_index_prefix("u")));
    }
}
