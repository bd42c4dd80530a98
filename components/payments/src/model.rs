//! What payments stores, its keys, and the pure checks on requests.

use bazaar_sdk::{Error, Result};
use serde::{Deserialize, Serialize};

/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// Longest `order_id` accepted.
const MAX_ORDER_ID: usize = 128;

/// What happened to a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentStatus {
    /// Charged.
    Succeeded,
    /// The card was declined; nothing was charged.
    Declined,
    /// Charged, then given back.
    Refunded,
}

/// A payment, at `payment:{id}`; it holds the card's last four digits only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// Random id.
    pub id: String,
    /// The order paid for.
    pub order_id: String,
    /// The verified user who paid (`x-bazaar-user`: on a call from
    /// `orders`, the user who placed the order); `null` for a service call
    /// made without one. Only they, an `admin` or a service may read or
    /// refund it.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Amount in cents of `currency`.
    pub amount_cents: u64,
    /// ISO 4217 code, uppercase.
    pub currency: String,
    /// The only part of the card kept, so a receipt can name it.
    pub card_last4: String,
    /// What happened.
    pub status: PaymentStatus,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
}

/// What an `Idempotency-Key` stands for, at `idem:{key}`: the first
/// request's payment and answer, or a tombstone from a void (then
/// `payment_id` is absent unless a payment was made and refunded).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IdemRecord {
    /// The payment the first request made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    /// What the first request asked for; see [`fingerprint`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The status the first request was answered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Set by a void: later charges with this key are refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub voided: bool,
}

/// The key of a payment.
pub fn payment_key(id: &str) -> String {
    format!("payment:{id}")
}

/// The key of an idempotency record.
pub fn idem_key(key: &str) -> String {
    format!("idem:{key}")
}

/// What makes two charges "the same request", who asks included, so that
/// another user reusing a key learns nothing of the payment it made:
/// encoded as a JSON array so that no choice of field values can make two
/// different requests collide.
pub fn fingerprint(
    user_id: Option<&str>,
    order_id: &str,
    amount_cents: u64,
    currency: &str,
    card_last4: &str,
) -> String {
    serde_json::json!([order_id, amount_cents, currency, card_last4, user_id]).to_string()
}

/// A currency code: three ASCII letters, returned uppercase.
pub fn valid_currency(currency: &str) -> Result<String> {
    let currency = currency.trim();
    if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(currency.to_ascii_uppercase())
    } else {
        Err(Error::bad_request(
            "currency must be three letters, e.g. USD",
        ))
    }
}

/// An order id: 1-128 characters, no control characters.
pub fn valid_order_id(order_id: &str) -> Result<&str> {
    let ok = !order_id.is_empty()
        && order_id.len() <= MAX_ORDER_ID
        && !order_id.chars().any(char::is_control);
    if ok {
        Ok(order_id)
    } else {
        Err(Error::bad_request(format!(
            "order_id must be 1-{MAX_ORDER_ID} characters"
        )))
    }
}

/// An idempotency key: 1-255 visible ASCII characters.
pub fn valid_idempotency_key(key: &str) -> Result<&str> {
    let ok = !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY
        && key.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(key)
    } else {
        Err(Error::bad_request(format!(
            "Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_differ_whenever_a_field_does() {
        let u1 = Some("u1");
        let base = fingerprint(u1, "o1", 100, "USD", "4242");
        assert_eq!(base, fingerprint(u1, "o1", 100, "USD", "4242"));
        assert_ne!(base, fingerprint(u1, "o1", 101, "USD", "4242"));
        assert_ne!(base, fingerprint(u1, "o1", 100, "EUR", "4242"));
        assert_ne!(base, fingerprint(u1, "o1", 100, "USD", "0002"));
        assert_ne!(
            fingerprint(u1, "a\",\"b", 1, "USD", "4242"),
            fingerprint(u1, "a", 1, "b\",\"USD", "4242"),
            "quotes in one field must not shift into another"
        );
    }

    #[test]
    fn the_same_charge_by_another_user_is_another_request() {
        let mine = fingerprint(Some("u1"), "o1", 100, "USD", "4242");
        assert_ne!(mine, fingerprint(Some("u2"), "o1", 100, "USD", "4242"));
        assert_ne!(mine, fingerprint(None, "o1", 100, "USD", "4242"));
    }

    #[test]
    fn payments_without_a_user_say_null_and_old_records_still_read() {
        let payment = Payment {
            id: "p1".into(),
            order_id: "o1".into(),
            user_id: None,
            amount_cents: 100,
            currency: "USD".into(),
            card_last4: "4242".into(),
            status: PaymentStatus::Succeeded,
            created_at: 1,
        };
        let json = serde_json::to_value(&payment).unwrap();
        assert_eq!(json["user_id"], serde_json::Value::Null);
        let old = r#"{"id":"p1","order_id":"o1","amount_cents":100,"currency":"USD",
            "card_last4":"4242","status":"succeeded","created_at":1}"#;
        assert_eq!(serde_json::from_str::<Payment>(old).unwrap(), payment);
    }

    #[test]
    fn currencies_are_three_letters_uppercased() {
        assert_eq!(valid_currency(" usd "), Ok("USD".to_owned()));
        for bad in ["US", "USDX", "U5D", ""] {
            assert_eq!(valid_currency(bad).map_err(|e| e.status), Err(400), "{bad}");
        }
    }

    #[test]
    fn idempotency_keys_are_visible_ascii() {
        assert!(valid_idempotency_key("order-1f2e").is_ok());
        for bad in ["", "a b", "é", &"k".repeat(256)] {
            assert!(valid_idempotency_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_tombstone_is_just_voided_and_a_charge_has_no_voided_field() {
        let tombstone = IdemRecord {
            voided: true,
            ..IdemRecord::default()
        };
        assert_eq!(
            serde_json::to_string(&tombstone).unwrap(),
            r#"{"voided":true}"#
        );
        let charge = IdemRecord {
            payment_id: Some("p".into()),
            fingerprint: Some("f".into()),
            status_code: Some(201),
            voided: false,
        };
        let json = serde_json::to_string(&charge).unwrap();
        assert_eq!(
            json,
            r#"{"payment_id":"p","fingerprint":"f","status_code":201}"#
        );
        assert_eq!(serde_json::from_str::<IdemRecord>(&json).unwrap(), charge);
    }

    #[test]
    fn statuses_are_lowercase_json() {
        let json = serde_json::to_string(&PaymentStatus::Refunded).unwrap();
        assert_eq!(json, "\"refunded\"");
    }
}
